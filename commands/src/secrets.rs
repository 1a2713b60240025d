//! Keys, tokens and passwords: how they are made and how they are stored (hashed).
//!
//! API tokens and server-side keys are random and long, so a plain SHA-256 of them is a safe
//! thing to store and fast to look up on every request. Passwords are short and guessable, so
//! they get a slow, salted Argon2id hash.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// 244 random bits from the OS, as hex, from two v4 UUIDs.
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

pub fn new_token() -> String {
    random_hex()
}

/// A new identity reference (see `domain::identity`): 122 random bits, as hex.
pub fn new_identity_reference() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A client (environment) key: public, so shorter.
pub fn new_client_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn new_server_side_key() -> String {
    format!(
        "{}{}",
        domain::environment::SERVER_SIDE_KEY_PREFIX,
        random_hex()
    )
}

/// The seed of a new Ed25519 signing key: 244 random bits from the OS, through SHA-256.
pub fn new_signing_seed() -> [u8; 32] {
    Sha256::digest(random_hex().as_bytes()).into()
}

pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub fn hash_password(password: &str) -> Result<String> {
    if password.len() < 8 {
        return Err(domain::Error::invalid("password", "must be at least 8 characters").into());
    }
    let salt = SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
        .map_err(|e| Error::Storage(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::Storage(format!("password hash: {e}")))
}

/// Whether `password` is the one `hash` (a PHC string from [`hash_password`]) was made from.
/// Slow by design (Argon2id): call it off the async threads.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A dashboard session's secret (the cookie's value; only its SHA-256 is stored).
pub fn new_session_secret() -> String {
    random_hex()
}

#[cfg(test)]
mod password_tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_and_nothing_else_does() {
        let hash = hash_password("correct horse").unwrap();
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsE"));
        assert!(!verify_password("not a phc string", "correct horse"));
    }
}

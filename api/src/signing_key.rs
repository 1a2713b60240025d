//! The server's Ed25519 key for signed audit checkpoints: from `FLAGLOG_AUDIT_SIGNING_KEY` (its
//! seed, 64 hex digits) when set, else the database's, made on the first start; every node of one
//! database converges on the same row. The seed is a secret: it is never logged or answered.

use domain::checkpoint::SigningKey;
use sqlx::AnyPool;

/// The environment variable that names the key instead of the database.
pub const ENV: &str = "FLAGLOG_AUDIT_SIGNING_KEY";

fn from_hex(text: &str) -> Result<SigningKey, String> {
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{ENV} must be 64 hex digits (a 32-byte Ed25519 seed)"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The configured key, or the database's (made now if it has none).
pub async fn load_or_create(pool: &AnyPool) -> Result<SigningKey, String> {
    if let Ok(configured) = std::env::var(ENV)
        && !configured.trim().is_empty()
    {
        return from_hex(&configured);
    }
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    sqlx::query(
        "INSERT INTO audit_signing_key (id, seed, created_at_micros) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(hex::encode(commands::secrets::new_signing_seed()))
    .bind(now)
    .execute(pool)
    .await
    .map_err(|e| format!("cannot store the audit signing key: {e}"))?;
    let seed: String = sqlx::query_scalar("SELECT seed FROM audit_signing_key WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(|e| format!("cannot read the audit signing key: {e}"))?;
    from_hex(&seed).map_err(|_| "the stored audit signing key is not a 32-byte seed".to_string())
}

//! Signed checkpoints of the log: the position of its head, the hash stored there and when,
//! signed with the server's Ed25519 key, so that parties outside flaglog can hold a copy and
//! later prove that nothing up to that position changed (the log must still hold that hash
//! there, and extend it).
//!
//! Besides being served on request, checkpoints are published into the log itself, on the
//! stream [`STREAM`], so every consumer of the log's events (exports, feeds, replicas) holds
//! copies signed when they were taken: [`PublishedCheckpoints`] is that stream's aggregate and
//! [`due`] says when another is worth publishing.

pub use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};

/// The stream published checkpoints are appended to.
pub const STREAM: &str = "audit-checkpoints";

/// A checkpoint the server signed and published into the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CheckpointEvent {
    CheckpointPublished { checkpoint: SignedCheckpoint },
}

impl DomainEvent for CheckpointEvent {}

/// The checkpoints published so far: the last one, and how many.
#[derive(Debug, Clone, Default)]
pub struct PublishedCheckpoints {
    pub last: Option<SignedCheckpoint>,
    pub count: u64,
}

impl Aggregate for PublishedCheckpoints {
    type Event = CheckpointEvent;

    fn apply(&mut self, event: &CheckpointEvent) {
        let CheckpointEvent::CheckpointPublished { checkpoint } = event;
        self.last = Some(checkpoint.clone());
        self.count += 1;
    }
}

/// The last checkpoint published: where it was itself recorded, and the head it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastPublished {
    pub at: u64,
    pub covers: u64,
}

/// Whether a checkpoint of the log at `head` is worth publishing, given the last one published
/// (`None`: none yet): only if something other than that publication is not covered by it —
/// appended since, or appended between the head it read and its own append — so an idle log
/// gets no stream of checkpoints of itself.
pub fn due(last: Option<LastPublished>, head: u64) -> bool {
    match last {
        Some(last) => head > last.at || last.covers + 1 < last.at,
        None => head > 0,
    }
}

/// A checkpoint with its signature, as served and as an auditor keeps it (hex for bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub position: u64,
    /// The hash stored at `position` (hex).
    pub head_hash: String,
    /// When it was taken, RFC 3339 (UTC).
    pub time: String,
    /// The Ed25519 public key that verifies `signature` (hex).
    pub public_key: String,
    /// Ed25519 signature of [`signed_bytes`] (hex).
    pub signature: String,
}

/// The bytes a checkpoint's signature covers.
pub fn signed_bytes(position: u64, head_hash: &str, time: &str) -> Vec<u8> {
    format!("flaglog-checkpoint-v1\n{position}\n{head_hash}\n{time}").into_bytes()
}

/// Signs a checkpoint of `position` whose stored hash is `head_hash`, taken at `time`.
pub fn sign(key: &SigningKey, position: u64, head_hash: [u8; 32], time: &str) -> SignedCheckpoint {
    let head_hash = hex::encode(head_hash);
    let signature = key.sign(&signed_bytes(position, &head_hash, time));
    SignedCheckpoint {
        position,
        head_hash,
        time: time.to_string(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        signature: hex::encode(signature.to_bytes()),
    }
}

impl SignedCheckpoint {
    /// Whether `public_key` (hex; the one the auditor trusts, not necessarily the one the
    /// checkpoint names) signed exactly this checkpoint.
    pub fn verify(&self, public_key: &str) -> Result<(), String> {
        let key: [u8; 32] = hex::decode(public_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the public key is not 64 hex digits")?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("not a public key: {e}"))?;
        let signature: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the signature is not 128 hex digits")?;
        key.verify(
            &signed_bytes(self.position, &self.head_hash, &self.time),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| "the signature does not verify: not signed by this key, or changed".into())
    }

    /// The head hash as bytes.
    pub fn hash(&self) -> Option<[u8; 32]> {
        hex::decode(&self.head_hash).ok()?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_only_when_more_than_the_last_publication_was_appended() {
        let last = |at, covers| Some(LastPublished { at, covers });
        assert!(!due(None, 0), "an empty log");
        assert!(due(None, 3));
        assert!(!due(last(4, 3), 4), "nothing since the last publication");
        assert!(due(last(4, 3), 5));
        // An event appended between the head it read (3) and its own append (at 5).
        assert!(due(last(5, 3), 5), "position 4 is not covered");
    }

    #[test]
    fn a_checkpoint_verifies_with_its_key_only_and_unchanged_only() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let checkpoint = sign(&key, 42, [1; 32], "2026-12-04T00:00:00Z");
        let public = hex::encode(key.verifying_key().as_bytes());
        assert_eq!(checkpoint.public_key, public);
        checkpoint.verify(&public).unwrap();
        assert!(
            checkpoint
                .verify(&hex::encode(other.verifying_key().as_bytes()))
                .is_err()
        );
        let mut moved = checkpoint.clone();
        moved.position = 41;
        assert!(moved.verify(&public).is_err());
        assert_eq!(checkpoint.hash(), Some([1; 32]));
    }
}

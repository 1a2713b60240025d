//! The append-only event log: its record format, its hash chain and the port storage implements.
//!
//! The log is one totally ordered sequence of events. Each event belongs to a stream (one aggregate
//! instance, e.g. `project-7`) and has a version within it; the global `position` orders all events
//! of all streams and is strictly increasing in commit order, so a reader that tails the log by
//! position never passes over an event (see ARCHITECTURE.md, "No subscriber skips an event").
//!
//! Tamper evidence: every event stores `hash = SHA-256(previous hash ‖ canonical bytes)`, where the
//! canonical bytes are defined by [`canonical_bytes`] and do not depend on the database, so both
//! adapters produce the same chain for the same events and anyone can re-verify it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::EnvironmentId;

mod chain;

pub use chain::{
    CanonicalEvent, ChainBreak, ChainCheck, Chained, StoredRecord, canonical_bytes, canonical_json,
    chain_hash, stored_bytes, verify_chain,
};

/// The hash that precedes the first event of the log.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Who did something, and the request and reason it was part of. Stored with every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The user (`user:<id>`), or a system actor such as `import` or `system`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Free text: why the change was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Applied directly by an admin while four-eyes was on (with `reason`): "applied without
    /// review".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
    /// Who approved the change request whose commit appended these events (`user:<id>`); the
    /// request itself is `causation_id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

impl Metadata {
    pub fn actor(actor: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            ..Self::default()
        }
    }
}

/// An event about to be appended: its type, the schema version of its payload, and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Value,
}

/// What a stream must look like for an append to go through (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream's last event must have exactly this version (versions start at 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose current version is `current` (0 = no events) satisfies this.
    pub fn admits(self, current: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current == 0,
            ExpectedVersion::Exact(v) => current == v,
        }
    }

    /// The version a command saw when it loaded a stream of `version` events.
    pub fn from_loaded(version: u64) -> Self {
        if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        }
    }
}

/// Events for one stream, as part of an append; or, with no events, an expectation on a stream
/// the append reads but does not write (see [`StreamAppend::expect`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// "`stream_id` must still be at `expected`; append nothing to it." Checked under the same
    /// lock as the streams written, so a decision that read another aggregate is refused with
    /// [`LogError::Conflict`] if that aggregate moved meanwhile. This is how a rule that spans
    /// aggregates (an override names a segment that exists) holds under concurrency.
    pub fn expect(stream_id: impl Into<String>, expected: ExpectedVersion) -> Self {
        StreamAppend {
            stream_id: stream_id.into(),
            expected,
            events: Vec::new(),
        }
    }

    /// Whether this entry only states an expectation and writes nothing.
    pub fn is_expectation(&self) -> bool {
        self.events.is_empty()
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Global position, strictly increasing, starting at 1, without gaps.
    pub position: u64,
    pub stream_id: String,
    /// Version within the stream, starting at 1, without gaps.
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: Value,
    pub metadata: Metadata,
    /// When the event was appended, in microseconds since the Unix epoch (UTC).
    pub recorded_at_micros: i64,
    #[serde(with = "hex_bytes")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// Recomputes this event's hash from its fields and its predecessor's hash.
    pub fn computed_hash(&self) -> [u8; 32] {
        chain_hash(
            &self.prev_hash,
            &canonical_bytes(&CanonicalEvent {
                position: self.position,
                stream_id: &self.stream_id,
                version: self.version,
                event_type: &self.event_type,
                schema_version: self.schema_version,
                payload: &self.payload,
                metadata: &self.metadata,
                recorded_at_micros: self.recorded_at_micros,
            }),
        )
    }

    pub fn recorded_at(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.recorded_at_micros) * 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

/// An instant in microseconds since the Unix epoch (how the log records time) as RFC 3339 UTC;
/// `None` out of the representable range.
pub fn rfc3339(micros: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// The result of a successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Position of the last event written.
    pub last_position: u64,
    /// The new version of each stream written (not of those only expected), in the order of the
    /// request.
    pub stream_versions: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A stream was not at the expected version: nothing was written.
    #[error("stream {stream_id} is at version {actual}, expected {expected:?}")]
    Conflict {
        stream_id: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("event log storage: {0}")]
    Storage(String),
}

/// The erasable table beside the log: each identity's identifier, by the reference the log's
/// events carry instead (see [`crate::identity`]). Every [`EventLog`] keeps one, in the same
/// database, so the write side resolves identifiers and readers name identities through the
/// same port.
#[async_trait]
pub trait IdentityReferences: Send + Sync {
    /// The reference of `identifier` in the environment. When it has none and `assign` is given,
    /// `assign` becomes its reference; when two assign at once, both get the one that won.
    async fn identity_reference(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
        assign: Option<&str>,
    ) -> Result<Option<String>, LogError>;

    /// The identifiers of `references` in the environment, by reference; erased and unknown
    /// ones are left out.
    async fn identifiers(
        &self,
        environment_id: EnvironmentId,
        references: &[String],
    ) -> Result<HashMap<String, String>, LogError>;

    /// Deletes the identifier of `reference` for good; whether there was one.
    async fn erase_identifier(
        &self,
        environment_id: EnvironmentId,
        reference: &str,
    ) -> Result<bool, LogError>;
}

/// The append-only event log. Implemented by the PostgreSQL and SQLite adapters in `commands`;
/// read by `projections` through this trait only.
#[async_trait]
pub trait EventLog: IdentityReferences + Send + Sync + 'static {
    /// Appends events to several streams atomically: either every stream's expected version holds
    /// (those only expected, [`StreamAppend::expect`], included) and all events are written,
    /// contiguous in position, or nothing is written.
    async fn append(
        &self,
        appends: Vec<StreamAppend>,
        metadata: Metadata,
    ) -> Result<Appended, LogError>;

    /// Events of one stream with `version > after_version`, in version order.
    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// Events of one stream with `after_position < position <= until_position`, in version
    /// order: what the stream gained between two positions (from 0: the stream as it stood at
    /// `until_position`, what time travel folds), without reading the rest.
    async fn read_stream_between(
        &self,
        stream_id: &str,
        after_position: u64,
        until_position: u64,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// Up to `limit` events with `position > after_position`, in position order, exactly as
    /// stored (payload and metadata unparsed): what verifying the chain hashes.
    async fn read_stored(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, LogError>;

    /// Up to `limit` events with `position > after_position`, in position order.
    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// The events at `positions` (any order, repeats allowed), in position order; positions
    /// past the head are left out. How a reader that indexed the log fetches what it found.
    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>, LogError>;

    /// The position of the last committed event (0 when the log is empty).
    async fn head(&self) -> Result<u64, LogError>;

    /// Returns once the log's head is past `after_position`, or after `max_wait` (the polling
    /// fallback), whichever comes first. Woken by the backend's notification mechanism.
    async fn wait_for_events(
        &self,
        after_position: u64,
        max_wait: Duration,
    ) -> Result<(), LogError>;
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(position: u64, prev: [u8; 32]) -> RecordedEvent {
        let mut e = RecordedEvent {
            position,
            stream_id: "project-1".into(),
            version: position,
            event_type: "ProjectRenamed".into(),
            schema_version: 1,
            payload: json!({"name": "x", "a": [1, 2.5, {"z": null, "b": true}]}),
            metadata: Metadata::actor("user:1"),
            recorded_at_micros: 1_700_000_000_000_000,
            prev_hash: prev,
            hash: [0; 32],
        };
        e.hash = e.computed_hash();
        e
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let value = json!({"b": 1, "a": {"d": [1, {"y": 2, "x": 3}], "c": "s"}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":"s","d":[1,{"x":3,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn hash_chain_verifies_and_detects_tampering() {
        let first = event(1, GENESIS_HASH);
        let second = event(2, first.hash);
        assert!(verify_chain(GENESIS_HASH, &[first.clone(), second.clone()]).is_ok());

        let mut tampered = second.clone();
        tampered.payload = json!({"name": "y"});
        assert_eq!(verify_chain(GENESIS_HASH, &[first, tampered]), Err(2));
    }

    #[test]
    fn a_chain_check_names_a_missing_event_a_broken_link_and_a_changed_one() {
        let first = event(1, GENESIS_HASH);
        let second = event(2, first.hash);
        let third = event(3, second.hash);
        let mut check = ChainCheck::after(0, GENESIS_HASH);
        check.check(&first).unwrap();
        assert_eq!(
            check.clone().check(&third),
            Err(ChainBreak::Gap {
                expected: 2,
                found: 3
            })
        );
        let relinked = event(2, [7; 32]);
        assert!(matches!(
            check.clone().check(&relinked),
            Err(ChainBreak::PrevHash { position: 2, expected, stored })
                if expected == first.hash && stored == [7; 32]
        ));
        let mut changed = second.clone();
        changed.version = 9;
        assert!(matches!(
            check.clone().check(&changed),
            Err(ChainBreak::Hash { position: 2, stored, .. }) if stored == second.hash
        ));
        check.check(&second).unwrap();
        check.check(&third).unwrap();
        assert_eq!(check.head(), (3, third.hash));
    }

    #[test]
    fn expected_version_admits_only_matching_streams() {
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
        assert!(ExpectedVersion::Exact(3).admits(3));
        assert!(!ExpectedVersion::Exact(3).admits(4));
        assert!(ExpectedVersion::Any.admits(17));
    }
}

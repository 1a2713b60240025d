//! The hash chain: the bytes an event's hash covers, checking a run of events link by link, and
//! events as stored (their JSON unparsed), which is what verifying reads.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{LogError, Metadata, RecordedEvent};

/// The fields of an event that its hash covers.
pub struct CanonicalEvent<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub payload: &'a Value,
    pub metadata: &'a Metadata,
    pub recorded_at_micros: i64,
}

/// The bytes an event's hash covers: each field on its own line, JSON in canonical form (object
/// keys sorted, no insignificant white space), so the bytes survive any storage round trip.
pub fn canonical_bytes(event: &CanonicalEvent<'_>) -> Vec<u8> {
    let metadata = serde_json::to_value(event.metadata).unwrap_or(Value::Null);
    stored_bytes(
        event.position,
        event.stream_id,
        event.version,
        event.event_type,
        event.schema_version,
        &canonical_json(event.payload),
        &canonical_json(&metadata),
        event.recorded_at_micros,
    )
}

/// [`canonical_bytes`] with the payload and metadata already as canonical JSON text (as the log
/// stores them).
#[allow(clippy::too_many_arguments)]
pub fn stored_bytes(
    position: u64,
    stream_id: &str,
    version: u64,
    event_type: &str,
    schema_version: u32,
    payload: &str,
    metadata: &str,
    recorded_at_micros: i64,
) -> Vec<u8> {
    format!(
        "flaglog-event-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
        position,
        serde_json::to_string(stream_id).unwrap_or_default(),
        version,
        serde_json::to_string(event_type).unwrap_or_default(),
        schema_version,
        payload,
        metadata,
        recorded_at_micros,
    )
    .into_bytes()
}

/// An event exactly as stored: its payload and metadata as the canonical JSON text the log
/// wrote (and hashed), unparsed. What verifying the chain reads: hashing the stored text
/// needs no JSON parsing, and any change to a stored byte shows.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub position: u64,
    pub stream_id: String,
    pub version: u64,
    pub event_type: String,
    pub schema_version: u32,
    pub payload: String,
    pub metadata: String,
    pub recorded_at_micros: i64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl StoredRecord {
    /// The event with its payload and metadata parsed.
    pub fn into_recorded(self) -> Result<RecordedEvent, LogError> {
        let corrupt = |what: String| {
            LogError::Storage(format!("event at position {} has {what}", self.position))
        };
        let payload = serde_json::from_str(&self.payload)
            .map_err(|e| corrupt(format!("an unreadable payload: {e}")))?;
        let metadata: Metadata = serde_json::from_str(&self.metadata)
            .map_err(|e| corrupt(format!("unreadable metadata: {e}")))?;
        Ok(RecordedEvent {
            position: self.position,
            stream_id: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            payload,
            metadata,
            recorded_at_micros: self.recorded_at_micros,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }

    /// The hash of the stored bytes and the predecessor's hash.
    pub fn computed_hash(&self) -> [u8; 32] {
        chain_hash(
            &self.prev_hash,
            &stored_bytes(
                self.position,
                &self.stream_id,
                self.version,
                &self.event_type,
                self.schema_version,
                &self.payload,
                &self.metadata,
                self.recorded_at_micros,
            ),
        )
    }
}

/// What the chain check needs of an event, recorded or stored.
pub trait Chained {
    fn position(&self) -> u64;
    fn prev_hash(&self) -> [u8; 32];
    fn hash(&self) -> [u8; 32];
}

impl Chained for RecordedEvent {
    fn position(&self) -> u64 {
        self.position
    }
    fn prev_hash(&self) -> [u8; 32] {
        self.prev_hash
    }
    fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

impl Chained for StoredRecord {
    fn position(&self) -> u64 {
        self.position
    }
    fn prev_hash(&self) -> [u8; 32] {
        self.prev_hash
    }
    fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

/// `SHA-256(prev ‖ bytes)`.
pub fn chain_hash(prev: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// JSON with object keys sorted and no white space, whatever order the map kept them in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).unwrap_or_default());
                out.push(':');
                write_canonical(val, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Checks that `events`, read in position order, form an unbroken hash chain starting from
/// `prev` (the hash of the event before the first one, or [`GENESIS_HASH`]). Returns the position
/// of the first event that does not verify.
pub fn verify_chain(prev: [u8; 32], events: &[RecordedEvent]) -> Result<[u8; 32], u64> {
    let after = events.first().map_or(0, |e| e.position.saturating_sub(1));
    let mut check = ChainCheck::after(after, prev);
    for event in events {
        check.check(event).map_err(|broken| broken.position())?;
    }
    Ok(check.head().1)
}

/// Checks a log's hash chain one event at a time, in position order, remembering where it got:
/// positions follow each other without a gap, each event names its predecessor's hash, and its
/// own hash is what its content gives.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    position: u64,
    hash: [u8; 32],
}

/// Where and how a chain stops verifying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// An event is missing (removed) before `found`.
    Gap { expected: u64, found: u64 },
    /// The event does not name its predecessor's hash.
    PrevHash {
        position: u64,
        expected: [u8; 32],
        stored: [u8; 32],
    },
    /// The event's content does not give its stored hash (it was changed).
    Hash {
        position: u64,
        expected: [u8; 32],
        stored: [u8; 32],
    },
}

impl ChainBreak {
    /// The first position that does not verify.
    pub fn position(&self) -> u64 {
        match self {
            ChainBreak::Gap { expected, .. } => *expected,
            ChainBreak::PrevHash { position, .. } | ChainBreak::Hash { position, .. } => *position,
        }
    }
}

impl ChainCheck {
    /// A check that goes on after the event at `position` whose hash is `hash` (0 and
    /// [`GENESIS_HASH`] for the start of the log).
    pub fn after(position: u64, hash: [u8; 32]) -> Self {
        ChainCheck { position, hash }
    }

    /// Checks the next event.
    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), ChainBreak> {
        self.check_computed(event, event.computed_hash())
    }

    /// Checks the next event, whose content gives `computed` (its
    /// [`RecordedEvent::computed_hash`], worked out beforehand: each event's depends only on
    /// its own fields, so a batch's can be computed in parallel).
    pub fn check_computed(
        &mut self,
        event: &impl Chained,
        computed: [u8; 32],
    ) -> Result<(), ChainBreak> {
        let (position, prev_hash, hash) = (event.position(), event.prev_hash(), event.hash());
        let expected_position = self.position + 1;
        if position != expected_position {
            return Err(ChainBreak::Gap {
                expected: expected_position,
                found: position,
            });
        }
        if prev_hash != self.hash {
            return Err(ChainBreak::PrevHash {
                position,
                expected: self.hash,
                stored: prev_hash,
            });
        }
        if computed != hash {
            return Err(ChainBreak::Hash {
                position,
                expected: computed,
                stored: hash,
            });
        }
        self.position = position;
        self.hash = hash;
        Ok(())
    }

    /// The last position verified, and its hash.
    pub fn head(&self) -> (u64, [u8; 32]) {
        (self.position, self.hash)
    }
}

//! What every aggregate has in common: a stream, a state evolved from events, and the codec that
//! turns domain events into log records and back, upgrading old schema versions on read.
//!
//! Stream names and event type names are part of the log's format: renaming one needs an upcaster
//! in [`upcast`], never an edit of stored events.

use std::borrow::Cow;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::log::{NewEvent, RecordedEvent};

/// An aggregate: a consistency boundary whose state is the fold of its stream's events.
/// Decisions are free functions in each aggregate's module that take `&State` and a command and
/// return events or a [`crate::Error`].
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    type Event: DomainEvent;

    /// Evolves the state by one event. Never fails: events are facts.
    fn apply(&mut self, event: &Self::Event);

    /// Folds events into a fresh state.
    fn from_events<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}

/// A domain event, serialised with serde as `{"type": NAME, "data": {...}}` (adjacently tagged);
/// `NAME` becomes the record's `event_type` and `data` its payload.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The schema version written for new events of every type of this enum.
    const SCHEMA_VERSION: u32 = 1;

    fn to_new_event(&self) -> Result<NewEvent, CodecError> {
        let value = serde_json::to_value(self).map_err(|e| CodecError(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(CodecError("event did not serialise to an object".into()));
        };
        let event_type = match map.remove("type") {
            Some(Value::String(name)) => name,
            _ => return Err(CodecError("event has no type tag".into())),
        };
        let payload = map
            .remove("data")
            .unwrap_or(Value::Object(Default::default()));
        Ok(NewEvent {
            event_type,
            schema_version: Self::SCHEMA_VERSION,
            payload,
        })
    }

    /// Reads the payload where it is (no copy of it): the `{"type", "data"}` form the enum
    /// deserialises from is presented as a map over the record's own values.
    fn from_recorded(record: &RecordedEvent) -> Result<Self, CodecError> {
        let payload = upcast(&record.event_type, record.schema_version, &record.payload)?;
        let tag = Value::String(record.event_type.clone());
        let fields = [("type", &tag), ("data", payload.as_ref())];
        let tagged =
            serde::de::value::MapDeserializer::<_, serde_json::Error>::new(fields.into_iter());
        Self::deserialize(tagged).map_err(|e| {
            CodecError(format!(
                "event {} at position {}: {e}",
                record.event_type, record.position
            ))
        })
    }
}

/// Serde for maps whose keys are not strings (a tuple of ids): written as a list of
/// `[key, value]` pairs, so a folded state can be kept as JSON (time travel's snapshots).
pub mod map_as_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// A record that cannot be turned into a domain event (or the reverse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event codec: {0}")]
pub struct CodecError(pub String);

/// Brings a stored payload up to the current schema version of its event type.
///
/// This is where an event whose payload format changed is upgraded on read: add an arm
/// `("EventType", 1) => upgrade_v1_to_v2(payload)` and bump the enum's `SCHEMA_VERSION`. A
/// version newer than this code knows is refused instead of being misread.
pub fn upcast<'a>(
    event_type: &str,
    schema_version: u32,
    payload: &'a Value,
) -> Result<Cow<'a, Value>, CodecError> {
    const IDENTITY_EVENTS: [&str; 3] = [
        "IdentityOverrideSet",
        "IdentityOverrideRemoved",
        "IdentityErased",
    ];
    match (event_type, schema_version) {
        (t, 1) if IDENTITY_EVENTS.contains(&t) => {
            crate::identity::upcast_v1(payload).map(Cow::Owned)
        }
        (t, 2) if IDENTITY_EVENTS.contains(&t) => Ok(Cow::Borrowed(payload)),
        (_, 1) => Ok(Cow::Borrowed(payload)),
        (_, other) => Err(CodecError(format!(
            "{event_type} has schema version {other}, which this build of flaglog does not know"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Metadata;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Sample {
        Renamed { name: String },
    }
    impl DomainEvent for Sample {}

    fn record(schema_version: u32, payload: Value) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            stream_id: "sample-1".into(),
            version: 1,
            event_type: "Renamed".into(),
            schema_version,
            payload,
            metadata: Metadata::actor("test"),
            recorded_at_micros: 0,
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn events_round_trip_through_records() {
        let event = Sample::Renamed { name: "a".into() };
        let new = event.to_new_event().unwrap();
        assert_eq!(new.event_type, "Renamed");
        assert_eq!(new.payload, json!({"name": "a"}));
        let back = Sample::from_recorded(&record(1, new.payload)).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn unknown_schema_versions_are_refused_not_misread() {
        let err = Sample::from_recorded(&record(7, json!({"name": "a"}))).unwrap_err();
        assert!(err.0.contains("schema version 7"), "{err}");
    }
}

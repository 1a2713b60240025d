//! Identity overrides: per (environment, identity), the features an admin set for that one
//! identity, and the identity's erasure.
//!
//! Identifiers (often e-mail addresses) are personal data, and the log is append-only and
//! hash-chained: nothing written there can be taken back. So no identifier is written to the log.
//! The write side gives each identity a random *reference* the first time it is named
//! ([`crate::log::IdentityReferences`]); events, streams (`identity-{environment id}-{reference}`)
//! and change requests carry the reference, and the identifier lives only in an erasable table
//! beside the log. Erasing an identity appends [`IdentityEvent::IdentityErased`] (its overrides
//! stop applying) and deletes that row: the chain still verifies, and nothing links the
//! reference to a person any more.
//!
//! Events of schema version 1 (before references) carried the identifier; they are read with the
//! SHA-256 of the identifier as reference, which was already their stream's suffix.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, CodecError, DomainEvent};
use crate::environment::FeatureStateInput;
use crate::error::{Error, Result};
use crate::model::{EnvironmentId, Feature, FeatureId, FeatureState, FeatureStateKey};

/// Longest identifier accepted, as Flagsmith.
pub const MAX_IDENTIFIER_LEN: usize = 2000;

/// An identity's reference: what the log holds instead of its identifier.
pub type IdentityRef = String;

/// The stream of one identity's overrides.
pub fn stream(environment_id: EnvironmentId, reference: &str) -> String {
    format!("identity-{environment_id}-{reference}")
}

pub fn validate_identifier(identifier: &str) -> Result<()> {
    if identifier.is_empty() {
        return Err(Error::invalid("identifier", "must not be empty"));
    }
    if identifier.chars().count() > MAX_IDENTIFIER_LEN {
        return Err(Error::invalid(
            "identifier",
            format!("must be at most {MAX_IDENTIFIER_LEN} characters"),
        ));
    }
    Ok(())
}

/// How a command names an identity: by its identifier (the API's form; the write side turns it
/// into the reference before deciding) or by its reference (what change requests store and
/// reverts write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IdentityName {
    Identifier(String),
    Identity(IdentityRef),
}

impl IdentityName {
    /// The reference, once the write side resolved the identifier.
    pub fn reference(&self) -> Option<&str> {
        match self {
            IdentityName::Identity(reference) => Some(reference),
            IdentityName::Identifier(_) => None,
        }
    }

    /// The reference, or an error for a name the write side has not resolved (a bug).
    pub fn resolved(&self) -> Result<&str> {
        self.reference().ok_or_else(|| {
            Error::invalid(
                "identifier",
                "the identity's reference was not resolved before deciding",
            )
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum IdentityEvent {
    IdentityOverrideSet {
        environment_id: EnvironmentId,
        identity: IdentityRef,
        feature_id: FeatureId,
        state: FeatureState,
    },
    IdentityOverrideRemoved {
        environment_id: EnvironmentId,
        identity: IdentityRef,
        feature_id: FeatureId,
    },
    /// The identity was erased: its overrides no longer apply, and its identifier is gone.
    IdentityErased {
        environment_id: EnvironmentId,
        identity: IdentityRef,
    },
}

impl DomainEvent for IdentityEvent {
    /// 2: the identity is named by its reference (`identity`); 1 wrote the `identifier`.
    const SCHEMA_VERSION: u32 = 2;
}

impl IdentityEvent {
    pub fn environment_id(&self) -> EnvironmentId {
        match self {
            IdentityEvent::IdentityOverrideSet { environment_id, .. }
            | IdentityEvent::IdentityOverrideRemoved { environment_id, .. }
            | IdentityEvent::IdentityErased { environment_id, .. } => *environment_id,
        }
    }

    pub fn identity(&self) -> &str {
        match self {
            IdentityEvent::IdentityOverrideSet { identity, .. }
            | IdentityEvent::IdentityOverrideRemoved { identity, .. }
            | IdentityEvent::IdentityErased { identity, .. } => identity,
        }
    }

    /// The feature whose override it changes (none for an erasure).
    pub fn feature_id(&self) -> Option<FeatureId> {
        match self {
            IdentityEvent::IdentityOverrideSet { feature_id, .. }
            | IdentityEvent::IdentityOverrideRemoved { feature_id, .. } => Some(*feature_id),
            IdentityEvent::IdentityErased { .. } => None,
        }
    }
}

/// Upgrades a schema-1 identity event: its `identifier` becomes the reference its stream was
/// already named by (the identifier's SHA-256, hex).
pub(crate) fn upcast_v1(payload: &Value) -> std::result::Result<Value, CodecError> {
    use sha2::{Digest, Sha256};
    let mut payload = payload.clone();
    let object = payload
        .as_object_mut()
        .ok_or_else(|| CodecError("identity event payload is not an object".into()))?;
    let identifier = match object.remove("identifier") {
        Some(Value::String(identifier)) => identifier,
        _ => {
            return Err(CodecError(
                "identity event of schema 1 without identifier".into(),
            ));
        }
    };
    let reference = hex::encode(Sha256::digest(identifier.as_bytes()));
    object.insert("identity".into(), Value::String(reference));
    Ok(payload)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdentityOverrides {
    pub overrides: BTreeMap<FeatureId, FeatureState>,
    /// How many times each feature's override changed: what a change request's base is
    /// compared with.
    pub revisions: BTreeMap<FeatureId, u64>,
    /// Erased: nothing more is decided on this identity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
}

impl Aggregate for IdentityOverrides {
    type Event = IdentityEvent;

    fn apply(&mut self, event: &IdentityEvent) {
        match event {
            IdentityEvent::IdentityOverrideSet {
                feature_id, state, ..
            } => {
                self.overrides.insert(*feature_id, state.clone());
                *self.revisions.entry(*feature_id).or_default() += 1;
            }
            IdentityEvent::IdentityOverrideRemoved { feature_id, .. } => {
                self.overrides.remove(feature_id);
                *self.revisions.entry(*feature_id).or_default() += 1;
            }
            IdentityEvent::IdentityErased { .. } => {
                for feature_id in std::mem::take(&mut self.overrides).into_keys() {
                    *self.revisions.entry(feature_id).or_default() += 1;
                }
                self.erased = true;
            }
        }
    }
}

impl IdentityOverrides {
    fn refuse_if_erased(&self) -> Result<()> {
        if self.erased {
            return Err(Error::conflict(
                "identity",
                "was erased: its overrides no longer change",
            ));
        }
        Ok(())
    }

    pub fn set(
        &self,
        environment_id: EnvironmentId,
        identity: &str,
        feature: &Feature,
        input: FeatureStateInput,
    ) -> Result<Vec<IdentityEvent>> {
        self.refuse_if_erased()?;
        let current = self
            .overrides
            .get(&feature.id)
            .cloned()
            .unwrap_or_else(|| FeatureState {
                enabled: input.enabled,
                feature_state_value: input.feature_state_value.clone(),
                multivariate_feature_state_values: vec![],
                key: FeatureStateKey::derived(&format!(
                    "environment/{environment_id}/identity/{identity}/feature/{}",
                    feature.id
                )),
            });
        let state = input.into_state(feature, &current)?;
        Ok(vec![IdentityEvent::IdentityOverrideSet {
            environment_id,
            identity: identity.to_string(),
            feature_id: feature.id,
            state,
        }])
    }

    pub fn remove(
        &self,
        environment_id: EnvironmentId,
        identity: &str,
        feature_id: FeatureId,
    ) -> Result<Vec<IdentityEvent>> {
        self.refuse_if_erased()?;
        if !self.overrides.contains_key(&feature_id) {
            return Err(Error::not_found(
                "identity override",
                format!("feature {feature_id}"),
            ));
        }
        Ok(vec![IdentityEvent::IdentityOverrideRemoved {
            environment_id,
            identity: identity.to_string(),
            feature_id,
        }])
    }

    /// Erases the identity; nothing to do when it already is.
    pub fn erase(&self, environment_id: EnvironmentId, identity: &str) -> Vec<IdentityEvent> {
        if self.erased {
            return vec![];
        }
        vec![IdentityEvent::IdentityErased {
            environment_id,
            identity: identity.to_string(),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FeatureType;
    use serde_json::json;

    fn feature() -> Feature {
        Feature {
            id: 5,
            name: "beta".into(),
            feature_type: FeatureType::Standard,
            default_enabled: false,
            initial_value: json!(null),
            description: None,
            tags: vec![],
            multivariate_options: vec![],
        }
    }

    #[test]
    fn identifiers_over_two_thousand_characters_are_refused() {
        let long = "x".repeat(MAX_IDENTIFIER_LEN + 1);
        let err = validate_identifier(&long).unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. } if field == "identifier"));
    }

    #[test]
    fn overrides_are_set_and_removed() {
        let mut identity = IdentityOverrides::default();
        let input =
            serde_json::from_value(json!({"enabled": true, "feature_state_value": 3})).unwrap();
        let events = identity.set(1, "ann", &feature(), input).unwrap();
        events.iter().for_each(|e| identity.apply(e));
        assert_eq!(identity.overrides[&5].feature_state_value, json!(3));
        let events = identity.remove(1, "ann", 5).unwrap();
        events.iter().for_each(|e| identity.apply(e));
        assert!(identity.remove(1, "ann", 5).is_err());
    }

    #[test]
    fn an_erased_identity_loses_its_overrides_and_takes_no_more() {
        let mut identity = IdentityOverrides::default();
        let input = serde_json::from_value(json!({"enabled": true})).unwrap();
        let events = identity.set(1, "ref", &feature(), input).unwrap();
        events.iter().for_each(|e| identity.apply(e));
        let erased = identity.erase(1, "ref");
        assert_eq!(erased.len(), 1);
        erased.iter().for_each(|e| identity.apply(e));
        assert!(identity.overrides.is_empty());
        assert_eq!(
            identity.revisions[&5], 2,
            "the erasure moves the override's revision"
        );
        assert!(identity.erase(1, "ref").is_empty());
        let input = serde_json::from_value(json!({"enabled": true})).unwrap();
        let err = identity.set(1, "ref", &feature(), input).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }));
    }

    #[test]
    fn schema_one_events_read_with_the_identifier_hash_as_reference() {
        let upgraded =
            upcast_v1(&json!({"environment_id": 1, "identifier": "ann", "feature_id": 5})).unwrap();
        assert_eq!(upgraded.get("identifier"), None);
        assert_eq!(
            upgraded["identity"],
            // SHA-256 of "ann": the suffix of the stream schema-1 events were written to.
            "49915e0d7d4b402e3017d010bc1c0e83cac6c797d6c16e66340fe3268693a6a1"
        );
    }
}

//! Identity overrides: per (environment, identifier), the features an admin set for that one
//! identity. One stream per identity (`identity-{environment id}-{SHA-256 of the identifier}`), so that
//! many overrides neither lengthen an environment's stream nor contend with its other changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::environment::FeatureStateInput;
use crate::error::{Error, Result};
use crate::model::{EnvironmentId, Feature, FeatureId, FeatureState, FeatureStateKey};

/// Longest identifier accepted, as Flagsmith.
pub const MAX_IDENTIFIER_LEN: usize = 2000;

/// The stream of one identity's overrides. The identifier is hashed into the name (it is in
/// every event's payload): identifiers run to 2,000 characters, more than an index entry holds.
pub fn stream(environment_id: EnvironmentId, identifier: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(identifier.as_bytes()));
    format!("identity-{environment_id}-{digest}")
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum IdentityEvent {
    IdentityOverrideSet {
        environment_id: EnvironmentId,
        identifier: String,
        feature_id: FeatureId,
        state: FeatureState,
    },
    IdentityOverrideRemoved {
        environment_id: EnvironmentId,
        identifier: String,
        feature_id: FeatureId,
    },
}

impl DomainEvent for IdentityEvent {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IdentityOverrides {
    pub overrides: BTreeMap<FeatureId, FeatureState>,
    /// How many times each feature's override changed: what a change request's base is
    /// compared with.
    pub revisions: BTreeMap<FeatureId, u64>,
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
        }
    }
}

impl IdentityOverrides {
    pub fn set(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
        feature: &Feature,
        input: FeatureStateInput,
    ) -> Result<Vec<IdentityEvent>> {
        validate_identifier(identifier)?;
        let current = self
            .overrides
            .get(&feature.id)
            .cloned()
            .unwrap_or_else(|| FeatureState {
                enabled: input.enabled,
                feature_state_value: input.feature_state_value.clone(),
                multivariate_feature_state_values: vec![],
                key: FeatureStateKey::derived(&format!(
                    "environment/{environment_id}/identity/{identifier}/feature/{}",
                    feature.id
                )),
            });
        let state = input.into_state(feature, &current)?;
        Ok(vec![IdentityEvent::IdentityOverrideSet {
            environment_id,
            identifier: identifier.to_string(),
            feature_id: feature.id,
            state,
        }])
    }

    pub fn remove(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
        feature_id: FeatureId,
    ) -> Result<Vec<IdentityEvent>> {
        if !self.overrides.contains_key(&feature_id) {
            return Err(Error::not_found(
                "identity override",
                format!("{identifier}/{feature_id}"),
            ));
        }
        Ok(vec![IdentityEvent::IdentityOverrideRemoved {
            environment_id,
            identifier: identifier.to_string(),
            feature_id,
        }])
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
        let input = serde_json::from_value(json!({"enabled": true})).unwrap();
        let err = IdentityOverrides::default()
            .set(1, &long, &feature(), input)
            .unwrap_err();
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
}

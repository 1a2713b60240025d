//! The environment aggregate: an environment's settings, its server-side keys, its feature states
//! and its segment overrides (`environment-{id}`). Identity overrides live in their own streams
//! ([`crate::identity`]) so that many of them never make an environment's stream long.
//!
//! A feature has a state in every environment of its project from the moment it exists: until an
//! environment sets one, it is the feature's defaults ([`Environment::effective_state`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, DomainEvent};
use crate::error::{Error, Result};
use crate::model::{
    EnvironmentId, Feature, FeatureId, FeatureState, FeatureStateKey, MultivariateAllocation,
    OptionId, ProjectId, SegmentId, validate_name,
};

pub fn stream(id: EnvironmentId) -> String {
    format!("environment-{id}")
}

/// The environment id of a stream named by [`stream`].
pub fn id_of_stream(stream_id: &str) -> Option<EnvironmentId> {
    stream_id.strip_prefix("environment-")?.parse().ok()
}

/// Prefix of every server-side key, as in Flagsmith.
pub const SERVER_SIDE_KEY_PREFIX: &str = "ser.";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentOverride {
    pub segment_id: SegmentId,
    /// Lower wins; `None` ranks after every number.
    #[serde(default)]
    pub priority: Option<i64>,
    pub state: FeatureState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EnvironmentEvent {
    EnvironmentCreated {
        id: EnvironmentId,
        project_id: ProjectId,
        name: String,
        client_key: String,
    },
    EnvironmentRenamed {
        name: String,
    },
    ServerSideKeyIssued {
        id: u64,
        name: String,
        /// Hex SHA-256 of the key; the key itself is shown once, never stored.
        key_hash: String,
    },
    FeatureStateSet {
        feature_id: FeatureId,
        state: FeatureState,
    },
    SegmentOverrideSet {
        feature_id: FeatureId,
        r#override: SegmentOverride,
    },
    SegmentOverrideRemoved {
        feature_id: FeatureId,
        segment_id: SegmentId,
    },
    /// The environment's settings as a whole, after the change.
    EnvironmentSettingsChanged {
        settings: EnvironmentSettings,
    },
}

impl DomainEvent for EnvironmentEvent {}

/// The most approvals a change request can be made to need.
pub const MAX_MINIMUM_APPROVALS: u32 = 100;

/// A change of some of an environment's settings: absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnvironmentSettingsChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_change_request_approvals: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_from_assigned_reviewers_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_versioning: Option<bool>,
}

/// How changes to what an environment serves are reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EnvironmentSettings {
    /// Approvals a change request needs before it may be committed; 0 turns four-eyes off (and
    /// lets editors change the environment directly).
    #[serde(default)]
    pub minimum_change_request_approvals: u32,
    /// Only approvals of the reviewers assigned to a request count.
    #[serde(default)]
    pub approvals_from_assigned_reviewers_only: bool,
    /// Whether the dashboard presents each published state of a feature as a version (the
    /// versions are projected for every environment either way).
    #[serde(default)]
    pub feature_versioning: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSideKey {
    pub id: u64,
    pub name: String,
    pub key_hash: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    pub id: EnvironmentId,
    pub project_id: ProjectId,
    pub name: String,
    pub client_key: String,
    pub server_side_keys: Vec<ServerSideKey>,
    /// States set explicitly; other features of the project are at their defaults.
    pub feature_states: BTreeMap<FeatureId, FeatureState>,
    #[serde(with = "crate::aggregate::map_as_pairs")]
    pub segment_overrides: BTreeMap<(FeatureId, SegmentId), SegmentOverride>,
    pub settings: EnvironmentSettings,
    /// How many times each feature's state here (its state or a segment override of it) changed:
    /// what a change request's base is compared with.
    pub feature_revisions: BTreeMap<FeatureId, u64>,
    pub exists: bool,
}

impl Aggregate for Environment {
    type Event = EnvironmentEvent;

    fn apply(&mut self, event: &EnvironmentEvent) {
        match event {
            EnvironmentEvent::EnvironmentCreated {
                id,
                project_id,
                name,
                client_key,
            } => {
                self.id = *id;
                self.project_id = *project_id;
                self.name = name.clone();
                self.client_key = client_key.clone();
                self.exists = true;
            }
            EnvironmentEvent::EnvironmentRenamed { name } => self.name = name.clone(),
            EnvironmentEvent::ServerSideKeyIssued { id, name, key_hash } => {
                self.server_side_keys.push(ServerSideKey {
                    id: *id,
                    name: name.clone(),
                    key_hash: key_hash.clone(),
                })
            }
            EnvironmentEvent::FeatureStateSet { feature_id, state } => {
                self.feature_states.insert(*feature_id, state.clone());
                *self.feature_revisions.entry(*feature_id).or_default() += 1;
            }
            EnvironmentEvent::SegmentOverrideSet {
                feature_id,
                r#override,
            } => {
                self.segment_overrides
                    .insert((*feature_id, r#override.segment_id), r#override.clone());
                *self.feature_revisions.entry(*feature_id).or_default() += 1;
            }
            EnvironmentEvent::SegmentOverrideRemoved {
                feature_id,
                segment_id,
            } => {
                self.segment_overrides.remove(&(*feature_id, *segment_id));
                *self.feature_revisions.entry(*feature_id).or_default() += 1;
            }
            EnvironmentEvent::EnvironmentSettingsChanged { settings } => {
                self.settings = settings.clone();
            }
        }
    }
}

/// A multivariate allocation as given in a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllocationInput {
    pub multivariate_feature_option: OptionId,
    pub percentage_allocation: f64,
    /// Kept from an imported document (Flagsmith's `id` / `mv_fs_value_uuid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// A feature state as given in a command. `key` is set only by the importer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeatureStateInput {
    pub enabled: bool,
    #[serde(default)]
    pub feature_state_value: Value,
    /// `None` keeps the current allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multivariate_feature_state_values: Option<Vec<AllocationInput>>,
    /// The hashing key of an imported feature state; flaglog derives its own otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub key: Option<FeatureStateKey>,
}

impl FeatureStateInput {
    /// The state this input describes, keeping `current`'s hashing key and allocations where the
    /// input does not say otherwise.
    pub fn into_state(self, feature: &Feature, current: &FeatureState) -> Result<FeatureState> {
        let allocations = match self.multivariate_feature_state_values {
            None => current.multivariate_feature_state_values.clone(),
            Some(inputs) => inputs
                .into_iter()
                .map(|a| MultivariateAllocation {
                    multivariate_feature_option: a.multivariate_feature_option,
                    percentage_allocation: a.percentage_allocation,
                    id: a.id.or(if a.uuid.is_none() {
                        Some(a.multivariate_feature_option)
                    } else {
                        None
                    }),
                    uuid: a.uuid,
                })
                .collect(),
        };
        let state = FeatureState {
            enabled: self.enabled,
            feature_state_value: self.feature_state_value,
            multivariate_feature_state_values: allocations,
            key: self.key.unwrap_or_else(|| current.key.clone()),
        };
        state.validate(feature)?;
        Ok(state)
    }
}

/// The state a feature has where nothing was set: its defaults, keyed by where it lives.
pub fn default_state(feature: &Feature, scope: &str) -> FeatureState {
    FeatureState {
        enabled: feature.default_enabled,
        feature_state_value: feature.initial_value.clone(),
        multivariate_feature_state_values: feature
            .multivariate_options
            .iter()
            .map(|o| MultivariateAllocation {
                multivariate_feature_option: o.id,
                percentage_allocation: o.default_percentage_allocation,
                id: Some(o.id),
                uuid: None,
            })
            .collect(),
        key: FeatureStateKey::derived(scope),
    }
}

impl Environment {
    pub fn require_exists(&self, id: EnvironmentId) -> Result<()> {
        if self.exists {
            Ok(())
        } else {
            Err(Error::not_found("environment", id))
        }
    }

    /// The feature's state here: set explicitly, or the feature's defaults.
    pub fn effective_state(&self, feature: &Feature) -> FeatureState {
        self.feature_states
            .get(&feature.id)
            .cloned()
            .unwrap_or_else(|| {
                default_state(
                    feature,
                    &format!("environment/{}/feature/{}", self.id, feature.id),
                )
            })
    }

    pub fn create(
        id: EnvironmentId,
        project_id: ProjectId,
        name: &str,
        client_key: &str,
    ) -> Result<Vec<EnvironmentEvent>> {
        validate_name("name", name)?;
        Ok(vec![EnvironmentEvent::EnvironmentCreated {
            id,
            project_id,
            name: name.trim().to_string(),
            client_key: client_key.to_string(),
        }])
    }

    pub fn rename(&self, name: &str) -> Result<Vec<EnvironmentEvent>> {
        self.require_exists(self.id)?;
        validate_name("name", name)?;
        if name.trim() == self.name {
            return Ok(vec![]);
        }
        Ok(vec![EnvironmentEvent::EnvironmentRenamed {
            name: name.trim().to_string(),
        }])
    }

    /// Applies the settings `changes` names; nothing when they change nothing.
    pub fn change_settings(
        &self,
        changes: &EnvironmentSettingsChanges,
    ) -> Result<Vec<EnvironmentEvent>> {
        self.require_exists(self.id)?;
        let mut settings = self.settings.clone();
        if let Some(minimum) = changes.minimum_change_request_approvals {
            if minimum > MAX_MINIMUM_APPROVALS {
                return Err(Error::invalid(
                    "minimum_change_request_approvals",
                    format!("must be at most {MAX_MINIMUM_APPROVALS}"),
                ));
            }
            settings.minimum_change_request_approvals = minimum;
        }
        if let Some(assigned) = changes.approvals_from_assigned_reviewers_only {
            settings.approvals_from_assigned_reviewers_only = assigned;
        }
        if let Some(versioning) = changes.feature_versioning {
            settings.feature_versioning = versioning;
        }
        if settings == self.settings {
            return Ok(vec![]);
        }
        Ok(vec![EnvironmentEvent::EnvironmentSettingsChanged {
            settings,
        }])
    }

    pub fn issue_server_side_key(
        &self,
        name: &str,
        key_hash: String,
    ) -> Result<Vec<EnvironmentEvent>> {
        self.require_exists(self.id)?;
        validate_name("name", name)?;
        let id = self
            .server_side_keys
            .iter()
            .map(|k| k.id)
            .max()
            .unwrap_or(0)
            + 1;
        Ok(vec![EnvironmentEvent::ServerSideKeyIssued {
            id,
            name: name.trim().to_string(),
            key_hash,
        }])
    }

    pub fn set_feature_state(
        &self,
        feature: &Feature,
        input: FeatureStateInput,
    ) -> Result<Vec<EnvironmentEvent>> {
        self.require_exists(self.id)?;
        let current = self.effective_state(feature);
        let state = input.into_state(feature, &current)?;
        if state == current && self.feature_states.contains_key(&feature.id) {
            return Ok(vec![]);
        }
        Ok(vec![EnvironmentEvent::FeatureStateSet {
            feature_id: feature.id,
            state,
        }])
    }

    pub fn set_segment_override(
        &self,
        feature: &Feature,
        segment_id: SegmentId,
        priority: Option<i64>,
        input: FeatureStateInput,
    ) -> Result<Vec<EnvironmentEvent>> {
        self.require_exists(self.id)?;
        let current = match self.segment_overrides.get(&(feature.id, segment_id)) {
            Some(existing) => existing.state.clone(),
            None => default_state(
                feature,
                &format!(
                    "environment/{}/feature/{}/segment/{segment_id}",
                    self.id, feature.id
                ),
            ),
        };
        let state = input.into_state(feature, &current)?;
        Ok(vec![EnvironmentEvent::SegmentOverrideSet {
            feature_id: feature.id,
            r#override: SegmentOverride {
                segment_id,
                priority,
                state,
            },
        }])
    }

    pub fn remove_segment_override(
        &self,
        feature_id: FeatureId,
        segment_id: SegmentId,
    ) -> Result<Vec<EnvironmentEvent>> {
        self.require_exists(self.id)?;
        if !self
            .segment_overrides
            .contains_key(&(feature_id, segment_id))
        {
            return Err(Error::not_found(
                "segment override",
                format!("{feature_id}/{segment_id}"),
            ));
        }
        Ok(vec![EnvironmentEvent::SegmentOverrideRemoved {
            feature_id,
            segment_id,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FeatureType, MultivariateOption};
    use serde_json::json;

    fn env() -> Environment {
        Environment::from_events(&Environment::create(3, 1, "prod", "key").unwrap())
    }

    fn feature() -> Feature {
        Feature {
            id: 5,
            name: "colour".into(),
            feature_type: FeatureType::Multivariate,
            default_enabled: false,
            initial_value: json!("red"),
            description: None,
            tags: vec![],
            multivariate_options: vec![MultivariateOption {
                id: 6,
                value: json!("blue"),
                default_percentage_allocation: 20.0,
                key: None,
            }],
        }
    }

    fn input(value: serde_json::Value) -> FeatureStateInput {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn unset_features_are_at_their_defaults_with_a_stable_key() {
        let e = env();
        let state = e.effective_state(&feature());
        assert!(!state.enabled);
        assert_eq!(state.feature_state_value, json!("red"));
        assert_eq!(
            state.multivariate_feature_state_values[0].percentage_allocation,
            20.0
        );
        assert_eq!(state.key, e.effective_state(&feature()).key);
        assert!(state.key.featurestate_uuid.is_some());
    }

    #[test]
    fn setting_a_state_keeps_its_hashing_key_and_allocations() {
        let mut e = env();
        let before = e.effective_state(&feature());
        let events = e
            .set_feature_state(
                &feature(),
                input(json!({"enabled": true, "feature_state_value": "green"})),
            )
            .unwrap();
        events.iter().for_each(|ev| e.apply(ev));
        let after = e.effective_state(&feature());
        assert!(after.enabled);
        assert_eq!(after.key, before.key);
        assert_eq!(
            after.multivariate_feature_state_values,
            before.multivariate_feature_state_values
        );
    }

    #[test]
    fn allocations_over_one_hundred_are_refused() {
        let err = env()
            .set_feature_state(
                &feature(),
                input(
                    json!({"enabled": true, "multivariate_feature_state_values": [
                    {"multivariate_feature_option": 6, "percentage_allocation": 100.5}]}),
                ),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }));
    }

    #[test]
    fn removing_a_missing_override_is_not_found() {
        assert!(matches!(
            env().remove_segment_override(5, 9),
            Err(Error::NotFound { .. })
        ));
    }
}

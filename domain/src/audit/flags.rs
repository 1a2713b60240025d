//! What flag-change integrations are told about an event: for each environment where a flag's
//! state (environment-wide, for a segment, for an identity) was created, changed or removed,
//! the state before and after in the shape of Flagsmith's webhooks (`new_state`,
//! `previous_state`), with the names as they were when it happened. A feature's creation or
//! deletion changes its state in every environment of its project, so it gives one change per
//! environment.
//!
//! The fold makes each state as a [`FlagState`], typed (no JSON object built key by key for
//! every state before and after every event); readers get them back as JSON values, the
//! default `State` of [`FlagChange`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AuditFold, Decoded};
use crate::environment::EnvironmentEvent;
use crate::identity::IdentityEvent;
use crate::model::{EnvironmentId, FeatureId, FeatureState, FeatureType, OptionId, SegmentId};
use crate::project::ProjectEvent;

/// Created, updated or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One flag state's change in one environment: made with [`FlagState`]s, read back as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagChange<State = Value> {
    pub kind: FlagChangeKind,
    pub environment_id: EnvironmentId,
    pub environment_name: String,
    pub feature_id: FeatureId,
    pub feature_name: String,
    /// For an identity's override: the identity's reference (readers name it, unless erased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Flagsmith's feature-state object after the change; `None` once removed.
    pub new_state: Option<State>,
    /// The same before; `None` where there was none.
    pub previous_state: Option<State>,
}

/// Flagsmith's feature-state object in its webhooks. The fields are in the order of their
/// names, as the JSON object it replaced wrote them, so rows read the same whichever wrote them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagState {
    pub enabled: bool,
    pub environment: Named,
    pub feature: FeatureShown,
    pub feature_segment: Option<FeatureSegment>,
    pub feature_state_value: Value,
    /// Always `null`: identities are named by `identity_identifier`.
    pub identity: Option<u64>,
    /// `null` as written; readers name the identity here unless it was erased.
    pub identity_identifier: Option<String>,
    pub multivariate_feature_state_values: Vec<AllocationShown>,
}

/// An environment or a project: its id and name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Named {
    pub id: u64,
    pub name: String,
}

/// The feature of a [`FlagState`], as it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureShown {
    /// Always `null`: flaglog's features carry no creation date.
    pub created_date: Option<String>,
    pub default_enabled: bool,
    pub description: Option<String>,
    pub id: FeatureId,
    pub initial_value: Value,
    pub name: String,
    pub project: Named,
    #[serde(rename = "type")]
    pub feature_type: FeatureType,
}

/// The segment of a segment override's [`FlagState`], and its priority.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureSegment {
    pub priority: Option<i64>,
    pub segment: SegmentShown,
}

/// A segment by id, name and description (`null`s once it is gone).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentShown {
    pub description: Option<String>,
    pub id: SegmentId,
    pub name: Option<String>,
}

/// One multivariate option's share in a [`FlagState`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllocationShown {
    pub id: u64,
    pub multivariate_feature_option: OptionShown,
    pub percentage_allocation: f64,
}

/// A multivariate option by id and value (`null` if the feature no longer has it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionShown {
    pub id: OptionId,
    pub value: Option<Value>,
}

/// Which state of a flag in an environment.
#[derive(Debug, Clone)]
enum Variant {
    Environment,
    Segment(SegmentId),
    /// The identity's stream and its reference.
    Identity(String, String),
}

/// A flag state an event may change.
#[derive(Debug, Clone)]
pub(super) struct Target {
    environment_id: EnvironmentId,
    feature_id: FeatureId,
    variant: Variant,
}

impl AuditFold {
    /// The flag states `decoded` may change; read before it is folded in.
    pub(super) fn flag_targets(&self, stream: &str, decoded: &Decoded) -> Vec<Target> {
        let every_environment = |project, feature_id| -> Vec<Target> {
            self.directory
                .environments
                .iter()
                .filter(|(_, (p, _))| *p == project)
                .map(|(id, _)| Target {
                    environment_id: *id,
                    feature_id,
                    variant: Variant::Environment,
                })
                .collect()
        };
        let one = |environment_id, feature_id, variant| {
            vec![Target {
                environment_id,
                feature_id,
                variant,
            }]
        };
        match decoded {
            Decoded::Project(project, event) => match event {
                ProjectEvent::FeatureCreated { feature }
                | ProjectEvent::FeatureUpdated { feature } => {
                    every_environment(*project, feature.id)
                }
                ProjectEvent::FeatureDeleted { id } => every_environment(*project, *id),
                _ => vec![],
            },
            Decoded::Environment(environment, event) => match event {
                EnvironmentEvent::FeatureStateSet { feature_id, .. } => {
                    one(*environment, *feature_id, Variant::Environment)
                }
                EnvironmentEvent::SegmentOverrideSet {
                    feature_id,
                    r#override,
                } => one(
                    *environment,
                    *feature_id,
                    Variant::Segment(r#override.segment_id),
                ),
                EnvironmentEvent::SegmentOverrideRemoved {
                    feature_id,
                    segment_id,
                } => one(*environment, *feature_id, Variant::Segment(*segment_id)),
                _ => vec![],
            },
            Decoded::Identity(event) => match event {
                IdentityEvent::IdentityOverrideSet { feature_id, .. }
                | IdentityEvent::IdentityOverrideRemoved { feature_id, .. } => one(
                    event.environment_id(),
                    *feature_id,
                    Variant::Identity(stream.to_string(), event.identity().to_string()),
                ),
                IdentityEvent::IdentityErased { .. } => vec![],
            },
            _ => vec![],
        }
    }

    /// Each target's state as it stands now, in Flagsmith's webhook shape.
    pub(super) fn flag_states(&self, targets: &[Target]) -> Vec<Option<FlagState>> {
        targets.iter().map(|t| self.flag_state(t)).collect()
    }

    /// The changes between `before` (from [`Self::flag_states`] before the event was folded
    /// in) and the states now; a target whose state did not change gives none.
    pub(super) fn flag_changes(
        &self,
        targets: Vec<Target>,
        before: Vec<Option<FlagState>>,
    ) -> Vec<FlagChange<FlagState>> {
        targets
            .into_iter()
            .zip(before)
            .filter_map(|(target, previous)| {
                let new = self.flag_state(&target);
                let kind = match (&previous, &new) {
                    (None, None) => return None,
                    (None, Some(_)) => FlagChangeKind::Created,
                    (Some(_), None) => FlagChangeKind::Deleted,
                    (Some(p), Some(n)) if same_state(p, n) => return None,
                    (Some(_), Some(_)) => FlagChangeKind::Updated,
                };
                let shown = new.as_ref().or(previous.as_ref())?;
                Some(FlagChange {
                    kind,
                    environment_id: target.environment_id,
                    environment_name: shown.environment.name.clone(),
                    feature_id: target.feature_id,
                    feature_name: shown.feature.name.clone(),
                    identity: match &target.variant {
                        Variant::Identity(_, reference) => Some(reference.clone()),
                        _ => None,
                    },
                    new_state: new,
                    previous_state: previous,
                })
            })
            .collect()
    }

    fn flag_state(&self, target: &Target) -> Option<FlagState> {
        let environment = self
            .environments
            .get(&target.environment_id)
            .filter(|e| e.exists)?;
        let project = self.projects.get(&environment.project_id)?;
        let feature = project.features.get(&target.feature_id)?;
        let (state, feature_segment) = match &target.variant {
            Variant::Environment => (environment.effective_state(feature), None),
            Variant::Segment(segment_id) => {
                let found = environment
                    .segment_overrides
                    .get(&(target.feature_id, *segment_id))?;
                let segment = project.segments.get(segment_id);
                (
                    found.state.clone(),
                    Some(FeatureSegment {
                        priority: found.priority,
                        segment: SegmentShown {
                            description: segment.and_then(|s| s.description.clone()),
                            id: *segment_id,
                            name: segment.map(|s| s.name.clone()),
                        },
                    }),
                )
            }
            Variant::Identity(stream, _) => (
                self.identities
                    .get(stream)
                    .filter(|i| !i.erased)?
                    .overrides
                    .get(&target.feature_id)?
                    .clone(),
                None,
            ),
        };
        let multivariate_feature_state_values = multivariate(&state, feature);
        Some(FlagState {
            enabled: state.enabled,
            environment: Named {
                id: environment.id,
                name: environment.name.clone(),
            },
            feature: FeatureShown {
                created_date: None,
                default_enabled: feature.default_enabled,
                description: feature.description.clone(),
                id: feature.id,
                initial_value: feature.initial_value.clone(),
                name: feature.name.clone(),
                project: Named {
                    id: project.id,
                    name: project.settings.name.clone(),
                },
                feature_type: feature.feature_type,
            },
            feature_segment,
            feature_state_value: state.feature_state_value,
            identity: None,
            identity_identifier: None,
            multivariate_feature_state_values,
        })
    }
}

fn multivariate(state: &FeatureState, feature: &crate::model::Feature) -> Vec<AllocationShown> {
    state
        .multivariate_feature_state_values
        .iter()
        .map(|allocation| {
            let option = feature
                .multivariate_options
                .iter()
                .find(|o| o.id == allocation.multivariate_feature_option);
            AllocationShown {
                id: allocation
                    .id
                    .unwrap_or(allocation.multivariate_feature_option),
                multivariate_feature_option: OptionShown {
                    id: allocation.multivariate_feature_option,
                    value: option.map(|o| o.value.clone()),
                },
                percentage_allocation: allocation.percentage_allocation,
            }
        })
        .collect()
}

/// Whether two states serve the same (a feature's description or name alone changing is not
/// a flag change).
fn same_state(a: &FlagState, b: &FlagState) -> bool {
    a.enabled == b.enabled
        && a.feature_state_value == b.feature_state_value
        && a.multivariate_feature_state_values == b.multivariate_feature_state_values
        && a.feature_segment == b.feature_segment
}

//! Feature versions: what one feature is published as in one environment (its state and its
//! segment overrides with their priorities), how two such states differ, and the commands that
//! take a feature from one to another (restoring a version, reverting a change request).

use serde::Serialize;
use serde_json::{Value, json};

use crate::command::Command;
use crate::command::environment::EnvironmentCommand;
use crate::environment::{AllocationInput, Environment, FeatureStateInput, SegmentOverride};
use crate::model::{EnvironmentId, Feature, FeatureId, FeatureState, SegmentId};

/// Everything an SDK is served for one feature in one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedState {
    pub enabled: bool,
    pub feature_state_value: Value,
    pub multivariate_feature_state_values: Vec<AllocationInput>,
    /// By segment id.
    pub segment_overrides: Vec<PublishedOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedOverride {
    pub segment_id: SegmentId,
    pub priority: Option<i64>,
    pub enabled: bool,
    pub feature_state_value: Value,
    pub multivariate_feature_state_values: Vec<AllocationInput>,
}

fn allocations(state: &FeatureState) -> Vec<AllocationInput> {
    state
        .multivariate_feature_state_values
        .iter()
        .map(|a| AllocationInput {
            multivariate_feature_option: a.multivariate_feature_option,
            percentage_allocation: a.percentage_allocation,
            id: None,
            uuid: None,
        })
        .collect()
}

impl PublishedState {
    /// `feature` as `environment` publishes it.
    pub fn of(environment: &Environment, feature: &Feature) -> PublishedState {
        let state = environment.effective_state(feature);
        let segment_overrides = environment
            .segment_overrides
            .range((feature.id, SegmentId::MIN)..=(feature.id, SegmentId::MAX))
            .map(|(_, o): (_, &SegmentOverride)| PublishedOverride {
                segment_id: o.segment_id,
                priority: o.priority,
                enabled: o.state.enabled,
                feature_state_value: o.state.feature_state_value.clone(),
                multivariate_feature_state_values: allocations(&o.state),
            })
            .collect();
        PublishedState {
            enabled: state.enabled,
            feature_state_value: state.feature_state_value.clone(),
            multivariate_feature_state_values: allocations(&state),
            segment_overrides,
        }
    }

    fn override_of(&self, segment_id: SegmentId) -> Option<&PublishedOverride> {
        self.segment_overrides
            .iter()
            .find(|o| o.segment_id == segment_id)
    }
}

/// One field that differs: its name, and its value on each side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: Value,
    pub to: Value,
}

/// How a segment override differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideChange {
    pub segment_id: SegmentId,
    pub changes: Vec<FieldChange>,
}

/// How one published state differs from another.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Comparison {
    /// The feature's own state: `enabled`, `feature_state_value`,
    /// `multivariate_feature_state_values`.
    pub changes: Vec<FieldChange>,
    pub segment_overrides_added: Vec<PublishedOverride>,
    pub segment_overrides_removed: Vec<PublishedOverride>,
    pub segment_overrides_changed: Vec<OverrideChange>,
}

impl Comparison {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.segment_overrides_added.is_empty()
            && self.segment_overrides_removed.is_empty()
            && self.segment_overrides_changed.is_empty()
    }
}

/// What a state's comparable fields are: enabled, value, allocations.
type Side<'a> = (bool, &'a Value, &'a [AllocationInput]);

impl PublishedState {
    fn side(&self) -> Side<'_> {
        (
            self.enabled,
            &self.feature_state_value,
            &self.multivariate_feature_state_values,
        )
    }
}

impl PublishedOverride {
    fn side(&self) -> Side<'_> {
        (
            self.enabled,
            &self.feature_state_value,
            &self.multivariate_feature_state_values,
        )
    }
}

fn field_changes(from: Side<'_>, to: Side<'_>) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    if from.0 != to.0 {
        changes.push(FieldChange {
            field: "enabled",
            from: json!(from.0),
            to: json!(to.0),
        });
    }
    if from.1 != to.1 {
        changes.push(FieldChange {
            field: "feature_state_value",
            from: from.1.clone(),
            to: to.1.clone(),
        });
    }
    if from.2 != to.2 {
        changes.push(FieldChange {
            field: "multivariate_feature_state_values",
            from: json!(from.2),
            to: json!(to.2),
        });
    }
    changes
}

/// What changed from `from` to `to`.
pub fn compare(from: &PublishedState, to: &PublishedState) -> Comparison {
    let mut comparison = Comparison {
        changes: field_changes(from.side(), to.side()),
        ..Comparison::default()
    };
    for before in &from.segment_overrides {
        match to.override_of(before.segment_id) {
            None => comparison.segment_overrides_removed.push(before.clone()),
            Some(after) => {
                let mut changes = field_changes(before.side(), after.side());
                if before.priority != after.priority {
                    changes.push(FieldChange {
                        field: "priority",
                        from: json!(before.priority),
                        to: json!(after.priority),
                    });
                }
                if !changes.is_empty() {
                    comparison.segment_overrides_changed.push(OverrideChange {
                        segment_id: before.segment_id,
                        changes,
                    });
                }
            }
        }
    }
    for after in &to.segment_overrides {
        if from.override_of(after.segment_id).is_none() {
            comparison.segment_overrides_added.push(after.clone());
        }
    }
    comparison
}

/// The command input that sets `state` (its allocations included).
pub fn state_input(state: &FeatureState) -> FeatureStateInput {
    input(
        state.enabled,
        &state.feature_state_value,
        &allocations(state),
    )
}

fn input(enabled: bool, value: &Value, allocations: &[AllocationInput]) -> FeatureStateInput {
    FeatureStateInput {
        enabled,
        feature_state_value: value.clone(),
        multivariate_feature_state_values: Some(allocations.to_vec()),
        key: None,
    }
}

/// The commands that take feature `feature_id` in environment `environment_id` from `current`
/// to `target` (none when they are equal): its state, then each override set or removed.
pub fn restore_commands(
    environment_id: EnvironmentId,
    feature_id: FeatureId,
    current: &PublishedState,
    target: &PublishedState,
) -> Vec<Command> {
    let comparison = compare(current, target);
    let mut commands = Vec::new();
    if !comparison.changes.is_empty() {
        commands.push(EnvironmentCommand::SetFeatureState {
            environment_id,
            feature_id,
            state: input(
                target.enabled,
                &target.feature_state_value,
                &target.multivariate_feature_state_values,
            ),
        });
    }
    for removed in &comparison.segment_overrides_removed {
        commands.push(EnvironmentCommand::RemoveSegmentOverride {
            environment_id,
            feature_id,
            segment_id: removed.segment_id,
        });
    }
    let set = comparison
        .segment_overrides_added
        .iter()
        .map(|o| o.segment_id)
        .chain(
            comparison
                .segment_overrides_changed
                .iter()
                .map(|c| c.segment_id),
        );
    for segment_id in set {
        if let Some(o) = target.override_of(segment_id) {
            commands.push(EnvironmentCommand::SetSegmentOverride {
                environment_id,
                feature_id,
                segment_id,
                priority: o.priority,
                state: input(
                    o.enabled,
                    &o.feature_state_value,
                    &o.multivariate_feature_state_values,
                ),
            });
        }
    }
    commands.into_iter().map(Command::Environment).collect()
}

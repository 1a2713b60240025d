//! Commands on an environment (`environment-{id}`): its name, server-side keys, feature states
//! and segment overrides. Feature states and overrides name a feature (and a segment, and
//! multivariate options) of the project: those are read from the project as facts, and the
//! append expects the project's version, so a concurrent deletion cannot leave a reference to
//! something that no longer exists.

use serde::{Deserialize, Serialize};

use crate::environment::{
    Environment, EnvironmentEvent, EnvironmentSettingsChanges, FeatureStateInput,
};
use crate::error::{Error, Result};
use crate::model::{EnvironmentId, FeatureId, SegmentId};
use crate::project::Project;

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames, strum::IntoStaticStr,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EnvironmentCommand {
    RenameEnvironment {
        environment_id: EnvironmentId,
        name: String,
    },
    /// `key_hash` is the hex SHA-256 of a key the caller generated and shows once.
    IssueServerSideKey {
        environment_id: EnvironmentId,
        name: String,
        key_hash: String,
    },
    SetFeatureState {
        environment_id: EnvironmentId,
        feature_id: FeatureId,
        #[serde(flatten)]
        state: FeatureStateInput,
    },
    SetSegmentOverride {
        environment_id: EnvironmentId,
        feature_id: FeatureId,
        segment_id: SegmentId,
        /// Lower wins among the segments an identity matches.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<i64>,
        #[serde(flatten)]
        state: FeatureStateInput,
    },
    RemoveSegmentOverride {
        environment_id: EnvironmentId,
        feature_id: FeatureId,
        segment_id: SegmentId,
    },
    /// Four-eyes and versioning settings; absent fields stay as they are.
    UpdateEnvironmentSettings {
        environment_id: EnvironmentId,
        #[serde(flatten)]
        changes: EnvironmentSettingsChanges,
    },
}

/// What an environment decision reads from other aggregates: the environment's project.
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentFacts<'a> {
    pub project: &'a Project,
}

impl EnvironmentCommand {
    pub fn environment_id(&self) -> EnvironmentId {
        match self {
            EnvironmentCommand::RenameEnvironment { environment_id, .. }
            | EnvironmentCommand::IssueServerSideKey { environment_id, .. }
            | EnvironmentCommand::SetFeatureState { environment_id, .. }
            | EnvironmentCommand::SetSegmentOverride { environment_id, .. }
            | EnvironmentCommand::RemoveSegmentOverride { environment_id, .. }
            | EnvironmentCommand::UpdateEnvironmentSettings { environment_id, .. } => {
                *environment_id
            }
        }
    }

    /// Whether the decision reads the project (a feature, a segment, their options): then the
    /// append must expect the project's version.
    pub fn reads_project(&self) -> bool {
        matches!(
            self,
            EnvironmentCommand::SetFeatureState { .. }
                | EnvironmentCommand::SetSegmentOverride { .. }
        )
    }
}

/// Decides an environment command.
pub fn decide(
    environment: &Environment,
    command: &EnvironmentCommand,
    facts: &EnvironmentFacts<'_>,
) -> Result<Vec<EnvironmentEvent>> {
    let id = command.environment_id();
    if !environment.exists || environment.id != id {
        return Err(Error::not_found("environment", id));
    }
    match command {
        EnvironmentCommand::RenameEnvironment { name, .. } => environment.rename(name),
        EnvironmentCommand::IssueServerSideKey { name, key_hash, .. } => {
            environment.issue_server_side_key(name, key_hash.clone())
        }
        EnvironmentCommand::SetFeatureState {
            feature_id, state, ..
        } => {
            let feature = facts.project.feature(*feature_id)?;
            environment.set_feature_state(feature, state.clone())
        }
        EnvironmentCommand::SetSegmentOverride {
            feature_id,
            segment_id,
            priority,
            state,
            ..
        } => {
            let feature = facts.project.feature(*feature_id)?;
            facts.project.segment(*segment_id)?;
            environment.set_segment_override(feature, *segment_id, *priority, state.clone())
        }
        EnvironmentCommand::RemoveSegmentOverride {
            feature_id,
            segment_id,
            ..
        } => environment.remove_segment_override(*feature_id, *segment_id),
        EnvironmentCommand::UpdateEnvironmentSettings { changes, .. } => {
            environment.change_settings(changes)
        }
    }
}

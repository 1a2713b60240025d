//! Commands on one identity's overrides (`identity-{environment id}-{hash}`). Setting one reads
//! the feature from the environment's project, so the append expects the project's version.

use serde::{Deserialize, Serialize};

use crate::environment::{Environment, FeatureStateInput};
use crate::error::{Error, Result};
use crate::identity::{IdentityEvent, IdentityOverrides};
use crate::model::{EnvironmentId, FeatureId};
use crate::project::Project;

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames, strum::IntoStaticStr,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum IdentityCommand {
    SetIdentityOverride {
        environment_id: EnvironmentId,
        identifier: String,
        feature_id: FeatureId,
        #[serde(flatten)]
        state: FeatureStateInput,
    },
    RemoveIdentityOverride {
        environment_id: EnvironmentId,
        identifier: String,
        feature_id: FeatureId,
    },
}

/// What an identity decision reads: the environment (that it exists; environments are never
/// deleted and never change project, so this needs no expectation) and its project.
#[derive(Debug, Clone, Copy)]
pub struct IdentityFacts<'a> {
    pub environment: &'a Environment,
    pub project: &'a Project,
}

impl IdentityCommand {
    pub fn environment_id(&self) -> EnvironmentId {
        match self {
            IdentityCommand::SetIdentityOverride { environment_id, .. }
            | IdentityCommand::RemoveIdentityOverride { environment_id, .. } => *environment_id,
        }
    }

    pub fn identifier(&self) -> &str {
        match self {
            IdentityCommand::SetIdentityOverride { identifier, .. }
            | IdentityCommand::RemoveIdentityOverride { identifier, .. } => identifier,
        }
    }

    /// Whether the decision reads the project (the feature): then the append expects its version.
    pub fn reads_project(&self) -> bool {
        matches!(self, IdentityCommand::SetIdentityOverride { .. })
    }
}

/// Decides an identity command.
pub fn decide(
    overrides: &IdentityOverrides,
    command: &IdentityCommand,
    facts: &IdentityFacts<'_>,
) -> Result<Vec<IdentityEvent>> {
    let environment_id = command.environment_id();
    if !facts.environment.exists || facts.environment.id != environment_id {
        return Err(Error::not_found("environment", environment_id));
    }
    match command {
        IdentityCommand::SetIdentityOverride {
            identifier,
            feature_id,
            state,
            ..
        } => {
            let feature = facts.project.feature(*feature_id)?;
            overrides.set(environment_id, identifier, feature, state.clone())
        }
        IdentityCommand::RemoveIdentityOverride {
            identifier,
            feature_id,
            ..
        } => overrides.remove(environment_id, identifier, *feature_id),
    }
}

//! Commands on one identity (`identity-{environment id}-{reference}`): its overrides, and its
//! erasure. Setting an override reads the feature from the environment's project, so the append
//! expects the project's version.
//!
//! A command names the identity by identifier or by reference ([`IdentityName`]); the write side
//! resolves an identifier to its reference before anything is decided or stored, so decisions
//! see references only.

use serde::{Deserialize, Serialize};

use crate::environment::{Environment, FeatureStateInput};
use crate::error::{Error, Result};
use crate::identity::{IdentityEvent, IdentityName, IdentityOverrides};
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
        #[serde(flatten)]
        identity: IdentityName,
        feature_id: FeatureId,
        #[serde(flatten)]
        state: FeatureStateInput,
    },
    RemoveIdentityOverride {
        environment_id: EnvironmentId,
        #[serde(flatten)]
        identity: IdentityName,
        feature_id: FeatureId,
    },
    /// Erases the identity: its overrides stop applying and its identifier is deleted.
    EraseIdentity {
        environment_id: EnvironmentId,
        #[serde(flatten)]
        identity: IdentityName,
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
            | IdentityCommand::RemoveIdentityOverride { environment_id, .. }
            | IdentityCommand::EraseIdentity { environment_id, .. } => *environment_id,
        }
    }

    pub fn identity(&self) -> &IdentityName {
        match self {
            IdentityCommand::SetIdentityOverride { identity, .. }
            | IdentityCommand::RemoveIdentityOverride { identity, .. }
            | IdentityCommand::EraseIdentity { identity, .. } => identity,
        }
    }

    pub fn identity_mut(&mut self) -> &mut IdentityName {
        match self {
            IdentityCommand::SetIdentityOverride { identity, .. }
            | IdentityCommand::RemoveIdentityOverride { identity, .. }
            | IdentityCommand::EraseIdentity { identity, .. } => identity,
        }
    }

    /// Whether the decision reads the project (the feature): then the append expects its version.
    pub fn reads_project(&self) -> bool {
        matches!(self, IdentityCommand::SetIdentityOverride { .. })
    }

    /// Whether resolving the identifier may give it a reference: only setting an override
    /// makes an identity known; the others name one that must exist.
    pub fn assigns_reference(&self) -> bool {
        matches!(self, IdentityCommand::SetIdentityOverride { .. })
    }
}

/// Decides an identity command (its identity resolved to a reference).
pub fn decide(
    overrides: &IdentityOverrides,
    command: &IdentityCommand,
    facts: &IdentityFacts<'_>,
) -> Result<Vec<IdentityEvent>> {
    let environment_id = command.environment_id();
    if !facts.environment.exists || facts.environment.id != environment_id {
        return Err(Error::not_found("environment", environment_id));
    }
    let identity = command.identity().resolved()?;
    match command {
        IdentityCommand::SetIdentityOverride {
            feature_id, state, ..
        } => {
            let feature = facts.project.feature(*feature_id)?;
            overrides.set(environment_id, identity, feature, state.clone())
        }
        IdentityCommand::RemoveIdentityOverride { feature_id, .. } => {
            overrides.remove(environment_id, identity, *feature_id)
        }
        IdentityCommand::EraseIdentity { .. } => Ok(overrides.erase(environment_id, identity)),
    }
}

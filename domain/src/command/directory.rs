//! Commands on the directory: organisations, users, and the creation of projects and
//! environments (the directory reserves the id and keys; the new entity's stream starts in the
//! same atomic append).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::access::Role;
use crate::directory::{Directory, DirectoryEvent};
use crate::environment::{Environment, EnvironmentEvent};
use crate::error::{Error, Result};
use crate::integration::{IntegrationId, IntegrationScope};
use crate::model::{EnvironmentId, OrganisationId, ProjectId, TokenId, UserId};
use crate::project::{Project, ProjectEvent, ProjectSettings};

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames, strum::IntoStaticStr,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DirectoryCommand {
    CreateOrganisation {
        name: String,
    },
    /// A user with a first API token. Only hashes travel in the command: `password_hash` (PHC
    /// string) and `token_hash` (hex SHA-256 of a token the caller shows once). `only_if_first`
    /// refuses once any user exists (the unauthenticated bootstrap).
    CreateUser {
        email: String,
        is_admin: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_hash: Option<String>,
        token_hash: String,
        #[serde(default)]
        only_if_first: bool,
    },
    CreateProject {
        organisation_id: OrganisationId,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        settings: ProjectSettings,
    },
    CreateEnvironment {
        project_id: ProjectId,
        name: String,
        client_key: String,
    },
    /// Gives a user a role on a project; `null` takes it away.
    SetProjectRole {
        project_id: ProjectId,
        user_id: UserId,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
        role: Option<Role>,
    },
    /// A further personal API token for a user (`token_hash`: hex SHA-256 of a token the caller
    /// shows once).
    IssueApiToken {
        user_id: UserId,
        name: String,
        token_hash: String,
    },
    /// A service token: no person's, holding `role` on one project.
    IssueServiceToken {
        project_id: ProjectId,
        name: String,
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        role: Role,
        token_hash: String,
    },
    /// A new secret for a token; the old one stops working.
    RotateApiToken {
        token_id: TokenId,
        token_hash: String,
    },
    RevokeApiToken {
        token_id: TokenId,
    },
    /// An integration (a kind of the catalogue) at an organisation, project or environment.
    /// `secrets` maps each secret field to the reference of its value, which the caller stored
    /// beside the log: the value itself never travels in a command.
    CreateIntegration {
        scope: IntegrationScope,
        kind: String,
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        #[serde(default)]
        config: Map<String, Value>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        secrets: BTreeMap<String, String>,
        #[serde(default = "enabled")]
        enabled: bool,
    },
    /// `config`, when given, replaces the fields that are not secret; `secrets` replaces the
    /// references it names.
    UpdateIntegration {
        scope: IntegrationScope,
        integration_id: IntegrationId,
        #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        config: Option<Map<String, Value>>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        secrets: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enabled: Option<bool>,
    },
    RemoveIntegration {
        scope: IntegrationScope,
        integration_id: IntegrationId,
    },
}

fn enabled() -> bool {
    true
}

/// What a directory command appends: to the directory, and to the stream of the project or
/// environment it creates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirectoryDecision {
    pub directory: Vec<DirectoryEvent>,
    pub project: Option<(ProjectId, Vec<ProjectEvent>)>,
    pub environment: Option<(EnvironmentId, Vec<EnvironmentEvent>)>,
}

/// Decides a directory command. It reads nothing but the directory.
pub fn decide(directory: &Directory, command: &DirectoryCommand) -> Result<DirectoryDecision> {
    match command {
        DirectoryCommand::CreateOrganisation { name } => Ok(DirectoryDecision {
            directory: directory.create_organisation(name)?.1,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::CreateUser {
            email,
            is_admin,
            password_hash,
            token_hash,
            only_if_first,
        } => {
            if *only_if_first && !directory.users.is_empty() {
                return Err(Error::conflict("email", "flaglog already has a user"));
            }
            let (_, mut events) = directory.create_user(
                email,
                *is_admin,
                password_hash.clone(),
                token_hash.clone(),
            )?;
            if directory.organisations.is_empty() {
                // The first user gets an organisation to put projects in, as in Flagsmith.
                events.extend(directory.create_organisation("Default organisation")?.1);
            }
            Ok(DirectoryDecision {
                directory: events,
                ..DirectoryDecision::default()
            })
        }
        DirectoryCommand::CreateProject {
            organisation_id,
            settings,
        } => {
            let (id, events) = directory.register_project(*organisation_id)?;
            let project = Project::create(id, *organisation_id, settings.clone())?;
            Ok(DirectoryDecision {
                directory: events,
                project: Some((id, project)),
                environment: None,
            })
        }
        DirectoryCommand::SetProjectRole {
            project_id,
            user_id,
            role,
        } => Ok(DirectoryDecision {
            directory: directory.set_project_role(*project_id, *user_id, *role)?,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::IssueApiToken {
            user_id,
            name,
            token_hash,
        } => Ok(DirectoryDecision {
            directory: directory
                .issue_personal_token(*user_id, name, token_hash.clone())?
                .1,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::IssueServiceToken {
            project_id,
            name,
            role,
            token_hash,
        } => Ok(DirectoryDecision {
            directory: directory
                .issue_service_token(*project_id, name, *role, token_hash.clone())?
                .1,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::RotateApiToken {
            token_id,
            token_hash,
        } => Ok(DirectoryDecision {
            directory: directory.rotate_token(*token_id, token_hash.clone())?,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::RevokeApiToken { token_id } => Ok(DirectoryDecision {
            directory: directory.revoke_token(*token_id)?,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::CreateIntegration {
            scope,
            kind,
            config,
            secrets,
            enabled,
        } => Ok(DirectoryDecision {
            directory: directory
                .create_integration(*scope, kind, config, secrets, *enabled)?
                .1,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::UpdateIntegration {
            scope,
            integration_id,
            config,
            secrets,
            enabled,
        } => Ok(DirectoryDecision {
            directory: directory.update_integration(
                *scope,
                *integration_id,
                config.as_ref(),
                secrets,
                *enabled,
            )?,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::RemoveIntegration {
            scope,
            integration_id,
        } => Ok(DirectoryDecision {
            directory: directory.remove_integration(*scope, *integration_id)?,
            ..DirectoryDecision::default()
        }),
        DirectoryCommand::CreateEnvironment {
            project_id,
            name,
            client_key,
        } => {
            let (id, events) = directory.register_environment(*project_id, client_key)?;
            let environment = Environment::create(id, *project_id, name, client_key)?;
            Ok(DirectoryDecision {
                directory: events,
                project: None,
                environment: Some((id, environment)),
            })
        }
    }
}

//! Who may execute which command: the one table the write side checks every command against,
//! so that no route, page or tool carries a copy of a rule.
//!
//! Roles are per project and ordered: a viewer reads; an editor also changes flags, segments
//! and overrides (and proposes changes where four-eyes guards them); an approver also approves;
//! an admin also changes settings, keys and roles. An organisation admin is admin everywhere.
//! [`requirement`] names, for each command, where it applies and the least role it needs;
//! [`changes_what_is_served`] says whether four-eyes guards it (the environments' flag values or
//! the definitions they are evaluated with).

use serde::{Deserialize, Serialize};

use crate::command::{
    Command, DirectoryCommand, EnvironmentCommand, IdentityCommand, ProjectCommand,
};
use crate::directory::{Directory, Principal};
use crate::integration::IntegrationScope;
use crate::model::{EnvironmentId, OrganisationId, ProjectId, TokenId, UserId};

/// A role on a project, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Editor,
    Approver,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

/// Where a command applies, for looking up the actor's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole installation or one organisation: only organisation admins.
    Organisation(Option<OrganisationId>),
    Project(ProjectId),
    /// An environment: the role on its project counts.
    Environment(EnvironmentId),
    /// What a user does for themselves (their own tokens): that user, or an organisation admin.
    User(UserId),
    /// One API token: the token itself, its owner, an admin of a service token's project, or an
    /// organisation admin.
    Token(TokenId),
}

/// What executing a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub scope: Scope,
    pub role: Role,
}

impl Requirement {
    /// The refusal's message: which role, where.
    pub fn refusal(&self) -> String {
        match self.scope {
            Scope::Organisation(_) => "this needs an organisation administrator".to_string(),
            Scope::Project(id) => {
                format!("this needs the {} role on project {id}", self.role.as_str())
            }
            Scope::Environment(id) => format!(
                "this needs the {} role on the project of environment {id}",
                self.role.as_str()
            ),
            Scope::User(id) => {
                format!("only user {id} or an organisation administrator may do this")
            }
            Scope::Token(id) => format!(
                "only API token {id} itself, its owner, an admin of its project or an \
                 organisation administrator may do this"
            ),
        }
    }
}

/// Where `command` applies and the least role it needs there.
pub fn requirement(command: &Command) -> Requirement {
    let (scope, role) = match command {
        Command::Directory(c) => match c {
            DirectoryCommand::CreateOrganisation { .. } | DirectoryCommand::CreateUser { .. } => {
                (Scope::Organisation(None), Role::Admin)
            }
            DirectoryCommand::CreateProject {
                organisation_id, ..
            } => (Scope::Organisation(Some(*organisation_id)), Role::Admin),
            DirectoryCommand::CreateEnvironment { project_id, .. }
            | DirectoryCommand::SetProjectRole { project_id, .. }
            | DirectoryCommand::IssueServiceToken { project_id, .. } => {
                (Scope::Project(*project_id), Role::Admin)
            }
            DirectoryCommand::IssueApiToken { user_id, .. } => {
                (Scope::User(*user_id), Role::Viewer)
            }
            DirectoryCommand::RotateApiToken { token_id, .. }
            | DirectoryCommand::RevokeApiToken { token_id } => {
                (Scope::Token(*token_id), Role::Viewer)
            }
            DirectoryCommand::CreateIntegration { scope, .. }
            | DirectoryCommand::UpdateIntegration { scope, .. }
            | DirectoryCommand::RemoveIntegration { scope, .. } => {
                let scope = match *scope {
                    IntegrationScope::Organisation(id) => Scope::Organisation(Some(id)),
                    IntegrationScope::Project(id) => Scope::Project(id),
                    IntegrationScope::Environment(id) => Scope::Environment(id),
                };
                (scope, Role::Admin)
            }
        },
        Command::Project(c) => {
            let role = match c {
                ProjectCommand::UpdateProject { .. } => Role::Admin,
                ProjectCommand::CreateFeature { .. }
                | ProjectCommand::UpdateFeature { .. }
                | ProjectCommand::DeleteFeature { .. }
                | ProjectCommand::CreateSegment { .. }
                | ProjectCommand::UpdateSegment { .. }
                | ProjectCommand::DeleteSegment { .. } => Role::Editor,
            };
            (Scope::Project(c.project_id()), role)
        }
        Command::Environment(c) => {
            let role = match c {
                EnvironmentCommand::RenameEnvironment { .. }
                | EnvironmentCommand::IssueServerSideKey { .. }
                | EnvironmentCommand::UpdateEnvironmentSettings { .. } => Role::Admin,
                EnvironmentCommand::SetFeatureState { .. }
                | EnvironmentCommand::SetSegmentOverride { .. }
                | EnvironmentCommand::RemoveSegmentOverride { .. } => Role::Editor,
            };
            (Scope::Environment(c.environment_id()), role)
        }
        Command::Identity(c) => match c {
            IdentityCommand::SetIdentityOverride { .. }
            | IdentityCommand::RemoveIdentityOverride { .. } => {
                (Scope::Environment(c.environment_id()), Role::Editor)
            }
            IdentityCommand::EraseIdentity { .. } => {
                (Scope::Environment(c.environment_id()), Role::Admin)
            }
        },
    };
    Requirement { scope, role }
}

/// Whether `command` changes what an environment serves (its flags, or the feature and segment
/// definitions they are evaluated with): what four-eyes guards, identity overrides and
/// multivariate allocations included.
pub fn changes_what_is_served(command: &Command) -> bool {
    match command {
        Command::Directory(_) => false,
        Command::Project(c) => !matches!(c, ProjectCommand::UpdateProject { .. }),
        Command::Environment(c) => !matches!(
            c,
            EnvironmentCommand::RenameEnvironment { .. }
                | EnvironmentCommand::IssueServerSideKey { .. }
                | EnvironmentCommand::UpdateEnvironmentSettings { .. }
        ),
        // An erasure honours a person's request, not a flag change: four-eyes does not hold it.
        Command::Identity(c) => !matches!(c, IdentityCommand::EraseIdentity { .. }),
    }
}

/// Whether `principal` meets `requirement`, looked up in `directory`; organisation admins meet
/// every requirement.
pub fn allows(directory: &Directory, principal: &Principal, requirement: &Requirement) -> bool {
    if principal.is_organisation_admin() {
        return true;
    }
    let project = match requirement.scope {
        Scope::Organisation(_) => return false,
        Scope::User(user) => return principal.user_id() == Some(user),
        Scope::Token(id) => {
            // An unknown token is for the command to refuse (404), not a matter of access.
            return directory
                .tokens
                .get(&id)
                .is_none_or(|token| directory.may_manage_token(principal, token));
        }
        Scope::Project(project) => Some(project),
        Scope::Environment(environment) => directory.environments.get(&environment).map(|e| e.0),
    };
    project
        .and_then(|project| principal.role_on(directory, project))
        .is_some_and(|role| role >= requirement.role)
}

/// How a command reaches the log: what four-eyes asks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// Applied as asked, by whoever holds the role for it.
    Direct,
    /// Applied directly by an admin despite four-eyes, with a reason, recorded as such.
    BreakGlass,
    /// Applied by the commit of an approved change request.
    ChangeRequest,
}

/// Refuses (403) a direct change of what is served where `minimum_approvals` (the four-eyes
/// setting in force where `command` applies: the environment's, or the project's for its
/// definitions) asks for review.
pub fn four_eyes(
    command: &Command,
    minimum_approvals: u32,
    review: Review,
) -> Result<(), crate::Error> {
    if review != Review::Direct || minimum_approvals == 0 || !changes_what_is_served(command) {
        return Ok(());
    }
    let (what, proposal) = match command {
        Command::Project(c) => (
            format!("project {}", c.project_id()),
            format!("/api/v1/projects/{}/change-requests/", c.project_id()),
        ),
        Command::Environment(c) => (
            format!("environment {}", c.environment_id()),
            "/api/v1/environments/{api_key}/change-requests/".to_string(),
        ),
        Command::Identity(c) => (
            format!("environment {}", c.environment_id()),
            "/api/v1/environments/{api_key}/change-requests/".to_string(),
        ),
        Command::Directory(_) => return Ok(()),
    };
    Err(crate::Error::forbidden(format!(
        "{what} requires {minimum_approvals} approval{} for changes to what it serves: \
         propose this {} in a change request (POST {proposal}), or, as an admin, apply it with a \
         break-glass reason",
        if minimum_approvals == 1 { "" } else { "s" },
        command.type_name(),
    )))
}

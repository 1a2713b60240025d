//! The directory: the one aggregate that knows every organisation, project, environment, user and
//! API token by id, and so the consistency boundary for what must be unique across the whole
//! installation (ids, environment client keys, user e-mails, token hashes).
//!
//! Creating a project or an environment appends to the directory (to reserve the id and keys) and,
//! atomically, to the new entity's own stream (its history starts there). Creations are rare, so
//! serialising them on one stream costs nothing that matters.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::access::Role;
use crate::aggregate::{Aggregate, DomainEvent};
use crate::change_request::{ChangeRequestId, Scope as ChangeRequestScope};
use crate::error::{Error, Result};
use crate::integration::{Integration, IntegrationId};
use crate::model::{EnvironmentId, OrganisationId, ProjectId, TokenId, UserId, validate_name};

mod integrations;
mod tokens;
pub use tokens::{ApiToken, DEFAULT_TOKEN_NAME, Principal, TokenOwner};

pub const STREAM: &str = "directory";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DirectoryEvent {
    OrganisationCreated {
        id: OrganisationId,
        name: String,
    },
    ProjectRegistered {
        id: ProjectId,
        organisation_id: OrganisationId,
    },
    EnvironmentRegistered {
        id: EnvironmentId,
        project_id: ProjectId,
        client_key: String,
    },
    UserCreated {
        id: UserId,
        email: String,
        is_admin: bool,
        /// PHC string of the password's hash, when the user has a password.
        #[serde(default)]
        password_hash: Option<String>,
    },
    /// A user's personal API token.
    ApiTokenIssued {
        user_id: UserId,
        /// Hex SHA-256 of the token: the token itself is never stored.
        token_hash: String,
        /// Absent on tokens issued before tokens had ids: those take the next id in log order.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<TokenId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A token that is no person's (for CI and other tools), holding one role on one project.
    ServiceTokenIssued {
        id: TokenId,
        name: String,
        project_id: ProjectId,
        role: Role,
        token_hash: String,
    },
    /// A token's secret replaced: the old one stops working at once.
    ApiTokenRotated {
        id: TokenId,
        token_hash: String,
    },
    ApiTokenRevoked {
        id: TokenId,
    },
    /// A user's role on a project; `None` takes it away.
    ProjectRoleSet {
        project_id: ProjectId,
        user_id: UserId,
        role: Option<Role>,
    },
    /// A change request's id, reserved where it is opened (its own stream starts in the same
    /// append).
    ChangeRequestRegistered {
        id: ChangeRequestId,
        scope: ChangeRequestScope,
    },
    /// An integration configured, or reconfigured: its whole configuration after the change
    /// (secrets by reference only).
    IntegrationConfigured {
        integration: Integration,
    },
    IntegrationRemoved {
        id: IntegrationId,
    },
}

impl DomainEvent for DirectoryEvent {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub id: UserId,
    pub email: String,
    pub is_admin: bool,
}

/// Serialisable so that a folded state can be kept (time travel's snapshots).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Directory {
    pub organisations: BTreeMap<OrganisationId, String>,
    /// Project id → its organisation.
    pub projects: BTreeMap<ProjectId, OrganisationId>,
    /// Environment id → (project id, client key).
    pub environments: BTreeMap<EnvironmentId, (ProjectId, String)>,
    pub users: BTreeMap<UserId, UserEntry>,
    /// The API tokens that work now, by id.
    pub tokens: BTreeMap<TokenId, ApiToken>,
    /// Token hash → token id.
    token_ids: BTreeMap<String, TokenId>,
    next_token_id: TokenId,
    /// Each user's role on each project they have one on.
    #[serde(with = "crate::aggregate::map_as_pairs")]
    pub roles: BTreeMap<(ProjectId, UserId), Role>,
    /// Every change request, with what it changes.
    pub change_requests: BTreeMap<ChangeRequestId, ChangeRequestScope>,
    /// The integrations configured now, by id.
    #[serde(default)]
    pub integrations: BTreeMap<IntegrationId, Integration>,
    #[serde(default)]
    next_integration_id: IntegrationId,
    /// Users' password hashes (PHC strings), for signing in to the dashboard; never shown.
    #[serde(default)]
    password_hashes: BTreeMap<UserId, String>,
}

impl Directory {
    /// The user with this e-mail (compared as sign-up compares them: trimmed, ignoring ASCII
    /// case) and their password's hash, when they have a password.
    pub fn password_of(&self, email: &str) -> Option<(&UserEntry, &str)> {
        let email = email.trim();
        let user = self
            .users
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))?;
        Some((user, self.password_hashes.get(&user.id)?.as_str()))
    }
}

impl Aggregate for Directory {
    type Event = DirectoryEvent;

    fn apply(&mut self, event: &DirectoryEvent) {
        match event {
            DirectoryEvent::OrganisationCreated { id, name } => {
                self.organisations.insert(*id, name.clone());
            }
            DirectoryEvent::ProjectRegistered {
                id,
                organisation_id,
            } => {
                self.projects.insert(*id, *organisation_id);
            }
            DirectoryEvent::EnvironmentRegistered {
                id,
                project_id,
                client_key,
            } => {
                self.environments
                    .insert(*id, (*project_id, client_key.clone()));
            }
            DirectoryEvent::UserCreated {
                id,
                email,
                is_admin,
                password_hash,
            } => {
                if let Some(hash) = password_hash {
                    self.password_hashes.insert(*id, hash.clone());
                }
                self.users.insert(
                    *id,
                    UserEntry {
                        id: *id,
                        email: email.clone(),
                        is_admin: *is_admin,
                    },
                );
            }
            DirectoryEvent::ApiTokenIssued {
                user_id,
                token_hash,
                id,
                name,
            } => self.add_token(
                id.unwrap_or(self.next_token_id.max(1)),
                name.clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_NAME.to_string()),
                TokenOwner::user(*user_id),
                token_hash,
            ),
            DirectoryEvent::ServiceTokenIssued {
                id,
                name,
                project_id,
                role,
                token_hash,
            } => self.add_token(
                *id,
                name.clone(),
                TokenOwner::Service {
                    project_id: *project_id,
                    role: *role,
                },
                token_hash,
            ),
            DirectoryEvent::ApiTokenRotated { id, token_hash } => {
                if let Some(token) = self.tokens.get_mut(id) {
                    self.token_ids.remove(&token.token_hash);
                    token.token_hash.clone_from(token_hash);
                    self.token_ids.insert(token_hash.clone(), *id);
                }
            }
            DirectoryEvent::ApiTokenRevoked { id } => {
                if let Some(token) = self.tokens.remove(id) {
                    self.token_ids.remove(&token.token_hash);
                }
            }
            DirectoryEvent::ProjectRoleSet {
                project_id,
                user_id,
                role,
            } => match role {
                Some(role) => {
                    self.roles.insert((*project_id, *user_id), *role);
                }
                None => {
                    self.roles.remove(&(*project_id, *user_id));
                }
            },
            DirectoryEvent::ChangeRequestRegistered { id, scope } => {
                self.change_requests.insert(*id, *scope);
            }
            DirectoryEvent::IntegrationConfigured { .. }
            | DirectoryEvent::IntegrationRemoved { .. } => self.apply_integration(event),
        }
    }
}

fn next_id<V>(map: &BTreeMap<u64, V>) -> u64 {
    map.keys().next_back().map_or(1, |last| last + 1)
}

impl Directory {
    /// The user's role on the project, if they have one (organisation admins hold every role
    /// without one being recorded).
    pub fn role_of(&self, user_id: UserId, project_id: ProjectId) -> Option<Role> {
        self.roles.get(&(project_id, user_id)).copied()
    }

    /// Who may approve on the project now: its approvers and admins, and organisation admins.
    pub fn approvers_of(&self, project_id: ProjectId) -> BTreeSet<UserId> {
        let by_role = self
            .roles
            .iter()
            .filter(|((project, _), role)| *project == project_id && **role >= Role::Approver)
            .map(|((_, user), _)| *user);
        let admins = self.users.values().filter(|u| u.is_admin).map(|u| u.id);
        by_role.chain(admins).collect()
    }

    /// The project a change request's scope belongs to.
    pub fn project_of_scope(&self, scope: ChangeRequestScope) -> Option<ProjectId> {
        match scope {
            ChangeRequestScope::Project(id) => self.projects.contains_key(&id).then_some(id),
            ChangeRequestScope::Environment(id) => self.environments.get(&id).map(|(p, _)| *p),
        }
    }

    pub fn next_change_request_id(&self) -> ChangeRequestId {
        next_id(&self.change_requests)
    }

    /// Decides giving `user_id` `role` on `project_id` (`None`: taking it away).
    pub fn set_project_role(
        &self,
        project_id: ProjectId,
        user_id: UserId,
        role: Option<Role>,
    ) -> Result<Vec<DirectoryEvent>> {
        self.require_project(project_id)?;
        if !self.users.contains_key(&user_id) {
            return Err(Error::not_found("user", user_id));
        }
        if self.role_of(user_id, project_id) == role {
            return Ok(vec![]);
        }
        Ok(vec![DirectoryEvent::ProjectRoleSet {
            project_id,
            user_id,
            role,
        }])
    }

    pub fn environment_by_client_key(&self, client_key: &str) -> Option<EnvironmentId> {
        self.environments
            .iter()
            .find(|(_, (_, key))| key == client_key)
            .map(|(id, _)| *id)
    }

    pub fn require_organisation(&self, id: OrganisationId) -> Result<()> {
        if self.organisations.contains_key(&id) {
            Ok(())
        } else {
            Err(Error::not_found("organisation", id))
        }
    }

    pub fn require_project(&self, id: ProjectId) -> Result<OrganisationId> {
        self.projects
            .get(&id)
            .copied()
            .ok_or_else(|| Error::not_found("project", id))
    }

    pub fn next_project_id(&self) -> ProjectId {
        next_id(&self.projects)
    }

    pub fn next_environment_id(&self) -> EnvironmentId {
        next_id(&self.environments)
    }

    /// Decides the creation of an organisation; returns its id.
    pub fn create_organisation(&self, name: &str) -> Result<(OrganisationId, Vec<DirectoryEvent>)> {
        validate_name("name", name)?;
        let id = next_id(&self.organisations);
        Ok((
            id,
            vec![DirectoryEvent::OrganisationCreated {
                id,
                name: name.trim().to_string(),
            }],
        ))
    }

    pub fn register_project(
        &self,
        organisation_id: OrganisationId,
    ) -> Result<(ProjectId, Vec<DirectoryEvent>)> {
        self.require_organisation(organisation_id)?;
        let id = self.next_project_id();
        Ok((
            id,
            vec![DirectoryEvent::ProjectRegistered {
                id,
                organisation_id,
            }],
        ))
    }

    pub fn register_environment(
        &self,
        project_id: ProjectId,
        client_key: &str,
    ) -> Result<(EnvironmentId, Vec<DirectoryEvent>)> {
        self.require_project(project_id)?;
        validate_client_key(client_key)?;
        if self.environment_by_client_key(client_key).is_some() {
            return Err(Error::conflict(
                "api_key",
                "an environment with this client key already exists",
            ));
        }
        let id = self.next_environment_id();
        Ok((
            id,
            vec![DirectoryEvent::EnvironmentRegistered {
                id,
                project_id,
                client_key: client_key.to_string(),
            }],
        ))
    }

    /// Decides the creation of a user together with a first API token.
    pub fn create_user(
        &self,
        email: &str,
        is_admin: bool,
        password_hash: Option<String>,
        token_hash: String,
    ) -> Result<(UserId, Vec<DirectoryEvent>)> {
        let email = email.trim();
        validate_email(email)?;
        if self
            .users
            .values()
            .any(|u| u.email.eq_ignore_ascii_case(email))
        {
            return Err(Error::conflict("email", "a user with this e-mail exists"));
        }
        let id = next_id(&self.users);
        Ok((
            id,
            vec![
                DirectoryEvent::UserCreated {
                    id,
                    email: email.to_string(),
                    is_admin,
                    password_hash,
                },
                DirectoryEvent::ApiTokenIssued {
                    user_id: id,
                    token_hash,
                    id: Some(self.next_token_id()),
                    name: None,
                },
            ],
        ))
    }
}

fn validate_email(email: &str) -> Result<()> {
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(())
    } else {
        Err(Error::invalid("email", "must be an e-mail address"))
    }
}

/// Client keys are public but must be usable in a header and a URL path.
pub fn validate_client_key(key: &str) -> Result<()> {
    let valid = (1..=200).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid || key.starts_with("ser.") {
        return Err(Error::invalid(
            "api_key",
            "must be 1 to 200 letters, digits, '_', '-' or '.', and not start with 'ser.'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_project() -> Directory {
        let mut d = Directory::default();
        let (org, events) = d.create_organisation("acme").unwrap();
        events.iter().for_each(|e| d.apply(e));
        let (_, events) = d.register_project(org).unwrap();
        events.iter().for_each(|e| d.apply(e));
        d
    }

    #[test]
    fn ids_are_allocated_in_sequence() {
        let mut d = with_project();
        let (first, events) = d.register_environment(1, "key-a").unwrap();
        events.iter().for_each(|e| d.apply(e));
        let (second, _) = d.register_environment(1, "key-b").unwrap();
        assert_eq!((first, second), (1, 2));
    }

    #[test]
    fn client_keys_are_unique() {
        let mut d = with_project();
        let (_, events) = d.register_environment(1, "key-a").unwrap();
        events.iter().for_each(|e| d.apply(e));
        assert!(matches!(
            d.register_environment(1, "key-a"),
            Err(Error::Conflict { .. })
        ));
    }

    #[test]
    fn environments_need_an_existing_project() {
        let d = with_project();
        assert!(matches!(
            d.register_environment(9, "k"),
            Err(Error::NotFound {
                entity: "project",
                ..
            })
        ));
    }

    #[test]
    fn emails_are_unique_ignoring_case() {
        let mut d = Directory::default();
        let (_, events) = d.create_user("a@x.io", true, None, "h1".into()).unwrap();
        events.iter().for_each(|e| d.apply(e));
        assert!(matches!(
            d.create_user("A@X.io", false, None, "h2".into()),
            Err(Error::Conflict { .. })
        ));
        assert!(matches!(
            d.principal_for_token_hash("h1"),
            Some(Principal::User { user, token_id: Some(1) }) if user.id == 1
        ));
    }
}

//! API tokens: a user's personal tokens and service tokens (no person's, one role on one
//! project, for CI and other tools), and who a token authenticates as. Tokens are issued,
//! rotated (a new secret, the old one stops working) and revoked as directory events; only their
//! SHA-256 is ever stored.

use serde::{Deserialize, Serialize};

use super::{Directory, DirectoryEvent, UserEntry};
use crate::access::Role;
use crate::error::{Error, Result};
use crate::model::{ProjectId, TokenId, UserId};

/// The name of a token issued without one (every user's first token).
pub const DEFAULT_TOKEN_NAME: &str = "API token";
const MAX_TOKEN_NAME_LEN: usize = 100;

/// A token that works now. Its hash stays inside the directory (and its snapshots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: TokenId,
    pub name: String,
    pub owner: TokenOwner,
    pub(super) token_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenOwner {
    User { user_id: UserId },
    Service { project_id: ProjectId, role: Role },
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person: through one of their API tokens, or (no token) signed in to the dashboard.
    User {
        user: UserEntry,
        token_id: Option<TokenId>,
    },
    ServiceToken {
        token_id: TokenId,
        project_id: ProjectId,
        role: Role,
    },
}

impl Principal {
    /// How the events it appends name it: `user:<id>` or `service-token:<id>`.
    pub fn actor(&self) -> String {
        match self {
            Principal::User { user, .. } => format!("user:{}", user.id),
            Principal::ServiceToken { token_id, .. } => format!("service-token:{token_id}"),
        }
    }

    /// The person behind it, if it is a person's token.
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Principal::User { user, .. } => Some(user.id),
            Principal::ServiceToken { .. } => None,
        }
    }

    /// The API token it authenticated with (none for a dashboard session).
    pub fn token_id(&self) -> Option<TokenId> {
        match self {
            Principal::User { token_id, .. } => *token_id,
            Principal::ServiceToken { token_id, .. } => Some(*token_id),
        }
    }

    /// An organisation administrator: every role on every project. Never a service token.
    pub fn is_organisation_admin(&self) -> bool {
        matches!(self, Principal::User { user, .. } if user.is_admin)
    }

    /// Its role on `project` (organisation admins hold every role without one being recorded).
    pub fn role_on(&self, directory: &Directory, project: ProjectId) -> Option<Role> {
        match self {
            Principal::User { user, .. } => directory.role_of(user.id, project),
            Principal::ServiceToken {
                project_id, role, ..
            } => (*project_id == project).then_some(*role),
        }
    }
}

impl TokenOwner {
    pub fn user(user_id: UserId) -> Self {
        TokenOwner::User { user_id }
    }
}

fn validate_token_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_LEN {
        return Err(Error::invalid(
            "name",
            format!("must be 1 to {MAX_TOKEN_NAME_LEN} characters"),
        ));
    }
    Ok(name.to_string())
}

impl Directory {
    pub(super) fn add_token(
        &mut self,
        id: TokenId,
        name: String,
        owner: TokenOwner,
        token_hash: &str,
    ) {
        self.token_ids.insert(token_hash.to_string(), id);
        self.tokens.insert(
            id,
            ApiToken {
                id,
                name,
                owner,
                token_hash: token_hash.to_string(),
            },
        );
        self.next_token_id = self.next_token_id.max(id + 1);
    }

    pub(super) fn next_token_id(&self) -> TokenId {
        self.next_token_id.max(1)
    }

    /// Who the token with this hash authenticates as, if it works.
    pub fn principal_for_token_hash(&self, token_hash: &str) -> Option<Principal> {
        let token = self.tokens.get(self.token_ids.get(token_hash)?)?;
        match token.owner {
            TokenOwner::User { user_id } => Some(Principal::User {
                user: self.users.get(&user_id)?.clone(),
                token_id: Some(token.id),
            }),
            TokenOwner::Service { project_id, role } => Some(Principal::ServiceToken {
                token_id: token.id,
                project_id,
                role,
            }),
        }
    }

    pub fn require_token(&self, id: TokenId) -> Result<&ApiToken> {
        self.tokens
            .get(&id)
            .ok_or_else(|| Error::not_found("API token", id))
    }

    fn require_unused_hash(&self, token_hash: &str) -> Result<()> {
        if self.token_ids.contains_key(token_hash) {
            return Err(Error::conflict("token", "this token is already issued"));
        }
        Ok(())
    }

    /// Decides a new personal token for `user_id`; returns its id.
    pub fn issue_personal_token(
        &self,
        user_id: UserId,
        name: &str,
        token_hash: String,
    ) -> Result<(TokenId, Vec<DirectoryEvent>)> {
        if !self.users.contains_key(&user_id) {
            return Err(Error::not_found("user", user_id));
        }
        let name = validate_token_name(name)?;
        self.require_unused_hash(&token_hash)?;
        let id = self.next_token_id();
        Ok((
            id,
            vec![DirectoryEvent::ApiTokenIssued {
                user_id,
                token_hash,
                id: Some(id),
                name: Some(name),
            }],
        ))
    }

    /// Decides a new service token holding `role` on `project_id`; returns its id.
    pub fn issue_service_token(
        &self,
        project_id: ProjectId,
        name: &str,
        role: Role,
        token_hash: String,
    ) -> Result<(TokenId, Vec<DirectoryEvent>)> {
        self.require_project(project_id)?;
        let name = validate_token_name(name)?;
        self.require_unused_hash(&token_hash)?;
        let id = self.next_token_id();
        Ok((
            id,
            vec![DirectoryEvent::ServiceTokenIssued {
                id,
                name,
                project_id,
                role,
                token_hash,
            }],
        ))
    }

    pub fn rotate_token(&self, id: TokenId, token_hash: String) -> Result<Vec<DirectoryEvent>> {
        self.require_token(id)?;
        self.require_unused_hash(&token_hash)?;
        Ok(vec![DirectoryEvent::ApiTokenRotated { id, token_hash }])
    }

    pub fn revoke_token(&self, id: TokenId) -> Result<Vec<DirectoryEvent>> {
        self.require_token(id)?;
        Ok(vec![DirectoryEvent::ApiTokenRevoked { id }])
    }

    /// The tokens that work now and that `principal` may see and manage: their own, those of
    /// projects it administers, every one for an organisation admin.
    pub fn tokens_visible_to<'a>(
        &'a self,
        principal: &'a Principal,
    ) -> impl Iterator<Item = &'a ApiToken> + 'a {
        self.tokens
            .values()
            .filter(move |token| self.may_manage_token(principal, token))
    }

    /// Whether `principal` may rotate or revoke `token`: the token itself, its owner, an admin of
    /// a service token's project, or an organisation admin.
    pub fn may_manage_token(&self, principal: &Principal, token: &ApiToken) -> bool {
        if principal.is_organisation_admin() || principal.token_id() == Some(token.id) {
            return true;
        }
        match token.owner {
            TokenOwner::User { user_id } => principal.user_id() == Some(user_id),
            TokenOwner::Service { project_id, .. } => {
                principal.role_on(self, project_id) == Some(Role::Admin)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Aggregate;

    fn apply(d: &mut Directory, events: Vec<DirectoryEvent>) {
        events.iter().for_each(|e| d.apply(e));
    }

    fn with_user_and_project() -> Directory {
        let mut d = Directory::default();
        let events = d.create_user("a@x.io", false, None, "h1".into()).unwrap().1;
        apply(&mut d, events);
        let (org, events) = d.create_organisation("acme").unwrap();
        apply(&mut d, events);
        let events = d.register_project(org).unwrap().1;
        apply(&mut d, events);
        d
    }

    #[test]
    fn tokens_issued_before_ids_take_the_next_id_in_log_order() {
        let mut d = Directory::default();
        let old = |user_id, hash: &str| DirectoryEvent::ApiTokenIssued {
            user_id,
            token_hash: hash.into(),
            id: None,
            name: None,
        };
        let events = d.create_user("a@x.io", true, None, "h1".into()).unwrap().1;
        apply(&mut d, events);
        apply(&mut d, vec![old(1, "h2"), old(1, "h3")]);
        let ids: Vec<_> = d.tokens.keys().copied().collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(d.tokens[&3].name, DEFAULT_TOKEN_NAME);
        let (next, _) = d.issue_personal_token(1, "laptop", "h4".into()).unwrap();
        assert_eq!(next, 4);
    }

    #[test]
    fn a_rotated_token_stops_working_and_its_successor_works() {
        let mut d = with_user_and_project();
        let events = d.rotate_token(1, "h1b".into()).unwrap();
        apply(&mut d, events);
        assert_eq!(d.principal_for_token_hash("h1"), None);
        assert_eq!(
            d.principal_for_token_hash("h1b").map(|p| p.actor()),
            Some("user:1".to_string())
        );
        assert!(matches!(
            d.rotate_token(1, "h1b".into()),
            Err(Error::Conflict { .. })
        ));
    }

    #[test]
    fn a_revoked_token_stops_working_and_cannot_be_revoked_twice() {
        let mut d = with_user_and_project();
        let events = d.revoke_token(1).unwrap();
        apply(&mut d, events);
        assert_eq!(d.principal_for_token_hash("h1"), None);
        assert!(matches!(d.revoke_token(1), Err(Error::NotFound { .. })));
    }

    #[test]
    fn a_service_token_holds_its_role_on_its_project_only_and_is_no_admin() {
        let mut d = with_user_and_project();
        let (id, events) = d
            .issue_service_token(1, "ci", Role::Editor, "s1".into())
            .unwrap();
        apply(&mut d, events);
        let principal = d.principal_for_token_hash("s1").unwrap();
        assert_eq!(principal.actor(), format!("service-token:{id}"));
        assert_eq!(principal.role_on(&d, 1), Some(Role::Editor));
        assert_eq!(principal.role_on(&d, 2), None);
        assert!(!principal.is_organisation_admin());
        assert_eq!(principal.user_id(), None);
        assert!(
            d.issue_service_token(9, "ci", Role::Editor, "s2".into())
                .is_err()
        );
    }

    #[test]
    fn who_may_manage_a_token() {
        let mut d = with_user_and_project();
        let events = d.create_user("b@x.io", false, None, "h2".into()).unwrap().1;
        apply(&mut d, events);
        let events = d
            .issue_service_token(1, "ci", Role::Viewer, "s1".into())
            .unwrap()
            .1;
        apply(&mut d, events);
        let alice = d.principal_for_token_hash("h1").unwrap();
        let bob = d.principal_for_token_hash("h2").unwrap();
        let ci = d.principal_for_token_hash("s1").unwrap();
        let alices = d.tokens[&1].clone();
        let service = d.tokens[&ci.token_id().unwrap()].clone();
        assert!(d.may_manage_token(&alice, &alices));
        assert!(!d.may_manage_token(&bob, &alices));
        assert!(
            d.may_manage_token(&ci, &service),
            "a token may rotate itself"
        );
        assert!(!d.may_manage_token(&alice, &service));
        let events = d.set_project_role(1, 1, Some(Role::Admin)).unwrap();
        apply(&mut d, events);
        assert!(d.may_manage_token(&alice, &service), "a project admin may");
        assert!(d.issue_personal_token(1, " ", "h9".into()).is_err());
    }
}

//! Each part of the state an event can change, as the audit trail shows it before and after:
//! plain JSON, with no token, key or password hash.

use serde_json::{Value, json};

use super::{AuditFold, Part};
use crate::change_request::ChangeRequest;
use crate::directory::ApiToken;

impl AuditFold {
    /// The part as it stands now, as JSON; `null` where it does not exist.
    pub(super) fn show(&self, part: &Part) -> Value {
        let shown = match part {
            Part::Organisation(id) => self
                .directory
                .organisations
                .get(id)
                .map(|name| json!({"id": id, "name": name})),
            Part::ProjectRegistration(id) => self
                .directory
                .projects
                .get(id)
                .map(|org| json!({"id": id, "organisation_id": org})),
            Part::EnvironmentRegistration(id) => self
                .directory
                .environments
                .get(id)
                .map(|(project, key)| json!({"id": id, "project_id": project, "client_key": key})),
            Part::User(id) => self
                .directory
                .users
                .get(id)
                .map(|u| json!({"id": u.id, "email": u.email, "is_admin": u.is_admin})),
            Part::Token(id) => {
                let token = match id {
                    Some(id) => self.directory.tokens.get(id),
                    None => self.directory.tokens.values().next_back(),
                };
                token.map(|t| self.show_token(t))
            }
            Part::Role(project, user) => Some(json!({
                "project_id": project,
                "user_id": user,
                "role": self.directory.role_of(*user, *project).map(|r| r.as_str()),
            })),
            Part::ChangeRequestRegistration(id) => self
                .directory
                .change_requests
                .get(id)
                .map(|scope| json!({"id": id, "scope": scope})),
            Part::ProjectSettings(id) => self
                .projects
                .get(id)
                .filter(|p| p.exists)
                .map(|p| json!({"id": p.id, "organisation_id": p.organisation_id, "settings": p.settings})),
            Part::Feature(project, feature) => self
                .projects
                .get(project)
                .and_then(|p| p.features.get(feature))
                .map(|f| json!(f)),
            Part::Segment(project, segment) => self
                .projects
                .get(project)
                .and_then(|p| p.segments.get(segment))
                .map(|s| json!(s)),
            Part::Environment(id) => self
                .environments
                .get(id)
                .filter(|e| e.exists)
                .map(|e| json!({"id": e.id, "project_id": e.project_id, "name": e.name, "client_key": e.client_key})),
            Part::ServerSideKey(environment, key) => self
                .environments
                .get(environment)
                .and_then(|e| e.server_side_keys.iter().find(|k| k.id == *key))
                .map(|k| json!({"id": k.id, "name": k.name})),
            Part::FeatureState(environment, feature) => {
                let environment = self.environments.get(environment);
                let definition = environment
                    .and_then(|e| self.projects.get(&e.project_id))
                    .and_then(|p| p.features.get(feature));
                match (environment, definition) {
                    (Some(e), Some(f)) => Some(json!(e.effective_state(f))),
                    (Some(e), None) => e.feature_states.get(feature).map(|s| json!(s)),
                    _ => None,
                }
            }
            Part::SegmentOverride(environment, feature, segment) => self
                .environments
                .get(environment)
                .and_then(|e| e.segment_overrides.get(&(*feature, *segment)))
                .map(|o| json!(o)),
            Part::EnvironmentSettings(id) => self.environments.get(id).map(|e| json!(e.settings)),
            Part::IdentityOverride(stream, feature) => self
                .identities
                .get(stream)
                .and_then(|i| i.overrides.get(feature))
                .map(|s| json!(s)),
            Part::Identity(stream) => self
                .identities
                .get(stream)
                .map(|i| json!({"overrides": i.overrides, "erased": i.erased})),
            Part::ChangeRequest(id) => self
                .change_requests
                .get(id)
                .filter(|r| r.exists)
                .map(show_change_request),
            Part::Checkpoint => self.checkpoints.last.as_ref().map(|c| json!(c)),
            // Secrets are references to values kept outside the log: nothing to hide.
            Part::Integration(id) => self.directory.integrations.get(id).map(|i| json!(i)),
        };
        shown.unwrap_or(Value::Null)
    }

    fn show_token(&self, token: &ApiToken) -> Value {
        json!({
            "id": token.id,
            "name": token.name,
            "owner": token.owner,
            "secret_generation": self.token_rotations.get(&token.id).copied().unwrap_or(0) + 1,
        })
    }
}

fn show_change_request(request: &ChangeRequest) -> Value {
    json!({
        "id": request.id,
        "scope": request.scope,
        "title": request.title,
        "description": request.description,
        "author": request.author,
        "status": request.status,
        "reviewers": request.reviewers,
        "approvals": request.approvals.keys().collect::<Vec<_>>(),
        "comments": request.comments.iter()
            .map(|(user, text)| json!({"user_id": user, "text": text}))
            .collect::<Vec<_>>(),
        "commands": request.content.commands.iter().map(|c| &c.command).collect::<Vec<_>>(),
        "live_from_micros": request.content.live_from_micros,
        "reason": request.reason,
    })
}

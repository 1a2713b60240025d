//! The audit trail in words: one line per event saying who did what to which thing where
//! ("alice@example.com enabled `checkout` in production"), and, for a segment, which rules and
//! conditions were added, removed or changed (a JSON Patch of nested rules is hard to read).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{AuditFold, Decoded, Touched};
use crate::change_request::{ChangeRequestEvent, Scope, Withdrawal};
use crate::checkpoint::CheckpointEvent;
use crate::directory::DirectoryEvent;
use crate::environment::EnvironmentEvent;
use crate::identity::IdentityEvent;
use crate::model::UserId;
use crate::project::ProjectEvent;

/// The one-line summary of an event, after it was folded into `fold`.
pub(super) fn summary(
    fold: &AuditFold,
    touched: &Touched,
    actor: &str,
    decoded: &Decoded,
    (before, after): (&Value, &Value),
    changes: &[String],
) -> String {
    let names = Names { fold, touched };
    let what = match decoded {
        Decoded::Directory(event) => names.on_directory(event, before, after),
        Decoded::Project(_, event) => names.on_project(event, before, after, changes),
        Decoded::Environment(_, event) => names.on_environment(event, before, after),
        Decoded::Identity(event) => names.on_identity(event),
        Decoded::ChangeRequest(id, event) => names.on_change_request(*id, event),
        Decoded::Checkpoint(CheckpointEvent::CheckpointPublished { checkpoint }) => format!(
            "published a signed checkpoint of positions 1..{} (head hash {})",
            checkpoint.position, checkpoint.head_hash
        ),
    };
    format!("{actor} {what}")
}

/// Looks up the names of what an event touched.
struct Names<'a> {
    fold: &'a AuditFold,
    touched: &'a Touched,
}

fn name_of(value: &Value) -> Option<&str> {
    value.get("name").and_then(Value::as_str)
}

fn either_name(before: &Value, after: &Value) -> String {
    name_of(after)
        .or_else(|| name_of(before))
        .unwrap_or("?")
        .to_string()
}

impl Names<'_> {
    fn user(&self, id: UserId) -> String {
        self.fold.actor_name(&format!("user:{id}"))
    }

    fn users(&self, ids: &[UserId]) -> String {
        ids.iter()
            .map(|id| self.user(*id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn project_name(&self) -> String {
        let name = self
            .touched
            .project_id
            .and_then(|id| self.fold.projects.get(&id))
            .map(|p| p.settings.name.clone());
        match (name, self.touched.project_id) {
            (Some(name), _) => format!("project `{name}`"),
            (None, Some(id)) => format!("project {id}"),
            (None, None) => "a project".to_string(),
        }
    }

    fn environment_name(&self) -> String {
        let Some(id) = self.touched.environment_id else {
            return "an environment".to_string();
        };
        match self.fold.environments.get(&id) {
            Some(e) if !e.name.is_empty() => e.name.clone(),
            _ => format!("environment {id}"),
        }
    }

    /// Where a change request applies: the environment's name or the project's.
    fn scope(&self) -> String {
        if self.touched.environment_id.is_some() {
            self.environment_name()
        } else {
            self.project_name()
        }
    }

    fn feature(&self) -> String {
        let Some(id) = self.touched.feature_id else {
            return "a feature".to_string();
        };
        self.touched
            .project_id
            .and_then(|p| self.fold.projects.get(&p))
            .and_then(|p| p.features.get(&id))
            .map_or_else(|| format!("feature {id}"), |f| format!("`{}`", f.name))
    }

    fn segment(&self) -> String {
        let Some(id) = self.touched.segment_id else {
            return "a segment".to_string();
        };
        self.touched
            .project_id
            .and_then(|p| self.fold.projects.get(&p))
            .and_then(|p| p.segments.get(&id))
            .map_or_else(
                || format!("segment {id}"),
                |s| format!("segment `{}`", s.name),
            )
    }

    fn on_directory(&self, event: &DirectoryEvent, before: &Value, after: &Value) -> String {
        let token = || either_name(before, after);
        match event {
            DirectoryEvent::OrganisationCreated { name, .. } => {
                format!("created organisation `{name}`")
            }
            DirectoryEvent::ProjectRegistered { id, .. } => format!("registered project {id}"),
            DirectoryEvent::EnvironmentRegistered { id, .. } => {
                format!("registered environment {id} in {}", self.project_name())
            }
            DirectoryEvent::UserCreated {
                email, is_admin, ..
            } => {
                let admin = if *is_admin {
                    " as an organisation administrator"
                } else {
                    ""
                };
                format!("created user {email}{admin}")
            }
            DirectoryEvent::ApiTokenIssued { user_id, .. } => {
                format!("issued API token `{}` for {}", token(), self.user(*user_id))
            }
            DirectoryEvent::ServiceTokenIssued { name, role, .. } => format!(
                "issued service token `{name}` ({} on {})",
                role.as_str(),
                self.project_name()
            ),
            DirectoryEvent::ApiTokenRotated { .. } => format!("rotated API token `{}`", token()),
            DirectoryEvent::ApiTokenRevoked { .. } => format!("revoked API token `{}`", token()),
            DirectoryEvent::ProjectRoleSet { user_id, role, .. } => match role {
                Some(role) => format!(
                    "gave {} the role {} on {}",
                    self.user(*user_id),
                    role.as_str(),
                    self.project_name()
                ),
                None => format!(
                    "took away the role of {} on {}",
                    self.user(*user_id),
                    self.project_name()
                ),
            },
            DirectoryEvent::ChangeRequestRegistered { id, .. } => {
                format!("registered change request #{id}")
            }
            DirectoryEvent::IntegrationConfigured { integration } => format!(
                "{} integration {} ({}{})",
                if before.is_null() {
                    "configured"
                } else {
                    "reconfigured"
                },
                integration.id,
                integration.kind,
                if integration.enabled {
                    ""
                } else {
                    ", disabled"
                }
            ),
            DirectoryEvent::IntegrationRemoved { id } => format!(
                "removed integration {id} ({})",
                before
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown kind")
            ),
        }
    }

    fn on_project(
        &self,
        event: &ProjectEvent,
        before: &Value,
        after: &Value,
        changes: &[String],
    ) -> String {
        let settings_name = |v: &Value| {
            v.pointer("/settings/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match event {
            ProjectEvent::ProjectCreated { settings, .. } => {
                format!("created project `{}`", settings.name)
            }
            ProjectEvent::ProjectUpdated { .. } => format!(
                "changed the settings of project `{}`",
                settings_name(after)
                    .or_else(|| settings_name(before))
                    .unwrap_or_default()
            ),
            ProjectEvent::FeatureCreated { feature } => {
                format!(
                    "created feature `{}` in {}",
                    feature.name,
                    self.project_name()
                )
            }
            ProjectEvent::FeatureUpdated { feature } => {
                format!(
                    "updated feature `{}` in {}",
                    feature.name,
                    self.project_name()
                )
            }
            ProjectEvent::FeatureDeleted { .. } => format!(
                "deleted feature `{}` from {}",
                either_name(before, after),
                self.project_name()
            ),
            ProjectEvent::SegmentCreated { segment } => {
                format!(
                    "created segment `{}` in {}",
                    segment.name,
                    self.project_name()
                )
            }
            ProjectEvent::SegmentUpdated { segment } => {
                let what = match changes {
                    [] => String::new(),
                    [one] => format!(": {one}"),
                    [first, rest @ ..] => format!(": {first} (and {} more)", rest.len()),
                };
                format!(
                    "changed segment `{}` in {}{what}",
                    segment.name,
                    self.project_name()
                )
            }
            ProjectEvent::SegmentDeleted { .. } => format!(
                "deleted segment `{}` from {}",
                either_name(before, after),
                self.project_name()
            ),
        }
    }

    fn on_environment(&self, event: &EnvironmentEvent, before: &Value, after: &Value) -> String {
        let here = self.environment_name();
        match event {
            EnvironmentEvent::EnvironmentCreated { name, .. } => {
                format!("created environment {name} in {}", self.project_name())
            }
            EnvironmentEvent::EnvironmentRenamed { name } => format!(
                "renamed environment {} to {name}",
                name_of(before).unwrap_or("?")
            ),
            EnvironmentEvent::ServerSideKeyIssued { name, .. } => {
                format!("issued server-side key `{name}` in {here}")
            }
            EnvironmentEvent::FeatureStateSet { .. } => {
                format!("{} in {here}", state_change(&self.feature(), before, after))
            }
            EnvironmentEvent::SegmentOverrideSet { .. } => {
                let verb = if before.is_null() { "added" } else { "changed" };
                format!(
                    "{verb} the override of {} for {} in {here}",
                    self.segment(),
                    self.feature()
                )
            }
            EnvironmentEvent::SegmentOverrideRemoved { .. } => format!(
                "removed the override of {} for {} in {here}",
                self.segment(),
                self.feature()
            ),
            EnvironmentEvent::EnvironmentSettingsChanged { .. } => {
                format!("changed the settings of {here}")
            }
        }
    }

    fn on_identity(&self, event: &IdentityEvent) -> String {
        let identity = self.touched.identity.as_deref().unwrap_or("?");
        let (feature, here) = (self.feature(), self.environment_name());
        match event {
            IdentityEvent::IdentityOverrideSet { .. } => {
                format!("overrode {feature} for identity `{identity}` in {here}")
            }
            IdentityEvent::IdentityOverrideRemoved { .. } => {
                format!("removed the override of {feature} for identity `{identity}` in {here}")
            }
            // Once erased, an identity has no name to show.
            IdentityEvent::IdentityErased { .. } => format!("erased an identity in {here}"),
        }
    }

    fn on_change_request(&self, id: u64, event: &ChangeRequestEvent) -> String {
        let request = format!("change request #{id}");
        let approved_by = |approvers: &[UserId]| match approvers {
            [] => String::new(),
            some => format!(", approved by {}", self.users(some)),
        };
        match event {
            ChangeRequestEvent::ChangeRequestOpened { title, scope, .. } => {
                let place = match scope {
                    Scope::Environment(_) => self.environment_name(),
                    Scope::Project(_) => self.project_name(),
                };
                format!("opened {request} `{title}` in {place}")
            }
            ChangeRequestEvent::ReviewersAssigned { reviewers } => {
                format!("assigned {} to review {request}", self.users(reviewers))
            }
            ChangeRequestEvent::ChangeRequestEdited { .. } => format!("edited {request}"),
            ChangeRequestEvent::ApprovalGiven { .. } => format!("approved {request}"),
            ChangeRequestEvent::ApprovalWithdrawn { user_id, why } => {
                let why = match why {
                    Withdrawal::ByApprover => "by the approver",
                    Withdrawal::ContentChanged => "because its content changed",
                };
                format!(
                    "withdrew the approval of {} from {request} ({why})",
                    self.user(*user_id)
                )
            }
            ChangeRequestEvent::CommentAdded { .. } => format!("commented on {request}"),
            ChangeRequestEvent::ChangeRequestRejected { reason, .. } => {
                format!("rejected {request}: {reason}")
            }
            ChangeRequestEvent::ChangeRequestClosed { .. } => format!("closed {request}"),
            ChangeRequestEvent::ChangeRequestCommitted { approvers, .. } => format!(
                "committed {request} in {}{}",
                self.scope(),
                approved_by(approvers)
            ),
            ChangeRequestEvent::ChangeRequestScheduled {
                approvers,
                live_from_micros,
                ..
            } => format!(
                "scheduled {request} in {} for {}{}",
                self.scope(),
                crate::log::rfc3339(*live_from_micros)
                    .unwrap_or_else(|| live_from_micros.to_string()),
                approved_by(approvers)
            ),
            ChangeRequestEvent::ScheduleCancelled { .. } => {
                format!("cancelled the schedule of {request}")
            }
            ChangeRequestEvent::ChangeRequestFailed { reason } => {
                format!("could not apply {request}: {reason}")
            }
        }
    }
}

/// "enabled `f`", "disabled `f` and set it to 3", "set `f` to \"blue\"", or "changed `f`".
fn state_change(feature: &str, before: &Value, after: &Value) -> String {
    let enabled = |v: &Value| v.get("enabled").and_then(Value::as_bool);
    let value = |v: &Value| v.get("feature_state_value").cloned();
    let toggled = match (enabled(before), enabled(after)) {
        (Some(false) | None, Some(true)) => Some("enabled"),
        (Some(true) | None, Some(false)) => Some("disabled"),
        _ => None,
    };
    let new_value = value(after).filter(|v| before.is_null() || value(before).as_ref() != Some(v));
    match (toggled, new_value) {
        (Some(verb), Some(v)) if !before.is_null() => {
            format!("{verb} {feature} and set it to {}", short(&v))
        }
        (Some(verb), _) => format!("{verb} {feature}"),
        (None, Some(v)) => format!("set {feature} to {}", short(&v)),
        (None, None) => format!("changed the variant allocations of {feature}"),
    }
}

/// A value as written in a summary: JSON, cut short.
fn short(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        text
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// What changed in a segment's rules, one line per condition or rule added, removed or changed,
/// each named by where it sits (`rules[0].rules[1].conditions[2]`). `before` and `after` are
/// the segment as JSON (`null` when it did not exist).
pub fn segment_changes(before: &Value, after: &Value) -> Vec<String> {
    let (old, new) = (flatten_rules(before), flatten_rules(after));
    let mut changes = Vec::new();
    for (place, text) in &old {
        match new.get(place) {
            None => changes.push(format!("removed {place}: {text}")),
            Some(now) if now != text => changes.push(format!("changed {place}: {text} → {now}")),
            Some(_) => {}
        }
    }
    for (place, text) in &new {
        if !old.contains_key(place) {
            changes.push(format!("added {place}: {text}"));
        }
    }
    for field in ["name", "description"] {
        let (was, is) = (before.get(field), after.get(field));
        if !before.is_null() && !after.is_null() && was != is {
            changes.push(format!(
                "changed the {field}: {} → {}",
                was.map_or("null".to_string(), short),
                is.map_or("null".to_string(), short)
            ));
        }
    }
    changes
}

/// Every rule (its type) and condition (`property OPERATOR value`) of a segment, by place.
fn flatten_rules(segment: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(rules) = segment.get("rules").and_then(Value::as_array) {
        flatten_into("rules", rules, &mut out);
    }
    out
}

fn flatten_into(prefix: &str, rules: &[Value], out: &mut BTreeMap<String, String>) {
    for (i, rule) in rules.iter().enumerate() {
        let here = format!("{prefix}[{i}]");
        let kind = rule.get("type").and_then(Value::as_str).unwrap_or("?");
        out.insert(here.clone(), format!("rule {kind}"));
        for (j, condition) in rule
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let text = |field: &str| {
                condition
                    .get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            out.insert(
                format!("{here}.conditions[{j}]"),
                format!(
                    "condition `{} {} {}`",
                    text("property_"),
                    text("operator"),
                    text("value")
                ),
            );
        }
        if let Some(nested) = rule.get("rules").and_then(Value::as_array) {
            flatten_into(&format!("{here}.rules"), nested, out);
        }
    }
}

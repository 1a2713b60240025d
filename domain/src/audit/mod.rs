//! The audit trail's entries: for each recorded event, what it touched (organisation, project,
//! environment, feature, segment, identity, change request), who did it and who approved it, a
//! one-line summary ("user alice@example.com enabled `checkout` in production"), and the thing it
//! changed as it was before and after, with the RFC 6902 JSON Patch between the two.
//!
//! [`AuditFold`] folds the same aggregates the write side decides on, so "before" is exactly the
//! state the event was decided against: for a feature's state in an environment that was never
//! set, the feature's defaults, as SDKs were served. Every event gives exactly one entry (the
//! audit projection's row count equals the log's event count). Secrets never appear: token and
//! password hashes are left out of every before and after.
//!
//! Pure: the projection (`projections::audit_history`) stores what this computes.

mod describe;
mod flags;
mod show;

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::aggregate::{Aggregate, CodecError, DomainEvent};
use crate::change_request::{ChangeRequest, ChangeRequestEvent, ChangeRequestId, Scope};
use crate::checkpoint::{self, CheckpointEvent, PublishedCheckpoints};
use crate::directory::{self, Directory, DirectoryEvent, TokenOwner};
use crate::environment::{self, Environment, EnvironmentEvent};
use crate::identity::{IdentityEvent, IdentityOverrides};
use crate::integration::{IntegrationId, IntegrationScope};
use crate::log::RecordedEvent;
use crate::model::{
    EnvironmentId, FeatureId, OrganisationId, ProjectId, SegmentId, TokenId, UserId,
};
use crate::project::{Project, ProjectEvent};

pub use describe::segment_changes;
pub use flags::{
    AllocationShown, FeatureSegment, FeatureShown, FlagChange, FlagChangeKind, FlagState, Named,
    OptionShown, SegmentShown,
};

/// One event as the audit trail shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub position: u64,
    pub recorded_at_micros: i64,
    pub stream_id: String,
    pub event_type: String,
    /// As the event's metadata names it: `user:<id>`, `service-token:<id>`, `import`,
    /// `scheduler`, `system`.
    pub actor: String,
    /// The actor as a person reads it: the user's e-mail, the service token's name, or `actor`.
    pub actor_name: String,
    pub organisation_id: Option<OrganisationId>,
    pub project_id: Option<ProjectId>,
    pub environment_id: Option<EnvironmentId>,
    /// The feature the event changes (a definition, a state, an override).
    pub feature_id: Option<FeatureId>,
    /// Every feature the entry concerns: `feature_id`, or for a change request's events the
    /// features its commands touch (so a search by feature finds the requests too).
    pub features: BTreeSet<FeatureId>,
    pub segment_id: Option<SegmentId>,
    /// The identity an identity override is for.
    pub identity: Option<String>,
    /// The change request the event belongs to, or whose commit applied it.
    pub change_request_id: Option<ChangeRequestId>,
    /// Who approved the change request whose commit applied this event.
    pub approvers: Vec<String>,
    pub reason: Option<String>,
    pub break_glass: bool,
    pub summary: String,
    /// What changed, said per part where a patch is hard to read (a segment's rules and
    /// conditions added, removed or changed).
    pub changes: Vec<String>,
    pub before: Value,
    pub after: Value,
    /// RFC 6902 JSON Patch from `before` to `after`.
    pub patch: Value,
    /// The flag states the event created, changed or removed, per environment, as flag-change
    /// integrations are told.
    pub flags: Vec<FlagChange<FlagState>>,
}

/// The aggregates, folded from the log, that an entry's "before" is read from.
#[derive(Debug, Default)]
pub struct AuditFold {
    directory: Directory,
    projects: HashMap<ProjectId, Project>,
    environments: HashMap<EnvironmentId, Environment>,
    identities: HashMap<String, IdentityOverrides>,
    change_requests: HashMap<ChangeRequestId, ChangeRequest>,
    checkpoints: PublishedCheckpoints,
    /// How many times each token's secret was replaced (a rotation's before and after).
    token_rotations: HashMap<TokenId, u64>,
}

/// What one event touched, worked out before it is folded in.
#[derive(Default)]
struct Touched {
    organisation_id: Option<OrganisationId>,
    project_id: Option<ProjectId>,
    environment_id: Option<EnvironmentId>,
    feature_id: Option<FeatureId>,
    features: BTreeSet<FeatureId>,
    segment_id: Option<SegmentId>,
    identity: Option<String>,
    change_request_id: Option<ChangeRequestId>,
}

/// The part of the state an event changes, named so it can be shown before and after.
enum Part {
    Organisation(OrganisationId),
    ProjectRegistration(ProjectId),
    EnvironmentRegistration(EnvironmentId),
    User(UserId),
    /// A token, by id; `None`: the newest token (issued before tokens had ids).
    Token(Option<TokenId>),
    Role(ProjectId, UserId),
    ChangeRequestRegistration(ChangeRequestId),
    ProjectSettings(ProjectId),
    Feature(ProjectId, FeatureId),
    Segment(ProjectId, SegmentId),
    Environment(EnvironmentId),
    ServerSideKey(EnvironmentId, u64),
    FeatureState(EnvironmentId, FeatureId),
    SegmentOverride(EnvironmentId, FeatureId, SegmentId),
    EnvironmentSettings(EnvironmentId),
    IdentityOverride(String, FeatureId),
    /// Every override of an identity, and whether it is erased.
    Identity(String),
    ChangeRequest(ChangeRequestId),
    /// The last checkpoint published into the log.
    Checkpoint,
    Integration(IntegrationId),
}

/// A decoded event of any aggregate.
enum Decoded {
    Directory(DirectoryEvent),
    Project(ProjectId, ProjectEvent),
    Environment(EnvironmentId, EnvironmentEvent),
    Identity(IdentityEvent),
    ChangeRequest(ChangeRequestId, ChangeRequestEvent),
    Checkpoint(CheckpointEvent),
}

fn decode(record: &RecordedEvent) -> Result<Decoded, CodecError> {
    let stream = record.stream_id.as_str();
    if stream == directory::STREAM {
        return Ok(Decoded::Directory(DirectoryEvent::from_recorded(record)?));
    }
    if let Some(id) = stream
        .strip_prefix("project-")
        .and_then(|id| id.parse().ok())
    {
        return Ok(Decoded::Project(id, ProjectEvent::from_recorded(record)?));
    }
    if let Some(id) = environment::id_of_stream(stream) {
        return Ok(Decoded::Environment(
            id,
            EnvironmentEvent::from_recorded(record)?,
        ));
    }
    if stream.starts_with("identity-") {
        return Ok(Decoded::Identity(IdentityEvent::from_recorded(record)?));
    }
    if let Some(id) = stream
        .strip_prefix("change-request-")
        .and_then(|id| id.parse().ok())
    {
        return Ok(Decoded::ChangeRequest(
            id,
            ChangeRequestEvent::from_recorded(record)?,
        ));
    }
    if stream == checkpoint::STREAM {
        return Ok(Decoded::Checkpoint(CheckpointEvent::from_recorded(record)?));
    }
    Err(CodecError(format!(
        "event at position {} is on stream {stream:?}, which no aggregate owns",
        record.position
    )))
}

/// The change request a `causation_id` of `change-request-N` names.
fn change_request_of(causation: Option<&str>) -> Option<ChangeRequestId> {
    causation?.strip_prefix("change-request-")?.parse().ok()
}

impl AuditFold {
    /// Folds an event in without making its entry (warming up to a checkpoint).
    pub fn warm(&mut self, record: &RecordedEvent) -> Result<(), CodecError> {
        let decoded = decode(record)?;
        self.fold(&record.stream_id, &decoded);
        Ok(())
    }

    /// The entry of `record`, then folds it in. Events must come in log order.
    pub fn entry(&mut self, record: &RecordedEvent) -> Result<AuditEntry, CodecError> {
        let decoded = decode(record)?;
        let (touched, part) = self.touched(&record.stream_id, &decoded);
        let before = self.show(&part);
        let targets = self.flag_targets(&record.stream_id, &decoded);
        let flags_before = self.flag_states(&targets);
        self.fold(&record.stream_id, &decoded);
        let after = self.show(&part);
        let flags = self.flag_changes(targets, flags_before);
        let changes = match &decoded {
            Decoded::Project(_, ProjectEvent::SegmentCreated { .. })
            | Decoded::Project(_, ProjectEvent::SegmentUpdated { .. })
            | Decoded::Project(_, ProjectEvent::SegmentDeleted { .. }) => {
                segment_changes(&before, &after)
            }
            _ => vec![],
        };
        let summary = describe::summary(
            self,
            &touched,
            &self.actor_name(&record.metadata.actor),
            &decoded,
            (&before, &after),
            &changes,
        );
        let patch = serde_json::to_value(json_patch::diff(&before, &after)).unwrap_or(Value::Null);
        let metadata = &record.metadata;
        Ok(AuditEntry {
            position: record.position,
            recorded_at_micros: record.recorded_at_micros,
            stream_id: record.stream_id.clone(),
            event_type: record.event_type.clone(),
            actor: metadata.actor.clone(),
            actor_name: self.actor_name(&metadata.actor),
            organisation_id: touched.organisation_id,
            project_id: touched.project_id,
            environment_id: touched.environment_id,
            feature_id: touched.feature_id,
            features: touched.features,
            segment_id: touched.segment_id,
            identity: touched.identity,
            change_request_id: touched
                .change_request_id
                .or_else(|| change_request_of(metadata.causation_id.as_deref())),
            approvers: metadata
                .approvers
                .iter()
                .map(|a| self.actor_name(a))
                .collect(),
            reason: metadata.reason.clone(),
            break_glass: metadata.break_glass,
            summary,
            changes,
            before,
            after,
            patch,
            flags,
        })
    }

    /// How a person reads an actor: a user's e-mail, a service token's name, else as stored.
    pub fn actor_name(&self, actor: &str) -> String {
        if let Some(user) = actor
            .strip_prefix("user:")
            .and_then(|id| id.parse::<UserId>().ok())
            .and_then(|id| self.directory.users.get(&id))
        {
            return user.email.clone();
        }
        if let Some(token) = actor
            .strip_prefix("service-token:")
            .and_then(|id| id.parse::<TokenId>().ok())
            .and_then(|id| self.directory.tokens.get(&id))
        {
            return format!("service token {}", token.name);
        }
        actor.to_string()
    }

    fn fold(&mut self, stream: &str, decoded: &Decoded) {
        match decoded {
            Decoded::Directory(event) => {
                if let DirectoryEvent::ApiTokenRotated { id, .. } = event {
                    *self.token_rotations.entry(*id).or_default() += 1;
                }
                self.directory.apply(event);
            }
            Decoded::Project(id, event) => self.projects.entry(*id).or_default().apply(event),
            Decoded::Environment(id, event) => {
                self.environments.entry(*id).or_default().apply(event)
            }
            Decoded::Identity(event) => self
                .identities
                .entry(stream.to_string())
                .or_default()
                .apply(event),
            Decoded::ChangeRequest(id, event) => {
                self.change_requests.entry(*id).or_default().apply(event)
            }
            Decoded::Checkpoint(event) => self.checkpoints.apply(event),
        }
    }

    fn project_of_environment(&self, id: EnvironmentId) -> Option<ProjectId> {
        self.directory.environments.get(&id).map(|(p, _)| *p)
    }

    fn organisation_of_project(&self, id: ProjectId) -> Option<OrganisationId> {
        self.directory.projects.get(&id).copied()
    }

    fn scoped(&self, touched: &mut Touched) {
        if touched.project_id.is_none() {
            touched.project_id = touched
                .environment_id
                .and_then(|e| self.project_of_environment(e));
        }
        if touched.organisation_id.is_none() {
            touched.organisation_id = touched
                .project_id
                .and_then(|p| self.organisation_of_project(p));
        }
        touched.features.extend(touched.feature_id);
    }

    /// What `decoded` touches, and the part of the state it changes.
    fn touched(&self, stream: &str, decoded: &Decoded) -> (Touched, Part) {
        let mut touched = Touched::default();
        let part = match decoded {
            Decoded::Directory(event) => self.directory_part(event, &mut touched),
            Decoded::Project(id, event) => {
                touched.project_id = Some(*id);
                match event {
                    ProjectEvent::ProjectCreated {
                        organisation_id, ..
                    } => {
                        touched.organisation_id = Some(*organisation_id);
                        Part::ProjectSettings(*id)
                    }
                    ProjectEvent::ProjectUpdated { .. } => Part::ProjectSettings(*id),
                    ProjectEvent::FeatureCreated { feature }
                    | ProjectEvent::FeatureUpdated { feature } => {
                        touched.feature_id = Some(feature.id);
                        Part::Feature(*id, feature.id)
                    }
                    ProjectEvent::FeatureDeleted { id: feature } => {
                        touched.feature_id = Some(*feature);
                        Part::Feature(*id, *feature)
                    }
                    ProjectEvent::SegmentCreated { segment }
                    | ProjectEvent::SegmentUpdated { segment } => {
                        touched.segment_id = Some(segment.id);
                        Part::Segment(*id, segment.id)
                    }
                    ProjectEvent::SegmentDeleted { id: segment } => {
                        touched.segment_id = Some(*segment);
                        Part::Segment(*id, *segment)
                    }
                }
            }
            Decoded::Environment(id, event) => {
                touched.environment_id = Some(*id);
                match event {
                    EnvironmentEvent::EnvironmentCreated { project_id, .. } => {
                        touched.project_id = Some(*project_id);
                        Part::Environment(*id)
                    }
                    EnvironmentEvent::EnvironmentRenamed { .. } => Part::Environment(*id),
                    EnvironmentEvent::ServerSideKeyIssued { id: key, .. } => {
                        Part::ServerSideKey(*id, *key)
                    }
                    EnvironmentEvent::FeatureStateSet { feature_id, .. } => {
                        touched.feature_id = Some(*feature_id);
                        Part::FeatureState(*id, *feature_id)
                    }
                    EnvironmentEvent::SegmentOverrideSet {
                        feature_id,
                        r#override,
                    } => {
                        touched.feature_id = Some(*feature_id);
                        touched.segment_id = Some(r#override.segment_id);
                        Part::SegmentOverride(*id, *feature_id, r#override.segment_id)
                    }
                    EnvironmentEvent::SegmentOverrideRemoved {
                        feature_id,
                        segment_id,
                    } => {
                        touched.feature_id = Some(*feature_id);
                        touched.segment_id = Some(*segment_id);
                        Part::SegmentOverride(*id, *feature_id, *segment_id)
                    }
                    EnvironmentEvent::EnvironmentSettingsChanged { .. } => {
                        Part::EnvironmentSettings(*id)
                    }
                }
            }
            Decoded::Identity(event) => {
                touched.environment_id = Some(event.environment_id());
                touched.feature_id = event.feature_id();
                touched.identity = Some(event.identity().to_string());
                match event.feature_id() {
                    Some(feature_id) => Part::IdentityOverride(stream.to_string(), feature_id),
                    None => Part::Identity(stream.to_string()),
                }
            }
            Decoded::ChangeRequest(id, event) => {
                touched.change_request_id = Some(*id);
                let request = self.change_requests.get(id);
                let scope = match event {
                    ChangeRequestEvent::ChangeRequestOpened { scope, .. } => Some(*scope),
                    _ => request.and_then(|r| r.scope),
                };
                match scope {
                    Some(Scope::Environment(e)) => touched.environment_id = Some(e),
                    Some(Scope::Project(p)) => touched.project_id = Some(p),
                    None => {}
                }
                let commands = match event {
                    ChangeRequestEvent::ChangeRequestOpened { content, .. }
                    | ChangeRequestEvent::ChangeRequestEdited { content, .. } => {
                        content.commands.iter().collect::<Vec<_>>()
                    }
                    _ => request
                        .map(|r| r.content.commands.iter().collect())
                        .unwrap_or_default(),
                };
                touched.features.extend(
                    commands
                        .iter()
                        .filter_map(|c| c.command.get("feature_id").and_then(Value::as_u64)),
                );
                Part::ChangeRequest(*id)
            }
            Decoded::Checkpoint(_) => Part::Checkpoint,
        };
        self.scoped(&mut touched);
        (touched, part)
    }

    fn directory_part(&self, event: &DirectoryEvent, touched: &mut Touched) -> Part {
        match event {
            DirectoryEvent::OrganisationCreated { id, .. } => {
                touched.organisation_id = Some(*id);
                Part::Organisation(*id)
            }
            DirectoryEvent::ProjectRegistered {
                id,
                organisation_id,
            } => {
                touched.project_id = Some(*id);
                touched.organisation_id = Some(*organisation_id);
                Part::ProjectRegistration(*id)
            }
            DirectoryEvent::EnvironmentRegistered { id, project_id, .. } => {
                touched.environment_id = Some(*id);
                touched.project_id = Some(*project_id);
                Part::EnvironmentRegistration(*id)
            }
            DirectoryEvent::UserCreated { id, .. } => Part::User(*id),
            DirectoryEvent::ApiTokenIssued { id, .. } => Part::Token(*id),
            DirectoryEvent::ServiceTokenIssued { id, project_id, .. } => {
                touched.project_id = Some(*project_id);
                Part::Token(Some(*id))
            }
            DirectoryEvent::ApiTokenRotated { id, .. } | DirectoryEvent::ApiTokenRevoked { id } => {
                if let Some(TokenOwner::Service { project_id, .. }) =
                    self.directory.tokens.get(id).map(|t| t.owner)
                {
                    touched.project_id = Some(project_id);
                }
                Part::Token(Some(*id))
            }
            DirectoryEvent::ProjectRoleSet {
                project_id,
                user_id,
                ..
            } => {
                touched.project_id = Some(*project_id);
                Part::Role(*project_id, *user_id)
            }
            DirectoryEvent::ChangeRequestRegistered { id, scope } => {
                touched.change_request_id = Some(*id);
                match scope {
                    Scope::Environment(e) => touched.environment_id = Some(*e),
                    Scope::Project(p) => touched.project_id = Some(*p),
                }
                Part::ChangeRequestRegistration(*id)
            }
            DirectoryEvent::IntegrationConfigured { integration } => {
                set_scope(touched, integration.scope);
                Part::Integration(integration.id)
            }
            DirectoryEvent::IntegrationRemoved { id } => {
                if let Some(integration) = self.directory.integrations.get(id) {
                    set_scope(touched, integration.scope);
                }
                Part::Integration(*id)
            }
        }
    }
}

fn set_scope(touched: &mut Touched, scope: IntegrationScope) {
    match scope {
        IntegrationScope::Organisation(id) => touched.organisation_id = Some(id),
        IntegrationScope::Project(id) => touched.project_id = Some(id),
        IntegrationScope::Environment(id) => touched.environment_id = Some(id),
    }
}

#[cfg(test)]
mod tests;

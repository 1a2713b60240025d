//! The change-request aggregate (`change-request-{id}`): a proposal of commands for one
//! environment or project, reviewed by others before it is applied (four-eyes).
//!
//! What it guards:
//! * an approval binds to the exact content it saw: it records [`content_hash`] (SHA-256 of the
//!   commands, the stream versions they were based on, and the schedule), and any edit of the
//!   content withdraws every approval, each as its own event;
//! * nobody approves their own request, and nobody approves twice;
//! * a commit counts only approvals of the current content by users who are approvers at commit
//!   time (and assigned, when the policy says so), and is refused while a stream the request
//!   touches moved since its base version (naming each stream and both versions);
//! * once committed, rejected or closed a request no longer changes.
//!
//! The decisions are in [`crate::command::change_request`]; applying the proposed commands in the
//! same atomic append as the commit is the executor's job.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::aggregate::{Aggregate, DomainEvent};
use crate::command::{Command, EnvironmentCommand, IdentityCommand, ProjectCommand, StoredCommand};
use crate::log::canonical_json;
use crate::model::{EnvironmentId, FeatureId, ProjectId, SegmentId, UserId};
use crate::{environment, identity, project};

pub type ChangeRequestId = u64;

pub fn stream(id: ChangeRequestId) -> String {
    format!("change-request-{id}")
}

/// What a change request changes: one environment's state, or a project's definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Scope {
    Environment(EnvironmentId),
    Project(ProjectId),
}

/// What is reviewed: the commands, the revision of each [`Subject`] they change that they were
/// based on (keyed by [`Subject::key`]), and when they go live (`None`: when committed). An
/// approval is for exactly this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Content {
    pub commands: Vec<StoredCommand>,
    pub base_versions: BTreeMap<String, u64>,
    /// Microseconds since the Unix epoch (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_from_micros: Option<i64>,
}

/// What one proposed command changes, at the grain a conflict is judged: a feature's state in an
/// environment (its state and its segment overrides), one identity's override of a feature, a
/// feature's or a segment's definition. A request is stale only when one of *its* subjects
/// changed since it was opened, not when something else in the same stream did.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    FeatureState {
        environment_id: EnvironmentId,
        feature_id: FeatureId,
    },
    /// `identity` is the identity's reference.
    IdentityOverride {
        environment_id: EnvironmentId,
        identity: String,
        feature_id: FeatureId,
    },
    /// An identity's erasure: it changes every override of the identity.
    Identity {
        environment_id: EnvironmentId,
        identity: String,
    },
    FeatureDefinition {
        project_id: ProjectId,
        feature_id: FeatureId,
    },
    SegmentDefinition {
        project_id: ProjectId,
        segment_id: SegmentId,
    },
}

impl Subject {
    /// What `command` changes; `None` for a command that creates (nothing to be stale against)
    /// or changes no feature or segment (a rename, a key, settings), and for an identity command
    /// naming the identity by identifier (the write side resolves those to references first).
    pub fn of(command: &Command) -> Option<Subject> {
        match command {
            Command::Directory(_) => None,
            Command::Project(c) => match c {
                ProjectCommand::UpdateFeature {
                    project_id,
                    feature_id,
                    ..
                }
                | ProjectCommand::DeleteFeature {
                    project_id,
                    feature_id,
                } => Some(Subject::FeatureDefinition {
                    project_id: *project_id,
                    feature_id: *feature_id,
                }),
                ProjectCommand::UpdateSegment {
                    project_id,
                    segment_id,
                    ..
                }
                | ProjectCommand::DeleteSegment {
                    project_id,
                    segment_id,
                } => Some(Subject::SegmentDefinition {
                    project_id: *project_id,
                    segment_id: *segment_id,
                }),
                ProjectCommand::UpdateProject { .. }
                | ProjectCommand::CreateFeature { .. }
                | ProjectCommand::CreateSegment { .. } => None,
            },
            Command::Environment(c) => match c {
                EnvironmentCommand::SetFeatureState {
                    environment_id,
                    feature_id,
                    ..
                }
                | EnvironmentCommand::SetSegmentOverride {
                    environment_id,
                    feature_id,
                    ..
                }
                | EnvironmentCommand::RemoveSegmentOverride {
                    environment_id,
                    feature_id,
                    ..
                } => Some(Subject::FeatureState {
                    environment_id: *environment_id,
                    feature_id: *feature_id,
                }),
                EnvironmentCommand::RenameEnvironment { .. }
                | EnvironmentCommand::IssueServerSideKey { .. }
                | EnvironmentCommand::UpdateEnvironmentSettings { .. } => None,
            },
            Command::Identity(c) => {
                let identity = c.identity().reference()?.to_string();
                let environment_id = c.environment_id();
                Some(match c {
                    IdentityCommand::SetIdentityOverride { feature_id, .. }
                    | IdentityCommand::RemoveIdentityOverride { feature_id, .. } => {
                        Subject::IdentityOverride {
                            environment_id,
                            identity,
                            feature_id: *feature_id,
                        }
                    }
                    IdentityCommand::EraseIdentity { .. } => Subject::Identity {
                        environment_id,
                        identity,
                    },
                })
            }
        }
    }

    /// The subject's key in a request's `base_versions`: its stream, `/`, what in it.
    pub fn key(&self) -> String {
        match self {
            Subject::FeatureState {
                environment_id,
                feature_id,
            } => format!(
                "{}/feature-{feature_id}",
                environment::stream(*environment_id)
            ),
            Subject::IdentityOverride {
                environment_id,
                identity,
                feature_id,
            } => format!(
                "{}/feature-{feature_id}",
                identity::stream(*environment_id, identity)
            ),
            Subject::Identity {
                environment_id,
                identity,
            } => identity::stream(*environment_id, identity),
            Subject::FeatureDefinition {
                project_id,
                feature_id,
            } => format!("{}/feature-{feature_id}", project::stream(*project_id)),
            Subject::SegmentDefinition {
                project_id,
                segment_id,
            } => format!("{}/segment-{segment_id}", project::stream(*project_id)),
        }
    }

    /// The stream the subject lives in.
    pub fn stream(&self) -> String {
        match self {
            Subject::FeatureState { environment_id, .. } => environment::stream(*environment_id),
            Subject::IdentityOverride {
                environment_id,
                identity,
                ..
            }
            | Subject::Identity {
                environment_id,
                identity,
            } => identity::stream(*environment_id, identity),
            Subject::FeatureDefinition { project_id, .. }
            | Subject::SegmentDefinition { project_id, .. } => project::stream(*project_id),
        }
    }

    /// How a person names it, for a conflict's message.
    pub fn describe(&self) -> String {
        match self {
            Subject::FeatureState {
                environment_id,
                feature_id,
            } => format!("feature {feature_id} in environment {environment_id}"),
            Subject::IdentityOverride {
                environment_id,
                identity,
                feature_id,
            } => format!(
                "identity {identity}'s override of feature {feature_id} in environment {environment_id}"
            ),
            Subject::Identity {
                environment_id,
                identity,
            } => format!("identity {identity} in environment {environment_id}"),
            Subject::FeatureDefinition { feature_id, .. } => {
                format!("the definition of feature {feature_id}")
            }
            Subject::SegmentDefinition { segment_id, .. } => format!("segment {segment_id}"),
        }
    }
}

/// Hex SHA-256 of the content's canonical JSON: what an approval is bound to.
pub fn content_hash(content: &Content) -> String {
    let json = serde_json::to_value(content).unwrap_or_default();
    hex::encode(Sha256::digest(canonical_json(&json).as_bytes()))
}

/// Why approvals were withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Withdrawal {
    /// The approver took it back.
    ByApprover,
    /// The content changed (an edit or a rebase): the approval was for something else.
    ContentChanged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ChangeRequestEvent {
    ChangeRequestOpened {
        id: ChangeRequestId,
        scope: Scope,
        title: String,
        #[serde(default)]
        description: String,
        author: UserId,
        content: Content,
        content_hash: String,
    },
    ReviewersAssigned {
        reviewers: Vec<UserId>,
    },
    ChangeRequestEdited {
        title: String,
        description: String,
        content: Content,
        content_hash: String,
    },
    ApprovalGiven {
        user_id: UserId,
        content_hash: String,
    },
    ApprovalWithdrawn {
        user_id: UserId,
        why: Withdrawal,
    },
    CommentAdded {
        user_id: UserId,
        text: String,
    },
    ChangeRequestRejected {
        user_id: UserId,
        reason: String,
    },
    ChangeRequestClosed {
        user_id: UserId,
    },
    /// Committed and applied: the applied events are in the same append.
    ChangeRequestCommitted {
        approvers: Vec<UserId>,
        content_hash: String,
    },
    /// Committed to go live at the content's `live_from`; the scheduler applies it then.
    ChangeRequestScheduled {
        approvers: Vec<UserId>,
        content_hash: String,
        live_from_micros: i64,
    },
    ScheduleCancelled {
        user_id: UserId,
    },
    /// A scheduled change that could not be applied: nothing of it was.
    ChangeRequestFailed {
        reason: String,
    },
}

impl DomainEvent for ChangeRequestEvent {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Open,
    Scheduled,
    Committed,
    Rejected,
    Closed,
    Failed,
}

impl Status {
    /// Whether the request can still be edited, reviewed and committed.
    pub fn is_open(self) -> bool {
        self == Status::Open
    }
}

#[derive(Debug, Clone, Default)]
pub struct ChangeRequest {
    pub id: ChangeRequestId,
    pub scope: Option<Scope>,
    pub title: String,
    pub description: String,
    pub author: UserId,
    pub content: Content,
    pub content_hash: String,
    pub reviewers: BTreeSet<UserId>,
    /// Who approved, and the content hash each approval is for.
    pub approvals: BTreeMap<UserId, String>,
    pub comments: Vec<(UserId, String)>,
    pub status: Status,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    pub exists: bool,
}

impl Aggregate for ChangeRequest {
    type Event = ChangeRequestEvent;

    fn apply(&mut self, event: &ChangeRequestEvent) {
        match event {
            ChangeRequestEvent::ChangeRequestOpened {
                id,
                scope,
                title,
                description,
                author,
                content,
                content_hash,
            } => {
                self.id = *id;
                self.scope = Some(*scope);
                self.title = title.clone();
                self.description = description.clone();
                self.author = *author;
                self.content = content.clone();
                self.content_hash = content_hash.clone();
                self.exists = true;
            }
            ChangeRequestEvent::ReviewersAssigned { reviewers } => {
                self.reviewers.extend(reviewers.iter().copied());
            }
            ChangeRequestEvent::ChangeRequestEdited {
                title,
                description,
                content,
                content_hash,
            } => {
                self.title = title.clone();
                self.description = description.clone();
                self.content = content.clone();
                self.content_hash = content_hash.clone();
            }
            ChangeRequestEvent::ApprovalGiven {
                user_id,
                content_hash,
            } => {
                self.approvals.insert(*user_id, content_hash.clone());
            }
            ChangeRequestEvent::ApprovalWithdrawn { user_id, .. } => {
                self.approvals.remove(user_id);
            }
            ChangeRequestEvent::CommentAdded { user_id, text } => {
                self.comments.push((*user_id, text.clone()));
            }
            ChangeRequestEvent::ChangeRequestRejected { reason, .. } => {
                self.status = Status::Rejected;
                self.reason = Some(reason.clone());
            }
            ChangeRequestEvent::ChangeRequestClosed { .. } => self.status = Status::Closed,
            ChangeRequestEvent::ChangeRequestCommitted { .. } => self.status = Status::Committed,
            ChangeRequestEvent::ChangeRequestScheduled { .. } => self.status = Status::Scheduled,
            ChangeRequestEvent::ScheduleCancelled { .. } => self.status = Status::Open,
            ChangeRequestEvent::ChangeRequestFailed { reason } => {
                self.status = Status::Failed;
                self.reason = Some(reason.clone());
            }
        }
    }
}

impl ChangeRequest {
    /// The approvals that are for the current content.
    pub fn current_approvals(&self) -> impl Iterator<Item = UserId> + '_ {
        self.approvals
            .iter()
            .filter(|(_, hash)| **hash == self.content_hash)
            .map(|(user, _)| *user)
    }
}

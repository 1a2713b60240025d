//! Commands on a change request, and the one decision function for them. What a decision reads
//! besides the request itself (who acts and with which role, the approval policy in force, who
//! holds the approver role now, the current versions of the streams the request touches, the
//! time) comes in [`ChangeRequestFacts`], looked up by the executor.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::change_request::{
    ChangeRequest, ChangeRequestEvent, ChangeRequestId, Content, Scope, Status, Subject,
    Withdrawal, content_hash,
};
use crate::command::{Command, StoredCommand};
use crate::error::{Error, Result};
use crate::model::{UserId, validate_name};

/// Longest comment, rejection or failure reason accepted.
pub const MAX_TEXT_LEN: usize = 10_000;

#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::VariantNames, strum::IntoStaticStr,
)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ChangeRequestCommand {
    OpenChangeRequest {
        change_request_id: ChangeRequestId,
        scope: Scope,
        title: String,
        #[serde(default)]
        description: String,
        commands: Vec<Command>,
        /// The version of each stream the commands write, as the author saw it.
        base_versions: BTreeMap<String, u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        live_from_micros: Option<i64>,
        #[serde(default)]
        reviewers: Vec<UserId>,
    },
    AssignReviewers {
        change_request_id: ChangeRequestId,
        reviewers: Vec<UserId>,
    },
    /// Replaces title, description and content; approvals of other content are withdrawn.
    EditChangeRequest {
        change_request_id: ChangeRequestId,
        title: String,
        #[serde(default)]
        description: String,
        commands: Vec<Command>,
        base_versions: BTreeMap<String, u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        live_from_micros: Option<i64>,
    },
    ApproveChangeRequest {
        change_request_id: ChangeRequestId,
    },
    WithdrawApproval {
        change_request_id: ChangeRequestId,
    },
    CommentOnChangeRequest {
        change_request_id: ChangeRequestId,
        text: String,
    },
    RejectChangeRequest {
        change_request_id: ChangeRequestId,
        reason: String,
    },
    CloseChangeRequest {
        change_request_id: ChangeRequestId,
    },
    /// Applies the request now, or schedules it when its `live_from` is still ahead.
    CommitChangeRequest {
        change_request_id: ChangeRequestId,
    },
    CancelSchedule {
        change_request_id: ChangeRequestId,
    },
    /// The scheduler's: applies a scheduled request whose time has come, or fails it when a
    /// stream it touches moved.
    ApplyScheduledChange {
        change_request_id: ChangeRequestId,
    },
}

/// Who decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    /// A service token: change requests are people's, so it neither opens nor approves one.
    ServiceToken,
    Scheduler,
}

/// How many approvals a commit needs, and from whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApprovalPolicy {
    pub minimum_approvals: u32,
    pub assigned_reviewers_only: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ChangeRequestFacts<'a> {
    pub actor: Actor,
    /// Whether the actor holds the approver role on the request's scope now.
    pub actor_is_approver: bool,
    /// Whether the actor administers the scope (may edit, close or unschedule others' requests).
    pub actor_is_admin: bool,
    /// The policy in force now (not when the request was opened).
    pub policy: ApprovalPolicy,
    /// The users who hold the approver role on the scope now.
    pub approvers: &'a BTreeSet<UserId>,
    /// The current version of each stream in the request's base versions.
    pub current_versions: &'a BTreeMap<String, u64>,
    pub now_micros: i64,
}

impl ChangeRequestCommand {
    pub fn change_request_id(&self) -> ChangeRequestId {
        match self {
            ChangeRequestCommand::OpenChangeRequest {
                change_request_id, ..
            }
            | ChangeRequestCommand::AssignReviewers {
                change_request_id, ..
            }
            | ChangeRequestCommand::EditChangeRequest {
                change_request_id, ..
            }
            | ChangeRequestCommand::ApproveChangeRequest { change_request_id }
            | ChangeRequestCommand::WithdrawApproval { change_request_id }
            | ChangeRequestCommand::CommentOnChangeRequest {
                change_request_id, ..
            }
            | ChangeRequestCommand::RejectChangeRequest {
                change_request_id, ..
            }
            | ChangeRequestCommand::CloseChangeRequest { change_request_id }
            | ChangeRequestCommand::CommitChangeRequest { change_request_id }
            | ChangeRequestCommand::CancelSchedule { change_request_id }
            | ChangeRequestCommand::ApplyScheduledChange { change_request_id } => {
                *change_request_id
            }
        }
    }
}

/// Decides a change-request command.
pub fn decide(
    request: &ChangeRequest,
    command: &ChangeRequestCommand,
    facts: &ChangeRequestFacts<'_>,
) -> Result<Vec<ChangeRequestEvent>> {
    let id = command.change_request_id();
    if matches!(command, ChangeRequestCommand::OpenChangeRequest { .. }) {
        return decide_open(request, command, facts);
    }
    if !request.exists || request.id != id {
        return Err(Error::not_found("change request", id));
    }
    let by_author_or_admin = || match facts.actor {
        Actor::User(user) if user == request.author || facts.actor_is_admin => Ok(user),
        _ => Err(Error::forbidden(
            "only the request's author or an admin may do this",
        )),
    };
    match command {
        ChangeRequestCommand::OpenChangeRequest { .. } => decide_open(request, command, facts),
        ChangeRequestCommand::CancelSchedule { .. } => {
            if request.status != Status::Scheduled {
                return Err(not_in(request, "scheduled"));
            }
            let user_id = by_author_or_admin()?;
            Ok(vec![ChangeRequestEvent::ScheduleCancelled { user_id }])
        }
        ChangeRequestCommand::ApplyScheduledChange { .. } => apply_scheduled(request, facts),
        ChangeRequestCommand::EditChangeRequest {
            title,
            description,
            commands,
            base_versions,
            live_from_micros,
            ..
        } => {
            if !request.status.is_open() && request.status != Status::Scheduled {
                return Err(not_in(request, "open or scheduled"));
            }
            let user_id = by_author_or_admin()?;
            validate_name("title", title)?;
            let scope = request
                .scope
                .ok_or_else(|| Error::not_found("change request", id))?;
            let content = content_of(scope, commands, base_versions, *live_from_micros)?;
            let hash = content_hash(&content);
            if hash == request.content_hash
                && title.trim() == request.title
                && *description == request.description
            {
                return Ok(vec![]);
            }
            let withdrawn: Vec<_> = if hash == request.content_hash {
                vec![]
            } else {
                request
                    .approvals
                    .keys()
                    .map(|user_id| ChangeRequestEvent::ApprovalWithdrawn {
                        user_id: *user_id,
                        why: Withdrawal::ContentChanged,
                    })
                    .collect()
            };
            // Any change of the content (the commands, their base, the time) takes a scheduled
            // request off the schedule: it goes live only once approved and committed again.
            let unscheduled = (request.status == Status::Scheduled && hash != request.content_hash)
                .then_some(ChangeRequestEvent::ScheduleCancelled { user_id });
            let mut events: Vec<_> = unscheduled.into_iter().collect();
            events.push(ChangeRequestEvent::ChangeRequestEdited {
                title: title.trim().to_string(),
                description: description.clone(),
                content,
                content_hash: hash,
            });
            events.extend(withdrawn);
            Ok(events)
        }
        _ if !request.status.is_open() => Err(not_in(request, "open")),
        ChangeRequestCommand::AssignReviewers { reviewers, .. } => {
            by_author_or_admin()?;
            assignment(request.author, &request.reviewers, reviewers)
        }
        ChangeRequestCommand::ApproveChangeRequest { .. } => {
            let user_id = match facts.actor {
                Actor::User(user) => user,
                _ => {
                    return Err(Error::forbidden(
                        "an approval is a person's: use a user's token",
                    ));
                }
            };
            if user_id == request.author {
                return Err(Error::forbidden(
                    "the author of a change request cannot approve it",
                ));
            }
            if !facts.actor_is_approver {
                return Err(Error::forbidden("approving needs the approver role"));
            }
            if facts.policy.assigned_reviewers_only && !request.reviewers.contains(&user_id) {
                return Err(Error::forbidden(
                    "only the reviewers assigned to this request may approve it",
                ));
            }
            if request.approvals.get(&user_id) == Some(&request.content_hash) {
                return Err(Error::conflict(
                    "approval",
                    "you already approved this content",
                ));
            }
            Ok(vec![ChangeRequestEvent::ApprovalGiven {
                user_id,
                content_hash: request.content_hash.clone(),
            }])
        }
        ChangeRequestCommand::WithdrawApproval { .. } => match facts.actor {
            Actor::User(user_id) if request.approvals.contains_key(&user_id) => {
                Ok(vec![ChangeRequestEvent::ApprovalWithdrawn {
                    user_id,
                    why: Withdrawal::ByApprover,
                }])
            }
            _ => Err(Error::not_found("approval", "of yours on this request")),
        },
        ChangeRequestCommand::CommentOnChangeRequest { text, .. } => {
            let Actor::User(user_id) = facts.actor else {
                return Err(Error::forbidden("a comment is a user's"));
            };
            Ok(vec![ChangeRequestEvent::CommentAdded {
                user_id,
                text: validated_text("text", text)?,
            }])
        }
        ChangeRequestCommand::RejectChangeRequest { reason, .. } => match facts.actor {
            Actor::User(user_id) if facts.actor_is_approver && user_id != request.author => {
                Ok(vec![ChangeRequestEvent::ChangeRequestRejected {
                    user_id,
                    reason: validated_text("reason", reason)?,
                }])
            }
            _ => Err(Error::forbidden(
                "rejecting needs the approver role (an author closes their own request)",
            )),
        },
        ChangeRequestCommand::CloseChangeRequest { .. } => {
            let user_id = by_author_or_admin()?;
            Ok(vec![ChangeRequestEvent::ChangeRequestClosed { user_id }])
        }
        ChangeRequestCommand::CommitChangeRequest { .. } => {
            if !matches!(facts.actor, Actor::User(_)) {
                return Err(Error::forbidden("a change request is committed by a user"));
            }
            let approvers = enough_approvals(request, facts)?;
            check_base_versions(request, facts)?;
            Ok(match request.content.live_from_micros {
                Some(live_from_micros) if live_from_micros > facts.now_micros => {
                    vec![ChangeRequestEvent::ChangeRequestScheduled {
                        approvers,
                        content_hash: request.content_hash.clone(),
                        live_from_micros,
                    }]
                }
                _ => vec![ChangeRequestEvent::ChangeRequestCommitted {
                    approvers,
                    content_hash: request.content_hash.clone(),
                }],
            })
        }
    }
}

fn decide_open(
    request: &ChangeRequest,
    command: &ChangeRequestCommand,
    facts: &ChangeRequestFacts<'_>,
) -> Result<Vec<ChangeRequestEvent>> {
    let id = command.change_request_id();
    if let ChangeRequestCommand::OpenChangeRequest {
        scope,
        title,
        description,
        commands,
        base_versions,
        live_from_micros,
        reviewers,
        ..
    } = command
    {
        if request.exists {
            return Err(Error::conflict(
                "change_request_id",
                format!("change request {id} exists"),
            ));
        }
        let Actor::User(author) = facts.actor else {
            return Err(Error::forbidden("a change request is opened by a user"));
        };
        validate_name("title", title)?;
        let content = content_of(*scope, commands, base_versions, *live_from_micros)?;
        let hash = content_hash(&content);
        let mut events = vec![ChangeRequestEvent::ChangeRequestOpened {
            id,
            scope: *scope,
            title: title.trim().to_string(),
            description: description.clone(),
            author,
            content,
            content_hash: hash,
        }];
        events.extend(assignment(author, &BTreeSet::new(), reviewers)?);
        Ok(events)
    } else {
        Err(Error::invalid("type", "not an open_change_request"))
    }
}

fn not_in(request: &ChangeRequest, wanted: &str) -> Error {
    Error::conflict(
        "status",
        format!(
            "change request {} is {}, not {wanted}",
            request.id,
            serde_json::to_value(request.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        ),
    )
}

fn validated_text(field: &str, text: &str) -> Result<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_TEXT_LEN} characters"),
        ));
    }
    Ok(text.to_string())
}

/// The reviewers newly assigned, as an event; the author cannot review their own request.
fn assignment(
    author: UserId,
    assigned: &BTreeSet<UserId>,
    reviewers: &[UserId],
) -> Result<Vec<ChangeRequestEvent>> {
    if reviewers.contains(&author) {
        return Err(Error::invalid(
            "reviewers",
            "the author cannot review their own request",
        ));
    }
    let new: BTreeSet<UserId> = reviewers
        .iter()
        .copied()
        .filter(|r| !assigned.contains(r))
        .collect();
    if new.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![ChangeRequestEvent::ReviewersAssigned {
        reviewers: new.into_iter().collect(),
    }])
}

/// The content of a request: commands that all change `scope`, stored with their schema version.
fn content_of(
    scope: Scope,
    commands: &[Command],
    base_versions: &BTreeMap<String, u64>,
    live_from_micros: Option<i64>,
) -> Result<Content> {
    if commands.is_empty() {
        return Err(Error::invalid(
            "commands",
            "a change request proposes at least one command",
        ));
    }
    let mut stored = Vec::with_capacity(commands.len());
    for (i, command) in commands.iter().enumerate() {
        let in_scope = match (scope, command) {
            (Scope::Environment(env), Command::Environment(c)) => c.environment_id() == env,
            (Scope::Environment(env), Command::Identity(c)) => c.environment_id() == env,
            (Scope::Project(project), Command::Project(c)) => c.project_id() == project,
            _ => false,
        };
        if in_scope && !crate::access::changes_what_is_served(command) {
            return Err(Error::invalid(
                format!("commands[{i}]"),
                format!(
                    "{} does not change what is served: it needs no review, apply it directly",
                    command.type_name()
                ),
            ));
        }
        if !in_scope {
            return Err(Error::invalid(
                format!("commands[{i}]"),
                format!(
                    "{} does not change this request's {}",
                    command.type_name(),
                    match scope {
                        Scope::Environment(id) => format!("environment {id}"),
                        Scope::Project(id) => format!("project {id}"),
                    }
                ),
            ));
        }
        stored.push(
            StoredCommand::new(command)
                .map_err(|e| Error::invalid(format!("commands[{i}]"), e.0))?,
        );
    }
    Ok(Content {
        commands: stored,
        base_versions: base_versions.clone(),
        live_from_micros,
    })
}

/// The approvals that count: of the current content, by users other than the author who are
/// approvers now (and assigned, when the policy says so).
pub fn counted_approvals(
    request: &ChangeRequest,
    policy: ApprovalPolicy,
    approvers: &BTreeSet<UserId>,
) -> Vec<UserId> {
    request
        .current_approvals()
        .filter(|user| *user != request.author && approvers.contains(user))
        .filter(|user| !policy.assigned_reviewers_only || request.reviewers.contains(user))
        .collect()
}

/// The approvals a commit counts; refused when fewer than the policy's minimum.
fn enough_approvals(
    request: &ChangeRequest,
    facts: &ChangeRequestFacts<'_>,
) -> Result<Vec<UserId>> {
    let counted = counted_approvals(request, facts.policy, facts.approvers);
    let needed = facts.policy.minimum_approvals as usize;
    if counted.len() < needed {
        return Err(Error::conflict(
            "approvals",
            format!(
                "this request needs {needed} approval{} of its current content by current approvers; it has {}",
                if needed == 1 { "" } else { "s" },
                counted.len()
            ),
        ));
    }
    Ok(counted)
}

/// A subject of a request that changed since the revision the request was based on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The subject's key in `base_versions`.
    pub key: String,
    /// How a person names it ("feature 7 in environment 3").
    pub subject: String,
    pub base_revision: u64,
    pub current_revision: u64,
}

/// The subjects of `request` that moved since its base, given their current revisions.
pub fn conflicts(request: &ChangeRequest, current: &BTreeMap<String, u64>) -> Vec<Conflict> {
    let mut described: BTreeMap<String, String> = BTreeMap::new();
    for stored in &request.content.commands {
        if let Some(subject) = stored.decode().ok().as_ref().and_then(Subject::of) {
            described.insert(subject.key(), subject.describe());
        }
    }
    request
        .content
        .base_versions
        .iter()
        .filter_map(|(key, base)| {
            let now = current.get(key).copied().unwrap_or(0);
            (now != *base).then(|| Conflict {
                key: key.clone(),
                subject: described.get(key).cloned().unwrap_or_else(|| key.clone()),
                base_revision: *base,
                current_revision: now,
            })
        })
        .collect()
}

/// Refuses when a subject of the request changed since the revision it was based on.
fn check_base_versions(request: &ChangeRequest, facts: &ChangeRequestFacts<'_>) -> Result<()> {
    let moved: Vec<String> = conflicts(request, facts.current_versions)
        .into_iter()
        .map(|c| {
            format!(
                "{} was at revision {} and is now at revision {}",
                c.subject, c.base_revision, c.current_revision
            )
        })
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    Err(Error::conflict(
        "base_versions",
        format!("the request is stale: {}; rebase it", moved.join("; ")),
    ))
}

fn apply_scheduled(
    request: &ChangeRequest,
    facts: &ChangeRequestFacts<'_>,
) -> Result<Vec<ChangeRequestEvent>> {
    if facts.actor != Actor::Scheduler {
        return Err(Error::forbidden(
            "only the scheduler applies a scheduled change",
        ));
    }
    if request.status != Status::Scheduled {
        return Err(not_in(request, "scheduled"));
    }
    let live_from = request.content.live_from_micros.unwrap_or(i64::MIN);
    if live_from > facts.now_micros {
        return Err(Error::conflict("live_from", "this change is not due yet"));
    }
    let approvers: Vec<UserId> = request.current_approvals().collect();
    Ok(match check_base_versions(request, facts) {
        Ok(()) => vec![ChangeRequestEvent::ChangeRequestCommitted {
            approvers,
            content_hash: request.content_hash.clone(),
        }],
        Err(Error::Conflict { message, .. }) => {
            vec![ChangeRequestEvent::ChangeRequestFailed { reason: message }]
        }
        Err(other) => return Err(other),
    })
}

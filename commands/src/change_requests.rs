//! Executing change-request commands: the facts their decisions read (the actor's role, the
//! approval policy and the approvers in force now, the current revision of every subject the
//! request changes, the time), and the commit, which applies the proposed commands and records
//! the commit in one atomic append whose every event names the request and its approvers.
//!
//! The executor fills in what only it can know: a new request's id (reserved in the directory in
//! the same append) and the revisions its commands are based on. The proposed commands are tried
//! when a request is opened or edited, so a request that could never be applied is refused then,
//! not at commit.

use std::collections::{BTreeMap, BTreeSet};

use domain::access::Review;
use domain::change_request::{
    self, ChangeRequest, ChangeRequestEvent, ChangeRequestId, Scope, Subject,
};
use domain::command::Command;
use domain::command::change_request::{
    Actor, ApprovalPolicy, ChangeRequestCommand, ChangeRequestFacts, Conflict, conflicts,
};
use domain::directory::{self, Directory, DirectoryEvent};
use domain::log::Metadata;
use domain::model::UserId;

use crate::Commands;
use crate::error::{Error, Result};
use crate::handlers::{Decision, Executed, ReviewedBy};
use crate::store::Loaded;
use crate::workspace::Workspace;

/// What executing a change-request command did.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRequestExecuted {
    pub change_request_id: ChangeRequestId,
    pub executed: Executed,
}

impl Commands {
    /// The change request, if it exists.
    pub async fn change_request(&self, id: ChangeRequestId) -> Result<Loaded<ChangeRequest>> {
        let loaded: Loaded<ChangeRequest> = self.store().load(&change_request::stream(id)).await?;
        if !loaded.state.exists {
            return Err(domain::Error::not_found("change request", id).into());
        }
        Ok(loaded)
    }

    /// The approval policy in force for a request of `scope`: the environment's settings, or
    /// the project's for its definitions.
    pub async fn approval_policy(&self, scope: Scope) -> Result<ApprovalPolicy> {
        Ok(match scope {
            Scope::Environment(id) => {
                let settings = self.environment(id).await?.state.settings;
                ApprovalPolicy {
                    minimum_approvals: settings.minimum_change_request_approvals,
                    assigned_reviewers_only: settings.approvals_from_assigned_reviewers_only,
                }
            }
            Scope::Project(id) => {
                let settings = self.project(id).await?.state.settings;
                ApprovalPolicy {
                    minimum_approvals: settings.minimum_change_request_approvals,
                    assigned_reviewers_only: settings.approvals_from_assigned_reviewers_only,
                }
            }
        })
    }

    /// The request's subjects that changed since its base: what a commit would refuse.
    pub async fn change_request_conflicts(&self, request: &ChangeRequest) -> Result<Vec<Conflict>> {
        let mut workspace = Workspace::new(self);
        let current = current_revisions(
            &mut workspace,
            request.content.base_versions.keys(),
            request,
        )
        .await?;
        Ok(conflicts(request, &current))
    }

    /// Executes `command` for `actor`. An `open_change_request` gets its id here (the one in the
    /// command is ignored) and, like an edit, the revisions its commands are based on; a
    /// `rebase` is an edit of nothing but the base, to the current revisions.
    pub async fn execute_change_request(
        &self,
        metadata: &Metadata,
        actor: Actor,
        command: &ChangeRequestCommand,
    ) -> Result<ChangeRequestExecuted> {
        // What a request proposes is stored in the log: identities go in by reference.
        let mut command = command.clone();
        if let ChangeRequestCommand::OpenChangeRequest { commands, .. }
        | ChangeRequestCommand::EditChangeRequest { commands, .. } = &mut command
        {
            self.resolve_identities(commands).await?;
        }
        let command = &command;
        if let ChangeRequestCommand::OpenChangeRequest { .. } = command {
            return self.open(metadata, actor, command).await;
        }
        let id = command.change_request_id();
        let stream = change_request::stream(id);
        let (_, position) = self
            .run(metadata, &stream, || self.decide(actor, command.clone()))
            .await?;
        Ok(ChangeRequestExecuted {
            change_request_id: id,
            executed: Executed {
                position,
                created: None,
            },
        })
    }

    /// The command that re-bases `id` on the current revisions of its subjects (approvals of
    /// the old base are withdrawn by the edit).
    pub async fn rebase_command(&self, id: ChangeRequestId) -> Result<ChangeRequestCommand> {
        let request = self.change_request(id).await?.state;
        let commands = decode_all(&request)?;
        Ok(ChangeRequestCommand::EditChangeRequest {
            change_request_id: id,
            title: request.title.clone(),
            description: request.description.clone(),
            commands,
            base_versions: BTreeMap::new(),
            live_from_micros: request.content.live_from_micros,
        })
    }

    async fn open(
        &self,
        metadata: &Metadata,
        actor: Actor,
        command: &ChangeRequestCommand,
    ) -> Result<ChangeRequestExecuted> {
        let (id, position) = self
            .run(metadata, directory::STREAM, || async {
                let directory = self.directory().await?;
                let id = directory.state.next_change_request_id();
                let ChangeRequestCommand::OpenChangeRequest {
                    scope,
                    title,
                    description,
                    commands,
                    live_from_micros,
                    reviewers,
                    ..
                } = command
                else {
                    return Err(Error::Storage("not an open_change_request".into()));
                };
                let project_id = directory.state.project_of_scope(*scope).ok_or_else(|| {
                    domain::Error::not_found(scope_kind(*scope), scope_id(*scope))
                })?;
                check_reviewers(&directory.state, project_id, reviewers)?;
                let mut workspace = Workspace::new(self);
                let base_versions = based_on(&mut workspace, commands, &BTreeMap::new()).await?;
                try_commands(self, commands).await?;
                let open = ChangeRequestCommand::OpenChangeRequest {
                    change_request_id: id,
                    scope: *scope,
                    title: title.clone(),
                    description: description.clone(),
                    commands: commands.clone(),
                    base_versions,
                    live_from_micros: *live_from_micros,
                    reviewers: reviewers.clone(),
                };
                let request: Loaded<ChangeRequest> =
                    self.store().load(&change_request::stream(id)).await?;
                let facts_inputs = FactsInputs::new(self, &directory.state, *scope, actor).await?;
                let events = domain::command::change_request::decide(
                    &request.state,
                    &open,
                    &facts_inputs.facts(actor, &BTreeMap::new()),
                )?;
                let registered = DirectoryEvent::ChangeRequestRegistered { id, scope: *scope };
                Ok(Decision {
                    writes: vec![directory.append(&[registered])?, request.append(&events)?],
                    expectations: vec![],
                    outcome: id,
                    reviewed_by: None,
                })
            })
            .await?;
        Ok(ChangeRequestExecuted {
            change_request_id: id,
            executed: Executed {
                position,
                created: None,
            },
        })
    }

    /// One decision on an existing request (everything but opening it).
    async fn decide(&self, actor: Actor, command: ChangeRequestCommand) -> Result<Decision<()>> {
        let id = command.change_request_id();
        let request = self.change_request(id).await?;
        let scope = request
            .state
            .scope
            .ok_or_else(|| domain::Error::not_found("change request", id))?;
        let directory = self.directory().await?;
        let inputs = FactsInputs::new(self, &directory.state, scope, actor).await?;
        let mut workspace = Workspace::new(self);

        let command = match command {
            ChangeRequestCommand::EditChangeRequest {
                change_request_id,
                title,
                description,
                commands,
                base_versions,
                live_from_micros,
            } => {
                // Kept subjects keep their base (a rebase passes none: all current); new ones
                // are based on what they are now.
                let kept = if base_versions.is_empty() {
                    BTreeMap::new()
                } else {
                    request.state.content.base_versions.clone()
                };
                let base_versions = based_on(&mut workspace, &commands, &kept).await?;
                try_commands(self, &commands).await?;
                ChangeRequestCommand::EditChangeRequest {
                    change_request_id,
                    title,
                    description,
                    commands,
                    base_versions,
                    live_from_micros,
                }
            }
            other => other,
        };

        let current = current_revisions(
            &mut workspace,
            request.state.content.base_versions.keys(),
            &request.state,
        )
        .await?;
        let facts = inputs.facts(actor, &current);
        let events = domain::command::change_request::decide(&request.state, &command, &facts)?;
        let applies = events
            .iter()
            .find_map(|event| match event {
                ChangeRequestEvent::ChangeRequestCommitted { approvers, .. } => Some(approvers),
                _ => None,
            })
            .cloned();

        let Some(approvers) = applies else {
            return Ok(Decision {
                writes: vec![request.append(&events)?],
                expectations: vec![],
                outcome: (),
                reviewed_by: None,
            });
        };
        // The commit: the proposed commands, decided in order on the current state, in the same
        // append as the request's own events.
        // Decided in the workspace the current revisions were read from, so that the append
        // expects the versions the conflict check saw.
        let mut events = events;
        if let Err(refusal) = apply_all(&mut workspace, &request.state).await {
            if matches!(actor, Actor::Scheduler) {
                let failed = ChangeRequestEvent::ChangeRequestFailed {
                    reason: format!("the change could not be applied: {refusal}"),
                };
                events = vec![failed];
                return Ok(Decision {
                    writes: vec![request.append(&events)?],
                    expectations: vec![],
                    outcome: (),
                    reviewed_by: None,
                });
            }
            return Err(refusal);
        }
        let mut decision = workspace.into_decision(())?;
        decision.writes.push(request.append(&events)?);
        // The approvers counted are the directory's: a role taken away meanwhile decides again.
        decision.expectations.push(directory.expectation());
        decision.reviewed_by = Some(ReviewedBy {
            change_request: request.stream_id.clone(),
            approvers: approvers.iter().map(|u| format!("user:{u}")).collect(),
        });
        Ok(decision)
    }
}

/// What the facts of a change-request decision are made of, looked up once per decision.
struct FactsInputs {
    policy: ApprovalPolicy,
    approvers: BTreeSet<UserId>,
    actor_is_approver: bool,
    actor_is_admin: bool,
}

impl FactsInputs {
    async fn new(
        commands: &Commands,
        directory: &Directory,
        scope: Scope,
        actor: Actor,
    ) -> Result<FactsInputs> {
        let project_id = directory
            .project_of_scope(scope)
            .ok_or_else(|| domain::Error::not_found(scope_kind(scope), scope_id(scope)))?;
        let policy = commands.approval_policy(scope).await?;
        let approvers = directory.approvers_of(project_id);
        let (actor_is_approver, actor_is_admin) = match actor {
            Actor::User(user) => {
                let org_admin = directory.users.get(&user).is_some_and(|u| u.is_admin);
                let role = directory.role_of(user, project_id);
                (
                    org_admin || approvers.contains(&user),
                    org_admin || role == Some(domain::access::Role::Admin),
                )
            }
            Actor::ServiceToken | Actor::Scheduler => (false, false),
        };
        Ok(FactsInputs {
            policy,
            approvers,
            actor_is_approver,
            actor_is_admin,
        })
    }

    fn facts<'a>(
        &'a self,
        actor: Actor,
        current_versions: &'a BTreeMap<String, u64>,
    ) -> ChangeRequestFacts<'a> {
        ChangeRequestFacts {
            actor,
            actor_is_approver: self.actor_is_approver,
            actor_is_admin: self.actor_is_admin,
            policy: self.policy,
            approvers: &self.approvers,
            current_versions,
            now_micros: now_micros(),
        }
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn scope_kind(scope: Scope) -> &'static str {
    match scope {
        Scope::Environment(_) => "environment",
        Scope::Project(_) => "project",
    }
}

fn scope_id(scope: Scope) -> u64 {
    match scope {
        Scope::Environment(id) | Scope::Project(id) => id,
    }
}

/// Reviewers must be users with the approver role on the project (or organisation admins).
fn check_reviewers(directory: &Directory, project_id: u64, reviewers: &[UserId]) -> Result<()> {
    let approvers = directory.approvers_of(project_id);
    for (i, reviewer) in reviewers.iter().enumerate() {
        if !approvers.contains(reviewer) {
            return Err(domain::Error::invalid(
                format!("reviewers[{i}]"),
                format!("user {reviewer} does not hold the approver role on project {project_id}"),
            )
            .into());
        }
    }
    Ok(())
}

/// The base of each command's subject: `kept` where it has one, the current revision otherwise.
async fn based_on(
    workspace: &mut Workspace<'_>,
    commands: &[Command],
    kept: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, u64>> {
    let mut base = BTreeMap::new();
    for subject in commands.iter().filter_map(Subject::of) {
        let key = subject.key();
        if base.contains_key(&key) {
            continue;
        }
        let revision = match kept.get(&key) {
            Some(kept) => *kept,
            None => workspace.revision(&subject).await?,
        };
        base.insert(key, revision);
    }
    Ok(base)
}

/// The current revision of each base key of `request`.
async fn current_revisions<'k>(
    workspace: &mut Workspace<'_>,
    keys: impl Iterator<Item = &'k String>,
    request: &ChangeRequest,
) -> Result<BTreeMap<String, u64>> {
    let keys: BTreeSet<&String> = keys.collect();
    let mut current = BTreeMap::new();
    for stored in &request.content.commands {
        let command = stored.decode()?;
        if let Some(subject) = Subject::of(&command) {
            let key = subject.key();
            if keys.contains(&key) && !current.contains_key(&key) {
                current.insert(key, workspace.revision(&subject).await?);
            }
        }
    }
    Ok(current)
}

/// Tries `commands` on the current state, as a commit would apply them, without appending.
async fn try_commands(commands: &Commands, proposed: &[Command]) -> Result<()> {
    Workspace::new(commands)
        .apply_each(proposed, Review::ChangeRequest)
        .await
}

/// Decides every command of `request` in order, in `workspace`.
async fn apply_all(workspace: &mut Workspace<'_>, request: &ChangeRequest) -> Result<()> {
    workspace
        .apply_each(&decode_all(request)?, Review::ChangeRequest)
        .await
}

pub(crate) fn decode_all(request: &ChangeRequest) -> Result<Vec<Command>> {
    request
        .content
        .commands
        .iter()
        .map(|stored| stored.decode().map_err(Error::from))
        .collect()
}

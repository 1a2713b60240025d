//! Reverting a committed change request: the commands that put back, for everything it changed,
//! what was there just before its commit, proposed as a new change request based on the current
//! revisions. A feature's state in an environment is restored whole (its state and its segment
//! overrides), an identity's override is set back or removed. Reverting changes of feature or
//! segment definitions is refused: a deleted feature cannot get its id back, and an edit of a
//! definition is better proposed by hand.

use domain::change_request::{self, ChangeRequestId, Status, Subject};
use domain::command::Command;
use domain::command::change_request::ChangeRequestCommand;
use domain::command::identity::IdentityCommand;
use domain::environment::{self, Environment};
use domain::feature_version::{PublishedState, restore_commands, state_input};
use domain::identity::{self, IdentityOverrides};
use domain::log::RecordedEvent;

use crate::Commands;
use crate::error::{Error, Result};

impl Commands {
    /// A new change request (to be opened by the caller) reverting committed request `id`.
    pub async fn revert_command(&self, id: ChangeRequestId) -> Result<ChangeRequestCommand> {
        let request = self.change_request(id).await?.state;
        if request.status != Status::Committed {
            return Err(domain::Error::conflict(
                "status",
                format!("change request {id} is not committed: there is nothing to revert"),
            )
            .into());
        }
        let commit = self.commit_record(id).await?;
        let mut subjects: Vec<Subject> = Vec::new();
        for stored in &request.content.commands {
            if let Some(subject) = Subject::of(&stored.decode()?)
                && !subjects.contains(&subject)
            {
                subjects.push(subject);
            }
        }
        let mut commands = Vec::new();
        for subject in &subjects {
            commands.extend(self.undo(subject, &commit).await?);
        }
        if commands.is_empty() {
            return Err(domain::Error::conflict(
                "commands",
                format!("what change request {id} changed is already as it was before it"),
            )
            .into());
        }
        Ok(ChangeRequestCommand::OpenChangeRequest {
            change_request_id: 0,
            scope: request
                .scope
                .ok_or_else(|| domain::Error::not_found("change request", id))?,
            title: format!("Revert: {}", request.title),
            description: format!("Reverts change request {id}."),
            commands,
            base_versions: Default::default(),
            live_from_micros: None,
            reviewers: request.reviewers.iter().copied().collect(),
        })
    }

    /// The log record of request `id`'s commit (or of its scheduled change going live).
    async fn commit_record(&self, id: ChangeRequestId) -> Result<RecordedEvent> {
        let records = self
            .store()
            .log()
            .read_stream(&change_request::stream(id), 0)
            .await?;
        records
            .into_iter()
            .find(|r| r.event_type == "ChangeRequestCommitted")
            .ok_or_else(|| Error::Storage(format!("change request {id} has no commit event")))
    }

    /// The commands that undo what the commit did to `subject`.
    async fn undo(&self, subject: &Subject, commit: &RecordedEvent) -> Result<Vec<Command>> {
        // The stream as it stood just before the commit's append.
        let before = |record: &RecordedEvent| {
            record.position < commit.position && !same_append(record, commit)
        };
        Ok(match subject {
            Subject::FeatureState {
                environment_id,
                feature_id,
            } => {
                let stream = environment::stream(*environment_id);
                let then: Environment = self.store().load_with(&stream, before).await?.state;
                let now = self.environment(*environment_id).await?.state;
                let project = self.project(now.project_id).await?.state;
                let feature = project.feature(*feature_id)?;
                restore_commands(
                    *environment_id,
                    *feature_id,
                    &PublishedState::of(&now, feature),
                    &PublishedState::of(&then, feature),
                )
            }
            Subject::IdentityOverride {
                environment_id,
                identifier,
                feature_id,
            } => {
                let stream = identity::stream(*environment_id, identifier);
                let then: IdentityOverrides = self.store().load_with(&stream, before).await?.state;
                let now: IdentityOverrides = self.store().load(&stream).await?.state;
                let (then, now) = (
                    then.overrides.get(feature_id),
                    now.overrides.get(feature_id),
                );
                if then == now {
                    return Ok(vec![]);
                }
                let command = match then {
                    Some(state) => IdentityCommand::SetIdentityOverride {
                        environment_id: *environment_id,
                        identifier: identifier.clone(),
                        feature_id: *feature_id,
                        state: state_input(state),
                    },
                    None => IdentityCommand::RemoveIdentityOverride {
                        environment_id: *environment_id,
                        identifier: identifier.clone(),
                        feature_id: *feature_id,
                    },
                };
                vec![Command::Identity(command)]
            }
            Subject::FeatureDefinition { .. } | Subject::SegmentDefinition { .. } => {
                return Err(domain::Error::conflict(
                    "commands",
                    format!(
                        "{} was changed by this request: reverting definitions is not supported; \
                         propose the inverse change in a new request",
                        subject.describe()
                    ),
                )
                .into());
            }
        })
    }
}

/// Whether `record` was written by the same append as `commit` (the change it applied).
fn same_append(record: &RecordedEvent, commit: &RecordedEvent) -> bool {
    record.recorded_at_micros == commit.recorded_at_micros && record.metadata == commit.metadata
}

//! Reverting a committed change request: the commands that put back, for everything it changed,
//! what was there just before its commit, proposed as a new change request based on the current
//! revisions. A feature's state in an environment is restored whole (its state and its segment
//! overrides), an identity's override is set back or removed, and a feature's or segment's
//! definition is put back (`domain::command::restore`): one the request created is deleted, one
//! it deleted is created again under its own id, one it changed is updated to what it was.

use domain::aggregate::DomainEvent;
use domain::change_request::{self, ChangeRequestId, Scope, Status, Subject};
use domain::command::Command;
use domain::command::change_request::ChangeRequestCommand;
use domain::command::identity::IdentityCommand;
use domain::command::restore::{restore_feature, restore_segment};
use domain::environment::{self, Environment};
use domain::feature_version::{PublishedState, restore_commands, state_input};
use domain::identity::{self, IdentityName, IdentityOverrides};
use domain::log::RecordedEvent;
use domain::model::ProjectId;
use domain::project::{self, Project, ProjectEvent};

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
        // What it changed, in the order it changed it. A project's request may have created
        // features or segments (no subject in its commands): its commit's events name them all.
        let mut subjects: Vec<Subject> = match request.scope {
            Some(Scope::Project(project_id)) => {
                self.definitions_written(project_id, &commit).await?
            }
            _ => request
                .content
                .commands
                .iter()
                .map(|stored| Ok(Subject::of(&stored.decode()?)))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
        };
        let mut seen = Vec::new();
        subjects.retain(|subject| {
            let new = !seen.contains(subject);
            seen.push(subject.clone());
            new
        });
        // Undone last change first.
        subjects.reverse();
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
            Subject::Identity { .. } => {
                return Err(domain::Error::invalid(
                    "position",
                    "an identity's erasure cannot be reverted: its identifier is gone",
                )
                .into());
            }
            Subject::IdentityOverride {
                environment_id,
                identity,
                feature_id,
            } => {
                let stream = identity::stream(*environment_id, identity);
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
                        identity: IdentityName::Identity(identity.clone()),
                        feature_id: *feature_id,
                        state: state_input(state),
                    },
                    None => IdentityCommand::RemoveIdentityOverride {
                        environment_id: *environment_id,
                        identity: IdentityName::Identity(identity.clone()),
                        feature_id: *feature_id,
                    },
                };
                vec![Command::Identity(command)]
            }
            Subject::FeatureDefinition {
                project_id,
                feature_id,
            } => {
                let (then, now) = self.project_then_and_now(*project_id, before).await?;
                restore_feature(*project_id, *feature_id, &then, &now)
                    .into_iter()
                    .collect()
            }
            Subject::SegmentDefinition {
                project_id,
                segment_id,
            } => {
                let (then, now) = self.project_then_and_now(*project_id, before).await?;
                restore_segment(*project_id, *segment_id, &then, &now)
                    .into_iter()
                    .collect()
            }
        })
    }
}

impl Commands {
    /// Project `id` as it stood just before `before` stops holding, and as it is now.
    async fn project_then_and_now(
        &self,
        id: ProjectId,
        before: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<(Project, Project)> {
        let then: Project = self
            .store()
            .load_with(&project::stream(id), before)
            .await?
            .state;
        Ok((then, self.project(id).await?.state))
    }

    /// The features and segments of project `id` that `commit`'s append created, changed or
    /// deleted.
    async fn definitions_written(
        &self,
        id: ProjectId,
        commit: &RecordedEvent,
    ) -> Result<Vec<Subject>> {
        let records = self
            .store()
            .log()
            .read_stream(&project::stream(id), 0)
            .await?;
        let mut subjects = Vec::new();
        for record in records.iter().filter(|r| same_append(r, commit)) {
            let (feature_id, segment_id) = match ProjectEvent::from_recorded(record)? {
                ProjectEvent::FeatureCreated { feature }
                | ProjectEvent::FeatureUpdated { feature } => (Some(feature.id), None),
                ProjectEvent::FeatureDeleted { id } => (Some(id), None),
                ProjectEvent::SegmentCreated { segment }
                | ProjectEvent::SegmentUpdated { segment } => (None, Some(segment.id)),
                ProjectEvent::SegmentDeleted { id } => (None, Some(id)),
                _ => (None, None),
            };
            subjects.extend(feature_id.map(|feature_id| Subject::FeatureDefinition {
                project_id: id,
                feature_id,
            }));
            subjects.extend(segment_id.map(|segment_id| Subject::SegmentDefinition {
                project_id: id,
                segment_id,
            }));
        }
        Ok(subjects)
    }
}

/// Whether `record` was written by the same append as `commit` (the change it applied).
fn same_append(record: &RecordedEvent, commit: &RecordedEvent) -> bool {
    record.recorded_at_micros == commit.recorded_at_micros && record.metadata == commit.metadata
}

//! Deciding one or several commands against the log as one unit: a [`Workspace`] loads each
//! aggregate a decision touches once, decides every command in turn on the states the earlier
//! ones produced, and turns the result into one atomic append that writes every stream that got
//! events and expects, unchanged, every other aggregate a decision read as a fact.
//!
//! A direct command is a workspace of one command; a change request's commit is a workspace of
//! all the commands it proposes (and the request's own events beside them), so "apply the
//! commands and record the commit" is one append that either happens whole or not at all.

use std::collections::BTreeMap;

use domain::access::{self, Review};
use domain::aggregate::Aggregate;
use domain::change_request::Subject;
use domain::command::{
    Command, EnvironmentCommand, EnvironmentFacts, IdentityCommand, IdentityFacts, ProjectCommand,
    ProjectFacts,
};
use domain::environment::Environment;
use domain::identity::{self, IdentityOverrides};
use domain::log::StreamAppend;
use domain::model::{EnvironmentId, ProjectId};
use domain::project::{Project, ProjectEvent};

use crate::Commands;
use crate::error::{Error, Result};
use crate::handlers::{Created, Decision};
use crate::store::Loaded;

/// An aggregate as loaded, its state after the events decided so far, and those events.
struct Staged<A: Aggregate> {
    loaded: Loaded<A>,
    state: A,
    events: Vec<A::Event>,
    /// A decision read it as a fact: the append must find it unchanged.
    expected: bool,
}

impl<A: Aggregate + Clone> Staged<A> {
    fn new(loaded: Loaded<A>) -> Self {
        Staged {
            state: loaded.state.clone(),
            loaded,
            events: Vec::new(),
            expected: false,
        }
    }

    fn record(&mut self, events: Vec<A::Event>) {
        for event in &events {
            self.state.apply(event);
        }
        self.events.extend(events);
    }

    fn append(&self) -> Result<Option<StreamAppend>> {
        if !self.events.is_empty() {
            Ok(Some(self.loaded.append(&self.events)?))
        } else if self.expected {
            Ok(Some(self.loaded.expectation()))
        } else {
            Ok(None)
        }
    }
}

pub(crate) struct Workspace<'a> {
    commands: &'a Commands,
    projects: BTreeMap<ProjectId, Staged<Project>>,
    environments: BTreeMap<EnvironmentId, Staged<Environment>>,
    /// By stream id.
    identities: BTreeMap<String, Staged<IdentityOverrides>>,
    /// What the last command applied created, if anything.
    pub created: Option<Created>,
}

impl<'a> Workspace<'a> {
    pub fn new(commands: &'a Commands) -> Self {
        Workspace {
            commands,
            projects: BTreeMap::new(),
            environments: BTreeMap::new(),
            identities: BTreeMap::new(),
            created: None,
        }
    }

    async fn load_project(&mut self, id: ProjectId) -> Result<()> {
        if !self.projects.contains_key(&id) {
            let loaded = self.commands.project(id).await?;
            self.projects.insert(id, Staged::new(loaded));
        }
        Ok(())
    }

    async fn load_environment(&mut self, id: EnvironmentId) -> Result<ProjectId> {
        if !self.environments.contains_key(&id) {
            let loaded = self.commands.environment(id).await?;
            self.environments.insert(id, Staged::new(loaded));
        }
        let project_id = self.environments[&id].state.project_id;
        self.load_project(project_id).await?;
        Ok(project_id)
    }

    async fn load_identity(
        &mut self,
        environment_id: EnvironmentId,
        reference: &str,
    ) -> Result<String> {
        let stream = identity::stream(environment_id, reference);
        if !self.identities.contains_key(&stream) {
            let loaded = self.commands.store().load(&stream).await?;
            self.identities.insert(stream.clone(), Staged::new(loaded));
        }
        Ok(stream)
    }

    /// Decides `command` on the states so far and records its events; `review` says how it
    /// reaches the log (four-eyes refuses a direct change of what is served where approvals are
    /// required). Directory commands are not decided here.
    pub async fn apply(&mut self, command: &Command, review: Review) -> Result<()> {
        self.created = None;
        match command {
            Command::Directory(_) => Err(Error::Storage(
                "a directory command cannot be part of a workspace".into(),
            )),
            Command::Project(c) => self.apply_project(command, c, review).await,
            Command::Environment(c) => self.apply_environment(command, c, review).await,
            Command::Identity(c) => self.apply_identity(command, c, review).await,
        }
    }

    async fn apply_project(
        &mut self,
        command: &Command,
        c: &ProjectCommand,
        review: Review,
    ) -> Result<()> {
        let project_id = c.project_id();
        self.load_project(project_id).await?;
        // The environments that may use what the command removes. A project's list of
        // environments is read from the directory without an expectation: an environment
        // created meanwhile uses nothing yet.
        let mut states = Vec::new();
        if c.reads_environments() {
            let directory = self.commands.directory().await?;
            for (id, (project, _)) in &directory.state.environments {
                if *project == project_id {
                    self.load_environment(*id).await?;
                    let staged = self
                        .environments
                        .get_mut(id)
                        .ok_or_else(|| Error::Storage("environment not loaded".into()))?;
                    staged.expected = true;
                    states.push(staged.state.clone());
                }
            }
        }
        let staged = self
            .projects
            .get_mut(&project_id)
            .ok_or_else(|| Error::Storage("project not loaded".into()))?;
        access::four_eyes(
            command,
            staged.state.settings.minimum_change_request_approvals,
            review,
        )?;
        let facts = ProjectFacts {
            environments: &states,
        };
        let events = domain::command::project::decide(&staged.state, c, &facts)?;
        self.created = events.iter().find_map(|event| match event {
            ProjectEvent::FeatureCreated { feature } => Some(Created::Feature {
                feature: feature.clone(),
            }),
            ProjectEvent::SegmentCreated { segment } => Some(Created::Segment { id: segment.id }),
            _ => None,
        });
        staged.record(events);
        Ok(())
    }

    async fn apply_environment(
        &mut self,
        command: &Command,
        c: &EnvironmentCommand,
        review: Review,
    ) -> Result<()> {
        let environment_id = c.environment_id();
        let project_id = self.load_environment(environment_id).await?;
        let (Some(env), Some(project)) = (
            self.environments.get_mut(&environment_id),
            self.projects.get_mut(&project_id),
        ) else {
            return Err(Error::Storage("environment not loaded".into()));
        };
        access::four_eyes(
            command,
            env.state.settings.minimum_change_request_approvals,
            review,
        )?;
        let facts = EnvironmentFacts {
            project: &project.state,
        };
        let events = domain::command::environment::decide(&env.state, c, &facts)?;
        if c.reads_project() {
            project.expected = true;
        }
        env.record(events);
        Ok(())
    }

    async fn apply_identity(
        &mut self,
        command: &Command,
        c: &IdentityCommand,
        review: Review,
    ) -> Result<()> {
        // A request stored before identities had references names them by identifier.
        let mut c = c.clone();
        self.commands.resolve_identity(&mut c).await?;
        let c = &c;
        let environment_id = c.environment_id();
        let project_id = self.load_environment(environment_id).await?;
        let stream = self
            .load_identity(environment_id, c.identity().resolved()?)
            .await?;
        let (Some(env), Some(project), Some(overrides)) = (
            self.environments.get_mut(&environment_id),
            self.projects.get_mut(&project_id),
            self.identities.get_mut(&stream),
        ) else {
            return Err(Error::Storage("identity not loaded".into()));
        };
        access::four_eyes(
            command,
            env.state.settings.minimum_change_request_approvals,
            review,
        )?;
        // Four-eyes read the environment's settings: a change of them meanwhile decides again.
        if review == Review::Direct {
            env.expected = true;
        }
        let facts = IdentityFacts {
            environment: &env.state,
            project: &project.state,
        };
        let events = domain::command::identity::decide(&overrides.state, c, &facts)?;
        if c.reads_project() {
            project.expected = true;
        }
        overrides.record(events);
        Ok(())
    }

    /// Decides `commands` in order, each on the states the earlier ones produced; a refusal
    /// names the command it refused (`commands[i]`).
    pub async fn apply_each(&mut self, commands: &[Command], review: Review) -> Result<()> {
        for (i, command) in commands.iter().enumerate() {
            self.apply(command, review)
                .await
                .map_err(|e| within_command(e, i))?;
        }
        Ok(())
    }

    /// The current revision of `subject` (with what this workspace decided so far): what a change
    /// request's base is compared with. The stream it was read from is expected unchanged by
    /// the append, so a decision taken on this revision cannot land after it moved.
    pub async fn revision(&mut self, subject: &Subject) -> Result<u64> {
        Ok(match subject {
            Subject::FeatureState {
                environment_id,
                feature_id,
            } => {
                self.load_environment(*environment_id).await?;
                self.environments
                    .get_mut(environment_id)
                    .map(|staged| {
                        staged.expected = true;
                        &staged.state
                    })
                    .ok_or_else(|| Error::Storage("loaded above".into()))?
                    .feature_revisions
                    .get(feature_id)
                    .copied()
                    .unwrap_or(0)
            }
            Subject::Identity {
                environment_id,
                identity,
            } => {
                let stream = self.load_identity(*environment_id, identity).await?;
                let staged = self
                    .identities
                    .get_mut(&stream)
                    .ok_or_else(|| Error::Storage("loaded above".into()))?;
                staged.expected = true;
                staged.state.revisions.values().sum::<u64>() + u64::from(staged.state.erased)
            }
            Subject::IdentityOverride {
                environment_id,
                identity,
                feature_id,
            } => {
                let stream = self.load_identity(*environment_id, identity).await?;
                self.identities
                    .get_mut(&stream)
                    .map(|staged| {
                        staged.expected = true;
                        &staged.state
                    })
                    .ok_or_else(|| Error::Storage("loaded above".into()))?
                    .revisions
                    .get(feature_id)
                    .copied()
                    .unwrap_or(0)
            }
            Subject::FeatureDefinition {
                project_id,
                feature_id,
            } => {
                self.load_project(*project_id).await?;
                self.projects
                    .get_mut(project_id)
                    .map(|staged| {
                        staged.expected = true;
                        &staged.state
                    })
                    .ok_or_else(|| Error::Storage("loaded above".into()))?
                    .feature_revisions
                    .get(feature_id)
                    .copied()
                    .unwrap_or(0)
            }
            Subject::SegmentDefinition {
                project_id,
                segment_id,
            } => {
                self.load_project(*project_id).await?;
                self.projects
                    .get_mut(project_id)
                    .map(|staged| {
                        staged.expected = true;
                        &staged.state
                    })
                    .ok_or_else(|| Error::Storage("loaded above".into()))?
                    .segment_revisions
                    .get(segment_id)
                    .copied()
                    .unwrap_or(0)
            }
        })
    }

    /// The project as decided so far (as loaded when nothing changed it), if loaded.
    pub fn project_state(&self, id: ProjectId) -> Option<&Project> {
        self.projects.get(&id).map(|staged| &staged.state)
    }

    /// The environment as decided so far, if loaded.
    pub fn environment_state(&self, id: EnvironmentId) -> Option<&Environment> {
        self.environments.get(&id).map(|staged| &staged.state)
    }

    /// An identity's overrides as decided so far, if loaded.
    pub fn identity_state(&self, stream: &str) -> Option<&IdentityOverrides> {
        self.identities.get(stream).map(|staged| &staged.state)
    }

    /// What the workspace appends: the streams with events, each expecting its loaded version,
    /// and the expectations that the facts read are unchanged.
    pub fn into_decision<T>(self, outcome: T) -> Result<Decision<T>> {
        let mut writes = Vec::new();
        let mut expectations = Vec::new();
        let appends = self
            .projects
            .values()
            .map(Staged::append)
            .chain(self.environments.values().map(Staged::append))
            .chain(self.identities.values().map(Staged::append));
        for append in appends {
            match append? {
                Some(a) if a.events.is_empty() => expectations.push(a),
                Some(a) => writes.push(a),
                None => {}
            }
        }
        Ok(Decision {
            writes,
            expectations,
            outcome,
            reviewed_by: None,
        })
    }
}

/// A refusal of the `i`th proposed command, named as such.
fn within_command(error: Error, i: usize) -> Error {
    match error {
        Error::Domain(e) => Error::Domain(e.within(&format!("commands[{i}]"))),
        other => other,
    }
}

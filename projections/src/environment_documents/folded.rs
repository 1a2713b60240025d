//! The aggregates the environment-documents projection folds, and rendering one environment
//! from them: the directory and identity overrides all of them, projects and environments a
//! bounded set (see the parent module's "Memory is bounded"), and snapshots of what one
//! environment needs (time travel's starting points).

use std::collections::{BTreeMap, HashMap};

use domain::aggregate::{Aggregate, DomainEvent};
use domain::directory::{self, Directory, DirectoryEvent};
use domain::document::{DocumentSource, environment_flags_body, render};
use domain::environment::{self, Environment, EnvironmentEvent};
use domain::identity::{IdentityEvent, IdentityOverrides, IdentityRef};
use domain::log::{EventLog, RecordedEvent};
use domain::model::{EnvironmentId, ProjectId};
use domain::project::{Project, ProjectEvent};

use super::{DEFAULT_LOADED_AGGREGATES, RenderedEnvironment};
use crate::Error;
use crate::snapshots::EnvironmentSnapshot;

/// An aggregate in the bounded set, with when it was last used.
struct Loaded<A> {
    state: A,
    last_used: u64,
}

/// A project or an environment in the bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Project(ProjectId),
    Environment(EnvironmentId),
}

/// The aggregates, folded from the log: the directory and identity overrides all of them,
/// projects and environments a bounded set of them (see the module's documentation).
pub struct Folded {
    directory: Directory,
    /// Per environment, each identity's overrides by its reference.
    identities: HashMap<EnvironmentId, BTreeMap<IdentityRef, IdentityOverrides>>,
    /// Per environment, the identifier of each reference looked up so far (`None`: erased).
    identifiers: HashMap<EnvironmentId, HashMap<IdentityRef, Option<String>>>,
    /// Per environment: when and at which position the last event that touched it was recorded.
    last_change: HashMap<EnvironmentId, (i64, u64)>,
    projects: HashMap<ProjectId, Loaded<Project>>,
    environments: HashMap<EnvironmentId, Loaded<Environment>>,
    /// Most projects and environments (together) kept loaded between renders.
    bound: usize,
    /// Ticks on every use of a loaded aggregate: the least recently used has the smallest.
    clock: u64,
}

impl Default for Folded {
    fn default() -> Self {
        Folded::with_bound(DEFAULT_LOADED_AGGREGATES)
    }
}

impl Folded {
    /// Keeps at most `bound` projects and environments (together) loaded between renders
    /// from now on.
    pub fn set_bound(&mut self, bound: usize) {
        self.bound = bound;
    }

    /// Keeps at most `bound` projects and environments (together) loaded between renders.
    pub fn with_bound(bound: usize) -> Self {
        Folded {
            directory: Directory::default(),
            identities: HashMap::new(),
            identifiers: HashMap::new(),
            last_change: HashMap::new(),
            projects: HashMap::new(),
            environments: HashMap::new(),
            bound,
            clock: 0,
        }
    }

    /// Folds an event the read model already reflects (warm-up): only directory and identity
    /// events, the state kept for ever. Projects and environments are loaded when needed.
    pub fn warm(&mut self, record: &RecordedEvent) -> Result<(), Error> {
        let stream = record.stream_id.as_str();
        if stream == directory::STREAM {
            self.directory
                .apply(&DirectoryEvent::from_recorded(record)?);
        } else if stream.starts_with("identity-") {
            self.apply_identity(&IdentityEvent::from_recorded(record)?);
        }
        Ok(())
    }

    /// Folds one event in; returns the environments whose documents it may change. An event of
    /// a project or environment that is not loaded is skipped: loading it later reads it.
    pub fn apply(&mut self, record: &RecordedEvent) -> Result<Vec<EnvironmentId>, Error> {
        let stream = record.stream_id.as_str();
        let touched = if stream == directory::STREAM {
            let event = DirectoryEvent::from_recorded(record)?;
            self.directory.apply(&event);
            match event {
                DirectoryEvent::EnvironmentRegistered { id, .. } => vec![id],
                _ => vec![],
            }
        } else if let Some(id) = stream
            .strip_prefix("project-")
            .and_then(|id| id.parse::<ProjectId>().ok())
        {
            let event = ProjectEvent::from_recorded(record)?;
            self.clock += 1;
            if let Some(project) = self.projects.get_mut(&id) {
                project.state.apply(&event);
                project.last_used = self.clock;
            }
            self.directory
                .environments
                .iter()
                .filter(|(_, (project_id, _))| *project_id == id)
                .map(|(environment_id, _)| *environment_id)
                .collect()
        } else if let Some(id) = environment::id_of_stream(stream) {
            let event = EnvironmentEvent::from_recorded(record)?;
            self.clock += 1;
            if let Some(environment) = self.environments.get_mut(&id) {
                environment.state.apply(&event);
                environment.last_used = self.clock;
            }
            vec![id]
        } else if stream.starts_with("identity-") {
            vec![self.apply_identity(&IdentityEvent::from_recorded(record)?)]
        } else {
            vec![]
        };
        for id in &touched {
            self.last_change
                .insert(*id, (record.recorded_at_micros, record.position));
        }
        Ok(touched)
    }

    /// Folds an identity event in; returns its environment. An erased identity is forgotten.
    fn apply_identity(&mut self, event: &IdentityEvent) -> EnvironmentId {
        let environment_id = event.environment_id();
        let reference = event.identity();
        if let IdentityEvent::IdentityErased { .. } = event {
            if let Some(identities) = self.identities.get_mut(&environment_id) {
                identities.remove(reference);
            }
            if let Some(identifiers) = self.identifiers.get_mut(&environment_id) {
                identifiers.remove(reference);
            }
            return environment_id;
        }
        self.identities
            .entry(environment_id)
            .or_default()
            .entry(reference.to_string())
            .or_default()
            .apply(event);
        environment_id
    }

    /// Looks up the identifiers of environment `id`'s identities with overrides that have not
    /// been looked up yet: what rendering it names them by (the log holds references only).
    pub async fn name_identities(
        &mut self,
        log: &dyn EventLog,
        id: EnvironmentId,
    ) -> Result<(), Error> {
        let known = self.identifiers.entry(id).or_default();
        let unnamed: Vec<IdentityRef> = self
            .identities
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|(reference, overrides)| {
                !overrides.overrides.is_empty() && !known.contains_key(*reference)
            })
            .map(|(reference, _)| reference.clone())
            .collect();
        if unnamed.is_empty() {
            return Ok(());
        }
        let mut found = log.identifiers(id, &unnamed).await?;
        for reference in unnamed {
            let identifier = found.remove(&reference);
            known.insert(reference, identifier);
        }
        Ok(())
    }

    /// Marks the environment used; false if it is not loaded.
    pub fn use_environment(&mut self, id: EnvironmentId) -> bool {
        self.clock += 1;
        self.environments
            .get_mut(&id)
            .map(|loaded| loaded.last_used = self.clock)
            .is_some()
    }

    /// Marks the project used; false if it is not loaded.
    pub fn use_project(&mut self, id: ProjectId) -> bool {
        self.clock += 1;
        self.projects
            .get_mut(&id)
            .map(|loaded| loaded.last_used = self.clock)
            .is_some()
    }

    /// Adds an environment loaded from the log: the fold of its stream up to the position the
    /// projection has applied, and no further.
    pub fn insert_environment(&mut self, id: EnvironmentId, state: Environment) {
        self.clock += 1;
        let last_used = self.clock;
        self.environments.insert(id, Loaded { state, last_used });
    }

    /// Adds a project loaded from the log (as [`Folded::insert_environment`]).
    pub fn insert_project(&mut self, id: ProjectId, state: Project) {
        self.clock += 1;
        let last_used = self.clock;
        self.projects.insert(id, Loaded { state, last_used });
    }

    /// What rendering environment `id` needs, as folded now (up to `position`), if it and its
    /// project are loaded.
    pub fn snapshot(&self, id: EnvironmentId, position: u64) -> Option<EnvironmentSnapshot> {
        let environment = &self.environments.get(&id)?.state;
        let project = &self.projects.get(&environment.project_id)?.state;
        Some(EnvironmentSnapshot {
            position,
            directory: self.directory.clone(),
            project: project.clone(),
            environment: environment.clone(),
            identities: self.identities.get(&id).cloned().unwrap_or_default(),
            last_change: self.last_change.get(&id).copied().unwrap_or((0, 0)),
        })
    }

    /// The fold a snapshot of environment `id` was taken from (that environment, its project,
    /// the directory and its identities loaded).
    pub fn from_snapshot(id: EnvironmentId, snapshot: EnvironmentSnapshot) -> Self {
        let mut folded = Folded {
            directory: snapshot.directory,
            ..Folded::default()
        };
        folded.identities.insert(id, snapshot.identities);
        folded.last_change.insert(id, snapshot.last_change);
        let project_id = snapshot.environment.project_id;
        folded.insert_environment(id, snapshot.environment);
        folded.insert_project(project_id, snapshot.project);
        folded
    }

    /// The project of a loaded environment that exists: what rendering it needs next.
    pub fn project_of(&self, id: EnvironmentId) -> Option<ProjectId> {
        self.environments
            .get(&id)
            .filter(|loaded| loaded.state.exists)
            .map(|loaded| loaded.state.project_id)
    }

    /// How many projects and environments are loaded.
    pub fn loaded(&self) -> usize {
        self.projects.len() + self.environments.len()
    }

    /// Unloads the least recently used projects and environments until at most the bound are
    /// loaded.
    pub fn evict(&mut self) {
        let excess = self.loaded().saturating_sub(self.bound);
        if excess == 0 {
            return;
        }
        let mut by_age: Vec<(u64, Key)> = self
            .projects
            .iter()
            .map(|(id, loaded)| (loaded.last_used, Key::Project(*id)))
            .chain(
                self.environments
                    .iter()
                    .map(|(id, loaded)| (loaded.last_used, Key::Environment(*id))),
            )
            .collect();
        by_age.sort_unstable();
        for (_, key) in by_age.into_iter().take(excess) {
            match key {
                Key::Project(id) => self.projects.remove(&id).map(drop),
                Key::Environment(id) => self.environments.remove(&id).map(drop),
            };
        }
    }

    /// The read model of one environment, if it and its project exist. Its environment and
    /// project must be loaded (`None` otherwise), and it must have been touched since start.
    pub fn render(&self, id: EnvironmentId) -> Option<RenderedEnvironment> {
        let environment = &self.environments.get(&id)?.state;
        if !environment.exists {
            return None;
        }
        let project = &self.projects.get(&environment.project_id)?.state;
        if !project.exists {
            return None;
        }
        let organisation_name = self
            .directory
            .organisations
            .get(&project.organisation_id)
            .map_or("", String::as_str);
        let (updated_at_micros, position) = self.last_change.get(&id).copied().unwrap_or((0, 0));
        let names = self.identifiers.get(&id);
        let mut identities: Vec<(&str, &IdentityOverrides)> = self
            .identities
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|(reference, overrides)| {
                let identifier = names?.get(reference)?.as_deref()?;
                Some((identifier, overrides))
            })
            .collect();
        identities.sort_unstable_by_key(|(identifier, _)| *identifier);
        let document = render(DocumentSource {
            organisation_name,
            project,
            environment,
            identity_overrides: &mut identities.into_iter(),
            updated_at: domain::log::rfc3339(updated_at_micros)
                .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
        });

        // What /api/v1/flags/ serves: the environment's flags, without identity or segments.
        let flags = String::from_utf8(environment_flags_body(&document)).ok()?;

        Some(RenderedEnvironment {
            environment_id: id,
            client_key: environment.client_key.clone(),
            server_key_hashes: environment
                .server_side_keys
                .iter()
                .map(|k| k.key_hash.clone())
                .collect(),
            document: serde_json::to_string(&document).ok()?,
            flags,
            updated_at_micros,
            position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_unloads_the_least_recently_used_down_to_the_bound() {
        let mut folded = Folded::with_bound(2);
        folded.insert_environment(1, Environment::default());
        folded.insert_project(1, Project::default());
        folded.insert_environment(2, Environment::default());
        assert!(folded.use_environment(1));
        folded.evict();
        assert_eq!(folded.loaded(), 2);
        assert!(folded.use_environment(1));
        assert!(folded.use_environment(2));
        assert!(!folded.use_project(1));

        let mut none = Folded::with_bound(0);
        none.insert_project(1, Project::default());
        none.evict();
        assert_eq!(none.loaded(), 0);
    }
}

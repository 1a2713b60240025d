//! The command handlers: one method per mutation. Each loads the aggregates it needs, lets
//! `domain` decide, and appends the events with the versions it loaded as expectations.
//!
//! Commands on the same aggregate within this process take turns (a striped lock keyed by the
//! aggregate's stream), so they never decide on the same version and conflict: each decides on
//! what the previous one wrote. Between processes (several nodes on one database) the log's
//! optimistic concurrency still catches a stale decision; the command is then decided again on
//! the new state, with a short backoff. So two creations of *different* features in one project
//! both go through, while two creations of the *same* name end with one success and one refusal
//! from the domain (a 409), with nothing half-written, because every append is atomic.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use domain::Error as DomainError;
use domain::directory::{self, Directory, UserEntry};
use domain::environment::{self, Environment, FeatureStateInput};
use domain::identity::{self, IdentityOverrides};
use domain::log::{LogError, Metadata, StreamAppend};
use domain::model::{
    EnvironmentId, Feature, FeatureId, OrganisationId, ProjectId, SegmentId, UserId,
};
use domain::project::{self, FeatureChanges, FeatureInput, Project, ProjectSettings, SegmentInput};

use crate::error::{Error, Result};
use crate::secrets;
use crate::store::{Loaded, Store};

/// How often a command is decided again after another node changed its streams.
const MAX_ATTEMPTS: usize = 10;
/// Locks serialising commands per aggregate within the process (by hash of the stream id).
const STRIPES: usize = 256;

/// One decision: what to append and what to answer once it is appended.
pub struct Decision<T> {
    pub appends: Vec<StreamAppend>,
    pub outcome: T,
}

impl<T> Decision<T> {
    pub fn new(appends: Vec<StreamAppend>, outcome: T) -> Self {
        Decision { appends, outcome }
    }
}

/// A new user and the API token to give them (shown once; only its hash is stored).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub id: EnvironmentId,
    pub client_key: String,
}

#[derive(Clone)]
pub struct Commands {
    store: Store,
    stripes: Arc<[tokio::sync::Mutex<()>]>,
}

impl Commands {
    pub fn new(store: Store) -> Self {
        Commands {
            store,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    fn stripe(&self, stream_id: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        stream_id.hash(&mut hasher);
        &self.stripes[(hasher.finish() as usize) % self.stripes.len()]
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decides with `decide` and appends, taking turns with other commands on the aggregate
    /// whose stream is `aggregate`, and deciding again on a version conflict.
    pub async fn run<T, F, Fut>(
        &self,
        metadata: &Metadata,
        aggregate: &str,
        mut decide: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Decision<T>>>,
    {
        let _turn = self.stripe(aggregate).lock().await;
        let mut last_conflict = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Another node wrote meanwhile: give it room, with jitter so retries spread.
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 5;
                tokio::time::sleep(std::time::Duration::from_millis(
                    (attempt as u64) * 2 + jitter,
                ))
                .await;
            }
            let decision = decide().await?;
            let appends: Vec<StreamAppend> = decision
                .appends
                .into_iter()
                .filter(|a| !a.events.is_empty())
                .collect();
            if appends.is_empty() {
                return Ok(decision.outcome);
            }
            match self.store.log().append(appends, metadata.clone()).await {
                Ok(_) => return Ok(decision.outcome),
                Err(conflict @ LogError::Conflict { .. }) => last_conflict = Some(conflict),
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Conflict(
            last_conflict.map_or_else(String::new, |c| c.to_string()),
        ))
    }

    pub async fn directory(&self) -> Result<Loaded<Directory>> {
        self.store.load(directory::STREAM).await
    }

    pub async fn project(&self, id: ProjectId) -> Result<Loaded<Project>> {
        let loaded: Loaded<Project> = self.store.load(&project::stream(id)).await?;
        loaded.state.require_exists(id)?;
        Ok(loaded)
    }

    pub async fn environment(&self, id: EnvironmentId) -> Result<Loaded<Environment>> {
        let loaded: Loaded<Environment> = self.store.load(&environment::stream(id)).await?;
        loaded.state.require_exists(id)?;
        Ok(loaded)
    }

    pub async fn identity_overrides(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
    ) -> Result<Loaded<IdentityOverrides>> {
        self.store
            .load(&identity::stream(environment_id, identifier))
            .await
    }

    /// The user an API token belongs to, if any.
    pub async fn user_for_token(&self, token: &str) -> Result<Option<UserEntry>> {
        let directory = self.directory().await?;
        Ok(directory
            .state
            .user_for_token_hash(&secrets::sha256_hex(token))
            .cloned())
    }

    pub async fn create_organisation(
        &self,
        metadata: &Metadata,
        name: &str,
    ) -> Result<OrganisationId> {
        self.run(metadata, directory::STREAM, || async {
            let dir = self.directory().await?;
            let (id, events) = dir.state.create_organisation(name)?;
            Ok(Decision::new(vec![dir.append(&events)?], id))
        })
        .await
    }

    /// Creates a user with a first API token. `only_if_first` refuses (409) once any user exists:
    /// that is how the unauthenticated bootstrap endpoint stays safe.
    pub async fn create_user(
        &self,
        metadata: &Metadata,
        email: &str,
        password: Option<&str>,
        is_admin: bool,
        only_if_first: bool,
    ) -> Result<NewUser> {
        let password_hash = password.map(secrets::hash_password).transpose()?;
        let token = secrets::new_token();
        let token_hash = secrets::sha256_hex(&token);
        self.run(metadata, directory::STREAM, || async {
            let dir = self.directory().await?;
            if only_if_first && !dir.state.users.is_empty() {
                return Err(DomainError::conflict("email", "flaglog already has a user").into());
            }
            let (id, mut events) = dir.state.create_user(
                email,
                is_admin,
                password_hash.clone(),
                token_hash.clone(),
            )?;
            if dir.state.organisations.is_empty() {
                // The first user gets an organisation to put projects in, as in Flagsmith.
                let (_, org_events) = dir.state.create_organisation("Default organisation")?;
                events.extend(org_events);
            }
            Ok(Decision::new(
                vec![dir.append(&events)?],
                NewUser {
                    id,
                    token: token.clone(),
                },
            ))
        })
        .await
    }

    pub async fn create_project(
        &self,
        metadata: &Metadata,
        organisation_id: OrganisationId,
        settings: ProjectSettings,
    ) -> Result<ProjectId> {
        self.run(metadata, directory::STREAM, || async {
            let dir = self.directory().await?;
            let (id, dir_events) = dir.state.register_project(organisation_id)?;
            let project_events = Project::create(id, organisation_id, settings.clone())?;
            let project: Loaded<Project> = self.store.load(&project::stream(id)).await?;
            Ok(Decision::new(
                vec![dir.append(&dir_events)?, project.append(&project_events)?],
                id,
            ))
        })
        .await
    }

    pub async fn update_project(
        &self,
        metadata: &Metadata,
        id: ProjectId,
        settings: ProjectSettings,
    ) -> Result<()> {
        self.run(metadata, &project::stream(id), || async {
            let project = self.project(id).await?;
            let events = project.state.update(settings.clone())?;
            Ok(Decision::new(vec![project.append(&events)?], ()))
        })
        .await
    }

    pub async fn create_environment(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        name: &str,
        client_key: Option<&str>,
    ) -> Result<NewEnvironment> {
        let client_key = client_key.map_or_else(secrets::new_client_key, str::to_string);
        self.run(metadata, directory::STREAM, || async {
            let dir = self.directory().await?;
            let (id, dir_events) = dir.state.register_environment(project_id, &client_key)?;
            let env_events = Environment::create(id, project_id, name, &client_key)?;
            let env: Loaded<Environment> = self.store.load(&environment::stream(id)).await?;
            Ok(Decision::new(
                vec![dir.append(&dir_events)?, env.append(&env_events)?],
                NewEnvironment {
                    id,
                    client_key: client_key.clone(),
                },
            ))
        })
        .await
    }

    pub async fn rename_environment(
        &self,
        metadata: &Metadata,
        id: EnvironmentId,
        name: &str,
    ) -> Result<()> {
        self.run(metadata, &environment::stream(id), || async {
            let env = self.environment(id).await?;
            let events = env.state.rename(name)?;
            Ok(Decision::new(vec![env.append(&events)?], ()))
        })
        .await
    }

    /// Issues a server-side key (`ser.…`) and returns it: it is shown this once.
    pub async fn issue_server_side_key(
        &self,
        metadata: &Metadata,
        id: EnvironmentId,
        name: &str,
    ) -> Result<String> {
        let key = secrets::new_server_side_key();
        let key_hash = secrets::sha256_hex(&key);
        self.run(metadata, &environment::stream(id), || async {
            let env = self.environment(id).await?;
            let events = env.state.issue_server_side_key(name, key_hash.clone())?;
            Ok(Decision::new(vec![env.append(&events)?], key.clone()))
        })
        .await
    }

    /// A command on one project: decided by `decide` on the project's current state.
    async fn on_project<T>(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        decide: impl Fn(&Project) -> domain::Result<(T, Vec<project::ProjectEvent>)>,
    ) -> Result<T> {
        self.run(metadata, &project::stream(project_id), || async {
            let project = self.project(project_id).await?;
            let (outcome, events) = decide(&project.state)?;
            Ok(Decision::new(vec![project.append(&events)?], outcome))
        })
        .await
    }

    pub async fn create_feature(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        input: FeatureInput,
    ) -> Result<Feature> {
        self.on_project(metadata, project_id, |p| p.create_feature(input.clone()))
            .await
    }

    pub async fn update_feature(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        id: FeatureId,
        changes: FeatureChanges,
    ) -> Result<Feature> {
        self.on_project(metadata, project_id, |p| {
            p.update_feature(id, changes.clone())
        })
        .await
    }

    pub async fn delete_feature(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        id: FeatureId,
    ) -> Result<()> {
        self.on_project(metadata, project_id, |p| Ok(((), p.delete_feature(id)?)))
            .await
    }

    pub async fn create_segment(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        input: SegmentInput,
    ) -> Result<SegmentId> {
        self.on_project(metadata, project_id, |p| p.create_segment(input.clone()))
            .await
    }

    pub async fn update_segment(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        id: SegmentId,
        input: SegmentInput,
    ) -> Result<()> {
        self.on_project(metadata, project_id, |p| {
            Ok(((), p.update_segment(id, input.clone())?))
        })
        .await
    }

    pub async fn delete_segment(
        &self,
        metadata: &Metadata,
        project_id: ProjectId,
        id: SegmentId,
    ) -> Result<()> {
        self.on_project(metadata, project_id, |p| Ok(((), p.delete_segment(id)?)))
            .await
    }

    /// The environment and the project feature a feature-state command is about.
    async fn environment_and_feature(
        &self,
        environment_id: EnvironmentId,
        feature_id: FeatureId,
    ) -> Result<(Loaded<Environment>, Feature, Project)> {
        let env = self.environment(environment_id).await?;
        let project = self.project(env.state.project_id).await?;
        let feature = project.state.feature(feature_id)?.clone();
        Ok((env, feature, project.state))
    }

    pub async fn set_feature_state(
        &self,
        metadata: &Metadata,
        environment_id: EnvironmentId,
        feature_id: FeatureId,
        input: FeatureStateInput,
    ) -> Result<()> {
        self.run(metadata, &environment::stream(environment_id), || async {
            let (env, feature, _) = self
                .environment_and_feature(environment_id, feature_id)
                .await?;
            let events = env.state.set_feature_state(&feature, input.clone())?;
            Ok(Decision::new(vec![env.append(&events)?], ()))
        })
        .await
    }

    pub async fn set_segment_override(
        &self,
        metadata: &Metadata,
        environment_id: EnvironmentId,
        feature_id: FeatureId,
        segment_id: SegmentId,
        priority: Option<i64>,
        input: FeatureStateInput,
    ) -> Result<()> {
        self.run(metadata, &environment::stream(environment_id), || async {
            let (env, feature, project) = self
                .environment_and_feature(environment_id, feature_id)
                .await?;
            project.segment(segment_id)?;
            let events =
                env.state
                    .set_segment_override(&feature, segment_id, priority, input.clone())?;
            Ok(Decision::new(vec![env.append(&events)?], ()))
        })
        .await
    }

    pub async fn remove_segment_override(
        &self,
        metadata: &Metadata,
        environment_id: EnvironmentId,
        feature_id: FeatureId,
        segment_id: SegmentId,
    ) -> Result<()> {
        self.run(metadata, &environment::stream(environment_id), || async {
            let env = self.environment(environment_id).await?;
            let events = env.state.remove_segment_override(feature_id, segment_id)?;
            Ok(Decision::new(vec![env.append(&events)?], ()))
        })
        .await
    }

    pub async fn set_identity_override(
        &self,
        metadata: &Metadata,
        environment_id: EnvironmentId,
        identifier: &str,
        feature_id: FeatureId,
        input: FeatureStateInput,
    ) -> Result<()> {
        identity::validate_identifier(identifier)?;
        self.run(
            metadata,
            &identity::stream(environment_id, identifier),
            || async {
                let (_, feature, _) = self
                    .environment_and_feature(environment_id, feature_id)
                    .await?;
                let overrides = self.identity_overrides(environment_id, identifier).await?;
                let events =
                    overrides
                        .state
                        .set(environment_id, identifier, &feature, input.clone())?;
                Ok(Decision::new(vec![overrides.append(&events)?], ()))
            },
        )
        .await
    }

    pub async fn remove_identity_override(
        &self,
        metadata: &Metadata,
        environment_id: EnvironmentId,
        identifier: &str,
        feature_id: FeatureId,
    ) -> Result<()> {
        identity::validate_identifier(identifier)?;
        self.run(
            metadata,
            &identity::stream(environment_id, identifier),
            || async {
                self.environment(environment_id).await?;
                let overrides = self.identity_overrides(environment_id, identifier).await?;
                let events = overrides
                    .state
                    .remove(environment_id, identifier, feature_id)?;
                Ok(Decision::new(vec![overrides.append(&events)?], ()))
            },
        )
        .await
    }
}

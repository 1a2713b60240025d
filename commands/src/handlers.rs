//! The write side's one entry point: [`Commands::execute`] takes a [`Command`] (a value, see
//! `domain::command`), loads the aggregate it is about and the facts its decision reads from other
//! aggregates, lets `domain` decide, and appends the events expecting the versions it loaded: the
//! aggregate's own, and those of the aggregates it read (`StreamAppend::expect`).
//!
//! Commands on the same aggregate within this process take turns (a striped lock keyed by the
//! aggregate's stream), so they never decide on the same version and conflict: each decides on
//! what the previous one wrote. Between aggregates, and between processes, the log's optimistic
//! concurrency catches a stale decision; the command is then decided again on the new state, with
//! a short backoff. So two creations of *different* features in one project both go through, two
//! creations of the *same* name end with one success and one refusal (a 409), and a segment
//! override racing the segment's deletion either lands before the deletion (which is then refused:
//! the segment is in use) or is refused itself (the segment is gone), with nothing half-written.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use domain::access::Review;
use domain::command::{Command, DirectoryCommand};
use domain::directory::{self, Directory, DirectoryEvent, Principal};
use domain::environment::{self, Environment};
use domain::identity;
use domain::integration::IntegrationId;
use domain::log::{LogError, Metadata, StreamAppend};
use domain::model::{EnvironmentId, Feature, ProjectId, SegmentId, TokenId, UserId};
use domain::project::{self, Project};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::secrets;
use crate::store::{Loaded, Store};
use crate::workspace::Workspace;

/// How often a command is decided again after another writer changed what it read.
const MAX_ATTEMPTS: usize = 10;
/// Locks serialising commands per aggregate within the process (by hash of the stream id).
const STRIPES: usize = 256;

/// What executing a command did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Executed {
    /// The log position of the last event appended; `None` when the command changed nothing.
    pub position: Option<u64>,
    /// What the command created, if it created something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Created>,
}

/// Something a command created, as its caller needs to know it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Created {
    Organisation {
        id: u64,
    },
    User {
        id: UserId,
    },
    Project {
        id: ProjectId,
    },
    Environment {
        id: EnvironmentId,
        client_key: String,
    },
    Token {
        id: TokenId,
    },
    Feature {
        feature: Feature,
    },
    Segment {
        id: SegmentId,
    },
    Integration {
        id: IntegrationId,
    },
}

impl Executed {
    /// The id of what the command created; an error if it created nothing (a command that
    /// creates always does, or is refused).
    pub fn created_id(&self) -> Result<u64> {
        match &self.created {
            Some(
                Created::Organisation { id }
                | Created::User { id }
                | Created::Project { id }
                | Created::Environment { id, .. }
                | Created::Token { id }
                | Created::Segment { id }
                | Created::Integration { id },
            ) => Ok(*id),
            Some(Created::Feature { feature }) => Ok(feature.id),
            None => Err(Error::Storage("the command created nothing".into())),
        }
    }
}

/// One decision: the appends that write, the expectations on streams only read, and what to
/// answer once it is appended.
pub(crate) struct Decision<T> {
    pub writes: Vec<StreamAppend>,
    pub expectations: Vec<StreamAppend>,
    pub outcome: T,
    /// The change request whose commit this is, and its approvers: named in every appended
    /// event's metadata.
    pub reviewed_by: Option<ReviewedBy>,
}

/// What links applied events to the review that let them through.
pub(crate) struct ReviewedBy {
    /// The change request's stream.
    pub change_request: String,
    /// `user:<id>` of each approver counted.
    pub approvers: Vec<String>,
}

/// The command creating a user, with a first API token generated here (returned to be shown
/// once; only its hash is in the command) and the password, if any, hashed.
pub fn new_user_command(
    email: &str,
    password: Option<&str>,
    is_admin: bool,
    only_if_first: bool,
) -> Result<(DirectoryCommand, String)> {
    let (token, token_hash) = new_api_token();
    let command = DirectoryCommand::CreateUser {
        email: email.to_string(),
        is_admin,
        password_hash: password.map(secrets::hash_password).transpose()?,
        token_hash,
        only_if_first,
    };
    Ok((command, token))
}

/// A new API token: the token, to be shown once, and the hash that goes into a command.
pub fn new_api_token() -> (String, String) {
    let token = secrets::new_token();
    let hash = secrets::sha256_hex(&token);
    (token, hash)
}

/// A new user and the API token to give them (shown once; only its hash is stored).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub token: String,
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

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Executes `command` on behalf of `metadata`'s actor. Where four-eyes is on, a change of
    /// what is served is refused unless the metadata marks it as break-glass (the caller checked
    /// the actor may: an admin, with a reason).
    pub async fn execute(&self, metadata: &Metadata, command: &Command) -> Result<Executed> {
        if let Command::Directory(c) = command {
            let (created, position) = self
                .run(metadata, directory::STREAM, || self.decide_directory(c))
                .await?;
            return Ok(Executed { position, created });
        }
        self.execute_all(metadata, std::slice::from_ref(command))
            .await
    }

    /// Executes `commands` in order as one atomic append: all of them, or nothing (the refusal
    /// names the command, `commands[i]`, when there are several). None may be a directory
    /// command. What the last one created is returned.
    pub async fn execute_all(&self, metadata: &Metadata, commands: &[Command]) -> Result<Executed> {
        let review = review_of(metadata)?;
        let mut commands = commands.to_vec();
        self.resolve_identities(&mut commands).await?;
        let commands = commands.as_slice();
        let Some(first) = commands.first() else {
            return Err(domain::Error::invalid("commands", "no command to execute").into());
        };
        let stream = match first {
            Command::Directory(_) => {
                return Err(domain::Error::invalid(
                    "commands",
                    "a directory command is executed on its own",
                )
                .into());
            }
            Command::Project(c) => project::stream(c.project_id()),
            Command::Environment(c) => environment::stream(c.environment_id()),
            Command::Identity(c) => identity::stream(c.environment_id(), c.identity().resolved()?),
        };
        let (created, position) = self
            .run(metadata, &stream, || async {
                let mut workspace = Workspace::new(self);
                match commands {
                    [one] => workspace.apply(one, review).await?,
                    several => workspace.apply_each(several, review).await?,
                }
                let created = workspace.created.take();
                workspace.into_decision(created)
            })
            .await?;
        Ok(Executed { position, created })
    }

    /// Creates a user with a first API token (generated here, returned once). `only_if_first`
    /// refuses (409) once any user exists: that is how the unauthenticated bootstrap stays safe.
    pub async fn create_user(
        &self,
        metadata: &Metadata,
        email: &str,
        password: Option<&str>,
        is_admin: bool,
        only_if_first: bool,
    ) -> Result<NewUser> {
        let (command, token) = new_user_command(email, password, is_admin, only_if_first)?;
        let id = self
            .execute(metadata, &command.into())
            .await?
            .created_id()?;
        Ok(NewUser { id, token })
    }

    fn stripe(&self, stream_id: &str) -> &tokio::sync::Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        stream_id.hash(&mut hasher);
        &self.stripes[(hasher.finish() as usize) % self.stripes.len()]
    }

    /// Decides with `decide` and appends, taking turns with other commands on the aggregate
    /// whose stream is `aggregate`, and deciding again on a version conflict.
    /// Returns the decision's outcome and the position of the last event appended (`None` when
    /// it appended nothing).
    pub(crate) async fn run<T, F, Fut>(
        &self,
        metadata: &Metadata,
        aggregate: &str,
        mut decide: F,
    ) -> Result<(T, Option<u64>)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Decision<T>>>,
    {
        let _turn = self.stripe(aggregate).lock().await;
        let mut last_conflict = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Another writer moved what this command read: give it room, with jitter so
                // retries spread.
                let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 5;
                tokio::time::sleep(std::time::Duration::from_millis(
                    (attempt as u64) * 2 + jitter,
                ))
                .await;
            }
            let decision = decide().await?;
            let mut appends: Vec<StreamAppend> = decision
                .writes
                .into_iter()
                .filter(|a| !a.events.is_empty())
                .collect();
            if appends.is_empty() {
                return Ok((decision.outcome, None));
            }
            for expectation in decision.expectations {
                if !appends.iter().any(|a| a.stream_id == expectation.stream_id) {
                    appends.push(expectation);
                }
            }
            let erasures = crate::identities::erasures(&appends);
            let mut metadata = metadata.clone();
            if let Some(reviewed_by) = decision.reviewed_by {
                metadata.causation_id = Some(reviewed_by.change_request);
                metadata.approvers = reviewed_by.approvers;
            }
            match self.store.log().append(appends, metadata).await {
                Ok(appended) => {
                    self.erase_identifiers(&erasures).await?;
                    return Ok((decision.outcome, Some(appended.last_position)));
                }
                Err(conflict @ LogError::Conflict { .. }) => last_conflict = Some(conflict),
                Err(other) => return Err(other.into()),
            }
        }
        Err(Error::Conflict(
            last_conflict.map_or_else(String::new, |c| c.to_string()),
        ))
    }

    async fn decide_directory(
        &self,
        command: &DirectoryCommand,
    ) -> Result<Decision<Option<Created>>> {
        let dir = self.directory().await?;
        let decided = domain::command::directory::decide(&dir.state, command)?;
        let created = decided.directory.iter().find_map(|event| match event {
            DirectoryEvent::OrganisationCreated { id, .. } => {
                Some(Created::Organisation { id: *id })
            }
            DirectoryEvent::UserCreated { id, .. } => Some(Created::User { id: *id }),
            DirectoryEvent::ProjectRegistered { id, .. } => Some(Created::Project { id: *id }),
            DirectoryEvent::EnvironmentRegistered { id, client_key, .. } => {
                Some(Created::Environment {
                    id: *id,
                    client_key: client_key.clone(),
                })
            }
            DirectoryEvent::ApiTokenIssued { id: Some(id), .. }
            | DirectoryEvent::ServiceTokenIssued { id, .. } => Some(Created::Token { id: *id }),
            DirectoryEvent::ApiTokenIssued { id: None, .. }
            | DirectoryEvent::ApiTokenRotated { .. }
            | DirectoryEvent::ApiTokenRevoked { .. }
            | DirectoryEvent::ProjectRoleSet { .. }
            | DirectoryEvent::ChangeRequestRegistered { .. }
            | DirectoryEvent::IntegrationRemoved { .. } => None,
            DirectoryEvent::IntegrationConfigured { integration } => {
                matches!(command, DirectoryCommand::CreateIntegration { .. })
                    .then_some(Created::Integration { id: integration.id })
            }
        });
        let mut writes = vec![dir.append(&decided.directory)?];
        if let Some((id, events)) = &decided.project {
            let new: Loaded<Project> = self.store.load(&project::stream(*id)).await?;
            writes.push(new.append(events)?);
        }
        if let Some((id, events)) = &decided.environment {
            let new: Loaded<Environment> = self.store.load(&environment::stream(*id)).await?;
            writes.push(new.append(events)?);
        }
        Ok(Decision {
            writes,
            expectations: vec![],
            outcome: created,
            reviewed_by: None,
        })
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

    /// Who an API token authenticates as, if it works.
    /// The person whose e-mail and password these are, for a dashboard session; `None` for an
    /// unknown e-mail, a user without a password, or a wrong password (one answer for all, and
    /// as slow for each: an unknown e-mail is checked against a hash too).
    pub async fn principal_for_password(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<Principal>> {
        let directory = self.directory().await?;
        let found = directory
            .state
            .password_of(email)
            .map(|(user, hash)| (user.clone(), hash.to_string()));
        let hash = found.as_ref().map(|(_, hash)| hash.clone());
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            let hash = hash.unwrap_or_else(unknown_user_hash);
            secrets::verify_password(&hash, &password)
        })
        .await
        .map_err(|e| Error::Storage(format!("password check: {e}")))?;
        Ok(found.filter(|_| matches).map(|(user, _)| Principal::User {
            user,
            token_id: None,
        }))
    }

    /// The user `user_id` as a dashboard session's principal, if they still exist.
    pub async fn principal_for_user(&self, user_id: u64) -> Result<Option<Principal>> {
        let directory = self.directory().await?;
        Ok(directory
            .state
            .users
            .get(&user_id)
            .map(|user| Principal::User {
                user: user.clone(),
                token_id: None,
            }))
    }

    pub async fn principal_for_token(&self, token: &str) -> Result<Option<Principal>> {
        let directory = self.directory().await?;
        Ok(directory
            .state
            .principal_for_token_hash(&secrets::sha256_hex(token)))
    }
}

/// The hash an unknown e-mail's password is checked against, so that signing in takes as long
/// whether or not the e-mail exists: of a random password no one knows, made once.
fn unknown_user_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| secrets::hash_password(&secrets::new_session_secret()).unwrap_or_default())
        .clone()
}

/// How a direct change is reviewed: a break-glass change needs a reason.
fn review_of(metadata: &Metadata) -> Result<Review> {
    if !metadata.break_glass {
        return Ok(Review::Direct);
    }
    if metadata
        .reason
        .as_deref()
        .is_none_or(|r| r.trim().is_empty())
    {
        return Err(domain::Error::invalid(
            "reason",
            "a change applied without review needs a reason",
        )
        .into());
    }
    Ok(Review::BreakGlass)
}

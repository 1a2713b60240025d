//! The environment-documents projection: for every environment, the Flagsmith environment
//! document server-side SDKs download, and the precomputed body of `GET /api/v1/flags/`.
//!
//! It folds the aggregates' events into memory (the same `domain` aggregates the write side
//! uses, so both sides agree on what an event means), and after each batch re-renders only the
//! environments the batch touched: an environment's own events and identity overrides touch it;
//! a project's events touch all its environments. The rendered rows and the checkpoint are
//! written in one transaction. Every environment whose document changed is announced on
//! [`EnvironmentDocuments::subscribe`] after the commit, for cache invalidation and realtime
//! updates.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use domain::aggregate::{Aggregate, DomainEvent};
use domain::directory::{self, Directory, DirectoryEvent};
use domain::document::{DocumentSource, api_flags, render};
use domain::environment::{self, Environment, EnvironmentEvent};
use domain::evaluation::evaluate;
use domain::identity::{IdentityEvent, IdentityOverrides};
use domain::log::RecordedEvent;
use domain::model::{EnvironmentId, ProjectId};
use domain::project::{Project, ProjectEvent};
use sqlx::AnyPool;
use tokio::sync::broadcast;

use crate::Error;
use crate::runner::Projection;

pub const NAME: &str = "environment_documents";

/// An environment whose document changed, announced after the change is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentChanged {
    pub environment_id: EnvironmentId,
    pub client_key: String,
    /// When the latest event that went into the document was recorded (µs since the epoch).
    pub updated_at_micros: i64,
    /// The log position the new document reflects: grows with every change.
    pub position: u64,
}

/// One environment's rendered read model.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedEnvironment {
    pub environment_id: EnvironmentId,
    pub client_key: String,
    pub server_key_hashes: Vec<String>,
    /// The environment document, as JSON.
    pub document: String,
    /// The body of `GET /api/v1/flags/`, as JSON.
    pub flags: String,
    pub updated_at_micros: i64,
    /// The position of the last event that changed it.
    pub position: u64,
}

/// The aggregates, folded from the log.
#[derive(Default)]
pub struct Folded {
    directory: Directory,
    projects: HashMap<ProjectId, Project>,
    environments: HashMap<EnvironmentId, Environment>,
    identities: HashMap<EnvironmentId, BTreeMap<String, IdentityOverrides>>,
    /// Per environment: when and at which position the last event that touched it was recorded.
    last_change: HashMap<EnvironmentId, (i64, u64)>,
}

impl Folded {
    /// Folds one event in; returns the environments whose documents it may change.
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
            self.projects.entry(id).or_default().apply(&event);
            self.environments
                .values()
                .filter(|env| env.project_id == id)
                .map(|env| env.id)
                .collect()
        } else if let Some(id) = environment::id_of_stream(stream) {
            let event = EnvironmentEvent::from_recorded(record)?;
            self.environments.entry(id).or_default().apply(&event);
            vec![id]
        } else if stream.starts_with("identity-") {
            let event = IdentityEvent::from_recorded(record)?;
            let (environment_id, identifier) = match &event {
                IdentityEvent::IdentityOverrideSet {
                    environment_id,
                    identifier,
                    ..
                }
                | IdentityEvent::IdentityOverrideRemoved {
                    environment_id,
                    identifier,
                    ..
                } => (*environment_id, identifier.clone()),
            };
            self.identities
                .entry(environment_id)
                .or_default()
                .entry(identifier)
                .or_default()
                .apply(&event);
            vec![environment_id]
        } else {
            vec![]
        };
        for id in &touched {
            self.last_change
                .insert(*id, (record.recorded_at_micros, record.position));
        }
        Ok(touched)
    }

    /// The read model of one environment, if it and its project exist.
    pub fn render(&self, id: EnvironmentId) -> Option<RenderedEnvironment> {
        let environment = self.environments.get(&id).filter(|e| e.exists)?;
        let project = self
            .projects
            .get(&environment.project_id)
            .filter(|p| p.exists)?;
        let organisation_name = self
            .directory
            .organisations
            .get(&project.organisation_id)
            .map_or("", String::as_str);
        let (updated_at_micros, position) = self.last_change.get(&id).copied().unwrap_or((0, 0));
        let no_identities = BTreeMap::new();
        let identities = self.identities.get(&id).unwrap_or(&no_identities);
        let document = render(DocumentSource {
            organisation_name,
            project,
            environment,
            identity_overrides: &mut identities.iter().map(|(i, o)| (i.as_str(), o)),
            updated_at: rfc3339(updated_at_micros),
        });

        // What /api/v1/flags/ serves: the environment's flags, without identity or segments.
        let mut context = document.to_evaluation_context();
        context.segments.clear();
        context.identity = None;
        let result = evaluate(&context);
        let flags = api_flags(&document, &result);

        Some(RenderedEnvironment {
            environment_id: id,
            client_key: environment.client_key.clone(),
            server_key_hashes: environment
                .server_side_keys
                .iter()
                .map(|k| k.key_hash.clone())
                .collect(),
            document: serde_json::to_string(&document).ok()?,
            flags: serde_json::to_string(&flags).ok()?,
            updated_at_micros,
            position,
        })
    }
}

fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The projection: the folded state, and the database its read model lives in.
pub struct EnvironmentDocuments {
    pool: AnyPool,
    folded: Folded,
    changes: broadcast::Sender<DocumentChanged>,
}

impl EnvironmentDocuments {
    pub fn new(pool: AnyPool, changes: broadcast::Sender<DocumentChanged>) -> Self {
        EnvironmentDocuments {
            pool,
            folded: Folded::default(),
            changes,
        }
    }

    /// Forgets the read model, so the next run rebuilds it from position 0.
    pub async fn reset(pool: &AnyPool) -> Result<(), Error> {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM environment_documents")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM environment_server_keys")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
            .bind(NAME)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Projection for EnvironmentDocuments {
    async fn checkpoint(&mut self) -> Result<u64, Error> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                .bind(NAME)
                .fetch_optional(&self.pool)
                .await?;
        Ok(position.map_or(0, |p| p as u64))
    }

    fn warm(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        for event in events {
            self.folded.apply(event)?;
        }
        Ok(())
    }

    async fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut touched = BTreeSet::new();
        for event in events {
            touched.extend(self.folded.apply(event)?);
        }
        let rendered: Vec<RenderedEnvironment> = touched
            .iter()
            .filter_map(|id| self.folded.render(*id))
            .collect();

        let position = last.position as i64;
        let mut tx = self.pool.begin().await?;
        for env in &rendered {
            sqlx::query(
                "INSERT INTO environment_documents \
                 (environment_id, client_key, document, flags, updated_at_micros, position) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (environment_id) DO UPDATE SET client_key = excluded.client_key, \
                 document = excluded.document, flags = excluded.flags, \
                 updated_at_micros = excluded.updated_at_micros, position = excluded.position",
            )
            .bind(env.environment_id as i64)
            .bind(&env.client_key)
            .bind(&env.document)
            .bind(&env.flags)
            .bind(env.updated_at_micros)
            .bind(env.position as i64)
            .execute(&mut *tx)
            .await?;
            for key_hash in &env.server_key_hashes {
                sqlx::query(
                    "INSERT INTO environment_server_keys (key_hash, environment_id) \
                     VALUES ($1, $2) ON CONFLICT (key_hash) DO NOTHING",
                )
                .bind(key_hash)
                .bind(env.environment_id as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        )
        .bind(NAME)
        .bind(position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        for env in rendered {
            // Nobody listening is fine: caches and streams subscribe when they exist.
            let _ = self.changes.send(DocumentChanged {
                environment_id: env.environment_id,
                client_key: env.client_key,
                updated_at_micros: env.updated_at_micros,
                position: env.position,
            });
        }
        Ok(())
    }
}

/// One environment's read model as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEnvironment {
    pub environment_id: EnvironmentId,
    pub client_key: String,
    pub document: String,
    pub flags: String,
    pub updated_at_micros: i64,
    /// The log position this version of the row reflects.
    pub position: u64,
}

type Row = (i64, String, String, String, i64, i64);

fn stored(row: Row) -> StoredEnvironment {
    StoredEnvironment {
        environment_id: row.0 as u64,
        client_key: row.1,
        document: row.2,
        flags: row.3,
        updated_at_micros: row.4,
        position: row.5 as u64,
    }
}

const COLUMNS: &str = "environment_id, client_key, document, flags, updated_at_micros, position";

/// The environment whose client key is `client_key`.
pub async fn by_client_key(
    pool: &AnyPool,
    client_key: &str,
) -> Result<Option<StoredEnvironment>, Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM environment_documents WHERE client_key = $1"
    )))
    .bind(client_key)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(stored))
}

/// The environment one of whose server-side keys hashes to `key_hash`.
pub async fn by_server_key_hash(
    pool: &AnyPool,
    key_hash: &str,
) -> Result<Option<StoredEnvironment>, Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT d.{} FROM environment_documents d \
         JOIN environment_server_keys k ON k.environment_id = d.environment_id \
         WHERE k.key_hash = $1",
        COLUMNS.replace(", ", ", d.")
    )))
    .bind(key_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(stored))
}

/// Every environment's read model, by environment id (for comparisons and rebuild checks).
pub async fn all(pool: &AnyPool) -> Result<Vec<StoredEnvironment>, Error> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM environment_documents ORDER BY environment_id"
    )))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(stored).collect())
}

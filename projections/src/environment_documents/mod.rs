//! The environment-documents projection: for every environment, the Flagsmith environment
//! document server-side SDKs download, and the precomputed body of `GET /api/v1/flags/`.
//!
//! It folds the aggregates' events (the same `domain` aggregates the write side uses, so both
//! sides agree on what an event means), and after each batch re-renders only the environments the
//! batch touched: an environment's own events and identity overrides touch it; a project's events
//! touch all its environments (found in the directory). The rendered rows and the checkpoint are
//! written in one transaction, each guarded by position (a row, and the checkpoint, only move
//! forward; a batch behind the stored checkpoint is refused whole), so that a former leader on
//! another node can never replace newer rows. Every environment whose document changed is
//! announced for cache invalidation and realtime updates: on the in-process channel after the
//! commit, and on PostgreSQL to the other nodes by a `NOTIFY` on [`notifications::CHANNEL`] in
//! the same transaction.
//!
//! # Memory is bounded
//!
//! [`Folded`] keeps for ever only what is small or not cheap to reload: the directory (it knows
//! every environment's project), the identity overrides (one stream per identity, with no way to
//! read one environment's overrides but the whole log) and, per environment, when it last
//! changed. Project and environment aggregates, the bulk (1,000 environments of 200 features,
//! each in its own project with 20 segments, fold to ~230 MB, ~115 KB per aggregate), live in a
//! bounded set of [`DEFAULT_LOADED_AGGREGATES`] (projects and environments together, so ~30 MB in
//! that shape), evicted least recently used first and reloaded from their own stream
//! (`EventLog::read_stream`) when a batch needs them again. 256 is enough for the hot
//! environments and projects of a burst of admin changes to stay loaded, and small enough that the
//! set stays a fraction of the server's 200 MB. While one environment is rendered, the set may
//! hold its environment and project beyond the bound.
//!
//! The invariant that makes reloading correct: a loaded aggregate is the fold of exactly its
//! stream's events up to the position the projection has applied. Applying a batch folds each
//! event into its aggregate if that is loaded and skips it otherwise (a later load reads it from
//! the log); after the batch, what rendering needs is loaded with the stream's events of position
//! ≤ the batch's last position only, since the log may already hold later ones. So warming up at
//! start folds only directory and identity events: every environment rendered in a batch was
//! touched by that batch, which sets its last change.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use domain::aggregate::{Aggregate, DomainEvent};
use domain::environment;
use domain::log::{EventLog, RecordedEvent};
use domain::model::EnvironmentId;
use domain::project;
use sqlx::AnyPool;
use tokio::sync::broadcast;

use crate::Error;
use crate::document_notifications as notifications;
use crate::runner::Projection;
use crate::snapshots;

mod folded;

pub use folded::Folded;

pub const NAME: &str = "environment_documents";

/// How many project and environment aggregates (together) stay loaded by default.
pub const DEFAULT_LOADED_AGGREGATES: usize = 256;

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

/// The projection: the folded state, the log it reloads aggregates from, and the database its
/// read model lives in.
pub struct EnvironmentDocuments {
    pool: AnyPool,
    log: Arc<dyn EventLog>,
    folded: Folded,
    changes: broadcast::Sender<DocumentChanged>,
    /// The node this runs on, named in its notifications so that node's listener skips them.
    node: String,
    /// Positions between two snapshots of one environment.
    snapshot_every: u64,
    /// The position of each environment's latest snapshot, as far as known.
    snapshotted: HashMap<EnvironmentId, u64>,
}

impl EnvironmentDocuments {
    pub fn new(
        pool: AnyPool,
        log: Arc<dyn EventLog>,
        changes: broadcast::Sender<DocumentChanged>,
    ) -> Self {
        EnvironmentDocuments {
            pool,
            log,
            folded: Folded::default(),
            changes,
            node: String::new(),
            snapshot_every: snapshots::SNAPSHOT_EVERY,
            snapshotted: HashMap::new(),
        }
    }

    /// Snapshots an environment when `every` positions have passed since its last snapshot,
    /// instead of [`snapshots::SNAPSHOT_EVERY`].
    pub fn with_snapshots_every(mut self, every: u64) -> Self {
        self.snapshot_every = every.max(1);
        self
    }

    /// Whether environment `id`, rendered at `position`, is due a snapshot.
    async fn snapshot_due(&mut self, id: EnvironmentId, position: u64) -> Result<bool, Error> {
        let last = match self.snapshotted.get(&id) {
            Some(last) => *last,
            None => snapshots::last_position(&self.pool, id).await?,
        };
        self.snapshotted.insert(id, last);
        Ok(position >= last + self.snapshot_every)
    }

    /// Names the node this runs on in its notifications (PostgreSQL), instead of "".
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = node.to_string();
        self
    }

    /// Keeps at most `bound` projects and environments (together) loaded between renders,
    /// instead of [`DEFAULT_LOADED_AGGREGATES`].
    pub fn with_loaded_aggregates(mut self, bound: usize) -> Self {
        self.folded.set_bound(bound);
        self
    }

    /// Loads what rendering environment `id` needs (the environment, and its project if the
    /// environment exists) and is not loaded, as the log stood at `position`.
    async fn load_for_render(&mut self, id: EnvironmentId, position: u64) -> Result<(), Error> {
        if !self.folded.use_environment(id) {
            let state = load(&*self.log, &environment::stream(id), position).await?;
            self.folded.insert_environment(id, state);
        }
        if let Some(project_id) = self.folded.project_of(id)
            && !self.folded.use_project(project_id)
        {
            let state = load(&*self.log, &project::stream(project_id), position).await?;
            self.folded.insert_project(project_id, state);
        }
        Ok(())
    }

    /// Forgets the read model, so the next run rebuilds it from position 0.
    pub async fn reset(pool: &AnyPool) -> Result<(), Error> {
        let tables = [
            "environment_documents",
            "environment_server_keys",
            "environment_snapshots",
        ];
        crate::reset_read_model(pool, NAME, &tables).await
    }
}

#[async_trait]
impl Projection for EnvironmentDocuments {
    async fn checkpoint(&mut self) -> Result<u64, Error> {
        crate::checkpoint(&self.pool, NAME).await
    }

    fn warm(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        for event in events {
            self.folded.warm(event)?;
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
        // One environment at a time: load what it needs, render, unload down to the bound.
        let mut rendered = Vec::new();
        let mut snapshots = Vec::new();
        for id in touched {
            self.load_for_render(id, last.position).await?;
            self.folded.name_identities(&*self.log, id).await?;
            rendered.extend(self.folded.render(id));
            if self.snapshot_due(id, last.position).await? {
                snapshots.extend(self.folded.snapshot(id, last.position).map(|s| (id, s)));
            }
            self.folded.evict();
        }

        let mut tx = self.pool.begin().await?;
        let notify = tx.backend_name() == notifications::POSTGRES;
        for env in &rendered {
            // Position guard: a row only ever moves forward. A former leader still finishing a
            // batch must not put back an older document than the new leader wrote.
            sqlx::query(
                "INSERT INTO environment_documents \
                 (environment_id, client_key, document, flags, updated_at_micros, position) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (environment_id) DO UPDATE SET client_key = excluded.client_key, \
                 document = excluded.document, flags = excluded.flags, \
                 updated_at_micros = excluded.updated_at_micros, position = excluded.position \
                 WHERE excluded.position > environment_documents.position",
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
        for (id, snapshot) in &snapshots {
            snapshots::write(&mut tx, *id, snapshot).await?;
        }
        // The checkpoint only moves forward too; if another node has moved it past this batch,
        // this node is a former leader: write nothing (the transaction rolls back when dropped).
        if !crate::advance_checkpoint(&mut tx, NAME, last.position).await? {
            return Err(Error::Superseded(last.position));
        }
        let changes: Vec<DocumentChanged> = rendered
            .into_iter()
            .map(|env| DocumentChanged {
                environment_id: env.environment_id,
                client_key: env.client_key,
                updated_at_micros: env.updated_at_micros,
                position: env.position,
            })
            .collect();
        if notify {
            // Delivered to every node's listener on commit, and only then.
            for payload in notifications::payloads(&self.node, &changes) {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(notifications::CHANNEL)
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        for (id, snapshot) in snapshots {
            self.snapshotted.insert(id, snapshot.position);
        }

        // This node's own announcements (other nodes hear of them through the notification).
        for change in changes {
            // Nobody listening is fine: caches and streams subscribe when they exist.
            let _ = self.changes.send(change);
        }
        Ok(())
    }
}

/// An aggregate as its stream stood at `position`: the fold of the stream's events up to it, and
/// none after (the log may already hold later ones the projection has not applied).
pub(crate) async fn load<A: Aggregate>(
    log: &dyn EventLog,
    stream: &str,
    position: u64,
) -> Result<A, Error> {
    let mut state = A::default();
    for record in log.read_stream_between(stream, 0, position).await? {
        state.apply(&A::Event::from_recorded(&record)?);
    }
    Ok(state)
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

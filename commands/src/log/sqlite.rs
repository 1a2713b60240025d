//! The SQLite event log adapter, flaglog's embedded default.
//!
//! Appends go through the process's single writer (`log::writer`) on one dedicated connection,
//! each batch in a `BEGIN IMMEDIATE` transaction: that takes SQLite's write lock up front, so
//! positions are assigned under the lock and committed before anyone else can write, even another
//! process sharing the file. The database runs in WAL mode (readers never block the writer or each
//! other) with `synchronous = FULL`, so a returned append is durable. SQLite has no NOTIFY: the
//! writer wakes `wait_for_events` callers in the same process directly; appends by another
//! process on the same file are noticed when `max_wait` runs out and the head is re-read.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::log::{
    Appended, EventLog, LogError, Metadata, RecordedEvent, StoredRecord, StreamAppend,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};

use super::writer::{self, BatchStore, Head, HeadWatch, Plan, Request, Writer};
use super::{
    StoredEvent, clamp_i64, decode_all, event_columns, hash32, limit_i64, storage, stored_all,
};

/// Rows per INSERT statement: 10 parameters each, well under SQLite's 32766-parameter limit.
const INSERT_CHUNK: usize = 1000;

/// The SQLite adapter of `domain::log::EventLog`.
pub struct SqliteEventLog {
    pool: SqlitePool,
    writer: Writer,
    head: HeadWatch,
}

impl SqliteEventLog {
    /// Opens (creating if missing) the database file `database_url` names and the log on it.
    pub async fn connect(database_url: &str) -> Result<Self, LogError> {
        Self::new(pool(database_url).await?).await
    }

    /// Opens the log on `pool` (migrated already). The writer gets its own connection with the
    /// pool's options.
    pub async fn new(pool: SqlitePool) -> Result<Self, LogError> {
        let head = HeadWatch::new(read_head(&pool).await?);
        let options = (*pool.connect_options()).clone();
        let store = SqliteStore {
            options,
            connection: None,
        };
        Ok(Self {
            writer: Writer::spawn(store, head.clone())?,
            pool,
            head,
        })
    }

    /// The pool reads go through.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The connection settings the log expects for the file `database_url` names: created if
/// missing, WAL, `synchronous = FULL`, a generous busy timeout for other writers of the file,
/// and `secure_delete` (deleted content is overwritten: an erased identifier leaves no trace in
/// the file's free pages).
/// In-memory databases are refused: every connection would see a different (or vanishing) log.
pub fn connect_options(database_url: &str) -> Result<SqliteConnectOptions, LogError> {
    if database_url.contains(":memory:") || database_url.contains("mode=memory") {
        return Err(LogError::Invalid(format!(
            "{database_url:?} is an in-memory SQLite database; the event log needs a file"
        )));
    }
    Ok(SqliteConnectOptions::from_str(database_url)
        .map_err(|e| LogError::Invalid(format!("bad SQLite URL {database_url:?}: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        .pragma("secure_delete", "on"))
}

/// A pool for `database_url` with [`connect_options`].
pub async fn pool(database_url: &str) -> Result<SqlitePool, LogError> {
    SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(connect_options(database_url)?)
        .await
        .map_err(|e| LogError::Storage(format!("opening SQLite database: {e}")))
}

#[async_trait]
impl EventLog for SqliteEventLog {
    async fn append(
        &self,
        appends: Vec<StreamAppend>,
        metadata: Metadata,
    ) -> Result<Appended, LogError> {
        self.writer.append(appends, metadata).await
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        after_version: u64,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let rows: Vec<StoredEvent> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE stream_id = ?1 AND version > ?2 ORDER BY version"
        ))
        .bind(stream_id)
        .bind(clamp_i64(after_version))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        decode_all(rows)
    }

    async fn read_stream_between(
        &self,
        stream_id: &str,
        after_position: u64,
        until_position: u64,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let rows: Vec<StoredEvent> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE stream_id = ?1 AND position > ?2 AND position <= ?3 \
             ORDER BY version"
        ))
        .bind(stream_id)
        .bind(clamp_i64(after_position))
        .bind(clamp_i64(until_position))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        decode_all(rows)
    }

    async fn read_stored(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let rows: Vec<StoredEvent> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
        ))
        .bind(clamp_i64(after_position))
        .bind(limit_i64(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        stored_all(rows)
    }

    async fn read_all(
        &self,
        after_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.read_stored(after_position, limit)
            .await?
            .into_iter()
            .map(StoredRecord::into_recorded)
            .collect()
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>, LogError> {
        /// Positions per statement: well under SQLite's limit of bound parameters.
        const CHUNK: usize = 500;
        let mut wanted: Vec<u64> = positions.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut rows: Vec<StoredEvent> = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT {} FROM events WHERE position IN ({placeholders}) ORDER BY position",
                event_columns!()
            );
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for position in chunk {
                query = query.bind(clamp_i64(*position));
            }
            rows.extend(query.fetch_all(&self.pool).await.map_err(storage)?);
        }
        decode_all(rows)
    }

    async fn head(&self) -> Result<u64, LogError> {
        let head = read_head(&self.pool).await?;
        self.head.observe(head);
        Ok(head)
    }

    async fn wait_for_events(
        &self,
        after_position: u64,
        max_wait: Duration,
    ) -> Result<(), LogError> {
        if !self.head.wait_past(after_position, max_wait).await {
            // The polling fallback: notices appends by other processes sharing the file.
            self.head().await?;
        }
        Ok(())
    }
}

async fn read_head(pool: &SqlitePool) -> Result<u64, LogError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(pool)
        .await
        .map_err(storage)?;
    Ok(u64::try_from(head).unwrap_or(0))
}

/// The writer's side: one dedicated connection, reopened after any failure.
struct SqliteStore {
    options: SqliteConnectOptions,
    connection: Option<SqliteConnection>,
}

#[async_trait]
impl BatchStore for SqliteStore {
    async fn write_batch(&mut self, batch: &[Request]) -> Result<Plan, LogError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self
                .connection
                .insert(self.options.connect().await.map_err(storage)?),
        };
        let result = write_batch(connection, batch).await;
        if result.is_err() {
            self.connection = None;
        }
        result.map_err(storage)
    }
}

async fn write_batch(
    connection: &mut SqliteConnection,
    batch: &[Request],
) -> Result<Plan, sqlx::Error> {
    let streams = writer::streams_of(batch);
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;

    let last: Option<(i64, Vec<u8>, i64)> = sqlx::query_as(
        "SELECT position, hash, recorded_at_micros FROM events ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let head = match last {
        None => Head::GENESIS,
        Some((position, hash, recorded_at_micros)) => Head {
            position: u64::try_from(position).unwrap_or(0),
            hash: hash32(&hash).ok_or_else(|| {
                sqlx::Error::Protocol("the head event has a malformed hash".into())
            })?,
            recorded_at_micros,
        },
    };

    let stream_list = serde_json::to_string(&streams).map_err(|e| sqlx::Error::Encode(e.into()))?;
    let found: Vec<(String, i64)> = sqlx::query_as(
        "SELECT s.value,
                COALESCE((SELECT max(e.version) FROM events e WHERE e.stream_id = s.value), 0)
           FROM json_each(?1) AS s",
    )
    .bind(stream_list)
    .fetch_all(&mut *tx)
    .await?;
    let versions: HashMap<String, u64> = found
        .into_iter()
        .map(|(stream, version)| (stream, u64::try_from(version).unwrap_or(0)))
        .collect();

    let plan = writer::plan(head, &versions, batch, writer::now_micros());
    for rows in plan.rows.chunks(INSERT_CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (position, stream_id, version, event_type, schema_version, \
             payload, metadata, recorded_at_micros, prev_hash, hash) ",
        );
        insert.push_values(rows, |mut values, row| {
            values
                .push_bind(row.position)
                .push_bind(row.stream_id.as_str())
                .push_bind(row.version)
                .push_bind(row.event_type.as_str())
                .push_bind(row.schema_version)
                .push_bind(row.payload.as_str())
                .push_bind(row.metadata.as_str())
                .push_bind(row.recorded_at_micros)
                .push_bind(&row.prev_hash[..])
                .push_bind(&row.hash[..]);
        });
        insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(plan)
}

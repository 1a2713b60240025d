//! The PostgreSQL event log adapter.
//!
//! Appends go through the process's single writer (`log::writer`). Its batches take a fixed
//! advisory lock ([`APPEND_LOCK_KEY`]) before reading the head, and release it only after their
//! rows have committed, so writers on several nodes sharing one database are serialised too and
//! commit order stays position order. A batch costs one or two round trips plus the commit's
//! fsync, whatever its size (see `PgStore::write_batch`). It announces its new head with
//! `pg_notify` in the inserting transaction (delivered on commit). One background task per
//! adapter LISTENs on that channel and feeds a watch of the latest known head, which is what
//! `wait_for_events` waits on: it wakes for appends made by any node. The listener reconnects if
//! its connection drops and re-reads the head each time it (re)starts listening, so a
//! notification missed while disconnected costs nothing; `wait_for_events` also re-reads the
//! head when `max_wait` runs out.
//!
//! The lock is session-level, so the writer needs a connection of its own for its whole session:
//! it does not work through a pooler in transaction mode (neither does LISTEN).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::log::{
    Appended, EventLog, LogError, Metadata, RecordedEvent, StoredRecord, StreamAppend,
};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::writer::{self, BatchStore, Head, HeadWatch, Plan, Request, Writer};
use super::{
    StoredEvent, clamp_i64, decode_all, event_columns, hash32, limit_i64, storage, stored_all,
};

/// The NOTIFY channel that carries each new head position.
pub const NOTIFY_CHANNEL: &str = "flaglog_events";

/// The advisory lock key every writer on a database takes before assigning positions
/// ("flaglog" in ASCII, then 1).
pub const APPEND_LOCK_KEY: i64 = 0x666c_6167_6c6f_6701;

/// How long the listener waits before reconnecting after an error.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Takes the append lock (releasing this session's hold from its previous batch first when `$1`)
/// and reads the head and the versions of the streams in `$2`, all with the lock held: see the
/// `events_lock_and_read` function in `migrations/postgres/0001_event_log.sql`.
const LOCK_AND_READ: &str = "SELECT * FROM events_lock_and_read($1, $2)";

/// Releases the append lock when the writer has nothing more to do.
const UNLOCK: &str = "SELECT pg_advisory_unlock(7380380986182166273)";

/// The current versions of the streams in `$1`, read while this session holds the lock.
const READ_VERSIONS: &str = "
    SELECT s.id, COALESCE((SELECT max(e.version) FROM events e WHERE e.stream_id = s.id), 0)
      FROM unnest($1::text[]) AS s(id)";

/// The longest the writer keeps the lock across batches before it lets other writers of the
/// database (other nodes) have a turn.
const HOLD_AT_MOST: Duration = Duration::from_millis(5);

/// Inserts a batch's rows with one statement and notifies the new head. Run on its own, so it is
/// one transaction: the notification is sent, and the lock released, only once it has committed.
const INSERT_AND_NOTIFY: &str = "
    WITH inserted AS (
        INSERT INTO events (position, stream_id, version, event_type, schema_version,
                            payload, metadata, recorded_at_micros, prev_hash, hash)
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[],
                             $6::text[], $7::text[], $8::bigint[], $9::bytea[], $10::bytea[])
    )
    SELECT pg_notify('flaglog_events', $11)";

/// The PostgreSQL adapter of `domain::log::EventLog`.
pub struct PostgresEventLog {
    pool: PgPool,
    writer: Writer,
    head: HeadWatch,
    /// Stops the listener task when the adapter goes away.
    _listener: AbortOnDrop,
}

impl PostgresEventLog {
    /// Connects a pool to `database_url` and opens the log on it.
    pub async fn connect(database_url: &str) -> Result<Self, LogError> {
        Self::new(pool(database_url).await?).await
    }

    /// Opens the log on `pool` (migrated already). Starts the writer (on its own connection) and
    /// the listener (on another), and returns once the listener is listening.
    pub async fn new(pool: PgPool) -> Result<Self, LogError> {
        let options = (*pool.connect_options()).clone();
        let head = HeadWatch::new(read_head(&pool).await?);

        let (ready, listening) = oneshot::channel();
        let listener = AbortOnDrop(tokio::spawn(listen(
            options.clone().application_name("flaglog-listener"),
            pool.clone(),
            head.clone(),
            ready,
        )));
        listening
            .await
            .map_err(|_| LogError::Storage("the event log listener stopped".into()))??;

        let store = PgStore {
            options: options.application_name("flaglog-writer"),
            connection: None,
            hold: None,
        };
        Ok(Self {
            writer: Writer::spawn(store, head.clone())?,
            pool,
            head,
            _listener: listener,
        })
    }

    /// The pool reads go through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A pool for `database_url` with the settings the log expects.
pub async fn pool(database_url: &str) -> Result<PgPool, LogError> {
    PgPoolOptions::new()
        .max_connections(10)
        .connect(database_url)
        .await
        .map_err(|e| LogError::Storage(format!("connecting to PostgreSQL: {e}")))
}

#[async_trait]
impl EventLog for PostgresEventLog {
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
            " FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
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
            " FROM events WHERE stream_id = $1 AND position > $2 AND position <= $3 \
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
            " FROM events WHERE position > $1 ORDER BY position LIMIT $2"
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
        let positions: Vec<i64> = positions.iter().map(|p| clamp_i64(*p)).collect();
        let rows: Vec<StoredEvent> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE position = ANY($1) ORDER BY position"
        ))
        .bind(positions)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
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
            // The polling fallback: catches anything a lost notification did not tell us.
            self.head().await?;
        }
        Ok(())
    }
}

async fn read_head(pool: &PgPool) -> Result<u64, LogError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(pool)
        .await
        .map_err(storage)?;
    Ok(u64::try_from(head).unwrap_or(0))
}

/// The writer's side: one dedicated connection, reopened after any failure, and what the writer
/// knows while that connection holds the append lock.
struct PgStore {
    options: PgConnectOptions,
    connection: Option<PgConnection>,
    hold: Option<Hold>,
}

/// The log as it is while this writer holds the lock without a break: nobody else can append
/// meanwhile, so the head after its last batch, and the versions of streams it has read or
/// written since taking the lock, are current and need not be read again.
struct Hold {
    since: Instant,
    head: Head,
    versions: HashMap<String, u64>,
}

impl PgStore {
    /// The connection, and what is known while it holds the lock (nothing, for a new one).
    async fn connection(&mut self) -> Result<(&mut PgConnection, Option<Hold>), LogError> {
        let mut hold = self.hold.take();
        if self.connection.is_none() {
            hold = None;
            self.connection = Some(self.options.connect().await.map_err(storage)?);
        }
        let connection = self
            .connection
            .as_mut()
            .ok_or_else(|| LogError::Storage("no writer connection".into()))?;
        Ok((connection, hold))
    }
}

#[async_trait]
impl BatchStore for PgStore {
    /// One batch. Taking the lock and reading the head and the batch's stream versions is one
    /// round trip ([`LOCK_AND_READ`]); inserting every row is another ([`INSERT_AND_NOTIFY`]),
    /// a statement that is its own transaction, so it has committed when it returns.
    ///
    /// The lock is kept after the commit: while this writer has more to do it keeps the lock for
    /// up to [`HOLD_AT_MOST`], and batches in that time skip the first round trip (knowing the
    /// head and the versions it wrote) except to read versions of streams new to it. Then the
    /// next batch's first round trip releases and retakes the lock, letting any other node that
    /// waits for it go first; when the writer has nothing to do, [`BatchStore::idle`] releases
    /// it. So the invariant holds (positions are assigned under the lock and committed before it
    /// is released) at one or two round trips per batch, where a transaction-level lock would
    /// take three (`BEGIN`, lock and reads; `INSERT`; `COMMIT`), which a lone writer pays on
    /// every append.
    async fn write_batch(&mut self, batch: &[Request]) -> Result<Plan, LogError> {
        let (connection, hold) = self.connection().await?;
        match write_batch(connection, hold, batch).await {
            Ok((plan, hold)) => {
                self.hold = Some(hold);
                Ok(plan)
            }
            Err(error) => {
                // The connection may be broken, and what the server did is unknown: drop it,
                // which also ends its session and so releases the lock.
                self.connection = None;
                Err(storage(error))
            }
        }
    }

    async fn idle(&mut self) {
        if self.hold.take().is_none() {
            return;
        }
        let released = match self.connection.as_mut() {
            Some(connection) => sqlx::query(UNLOCK).execute(connection).await.is_ok(),
            None => true,
        };
        if !released {
            self.connection = None;
        }
    }
}

/// A row of [`LOCK_AND_READ`]: `(None, position, hash, recorded_at)` for the head,
/// `(Some(stream), version, None, None)` for a stream.
type HeadOrVersion = (Option<String>, i64, Option<Vec<u8>>, Option<i64>);

async fn write_batch(
    connection: &mut PgConnection,
    hold: Option<Hold>,
    batch: &[Request],
) -> Result<(Plan, Hold), sqlx::Error> {
    let streams = writer::streams_of(batch);
    let mut hold = match hold {
        Some(mut hold) if hold.since.elapsed() < HOLD_AT_MOST => {
            let unknown: Vec<&String> = streams
                .iter()
                .filter(|stream| !hold.versions.contains_key(*stream))
                .collect();
            if !unknown.is_empty() {
                let found: Vec<(String, i64)> = sqlx::query_as(READ_VERSIONS)
                    .bind(unknown)
                    .fetch_all(&mut *connection)
                    .await?;
                for (stream, version) in found {
                    hold.versions
                        .insert(stream, u64::try_from(version).unwrap_or(0));
                }
            }
            hold
        }
        held => lock_and_read(connection, held.is_some(), &streams).await?,
    };

    let plan = writer::plan(hold.head, &hold.versions, batch, writer::now_micros());
    if !plan.rows.is_empty() {
        insert_and_notify(connection, &plan).await?;
    }
    hold.head = plan.head;
    for row in &plan.rows {
        hold.versions.insert(
            row.stream_id.clone(),
            u64::try_from(row.version).unwrap_or(0),
        );
    }
    Ok((plan, hold))
}

/// Takes the lock (first releasing it, to let others have a turn, when `relock`) and reads what
/// the batch needs with it held.
async fn lock_and_read(
    connection: &mut PgConnection,
    relock: bool,
    streams: &[String],
) -> Result<Hold, sqlx::Error> {
    let found: Vec<HeadOrVersion> = sqlx::query_as(LOCK_AND_READ)
        .bind(relock)
        .bind(streams)
        .fetch_all(&mut *connection)
        .await?;
    let mut hold = Hold {
        since: Instant::now(),
        head: Head::GENESIS,
        versions: HashMap::with_capacity(streams.len()),
    };
    for (stream_id, number, hash, recorded_at_micros) in found {
        let number = u64::try_from(number).unwrap_or(0);
        match stream_id {
            Some(stream_id) => {
                hold.versions.insert(stream_id, number);
            }
            None => {
                hold.head = Head {
                    position: number,
                    hash: hash.as_deref().and_then(hash32).ok_or_else(|| {
                        sqlx::Error::Protocol("the head event has a malformed hash".into())
                    })?,
                    recorded_at_micros: recorded_at_micros.unwrap_or(i64::MIN),
                };
            }
        }
    }
    Ok(hold)
}

async fn insert_and_notify(connection: &mut PgConnection, plan: &Plan) -> Result<(), sqlx::Error> {
    let rows = &plan.rows;
    sqlx::query(INSERT_AND_NOTIFY)
        .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.stream_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.schema_version).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.metadata.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.recorded_at_micros)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.prev_hash).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.hash).collect::<Vec<_>>())
        .bind(plan.head.position.to_string())
        .execute(connection)
        .await?;
    Ok(())
}

/// The listener task: LISTEN, then feed every notified head into `head`; on any failure wait a
/// little and start over. Reports the outcome of its first start through `ready`.
async fn listen(
    options: PgConnectOptions,
    reads: PgPool,
    head: HeadWatch,
    ready: oneshot::Sender<Result<(), LogError>>,
) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options);
    let mut ready = Some(ready);
    loop {
        let error = listen_until_error(&pool, &reads, &head, &mut ready).await;
        if let Some(ready) = ready.take() {
            let _ = ready.send(Err(LogError::Storage(format!(
                "listening for event log notifications: {error}"
            ))));
            return;
        }
        tracing::warn!(%error, "event log listener lost its connection; reconnecting");
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn listen_until_error(
    pool: &PgPool,
    reads: &PgPool,
    head: &HeadWatch,
    ready: &mut Option<oneshot::Sender<Result<(), LogError>>>,
) -> LogError {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return storage(error),
    };
    if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
        return storage(error);
    }
    // Listening now: whatever is committed from here on is notified. Catch up on the rest.
    match read_head(reads).await {
        Ok(position) => head.observe(position),
        Err(error) => return error,
    }
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match notification.payload().parse::<u64>() {
                Ok(position) => head.observe(position),
                Err(_) => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring a malformed event log notification"
                ),
            },
            // The connection dropped and the listener has reconnected and re-listened:
            // notifications sent in between are lost, so read the head.
            Ok(None) => match read_head(reads).await {
                Ok(position) => head.observe(position),
                Err(error) => return error,
            },
            Err(error) => return storage(error),
        }
    }
}

/// Stops a background task when its owner goes away.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATION: &str = include_str!("../../../migrations/postgres/0001_event_log.sql");

    #[test]
    fn every_lock_statement_uses_the_documented_key() {
        let key = APPEND_LOCK_KEY.to_string();
        assert!(UNLOCK.contains(&format!("pg_advisory_unlock({key})")));
        assert!(MIGRATION.contains(&format!("PERFORM pg_advisory_lock({key});")));
        assert!(MIGRATION.contains(&format!("PERFORM pg_advisory_unlock({key});")));
        assert_eq!(MIGRATION.matches("pg_advisory").count(), 2);
    }

    #[test]
    fn the_notify_statement_uses_the_documented_channel() {
        assert!(INSERT_AND_NOTIFY.contains(&format!("pg_notify('{NOTIFY_CHANNEL}'")));
    }
}

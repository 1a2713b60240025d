//! Event log adapters: PostgreSQL and the embedded SQLite default.
//!
//! Both implement `domain::log::EventLog` over one append-only `events` table (see the migrations
//! in `migrations/postgres` and `migrations/sqlite`) and append through the same single writer
//! (`writer.rs`), which is what keeps commit order equal to position order. [`connect`] picks the
//! adapter from the database URL; [`migrate`] runs the embedded migrations of that backend.
//! Payload and metadata are stored as canonical JSON text so the bytes the hash chain covers come
//! back exactly as they were hashed.

mod identity_references;
pub mod postgres;
pub mod sqlite;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod writer;

use std::sync::Arc;

use domain::log::{EventLog, LogError, RecordedEvent, StoredRecord};

pub use postgres::PostgresEventLog;
pub use sqlite::SqliteEventLog;

/// The migrations for PostgreSQL databases (`migrations/postgres`), embedded at build time.
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The migrations for SQLite databases (`migrations/sqlite`), embedded at build time.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// `postgres://` or `postgresql://` → PostgreSQL; `sqlite:` (e.g. `sqlite://flaglog.db`) →
    /// SQLite.
    pub fn of_url(database_url: &str) -> Result<Self, LogError> {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if database_url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(LogError::Invalid(format!(
                "unsupported database URL {database_url:?}: expected postgres://, postgresql:// \
                 or sqlite://"
            )))
        }
    }
}

/// Opens the event log at `database_url` (PostgreSQL or SQLite, by scheme; a SQLite file is
/// created if missing). Does not migrate: call [`migrate`] first.
///
/// ```no_run
/// # async fn example() -> Result<(), domain::log::LogError> {
/// commands::log::migrate("sqlite://flaglog.db").await?;
/// let log = commands::log::connect("sqlite://flaglog.db").await?;
/// let head = log.head().await?;
/// # Ok(()) }
/// ```
pub async fn connect(database_url: &str) -> Result<Arc<dyn EventLog>, LogError> {
    Ok(match Backend::of_url(database_url)? {
        Backend::Postgres => Arc::new(PostgresEventLog::connect(database_url).await?),
        Backend::Sqlite => Arc::new(SqliteEventLog::connect(database_url).await?),
    })
}

/// Applies the embedded migrations of the backend `database_url` names (creating a SQLite file
/// if missing). Safe to run on every start: applied migrations are skipped.
pub async fn migrate(database_url: &str) -> Result<(), LogError> {
    match Backend::of_url(database_url)? {
        Backend::Postgres => {
            let pool = postgres::pool(database_url).await?;
            let result = POSTGRES_MIGRATOR.run(&pool).await;
            pool.close().await;
            result.map_err(migration_error)
        }
        Backend::Sqlite => {
            let pool = sqlite::pool(database_url).await?;
            let result = SQLITE_MIGRATOR.run(&pool).await;
            pool.close().await;
            result.map_err(migration_error)
        }
    }
}

fn migration_error(error: sqlx::migrate::MigrateError) -> LogError {
    LogError::Storage(format!("migrating the database: {error}"))
}

pub(crate) fn storage(error: sqlx::Error) -> LogError {
    LogError::Storage(error.to_string())
}

/// The columns every read selects, as a literal for `concat!` (queries stay `&'static str`).
macro_rules! event_columns {
    () => {
        "position, stream_id, version, event_type, schema_version, payload, metadata, \
         recorded_at_micros, prev_hash, hash"
    };
}
pub(crate) use event_columns;

/// An `events` row as both databases return it.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredEvent {
    position: i64,
    stream_id: String,
    version: i64,
    event_type: String,
    schema_version: i64,
    payload: String,
    metadata: String,
    recorded_at_micros: i64,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl TryFrom<StoredEvent> for StoredRecord {
    type Error = LogError;

    fn try_from(row: StoredEvent) -> Result<Self, LogError> {
        let corrupt = |what: &str| {
            LogError::Storage(format!("event at position {} has {what}", row.position))
        };
        Ok(StoredRecord {
            position: u64::try_from(row.position).map_err(|_| corrupt("a negative position"))?,
            version: u64::try_from(row.version).map_err(|_| corrupt("a negative version"))?,
            schema_version: u32::try_from(row.schema_version)
                .map_err(|_| corrupt("an out-of-range schema version"))?,
            prev_hash: hash32(&row.prev_hash).ok_or_else(|| corrupt("a malformed prev_hash"))?,
            hash: hash32(&row.hash).ok_or_else(|| corrupt("a malformed hash"))?,
            stream_id: row.stream_id,
            event_type: row.event_type,
            payload: row.payload,
            metadata: row.metadata,
            recorded_at_micros: row.recorded_at_micros,
        })
    }
}

pub(crate) fn hash32(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

pub(crate) fn decode_all(rows: Vec<StoredEvent>) -> Result<Vec<RecordedEvent>, LogError> {
    rows.into_iter()
        .map(|row| StoredRecord::try_from(row)?.into_recorded())
        .collect()
}

pub(crate) fn stored_all(rows: Vec<StoredEvent>) -> Result<Vec<StoredRecord>, LogError> {
    rows.into_iter().map(StoredRecord::try_from).collect()
}

/// `u64` arguments for BIGINT parameters; values past `i64::MAX` mean "everything".
pub(crate) fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `limit` as a BIGINT parameter.
pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

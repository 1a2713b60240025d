//! flaglog's read side: the subscription runner ([`runner`]: checkpoints, catch-up, wake-ups), the
//! projections it feeds ([`environment_documents`], [`change_request_inbox`], [`audit_history`]),
//! time travel ([`as_of`]: an environment as it stood at a past position, folded as the
//! projection folds) and the runtime every background worker runs in ([`workers`]:
//! cancellation, restarts with backoff, status, one leader per database). It reads the log only
//! through `domain::log::EventLog`; the composition root (`api`) hands it the adapter and the
//! database its read-model tables live in.

pub mod as_of;
pub mod audit_history;
pub mod change_request_inbox;
pub mod document_notifications;
pub mod environment_documents;
pub mod feature_versions;
pub mod identity_names;
pub mod integrations;
pub mod runner;
pub mod snapshots;
pub mod workers;

use domain::aggregate::CodecError;
use domain::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("read model: {0}")]
    ReadModel(#[from] sqlx::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The session holding this node's leader lock ended: another node may lead now.
    #[error("lost the leadership: {0}")]
    LostLeadership(String),
    /// Another node wrote a newer checkpoint: this node's write was refused (rolled back).
    #[error("another node has applied the log past position {0}")]
    Superseded(u64),
    #[error("{0}")]
    Other(String),
}

/// Opens the database the read models live in (the event log's own database; its migrations
/// create the tables). Works with `postgres://` and `sqlite:` URLs alike.
/// On SQLite, connections overwrite what they delete (`secure_delete`): an erased identity's
/// identifier leaves no trace in the file's free pages.
pub async fn connect(database_url: &str) -> Result<sqlx::AnyPool, Error> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::any::AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(|connection, _| {
            Box::pin(async move {
                if connection.backend_name() == SQLITE {
                    sqlx::query("PRAGMA secure_delete = ON")
                        .execute(&mut *connection)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(database_url)
        .await?)
}

const SQLITE: &str = "SQLite";

/// After an erasure: on SQLite, moves every page the write-ahead log holds into the database
/// file and truncates the log, so the old versions of rows that named the identity are gone from
/// both files (the overwritten versions replace them). PostgreSQL keeps dead row versions until
/// vacuum, which it runs on its own.
pub async fn forget_deleted(pool: &sqlx::AnyPool) -> Result<(), Error> {
    let mut connection = pool.acquire().await?;
    if connection.backend_name() == SQLITE {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

/// The position projection `name`'s read model reflects (0 if it has none).
pub async fn checkpoint(pool: &sqlx::AnyPool, name: &str) -> Result<u64, Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?;
    Ok(position.map_or(0, |p| p as u64))
}

/// Moves projection `name`'s checkpoint to `position` within `tx`, only forwards: false if
/// another node has moved it there or past already (this node is a former leader, and the
/// transaction must write nothing).
pub(crate) async fn advance_checkpoint(
    tx: &mut sqlx::AnyConnection,
    name: &str,
    position: u64,
) -> Result<bool, Error> {
    let moved = sqlx::query(
        "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position \
         WHERE excluded.position > projection_checkpoints.position",
    )
    .bind(name)
    .bind(position as i64)
    .execute(&mut *tx)
    .await?;
    Ok(moved.rows_affected() > 0)
}

/// Empties `tables` and forgets projection `name`'s checkpoint, in one transaction: the next run
/// rebuilds the read model from position 0.
pub(crate) async fn reset_read_model(
    pool: &sqlx::AnyPool,
    name: &str,
    tables: &[&str],
) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Now, in microseconds since the Unix epoch (UTC): how the read models write times.
pub fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

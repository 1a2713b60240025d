//! flaglog's read side: the subscription runner ([`runner`]: checkpoints, catch-up, wake-ups), the
//! projections it feeds ([`environment_documents`]) and the runtime every background worker runs
//! in ([`workers`]: cancellation, restarts with backoff, status, one leader per database). It reads the log only through
//! `domain::log::EventLog`; the composition root (`api`) hands it the adapter and the database
//! its read-model tables live in.

pub mod document_notifications;
pub mod environment_documents;
pub mod feature_versions;
pub mod runner;
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
pub async fn connect(database_url: &str) -> Result<sqlx::AnyPool, Error> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::any::AnyPoolOptions::new()
        .max_connections(8)
        .connect(database_url)
        .await?)
}

//! flaglog's composition root: configuration, logging, the HTTP server and the command line.
//! It wires the write side (`commands`), the read side (`projections`) and the event log adapter
//! together; nothing else depends on it.

pub mod cli;
pub mod config;
pub mod http;
pub mod sdk_cache;
pub mod sdk_store;
pub mod telemetry;

use std::sync::Arc;

use commands::Commands;
use commands::store::Store;
use domain::log::EventLog;
use projections::environment_documents::EnvironmentDocuments;
use tokio::sync::broadcast;

/// Applies the schema and opens the event log at `database_url`.
pub async fn open_log(database_url: &str) -> Result<Arc<dyn EventLog>, domain::log::LogError> {
    commands::log::migrate(database_url).await?;
    commands::log::connect(database_url).await
}

/// The write side on `log`, for commands that need nothing else (the CLI's).
pub fn commands(log: Arc<dyn EventLog>) -> Commands {
    Commands::new(Store::new(log))
}

/// Everything the server needs, running: the log, the write side, the environment-documents
/// projection (in the background, woken by the log) and the SDK cache it keeps fresh.
pub async fn start(database_url: &str) -> Result<http::AppState, String> {
    start_with_sdk_cache(database_url, sdk_cache::CacheBounds::default()).await
}

/// [`start`], with the SDK cache's tiers bounded to about `bounds`.
pub async fn start_with_sdk_cache(
    database_url: &str,
    bounds: sdk_cache::CacheBounds,
) -> Result<http::AppState, String> {
    // First, so that whatever the log writer appends from now on is counted.
    http::metrics::install();
    let log = open_log(database_url)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    let pool = projections::connect(database_url)
        .await
        .map_err(|e| format!("cannot open the read models: {e}"))?;
    let (document_changes, _) = broadcast::channel(4096);

    let projection_pool = pool.clone();
    let projection_changes = document_changes.clone();
    let projection_log = log.clone();
    let projection_progress = projections::runner::spawn(log.clone(), move || {
        EnvironmentDocuments::new(
            projection_pool.clone(),
            projection_log.clone(),
            projection_changes.clone(),
        )
    });

    let sdk = Arc::new(sdk_cache::EnvironmentCache::new(pool.clone(), bounds));
    let mut changes = document_changes.subscribe();
    let cache = sdk.clone();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(change) => cache.changed(&change).await,
                Err(broadcast::error::RecvError::Lagged(_)) => cache.clear(),
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });

    let sdk_store = sdk_store::SdkStore::open(pool)
        .await
        .map_err(|e| format!("cannot read the stored identities: {e}"))?;
    Ok(http::AppState::new(http::Services {
        commands: commands(log.clone()),
        log,
        sdk,
        sdk_store,
        document_changes,
        projection_progress,
    }))
}

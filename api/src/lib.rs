//! flaglog's composition root: configuration, logging, the HTTP server and the command line.
//! It wires the write side (`commands`), the read side (`projections`) and the event log adapter
//! together; nothing else depends on it.

pub mod cli;
pub mod config;
pub mod http;
pub mod telemetry;

use std::sync::Arc;

use commands::Commands;
use commands::store::Store;
use domain::log::EventLog;

/// Applies the schema and opens the event log at `database_url`.
pub async fn open_log(database_url: &str) -> Result<Arc<dyn EventLog>, domain::log::LogError> {
    commands::log::migrate(database_url).await?;
    commands::log::connect(database_url).await
}

/// The state the HTTP server shares between requests.
pub fn app_state(log: Arc<dyn EventLog>) -> http::AppState {
    http::AppState {
        commands: Commands::new(Store::new(log.clone())),
        log,
    }
}

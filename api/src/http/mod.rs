//! The HTTP server: one router per resource, the shared state, and the layer every request
//! passes: request id, metrics, access log.
//!
//! Every request is counted and timed on `/metrics` ([`metrics`]) and logged once when it
//! completes, with its method, route *template* (never the concrete path: paths carry
//! environment keys), status, latency and request id. The SDK routes ([`SDK_ROUTES`]: what
//! SDKs call on every evaluation, at rates far above anyone's admin traffic) log at `debug`,
//! everything else at `info`: at the default level, a line per SDK request cost a fifth of the
//! server's CPU on `GET /api/v1/flags/`, and `/metrics` counts them anyway.

pub mod admin;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod ofrep;
pub mod openapi;
pub mod request_context;
pub mod sdk;
pub mod sdk_common;
pub mod time_travel;

use std::sync::Arc;

use axum::Router;
use commands::Commands;
use domain::log::EventLog;
pub use projections::environment_documents::DocumentChanged;
use projections::workers::Workers;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use request_context::SDK_ROUTES;

/// What every handler can reach: one shared [`Services`], so that handing it to a handler is one
/// reference count, not a copy of each part.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub commands: Commands,
    pub log: Arc<dyn EventLog>,
    /// Projected environments for the SDK endpoints.
    pub sdk: Arc<crate::sdk_cache::EnvironmentCache>,
    pub sdk_store: crate::sdk_store::SdkStore,
    /// Where the identities endpoints offer what they served to identity analytics.
    pub analytics: projections::integrations::analytics::AnalyticsQueue,
    /// This node's SDK API calls per environment, until the `sdk_usage` worker saves them.
    pub api_calls: crate::flag_analytics::ApiCalls,
    /// The dashboard's own flags (dark mode, the announcement), as last read.
    pub own_flags: crate::dashboard::own_flags::SharedOwnFlags,
    /// Whether integrations may be pointed at private and local addresses.
    pub integration_networks: projections::integrations::network::PrivateNetworks,
    /// The database the read models live in (the change-request inbox is read from it).
    pub read_models: sqlx::AnyPool,
    /// Signs audit checkpoints.
    pub signing_key: Arc<domain::checkpoint::SigningKey>,
    /// Announces every environment whose document changed (realtime streams listen).
    pub document_changes: broadcast::Sender<DocumentChanged>,
    /// The log position the environment-documents projection has applied (on the node that
    /// runs it; it stays put on the others).
    pub projection_progress: watch::Receiver<u64>,
    /// This node's background workers (`/health` reports them).
    pub workers: Arc<Workers>,
    /// Cancelled when the server starts shutting down: long-lived responses (realtime streams)
    /// end, so that in-flight requests can finish.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(admin::router())
        .merge(sdk::router())
        .merge(ofrep::router())
        .merge(metrics::router())
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(request_context::RequestContextLayer)
        .with_state(state)
}

async fn not_found() -> error::Error {
    error::Error::NotFound("no such route".into())
}

async fn method_not_allowed() -> error::Error {
    error::Error::MethodNotAllowed
}

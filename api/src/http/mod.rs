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
pub mod sdk;
pub mod sdk_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use commands::Commands;
use domain::log::EventLog;
pub use projections::environment_documents::DocumentChanged;
use projections::workers::Workers;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use extract::RequestId;

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
    /// The database the read models live in (the change-request inbox is read from it).
    pub read_models: sqlx::AnyPool,
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

async fn not_found() -> error::Error {
    error::Error::NotFound("no such route".into())
}

async fn method_not_allowed() -> error::Error {
    error::Error::MethodNotAllowed
}

/// A new request id, `<16 hex digits>-<8 or more hex digits>`: this process's random prefix
/// and a counter, unique without asking the operating system for randomness on every request.
/// Written as a header value directly (the response carries it; the log and events read it
/// back from there), without formatting machinery.
fn new_request_id() -> HeaderValue {
    static PREFIX: LazyLock<u64> = LazyLock::new(|| uuid::Uuid::new_v4().as_u64_pair().0);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let counter_digits = (16 - (counter.leading_zeros() / 4) as usize).max(8);
    let mut text = [0u8; 33];
    let len = 17 + counter_digits;
    write_hex(*PREFIX, &mut text[..16]);
    text[16] = b'-';
    write_hex(counter, &mut text[17..len]);
    // Hex digits and a dash: always a valid header value.
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static("-"))
}

/// `value`'s last `out.len()` hex digits, zero-padded, into `out`.
fn write_hex(mut value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// The route templates whose requests are logged at `debug` (see the module documentation):
/// the Flagsmith SDK endpoints, OFREP, the realtime stream, and the scraper's `/metrics`.
/// Exact templates, not prefixes: `/api/v1/environment-document/import/` is an admin route.
pub const SDK_ROUTES: &[&str] = &[
    "/api/v1/flags/",
    "/api/v1/identities/",
    "/api/v1/environment-document/",
    "/api/v1/analytics/flags/",
    "/sse/environments/{environment_key}/stream",
    "/ofrep/v1/evaluate/flags",
    "/ofrep/v1/evaluate/flags/{key}",
    "/metrics",
];

/// Gives the request an id, and counts, times and logs the request when its response is ready.
async fn request_context(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The caller's id when it is sane (the same header value, shared), else a new one.
    let id_header = request
        .headers()
        .get("x-request-id")
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty()
                && v.len() <= 128
                && v.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        })
        .cloned()
        .unwrap_or_else(new_request_id);
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("<unmatched>", MatchedPath::as_str);
    request
        .extensions_mut()
        .insert(RequestId(id_header.clone()));
    let mut response = next.run(request).await;
    let request_id = id_header.to_str().unwrap_or_default();
    let elapsed = started.elapsed();
    let status = response.status();
    metrics::record_request(&method, route, status, elapsed);
    // One call site per level: each is checked against the filter once, then costs a load.
    let latency_ms = || (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    if SDK_ROUTES.contains(&route) {
        tracing::debug!(
            method = %method,
            route = %route,
            status = status.as_u16(),
            latency_ms = latency_ms(),
            request_id = %request_id,
            "request"
        );
    } else {
        tracing::info!(
            method = %method,
            route = %route,
            status = status.as_u16(),
            latency_ms = latency_ms(),
            request_id = %request_id,
            "request"
        );
    }
    response.headers_mut().insert("x-request-id", id_header);
    response
}

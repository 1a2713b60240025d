//! `GET /metrics`: what the server did, in Prometheus' text format, for whoever watches it
//! (a Prometheus scraper, or `curl`): requests and their latency per route *template* and
//! status, the events the log appended, how far the read side has got.
//!
//! Recording goes through the `metrics` facade, so code outside `api` records without a
//! reference to anything here (the log's writer counts [`EVENTS_APPENDED`]); the facade's
//! Prometheus exporter keeps the values and renders them (its own HTTP listener is not built:
//! this route serves them). The recorder is process-wide: installed once ([`install`]), shared
//! by every server a process starts (tests start many).
//!
//! Per request, the middleware in [`super`] calls [`record_request`]: two handles looked up in
//! a map under a read lock (made once per method, route and status) and two atomic updates.
//! Labels are route templates, never concrete paths: paths carry environment keys. Histogram
//! samples wait in the exporter until a scrape or an upkeep ([`UPKEEP_INTERVAL`], on a thread
//! of its own) folds them into buckets, so memory stays bounded when nobody scrapes.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::http::AppState;

/// Requests answered, by `method`, `route` (template) and `status`.
pub const REQUESTS: &str = "flaglog_http_requests_total";
/// Seconds from a request's arrival to its response, by `method`, `route` and `status`.
pub const REQUEST_SECONDS: &str = "flaglog_http_request_duration_seconds";
/// Events appended to the log (counted by `commands::log::writer` when a batch commits, under
/// this name: `commands` does not depend on `api`).
pub const EVENTS_APPENDED: &str = "flaglog_events_appended_total";
/// The log position the environment-documents projection has applied.
pub const PROJECTION_POSITION: &str = "flaglog_projection_position";
/// The log position a background worker has applied, by `worker`.
pub const WORKER_POSITION: &str = "flaglog_worker_position";
/// How many events a background worker is behind the log's head, by `worker`.
pub const WORKER_LAG: &str = "flaglog_worker_lag";

/// The upper bounds of the latency histogram's buckets, in seconds: SDK answers from the cache
/// take well under a millisecond, admin writes a few milliseconds, a slow database more.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// How often histogram samples are folded into buckets when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The exporter's handle, once installed; `None` if another recorder was installed first.
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle) and starts
/// its upkeep thread.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_SECONDS.into()), LATENCY_BUCKETS);
            let handle = match builder.and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::warn!(%error, "metrics are not recorded: no recorder installed");
                    return None;
                }
            };
            describe();
            let upkeep = handle.clone();
            let started = std::thread::Builder::new()
                .name("flaglog-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = started {
                tracing::warn!(%error, "no metrics upkeep thread: histograms fold on scrape only");
            }
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route template and status"
    );
    metrics::describe_histogram!(
        REQUEST_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency, by route template and status"
    );
    metrics::describe_counter!(EVENTS_APPENDED, "Events appended to the log");
    metrics::describe_gauge!(
        PROJECTION_POSITION,
        "Log position the projection has applied"
    );
    metrics::describe_gauge!(
        WORKER_POSITION,
        "Log position a background worker has applied"
    );
    metrics::describe_gauge!(
        WORKER_LAG,
        "Events a background worker is behind the log's head"
    );
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// `GET /metrics`: every series, refreshed gauges first.
async fn scrape(State(state): State<AppState>) -> Response {
    let Some(handle) = install() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics are not recorded\n",
        )
            .into_response();
    };
    refresh_gauges(&state);
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Gauges read from the running state when scraped.
fn refresh_gauges(state: &AppState) {
    metrics::gauge!(PROJECTION_POSITION).set(*state.projection_progress.borrow() as f64);
    let statuses = state.workers.statuses();
    set_worker_gauges(statuses.iter().filter_map(|status| {
        Some(WorkerGauge {
            worker: &status.name,
            position: status.position?,
            lag: status.lag_events.unwrap_or(0),
        })
    }));
}

/// One background worker's progress, as `/metrics` shows it.
#[derive(Debug, Clone, Copy)]
pub struct WorkerGauge<'a> {
    pub worker: &'a str,
    /// The log position it has applied.
    pub position: u64,
    /// Events between that position and the log's head.
    pub lag: u64,
}

/// Sets [`WORKER_POSITION`] and [`WORKER_LAG`] for each worker, labelled with its name: the
/// place the worker runtime's statuses go (see [`refresh_gauges`]).
pub fn set_worker_gauges<'a>(workers: impl IntoIterator<Item = WorkerGauge<'a>>) {
    for worker in workers {
        let name = worker.worker.to_string();
        metrics::gauge!(WORKER_POSITION, "worker" => name.clone()).set(worker.position as f64);
        metrics::gauge!(WORKER_LAG, "worker" => name).set(worker.lag as f64);
    }
}

/// The handles of one method, route and status.
struct Series {
    requests: Counter,
    seconds: Histogram,
}

/// Route template → (method, status) → handles: made once, so a request only reads.
type SeriesMap = HashMap<Box<str>, HashMap<(&'static str, u16), Series>>;

static SERIES: LazyLock<RwLock<SeriesMap>> = LazyLock::new(Default::default);

/// Counts a request answered and records its latency.
pub fn record_request(method: &Method, route: &str, status: StatusCode, elapsed: Duration) {
    let key = (method_label(method), status.as_u16());
    let record = |series: &Series| {
        series.requests.increment(1);
        series.seconds.record(elapsed.as_secs_f64());
    };
    if let Ok(known) = SERIES.read()
        && let Some(series) = known.get(route).and_then(|by_status| by_status.get(&key))
    {
        record(series);
        return;
    }
    let labels = [
        ("method", key.0.to_string()),
        ("route", route.to_string()),
        ("status", status.as_str().to_string()),
    ];
    let series = Series {
        requests: metrics::counter!(REQUESTS, &labels),
        seconds: metrics::histogram!(REQUEST_SECONDS, &labels),
    };
    record(&series);
    if let Ok(mut known) = SERIES.write() {
        known
            .entry(route.into())
            .or_default()
            .entry(key)
            .or_insert(series);
    }
}

/// A method as a label: the standard ones by name, any other `OTHER` (methods are the
/// caller's to invent; labels must stay few).
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("OTHER", |(_, label)| label)
}

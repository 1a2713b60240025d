//! `GET /health`: whether this node can serve, and how its background workers stand.
//!
//! 200 while the event log's database answers, 503 when it does not (a load balancer takes the
//! node out). The body names the node and lists its workers (`projections::workers`): state,
//! leader, position, lag and last error. A follower of a one-node worker reports what the
//! worker's leader last wrote, so every node shows where the projection stands.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use projections::workers::WorkerStatus;
use serde_json::{Value, json};

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// One worker as `/health` shows it.
pub fn worker_json(status: &WorkerStatus) -> Value {
    json!({
        "name": status.name,
        "state": status.state,
        "leader": status.leader,
        "position": status.position,
        "lag_events": status.lag_events,
        "lag_seconds": status.lag_seconds,
        "last_error": status.last_error,
    })
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The database is reachable: this node can serve"),
              (status = 503, description = "The database is not reachable")))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let workers: Vec<Value> = state.workers.statuses().iter().map(worker_json).collect();
    let node = state.workers.node();
    match state.log.head().await {
        Ok(position) => (
            StatusCode::OK,
            Json(json!({
                "status": "ok",
                "database": "ok",
                "node": node,
                "log_position": position,
                "workers": workers,
            })),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unavailable",
                    "database": "unreachable",
                    "node": node,
                    "workers": workers,
                })),
            )
        }
    }
}

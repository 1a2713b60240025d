//! `GET /health`: 200 when the event log's database answers, 503 when it does not.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use crate::http::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The database is reachable"),
              (status = 503, description = "The database is not reachable")))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.log.head().await {
        Ok(position) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "log_position": position})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "error": "database unreachable"})),
            )
        }
    }
}

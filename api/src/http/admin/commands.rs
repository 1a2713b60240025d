//! `POST /api/v1/commands/`: executes one command given in its JSON form (see `domain::command`),
//! through the same path every admin route takes. For scripts and tools that hold changes as
//! data, and the form in which change requests will store what they propose.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use domain::command::Command;
use serde::Serialize;
use serde_json::Value;

use crate::http::AppState;
use crate::http::admin::execute;
use crate::http::error::Result;
use crate::http::extract::{Admin, JsonBody};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/commands/", post(execute_command))
}

/// What the command did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExecutedView {
    /// The log position of the last event appended; `null` when the command changed nothing.
    pub position: Option<u64>,
    /// What it created, if anything: `{"kind": "feature", "feature": {...}}`, `{"kind":
    /// "segment", "id": 8}`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub created: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/commands/", tag = "commands", request_body = Command,
    responses((status = 200, body = ExecutedView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn execute_command(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(command): JsonBody<Command>,
) -> Result<Json<ExecutedView>> {
    let executed = execute(&state, &admin, command).await?;
    Ok(Json(ExecutedView {
        position: executed.position,
        created: executed
            .created
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null)),
    }))
}

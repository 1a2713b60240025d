//! Users: the unauthenticated bootstrap of the first administrator.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::error::Result;
use crate::http::extract::{JsonBody, RequestInfo};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/users/config/init/", post(init))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct InitRequest {
    pub email: String,
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NewUserResponse {
    pub id: u64,
    pub email: String,
    /// The API token, shown this once: send it as `Authorization: Token <token>`.
    pub token: String,
}

/// Creates the first administrator while flaglog has no user; refused (409) afterwards.
#[utoipa::path(post, path = "/api/v1/users/config/init/", tag = "users", request_body = InitRequest,
    responses((status = 201, body = NewUserResponse), (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn init(
    State(state): State<AppState>,
    request: RequestInfo,
    JsonBody(body): JsonBody<InitRequest>,
) -> Result<(StatusCode, Json<NewUserResponse>)> {
    let metadata = request.metadata("system:init");
    let user = state
        .commands
        .create_user(&metadata, &body.email, body.password.as_deref(), true, true)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewUserResponse {
            id: user.id,
            email: body.email.trim().to_string(),
            token: user.token,
        }),
    ))
}

//! Users: the unauthenticated bootstrap of the first administrator, users an administrator
//! creates, and their roles on projects.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, extract::State};
use commands::handlers::new_user_command;
use domain::access::Role;
use domain::command::DirectoryCommand;
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::admin::execute;
use crate::http::error::Result;
use crate::http::extract::{Admin, JsonBody, Path, RequestInfo};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/config/init/", post(init))
        .route("/api/v1/users/", post(create))
        .route(
            "/api/v1/projects/{project_id}/roles/{user_id}/",
            put(set_role),
        )
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateUser {
    pub email: String,
    #[serde(default)]
    pub password: Option<String>,
    /// An organisation administrator (every role everywhere); otherwise roles are given per
    /// project.
    #[serde(default)]
    pub is_admin: bool,
}

/// Creates a user with a first API token (shown once). Needs an organisation administrator.
#[utoipa::path(post, path = "/api/v1/users/", tag = "users", request_body = CreateUser,
    responses((status = 201, body = NewUserResponse), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<NewUserResponse>)> {
    let (command, token) =
        new_user_command(&body.email, body.password.as_deref(), body.is_admin, false)?;
    let id = execute(&state, &admin, command).await?.created_id()?;
    Ok((
        StatusCode::CREATED,
        Json(NewUserResponse {
            id,
            email: body.email.trim().to_string(),
            token,
        }),
    ))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct RoleBody {
    /// `viewer`, `editor`, `approver` or `admin`; `null` takes the role away.
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
}

/// Gives a user a role on a project (or takes it away). Needs the admin role on the project.
#[utoipa::path(put, path = "/api/v1/projects/{project_id}/roles/{user_id}/", tag = "users",
    params(("project_id" = u64, Path), ("user_id" = u64, Path)), request_body = RoleBody,
    responses((status = 200, body = RoleBody), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn set_role(
    State(state): State<AppState>,
    admin: Admin,
    Path((project_id, user_id)): Path<(u64, u64)>,
    JsonBody(body): JsonBody<RoleBody>,
) -> Result<Json<RoleBody>> {
    let command = DirectoryCommand::SetProjectRole {
        project_id,
        user_id,
        role: body.role,
    };
    execute(&state, &admin, command).await?;
    Ok(Json(body))
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

//! API tokens: a user's further personal tokens, service tokens for CI (one role on one
//! project), and rotating and revoking either. A token's secret is answered once, when it is
//! issued or rotated; lists never hold one.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, routing::delete};
use commands::handlers::new_api_token;
use domain::access::Role;
use domain::command::DirectoryCommand;
use domain::directory::{ApiToken, TokenOwner};
use domain::model::{ProjectId, TokenId, UserId};
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::admin::execute;
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, JsonBody, Path};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens/", get(list).post(issue_personal))
        .route("/api/v1/tokens/{token_id}/", delete(revoke))
        .route("/api/v1/tokens/{token_id}/rotate/", post(rotate))
        .route(
            "/api/v1/projects/{project_id}/service-tokens/",
            post(issue_service),
        )
}

/// A token as lists show it: never its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: TokenId,
    pub name: String,
    /// `user` (a person's) or `service`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<ProjectId>,
    /// A service token's role on its project.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub role: Option<Role>,
}

impl From<&ApiToken> for TokenView {
    fn from(token: &ApiToken) -> Self {
        let (kind, user_id, project_id, role) = match token.owner {
            TokenOwner::User { user_id } => ("user", Some(user_id), None, None),
            TokenOwner::Service { project_id, role } => {
                ("service", None, Some(project_id), Some(role))
            }
        };
        TokenView {
            id: token.id,
            name: token.name.clone(),
            kind,
            user_id,
            project_id,
            role,
        }
    }
}

/// A token just issued or rotated, with its secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    #[serde(flatten)]
    pub token: TokenView,
    /// Send it as `Authorization: Token <token>`; it is not shown again.
    #[serde(rename = "token")]
    pub secret: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewPersonalToken {
    pub name: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewServiceToken {
    pub name: String,
    /// `viewer`, `editor`, `approver` or `admin` on the project.
    #[schema(value_type = String)]
    pub role: Role,
}

/// The tokens the caller may manage: their own, the service tokens of projects they administer,
/// every one for an organisation administrator.
#[utoipa::path(get, path = "/api/v1/tokens/", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>)))]
pub async fn list(State(state): State<AppState>, caller: Admin) -> Result<Json<Vec<TokenView>>> {
    let directory = state.commands.directory().await?.state;
    Ok(Json(
        directory
            .tokens_visible_to(&caller.principal)
            .map(TokenView::from)
            .collect(),
    ))
}

async fn issued(state: &AppState, id: TokenId, secret: String) -> Result<IssuedToken> {
    let directory = state.commands.directory().await?.state;
    let token = directory.require_token(id)?;
    Ok(IssuedToken {
        token: TokenView::from(token),
        secret,
    })
}

/// Issues the calling user a further personal token (e.g. one per machine). Service tokens
/// cannot: they are no person's.
#[utoipa::path(post, path = "/api/v1/tokens/", tag = "tokens", request_body = NewPersonalToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody)))]
pub async fn issue_personal(
    State(state): State<AppState>,
    caller: Admin,
    JsonBody(body): JsonBody<NewPersonalToken>,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let user_id = caller.principal.user_id().ok_or_else(|| {
        Error::Forbidden("a service token cannot issue personal tokens: use a user's token".into())
    })?;
    let (secret, token_hash) = new_api_token();
    let command = DirectoryCommand::IssueApiToken {
        user_id,
        name: body.name,
        token_hash,
    };
    let id = execute(&state, &caller, command).await?.created_id()?;
    let issued = issued(&state, id, secret).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Issues a service token holding `role` on the project. Needs the admin role there.
#[utoipa::path(post, path = "/api/v1/projects/{project_id}/service-tokens/", tag = "tokens",
    params(("project_id" = u64, Path)), request_body = NewServiceToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn issue_service(
    State(state): State<AppState>,
    caller: Admin,
    Path(project_id): Path<ProjectId>,
    JsonBody(body): JsonBody<NewServiceToken>,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let (secret, token_hash) = new_api_token();
    let command = DirectoryCommand::IssueServiceToken {
        project_id,
        name: body.name,
        role: body.role,
        token_hash,
    };
    let id = execute(&state, &caller, command).await?.created_id()?;
    let issued = issued(&state, id, secret).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Replaces a token's secret: the old one stops working at once. Allowed to the token itself,
/// its owner, an admin of a service token's project, or an organisation administrator.
#[utoipa::path(post, path = "/api/v1/tokens/{token_id}/rotate/", tag = "tokens",
    params(("token_id" = u64, Path)),
    responses((status = 200, body = IssuedToken), (status = 403, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Admin,
    Path(token_id): Path<TokenId>,
) -> Result<Json<IssuedToken>> {
    let (secret, token_hash) = new_api_token();
    let command = DirectoryCommand::RotateApiToken {
        token_id,
        token_hash,
    };
    execute(&state, &caller, command).await?;
    Ok(Json(issued(&state, token_id, secret).await?))
}

/// Revokes a token: it stops working at once. Allowed to whoever may rotate it.
#[utoipa::path(delete, path = "/api/v1/tokens/{token_id}/", tag = "tokens",
    params(("token_id" = u64, Path)),
    responses((status = 204), (status = 403, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Admin,
    Path(token_id): Path<TokenId>,
) -> Result<StatusCode> {
    execute(
        &state,
        &caller,
        DirectoryCommand::RevokeApiToken { token_id },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

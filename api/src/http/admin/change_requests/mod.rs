//! Change requests (four-eyes): propose commands for an environment or a project, review them
//! (approve, withdraw, comment, reject), commit them now or at their `live_from`, rebase a stale
//! one. Every step is a command on the request's own stream, decided by
//! `domain::command::change_request`; the commit applies the proposed commands in the same
//! append. Lists are answered from the inbox projection ([`inbox`]). Also the list of changes
//! applied without review (break-glass).

pub mod impact;
pub mod inbox;
pub mod unreviewed;
mod view;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::access::{Requirement, Role, Scope as AccessScope};
use domain::change_request::{ChangeRequest, ChangeRequestId, Scope, Status};
use domain::command::Command;
use domain::command::change_request::{Actor, ChangeRequestCommand};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::http::AppState;
use crate::http::admin::{environment_by_key, require, require_reader};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, JsonBody, Path};
pub use domain::log::rfc3339;
pub use view::ChangeRequestView;
use view::Context;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/environments/{api_key}/change-requests/",
            get(inbox::list_for_environment).post(open_for_environment),
        )
        .route(
            "/api/v1/projects/{project_id}/change-requests/",
            get(inbox::list_for_project).post(open_for_project),
        )
        .route("/api/v1/change-requests/", get(inbox::inbox))
        .route("/api/v1/change-requests/{id}/", get(show).patch(edit))
        .route("/api/v1/change-requests/{id}/approve/", post(approve))
        .route(
            "/api/v1/change-requests/{id}/withdraw-approval/",
            post(withdraw_approval),
        )
        .route("/api/v1/change-requests/{id}/reject/", post(reject))
        .route("/api/v1/change-requests/{id}/comment/", post(comment))
        .route("/api/v1/change-requests/{id}/close/", post(close))
        .route("/api/v1/change-requests/{id}/commit/", post(commit))
        .route("/api/v1/change-requests/{id}/rebase/", post(rebase))
        .route(
            "/api/v1/change-requests/{id}/cancel-schedule/",
            post(cancel_schedule),
        )
        .route("/api/v1/change-requests/{id}/revert/", post(revert))
        .route(
            "/api/v1/change-requests/{id}/impact/",
            get(impact::impact_of),
        )
        .route(
            "/api/v1/environments/{api_key}/applied-without-review/",
            get(unreviewed::applied_without_review),
        )
}

/// A new change request.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct OpenChangeRequest {
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Commands in the JSON of `POST /api/v1/commands/`, each changing this request's
    /// environment (or project).
    pub commands: Vec<Command>,
    /// When the change goes live (RFC 3339); committing before then schedules it.
    #[serde(default)]
    pub live_from: Option<String>,
    /// Users (approvers of the project) asked to review.
    #[serde(default)]
    pub reviewers: Vec<u64>,
}

/// What to change of an open request; absent fields stay as they are (`"live_from": null`
/// removes the schedule). A change of the commands or the schedule withdraws every approval.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct EditChangeRequest {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub commands: Option<Vec<Command>>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub live_from: Option<Value>,
    /// Reviewers to assign in addition to those assigned.
    #[serde(default)]
    pub reviewers: Vec<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub reason: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Comment {
    pub text: String,
}

fn parse_live_from(text: &str) -> Result<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
        Error::bad_request("live_from", format!("not an RFC 3339 date and time: {e}"))
    })?;
    Ok((at.unix_timestamp_nanos() / 1000) as i64)
}

fn actor(caller: &Admin) -> Actor {
    caller
        .principal
        .user_id()
        .map_or(Actor::ServiceToken, Actor::User)
}

fn access_scope(scope: Scope) -> AccessScope {
    match scope {
        Scope::Environment(id) => AccessScope::Environment(id),
        Scope::Project(id) => AccessScope::Project(id),
    }
}

async fn require_role(state: &AppState, caller: &Admin, scope: Scope, role: Role) -> Result<()> {
    let needed = Requirement {
        scope: access_scope(scope),
        role,
    };
    require(state, caller, &needed).await
}

async fn view_of(state: &AppState, request: &ChangeRequest) -> Result<ChangeRequestView> {
    let scope = request
        .scope
        .ok_or_else(|| Error::NotFound(format!("change request {} not found", request.id)))?;
    let policy = state.commands.approval_policy(scope).await?;
    let directory = state.commands.directory().await?.state;
    let project = directory.project_of_scope(scope).unwrap_or_default();
    let approvers = directory.approvers_of(project);
    let conflicts = if matches!(request.status, Status::Open | Status::Scheduled) {
        state.commands.change_request_conflicts(request).await?
    } else {
        vec![]
    };
    Ok(ChangeRequestView::of(
        request,
        Context {
            conflicts,
            policy,
            approvers: &approvers,
        },
    ))
}

/// Loads a request the caller may read.
async fn readable(state: &AppState, caller: &Admin, id: ChangeRequestId) -> Result<ChangeRequest> {
    let request = state.commands.change_request(id).await?.state;
    let directory = state.commands.directory().await?.state;
    let project = request
        .scope
        .and_then(|scope| directory.project_of_scope(scope))
        .ok_or_else(|| Error::NotFound(format!("change request {id} not found")))?;
    require_reader(state, caller, project).await?;
    Ok(request)
}

async fn open(
    state: &AppState,
    caller: &Admin,
    scope: Scope,
    body: OpenChangeRequest,
) -> Result<(StatusCode, Json<ChangeRequestView>)> {
    let live_from_micros = body.live_from.as_deref().map(parse_live_from).transpose()?;
    let command = ChangeRequestCommand::OpenChangeRequest {
        change_request_id: 0,
        scope,
        title: body.title,
        description: body.description,
        commands: body.commands,
        base_versions: Default::default(),
        live_from_micros,
        reviewers: body.reviewers,
    };
    open_command(state, caller, scope, command).await
}

/// Opens the request `command` describes, for an editor of `scope`.
pub(crate) async fn open_command(
    state: &AppState,
    caller: &Admin,
    scope: Scope,
    command: ChangeRequestCommand,
) -> Result<(StatusCode, Json<ChangeRequestView>)> {
    require_role(state, caller, scope, Role::Editor).await?;
    let opened = state
        .commands
        .execute_change_request(&caller.metadata, actor(caller), &command)
        .await?;
    let request = state
        .commands
        .change_request(opened.change_request_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(view_of(state, &request.state).await?),
    ))
}

#[utoipa::path(post, path = "/api/v1/environments/{api_key}/change-requests/", tag = "change requests",
    params(("api_key" = String, Path)), request_body = OpenChangeRequest,
    responses((status = 201, body = ChangeRequestView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn open_for_environment(
    State(state): State<AppState>,
    caller: Admin,
    Path(api_key): Path<String>,
    JsonBody(body): JsonBody<OpenChangeRequest>,
) -> Result<(StatusCode, Json<ChangeRequestView>)> {
    let env = environment_by_key(&state, &api_key).await?;
    open(&state, &caller, Scope::Environment(env.state.id), body).await
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/change-requests/", tag = "change requests",
    params(("project_id" = u64, Path)), request_body = OpenChangeRequest,
    responses((status = 201, body = ChangeRequestView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn open_for_project(
    State(state): State<AppState>,
    caller: Admin,
    Path(project_id): Path<u64>,
    JsonBody(body): JsonBody<OpenChangeRequest>,
) -> Result<(StatusCode, Json<ChangeRequestView>)> {
    state.commands.project(project_id).await?;
    open(&state, &caller, Scope::Project(project_id), body).await
}

#[utoipa::path(get, path = "/api/v1/change-requests/{id}/", tag = "change requests",
    params(("id" = u64, Path)),
    responses((status = 200, body = ChangeRequestView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<u64>,
) -> Result<Json<ChangeRequestView>> {
    let request = readable(&state, &caller, id).await?;
    Ok(Json(view_of(&state, &request).await?))
}

/// Executes `command` on request `id` for the caller (who needs `role` on its scope) and
/// answers the request as it is then.
async fn act(
    state: &AppState,
    caller: &Admin,
    id: ChangeRequestId,
    role: Role,
    command: ChangeRequestCommand,
) -> Result<Json<ChangeRequestView>> {
    let request = readable(state, caller, id).await?;
    if let Some(scope) = request.scope {
        require_role(state, caller, scope, role).await?;
    }
    state
        .commands
        .execute_change_request(&caller.metadata, actor(caller), &command)
        .await?;
    let request = state.commands.change_request(id).await?;
    Ok(Json(view_of(state, &request.state).await?))
}

#[utoipa::path(patch, path = "/api/v1/change-requests/{id}/", tag = "change requests",
    params(("id" = u64, Path)), request_body = EditChangeRequest,
    responses((status = 200, body = ChangeRequestView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<u64>,
    JsonBody(body): JsonBody<EditChangeRequest>,
) -> Result<Json<ChangeRequestView>> {
    let request = readable(&state, &caller, id).await?;
    let live_from_micros = match &body.live_from {
        None => request.content.live_from_micros,
        Some(Value::Null) => None,
        Some(Value::String(text)) => Some(parse_live_from(text)?),
        Some(_) => {
            return Err(Error::bad_request(
                "live_from",
                "an RFC 3339 date and time, or null",
            ));
        }
    };
    let commands = match body.commands {
        Some(commands) => commands,
        None => request
            .content
            .commands
            .iter()
            .map(|c| c.decode())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Internal(e.to_string()))?,
    };
    let edit = ChangeRequestCommand::EditChangeRequest {
        change_request_id: id,
        title: body.title.unwrap_or_else(|| request.title.clone()),
        description: body
            .description
            .unwrap_or_else(|| request.description.clone()),
        commands,
        // The executor keeps each kept subject's base and bases new ones on now.
        base_versions: request.content.base_versions.clone(),
        live_from_micros,
    };
    let edited = act(&state, &caller, id, Role::Editor, edit).await?;
    if body.reviewers.is_empty() {
        return Ok(edited);
    }
    let assign = ChangeRequestCommand::AssignReviewers {
        change_request_id: id,
        reviewers: body.reviewers,
    };
    act(&state, &caller, id, Role::Editor, assign).await
}

macro_rules! action {
    ($name:ident, $path:literal, $role:expr, $variant:ident) => {
        #[utoipa::path(post, path = $path, tag = "change requests", params(("id" = u64, Path)),
            responses((status = 200, body = ChangeRequestView), (status = 403, body = crate::http::error::ErrorBody),
                      (status = 404, body = crate::http::error::ErrorBody), (status = 409, body = crate::http::error::ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            caller: Admin,
            Path(id): Path<u64>,
        ) -> Result<Json<ChangeRequestView>> {
            let command = ChangeRequestCommand::$variant {
                change_request_id: id,
            };
            act(&state, &caller, id, $role, command).await
        }
    };
}

action!(
    approve,
    "/api/v1/change-requests/{id}/approve/",
    Role::Viewer,
    ApproveChangeRequest
);
action!(
    withdraw_approval,
    "/api/v1/change-requests/{id}/withdraw-approval/",
    Role::Viewer,
    WithdrawApproval
);
action!(
    close,
    "/api/v1/change-requests/{id}/close/",
    Role::Editor,
    CloseChangeRequest
);
action!(
    commit,
    "/api/v1/change-requests/{id}/commit/",
    Role::Editor,
    CommitChangeRequest
);
action!(
    cancel_schedule,
    "/api/v1/change-requests/{id}/cancel-schedule/",
    Role::Editor,
    CancelSchedule
);

#[utoipa::path(post, path = "/api/v1/change-requests/{id}/reject/", tag = "change requests",
    params(("id" = u64, Path)), request_body = Reason,
    responses((status = 200, body = ChangeRequestView), (status = 403, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<u64>,
    JsonBody(body): JsonBody<Reason>,
) -> Result<Json<ChangeRequestView>> {
    let command = ChangeRequestCommand::RejectChangeRequest {
        change_request_id: id,
        reason: body.reason,
    };
    act(&state, &caller, id, Role::Viewer, command).await
}

#[utoipa::path(post, path = "/api/v1/change-requests/{id}/comment/", tag = "change requests",
    params(("id" = u64, Path)), request_body = Comment,
    responses((status = 200, body = ChangeRequestView), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn comment(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<u64>,
    JsonBody(body): JsonBody<Comment>,
) -> Result<Json<ChangeRequestView>> {
    let command = ChangeRequestCommand::CommentOnChangeRequest {
        change_request_id: id,
        text: body.text,
    };
    act(&state, &caller, id, Role::Viewer, command).await
}

/// Re-bases the request on the current revisions of what it changes (withdrawing approvals of
/// the old base); the answer shows the request as it now is.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/rebase/", tag = "change requests",
    params(("id" = u64, Path)),
    responses((status = 200, body = ChangeRequestView), (status = 403, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn rebase(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<u64>,
) -> Result<Json<ChangeRequestView>> {
    readable(&state, &caller, id).await?;
    let command = state.commands.rebase_command(id).await?;
    act(&state, &caller, id, Role::Editor, command).await
}

/// Proposes undoing a committed request: a new change request that puts back what was there
/// before its commit, based on the current revisions. Answers the new request.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/revert/", tag = "change requests",
    params(("id" = u64, Path)),
    responses((status = 201, body = ChangeRequestView), (status = 403, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn revert(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<u64>,
) -> Result<(StatusCode, Json<ChangeRequestView>)> {
    let request = readable(&state, &caller, id).await?;
    let scope = request
        .scope
        .ok_or_else(|| Error::NotFound(format!("change request {id} not found")))?;
    let command = state.commands.revert_command(id).await?;
    open_command(&state, &caller, scope, command).await
}

//! Lists of change requests, answered from the inbox projection
//! (`projections::change_request_inbox`): an approver's inbox across every environment and
//! project they read (`GET /api/v1/change-requests/`), and one environment's or project's
//! requests. The projection finds the requests that match; each is then shown as its own page
//! shows it (approvals that count under today's roles and policy, conflicts as of now).
//!
//! A list waits (up to `http::admin::FRESHNESS_WAIT`) for the projection to reach the log's head as it was
//! when the request arrived, so a client sees its own changes in the next list.

use axum::Json;
use axum::extract::State;
use domain::change_request::{ChangeRequestId, Scope};
use projections::change_request_inbox::{self, InboxQuery};
use serde::Deserialize;

use super::{ChangeRequestView, view_of};
use crate::http::AppState;
use crate::http::admin::{environment_by_key, may_read, require_reader, wait_until_projected};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Path, Query};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;
const STATUSES: &[&str] = &[
    "open",
    "scheduled",
    "committed",
    "rejected",
    "closed",
    "failed",
];

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only requests in these states, comma-separated (`open`, `scheduled`, `committed`,
    /// `rejected`, `closed`, `failed`).
    pub status: Option<String>,
    /// Only requests opened by this user.
    pub author: Option<u64>,
    /// Only requests this user is assigned to review: a user id, or `me`.
    pub reviewer: Option<String>,
    /// Only requests with a command about this feature (feature ids are per project: across
    /// projects, name the project too).
    pub feature: Option<u64>,
    /// Keyset paging (newest first): only requests with a smaller id than this.
    pub before: Option<u64>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<u32>,
}

/// [`ListQuery`]'s filters, and where (query strings cannot nest, so the fields are repeated).
#[derive(Deserialize, utoipa::IntoParams)]
pub struct InboxQueryParams {
    /// Only requests of this environment (its client key).
    pub environment: Option<String>,
    /// Only requests of this project (its definitions and every environment's).
    pub project: Option<u64>,
    /// As in the environment's list.
    pub status: Option<String>,
    pub author: Option<u64>,
    /// A user id, or `me`.
    pub reviewer: Option<String>,
    pub feature: Option<u64>,
    pub before: Option<u64>,
    pub limit: Option<u32>,
}

fn statuses(text: Option<&str>) -> Result<Vec<String>> {
    let Some(text) = text else {
        return Ok(vec![]);
    };
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if STATUSES.contains(&s) {
                Ok(s.to_string())
            } else {
                Err(Error::bad_request(
                    "status",
                    format!("unknown state {s:?}: one of {}", STATUSES.join(", ")),
                ))
            }
        })
        .collect()
}

fn reviewer(caller: &Admin, text: Option<&str>) -> Result<Option<u64>> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some("me") => {
            caller.principal.user_id().map(Some).ok_or_else(|| {
                Error::bad_request("reviewer", "a service token is nobody's reviewer")
            })
        }
        Some(id) => id
            .parse()
            .map(Some)
            .map_err(|_| Error::bad_request("reviewer", "a user id, or `me`")),
    }
}

/// The requests matching `query` that `caller` may read, each as its page shows it.
async fn answer(
    state: &AppState,
    caller: &Admin,
    scope: Option<Scope>,
    project: Option<u64>,
    query: ListQuery,
) -> Result<Json<Vec<ChangeRequestView>>> {
    let directory = state.commands.directory().await?.state;
    let readable: Vec<u64> = directory
        .projects
        .keys()
        .copied()
        .filter(|p| project.is_none_or(|only| only == *p))
        .filter(|p| may_read(&directory, caller, *p))
        .collect();
    let query = InboxQuery {
        projects: Some(readable),
        scope,
        statuses: statuses(query.status.as_deref())?,
        author: query.author,
        reviewer: reviewer(caller, query.reviewer.as_deref())?,
        feature: query.feature,
        before: query.before,
        limit: query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    };
    wait_until_projected(state, change_request_inbox::NAME).await?;
    let rows = change_request_inbox::query(&state.read_models, &query)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let id: ChangeRequestId = row.id;
        let request = state.commands.change_request(id).await?.state;
        views.push(view_of(state, &request).await?);
    }
    Ok(Json(views))
}

/// An inbox across environments and projects: the requests the caller may read, newest first,
/// filtered (e.g. `?status=open&reviewer=me`).
#[utoipa::path(get, path = "/api/v1/change-requests/", tag = "change requests",
    params(InboxQueryParams),
    responses((status = 200, body = Vec<ChangeRequestView>), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn inbox(
    State(state): State<AppState>,
    caller: Admin,
    Query(params): Query<InboxQueryParams>,
) -> Result<Json<Vec<ChangeRequestView>>> {
    let scope = match &params.environment {
        Some(key) => Some(Scope::Environment(
            environment_by_key(&state, key).await?.state.id,
        )),
        None => None,
    };
    let list = ListQuery {
        status: params.status,
        author: params.author,
        reviewer: params.reviewer,
        feature: params.feature,
        before: params.before,
        limit: params.limit,
    };
    answer(&state, &caller, scope, params.project, list).await
}

/// One environment's change requests, newest first.
#[utoipa::path(get, path = "/api/v1/environments/{api_key}/change-requests/", tag = "change requests",
    params(("api_key" = String, Path), ListQuery),
    responses((status = 200, body = Vec<ChangeRequestView>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn list_for_environment(
    State(state): State<AppState>,
    caller: Admin,
    Path(api_key): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ChangeRequestView>>> {
    let environment = environment_by_key(&state, &api_key).await?.state;
    require_reader(&state, &caller, environment.project_id).await?;
    let scope = Scope::Environment(environment.id);
    answer(&state, &caller, Some(scope), None, query).await
}

/// A project's change requests of its definitions, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{project_id}/change-requests/", tag = "change requests",
    params(("project_id" = u64, Path), ListQuery),
    responses((status = 200, body = Vec<ChangeRequestView>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn list_for_project(
    State(state): State<AppState>,
    caller: Admin,
    Path(project_id): Path<u64>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ChangeRequestView>>> {
    state.commands.project(project_id).await?;
    require_reader(&state, &caller, project_id).await?;
    let scope = Scope::Project(project_id);
    answer(&state, &caller, Some(scope), None, query).await
}

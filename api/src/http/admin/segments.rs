//! Segments of a project: named rules over traits and the evaluation context.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use domain::command::ProjectCommand;
use domain::model::{Segment, SegmentRule};
use domain::project::SegmentInput;
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::admin::{execute, require_reader};
use crate::http::error::Result;
use crate::http::extract::{Admin, JsonBody, Path};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/projects/{project_id}/segments/",
            get(list).post(create),
        )
        .route(
            "/api/v1/projects/{project_id}/segments/{segment_id}/",
            get(show).put(update).delete(delete),
        )
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SegmentView {
    pub project: u64,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub segment: Segment,
}

/// A segment: `rules` is a list of `{"type": "ALL"|"ANY"|"NONE", "conditions": [{"operator",
/// "property_", "value"}], "rules": [...]}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SegmentBody {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<SegmentRule>,
}

impl From<SegmentBody> for SegmentInput {
    fn from(b: SegmentBody) -> Self {
        SegmentInput {
            id: None,
            name: b.name,
            description: b.description,
            rules: b.rules,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments/", tag = "segments",
    params(("project_id" = u64, Path)),
    responses((status = 200, body = Vec<SegmentView>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    Path(project_id): Path<u64>,
) -> Result<Json<Vec<SegmentView>>> {
    require_reader(&state, &caller, project_id).await?;
    let project = state.commands.project(project_id).await?;
    Ok(Json(
        project
            .state
            .segments
            .values()
            .map(|s| SegmentView {
                project: project_id,
                segment: s.clone(),
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/segments/", tag = "segments",
    params(("project_id" = u64, Path)), request_body = SegmentBody,
    responses((status = 201, body = SegmentView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Path(project_id): Path<u64>,
    JsonBody(body): JsonBody<SegmentBody>,
) -> Result<(StatusCode, Json<SegmentView>)> {
    let command = ProjectCommand::CreateSegment {
        project_id,
        segment: body.into(),
    };
    let id = execute(&state, &admin, command).await?.created_id()?;
    let project = state.commands.project(project_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(SegmentView {
            project: project_id,
            segment: project.state.segment(id)?.clone(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/segments/{segment_id}/", tag = "segments",
    params(("project_id" = u64, Path), ("segment_id" = u64, Path)),
    responses((status = 200, body = SegmentView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Admin,
    Path((project_id, segment_id)): Path<(u64, u64)>,
) -> Result<Json<SegmentView>> {
    require_reader(&state, &caller, project_id).await?;
    let project = state.commands.project(project_id).await?;
    Ok(Json(SegmentView {
        project: project_id,
        segment: project.state.segment(segment_id)?.clone(),
    }))
}

#[utoipa::path(put, path = "/api/v1/projects/{project_id}/segments/{segment_id}/", tag = "segments",
    params(("project_id" = u64, Path), ("segment_id" = u64, Path)), request_body = SegmentBody,
    responses((status = 200, body = SegmentView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path((project_id, segment_id)): Path<(u64, u64)>,
    JsonBody(body): JsonBody<SegmentBody>,
) -> Result<Json<SegmentView>> {
    let command = ProjectCommand::UpdateSegment {
        project_id,
        segment_id,
        segment: body.into(),
    };
    execute(&state, &admin, command).await?;
    let project = state.commands.project(project_id).await?;
    Ok(Json(SegmentView {
        project: project_id,
        segment: project.state.segment(segment_id)?.clone(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/segments/{segment_id}/", tag = "segments",
    params(("project_id" = u64, Path), ("segment_id" = u64, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path((project_id, segment_id)): Path<(u64, u64)>,
) -> Result<StatusCode> {
    let command = ProjectCommand::DeleteSegment {
        project_id,
        segment_id,
    };
    execute(&state, &admin, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

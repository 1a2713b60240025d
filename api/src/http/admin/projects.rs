//! Projects: their settings (name, feature name pattern, case sensitivity of feature names).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use domain::command::{DirectoryCommand, ProjectCommand};
use domain::project::{Project, ProjectSettings};
use serde::{Deserialize, Serialize};

use crate::http::AppState;
use crate::http::admin::{execute, may_read, require_reader};
use crate::http::error::Result;
use crate::http::extract::{Admin, JsonBody, Path};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects/", get(list).post(create))
        .route("/api/v1/projects/{project_id}/", get(show).put(update))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    pub id: u64,
    pub organisation: u64,
    pub name: String,
    pub feature_name_regex: Option<String>,
    pub case_sensitive_feature_names: bool,
    pub hide_disabled_flags: bool,
    /// Approvals a change request of the project's features and segments needs (0: off).
    pub minimum_change_request_approvals: u32,
    pub approvals_from_assigned_reviewers_only: bool,
}

impl ProjectView {
    fn of(project: &Project) -> Self {
        ProjectView {
            id: project.id,
            organisation: project.organisation_id,
            name: project.settings.name.clone(),
            feature_name_regex: project.settings.feature_name_regex.clone(),
            case_sensitive_feature_names: project.settings.case_sensitive_feature_names,
            hide_disabled_flags: project.settings.hide_disabled_flags,
            minimum_change_request_approvals: project.settings.minimum_change_request_approvals,
            approvals_from_assigned_reviewers_only: project
                .settings
                .approvals_from_assigned_reviewers_only,
        }
    }
}

/// A new project: its organisation and settings. (Fields are spelled out rather than
/// flattened, so a bad field is named in the 400.)
#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateProject {
    pub organisation: u64,
    pub name: String,
    #[serde(default)]
    pub feature_name_regex: Option<String>,
    #[serde(default)]
    pub case_sensitive_feature_names: bool,
    #[serde(default)]
    pub hide_disabled_flags: bool,
}

/// A project's settings; on update the whole set is given, except the four-eyes settings,
/// which stay as they are when absent (so an update that does not know them cannot turn
/// review off).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProjectSettingsBody {
    pub name: String,
    #[serde(default)]
    pub feature_name_regex: Option<String>,
    #[serde(default)]
    pub case_sensitive_feature_names: bool,
    #[serde(default)]
    pub hide_disabled_flags: bool,
    #[serde(default)]
    pub minimum_change_request_approvals: Option<u32>,
    #[serde(default)]
    pub approvals_from_assigned_reviewers_only: Option<bool>,
}

impl ProjectSettingsBody {
    fn into_settings(self, current: &ProjectSettings) -> ProjectSettings {
        ProjectSettings {
            name: self.name,
            feature_name_regex: self.feature_name_regex.filter(|r| !r.is_empty()),
            case_sensitive_feature_names: self.case_sensitive_feature_names,
            hide_disabled_flags: self.hide_disabled_flags,
            minimum_change_request_approvals: self
                .minimum_change_request_approvals
                .unwrap_or(current.minimum_change_request_approvals),
            approvals_from_assigned_reviewers_only: self
                .approvals_from_assigned_reviewers_only
                .unwrap_or(current.approvals_from_assigned_reviewers_only),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/projects/", tag = "projects",
    responses((status = 200, body = Vec<ProjectView>)))]
pub async fn list(State(state): State<AppState>, caller: Admin) -> Result<Json<Vec<ProjectView>>> {
    let directory = state.commands.directory().await?;
    let mut views = Vec::new();
    for id in directory.state.projects.keys() {
        if !may_read(&directory.state, &caller, *id) {
            continue;
        }
        views.push(ProjectView::of(&state.commands.project(*id).await?.state));
    }
    Ok(Json(views))
}

#[utoipa::path(post, path = "/api/v1/projects/", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = ProjectView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<CreateProject>,
) -> Result<(StatusCode, Json<ProjectView>)> {
    let command = DirectoryCommand::CreateProject {
        organisation_id: body.organisation,
        settings: ProjectSettingsBody {
            name: body.name,
            feature_name_regex: body.feature_name_regex,
            case_sensitive_feature_names: body.case_sensitive_feature_names,
            hide_disabled_flags: body.hide_disabled_flags,
            minimum_change_request_approvals: None,
            approvals_from_assigned_reviewers_only: None,
        }
        .into_settings(&ProjectSettings::default()),
    };
    let id = execute(&state, &admin, command).await?.created_id()?;
    let project = state.commands.project(id).await?;
    Ok((StatusCode::CREATED, Json(ProjectView::of(&project.state))))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/", tag = "projects",
    params(("project_id" = u64, Path)),
    responses((status = 200, body = ProjectView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Admin,
    Path(project_id): Path<u64>,
) -> Result<Json<ProjectView>> {
    require_reader(&state, &caller, project_id).await?;
    let project = state.commands.project(project_id).await?;
    Ok(Json(ProjectView::of(&project.state)))
}

#[utoipa::path(put, path = "/api/v1/projects/{project_id}/", tag = "projects",
    params(("project_id" = u64, Path)), request_body = ProjectSettingsBody,
    responses((status = 200, body = ProjectView), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(project_id): Path<u64>,
    JsonBody(body): JsonBody<ProjectSettingsBody>,
) -> Result<Json<ProjectView>> {
    let current = state.commands.project(project_id).await?.state.settings;
    let command = ProjectCommand::UpdateProject {
        project_id,
        settings: body.into_settings(&current),
    };
    execute(&state, &admin, command).await?;
    let project = state.commands.project(project_id).await?;
    Ok(Json(ProjectView::of(&project.state)))
}

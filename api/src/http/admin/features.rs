//! Features of a project, with their multivariate options.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use commands::handlers::Created;
use domain::command::ProjectCommand;
use domain::model::{Feature, FeatureType};
use domain::project::{FeatureChanges, FeatureInput, OptionInput};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::AppState;
use crate::http::admin::{execute, require_reader};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, JsonBody, Path};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/projects/{project_id}/features/",
            get(list).post(create),
        )
        .route(
            "/api/v1/projects/{project_id}/features/{feature_id}/",
            get(show).patch(update).delete(delete),
        )
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeatureView {
    pub project: u64,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub feature: Feature,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
pub struct OptionBody {
    /// Given to keep an existing option when the options are replaced.
    #[serde(default)]
    pub id: Option<u64>,
    pub value: Value,
    #[serde(default)]
    pub default_percentage_allocation: f64,
    /// Reported as the flag's `variant` (e.g. by OFREP) when this option is chosen.
    #[serde(default)]
    pub key: Option<String>,
}

impl From<OptionBody> for OptionInput {
    fn from(b: OptionBody) -> Self {
        OptionInput {
            id: b.id,
            value: b.value,
            default_percentage_allocation: b.default_percentage_allocation,
            key: b.key,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateFeature {
    pub name: String,
    /// `STANDARD` or `MULTIVARIATE` (implied by options).
    #[serde(rename = "type", default)]
    #[schema(value_type = Option<String>)]
    pub feature_type: FeatureType,
    #[serde(default)]
    pub default_enabled: bool,
    /// A string, integer, float or boolean.
    #[serde(default)]
    pub initial_value: Value,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub multivariate_options: Vec<OptionBody>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct UpdateFeature {
    pub default_enabled: Option<bool>,
    pub initial_value: Option<Value>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// Replaces the options; give `id` to keep an option.
    pub multivariate_options: Option<Vec<OptionBody>>,
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/features/", tag = "features",
    params(("project_id" = u64, Path)),
    responses((status = 200, body = Vec<FeatureView>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    Path(project_id): Path<u64>,
) -> Result<Json<Vec<FeatureView>>> {
    require_reader(&state, &caller, project_id).await?;
    let project = state.commands.project(project_id).await?;
    Ok(Json(
        project
            .state
            .features
            .values()
            .map(|f| FeatureView {
                project: project_id,
                feature: f.clone(),
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/projects/{project_id}/features/", tag = "features",
    params(("project_id" = u64, Path)), request_body = CreateFeature,
    responses((status = 201, body = FeatureView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody), (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    Path(project_id): Path<u64>,
    JsonBody(body): JsonBody<CreateFeature>,
) -> Result<(StatusCode, Json<FeatureView>)> {
    let feature = FeatureInput {
        id: None,
        name: body.name,
        feature_type: body.feature_type,
        default_enabled: body.default_enabled,
        initial_value: body.initial_value,
        description: body.description,
        tags: body.tags,
        multivariate_options: body
            .multivariate_options
            .into_iter()
            .map(Into::into)
            .collect(),
    };
    let command = ProjectCommand::CreateFeature {
        project_id,
        feature,
    };
    let Some(Created::Feature { feature }) = execute(&state, &admin, command).await?.created else {
        return Err(Error::Internal(
            "creating a feature created no feature".into(),
        ));
    };
    Ok((
        StatusCode::CREATED,
        Json(FeatureView {
            project: project_id,
            feature,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/features/{feature_id}/", tag = "features",
    params(("project_id" = u64, Path), ("feature_id" = u64, Path)),
    responses((status = 200, body = FeatureView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Admin,
    Path((project_id, feature_id)): Path<(u64, u64)>,
) -> Result<Json<FeatureView>> {
    require_reader(&state, &caller, project_id).await?;
    let project = state.commands.project(project_id).await?;
    Ok(Json(FeatureView {
        project: project_id,
        feature: project.state.feature(feature_id)?.clone(),
    }))
}

#[utoipa::path(patch, path = "/api/v1/projects/{project_id}/features/{feature_id}/", tag = "features",
    params(("project_id" = u64, Path), ("feature_id" = u64, Path)), request_body = UpdateFeature,
    responses((status = 200, body = FeatureView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path((project_id, feature_id)): Path<(u64, u64)>,
    JsonBody(body): JsonBody<UpdateFeature>,
) -> Result<Json<FeatureView>> {
    let changes = FeatureChanges {
        default_enabled: body.default_enabled,
        initial_value: body.initial_value,
        description: body.description,
        tags: body.tags,
        multivariate_options: body
            .multivariate_options
            .map(|options| options.into_iter().map(Into::into).collect()),
    };
    let command = ProjectCommand::UpdateFeature {
        project_id,
        feature_id,
        changes,
    };
    execute(&state, &admin, command).await?;
    show(State(state), admin, Path((project_id, feature_id))).await
}

#[utoipa::path(delete, path = "/api/v1/projects/{project_id}/features/{feature_id}/", tag = "features",
    params(("project_id" = u64, Path), ("feature_id" = u64, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    Path((project_id, feature_id)): Path<(u64, u64)>,
) -> Result<StatusCode> {
    let command = ProjectCommand::DeleteFeature {
        project_id,
        feature_id,
    };
    execute(&state, &admin, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

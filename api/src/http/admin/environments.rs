//! Environments, named by their client key as in Flagsmith's admin API: settings, server-side
//! keys, feature states (now or as of a past moment) and segment overrides. (Identity overrides
//! are in [`super::identity_overrides`].)

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use commands::secrets;
use domain::command::{DirectoryCommand, EnvironmentCommand};
use domain::environment::{Environment, EnvironmentSettingsChanges, FeatureStateInput};
use domain::model::{FeatureState, FeatureType, validate_name};
use domain::project::Project;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::admin::{environment_by_key, execute, may_read, require_reader};
use crate::http::error::Result;
use crate::http::extract::{Admin, JsonBody, Path, Query};
use crate::http::{AppState, time_travel};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/environments/", get(list).post(create))
        .route("/api/v1/environments/{api_key}/", get(show).patch(update))
        .route("/api/v1/environments/{api_key}/api-keys/", post(issue_key))
        .route(
            "/api/v1/environments/{api_key}/featurestates/",
            get(feature_states),
        )
        .route(
            "/api/v1/environments/{api_key}/featurestates/{feature_id}/",
            put(set_feature_state),
        )
        .route(
            "/api/v1/environments/{api_key}/segment-overrides/{feature_id}/{segment_id}/",
            put(set_segment_override).delete(remove_segment_override),
        )
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnvironmentView {
    pub id: u64,
    pub project: u64,
    pub name: String,
    /// The client key SDKs send as `X-Environment-Key`.
    pub api_key: String,
    /// Names and ids of the server-side keys (the keys themselves are shown once, when issued).
    pub server_side_keys: Vec<ServerSideKeyView>,
    /// Approvals a change request needs here; 0: four-eyes is off.
    pub minimum_change_request_approvals: u32,
    pub approvals_from_assigned_reviewers_only: bool,
    pub feature_versioning: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerSideKeyView {
    pub id: u64,
    pub name: String,
}

impl EnvironmentView {
    fn of(env: &Environment) -> Self {
        EnvironmentView {
            id: env.id,
            project: env.project_id,
            name: env.name.clone(),
            api_key: env.client_key.clone(),
            server_side_keys: env
                .server_side_keys
                .iter()
                .map(|k| ServerSideKeyView {
                    id: k.id,
                    name: k.name.clone(),
                })
                .collect(),
            minimum_change_request_approvals: env.settings.minimum_change_request_approvals,
            approvals_from_assigned_reviewers_only: env
                .settings
                .approvals_from_assigned_reviewers_only,
            feature_versioning: env.settings.feature_versioning,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only the environments of this project.
    pub project: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/environments/", tag = "environments", params(ListQuery),
    responses((status = 200, body = Vec<EnvironmentView>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<EnvironmentView>>> {
    let directory = state.commands.directory().await?;
    let mut views = Vec::new();
    for (id, (project_id, _)) in &directory.state.environments {
        if query.project.is_none_or(|p| p == *project_id)
            && may_read(&directory.state, &caller, *project_id)
        {
            views.push(EnvironmentView::of(
                &state.commands.environment(*id).await?.state,
            ));
        }
    }
    Ok(Json(views))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateEnvironment {
    pub project: u64,
    pub name: String,
    /// A client key to use instead of a generated one (e.g. the one an SDK already has).
    #[serde(default)]
    pub api_key: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/environments/", tag = "environments", request_body = CreateEnvironment,
    responses((status = 201, body = EnvironmentView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody), (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(body): JsonBody<CreateEnvironment>,
) -> Result<(StatusCode, Json<EnvironmentView>)> {
    let command = DirectoryCommand::CreateEnvironment {
        project_id: body.project,
        name: body.name,
        client_key: body.api_key.unwrap_or_else(secrets::new_client_key),
    };
    let id = execute(&state, &admin, command).await?.created_id()?;
    let env = state.commands.environment(id).await?;
    Ok((StatusCode::CREATED, Json(EnvironmentView::of(&env.state))))
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/", tag = "environments",
    params(("api_key" = String, Path)),
    responses((status = 200, body = EnvironmentView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Admin,
    Path(api_key): Path<String>,
) -> Result<Json<EnvironmentView>> {
    let env = environment_by_key(&state, &api_key).await?;
    require_reader(&state, &caller, env.state.project_id).await?;
    Ok(Json(EnvironmentView::of(&env.state)))
}

/// What to change of an environment: its name and its four-eyes and versioning settings; absent
/// fields stay as they are.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct UpdateEnvironment {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(flatten)]
    pub settings: EnvironmentSettingsChanges,
}

#[utoipa::path(patch, path = "/api/v1/environments/{api_key}/", tag = "environments",
    params(("api_key" = String, Path)), request_body = UpdateEnvironment,
    responses((status = 200, body = EnvironmentView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    Path(api_key): Path<String>,
    JsonBody(body): JsonBody<UpdateEnvironment>,
) -> Result<Json<EnvironmentView>> {
    let env = environment_by_key(&state, &api_key).await?;
    if let Some(name) = &body.name {
        // Checked before anything is written, so the settings never change without the name.
        validate_name("name", name)?;
    }
    if body.settings != EnvironmentSettingsChanges::default() {
        let command = EnvironmentCommand::UpdateEnvironmentSettings {
            environment_id: env.state.id,
            changes: body.settings,
        };
        execute(&state, &admin, command).await?;
    }
    if let Some(name) = body.name {
        let command = EnvironmentCommand::RenameEnvironment {
            environment_id: env.state.id,
            name,
        };
        execute(&state, &admin, command).await?;
    }
    let env = state.commands.environment(env.state.id).await?;
    Ok(Json(EnvironmentView::of(&env.state)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct IssueKey {
    pub name: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedKey {
    pub name: String,
    /// The server-side key (`ser.…`), shown this once.
    pub key: String,
}

#[utoipa::path(post, path = "/api/v1/environments/{api_key}/api-keys/", tag = "environments",
    params(("api_key" = String, Path)), request_body = IssueKey,
    responses((status = 201, body = IssuedKey), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn issue_key(
    State(state): State<AppState>,
    admin: Admin,
    Path(api_key): Path<String>,
    JsonBody(body): JsonBody<IssueKey>,
) -> Result<(StatusCode, Json<IssuedKey>)> {
    let env = environment_by_key(&state, &api_key).await?;
    let key = secrets::new_server_side_key();
    let command = EnvironmentCommand::IssueServerSideKey {
        environment_id: env.state.id,
        name: body.name.clone(),
        key_hash: secrets::sha256_hex(&key),
    };
    execute(&state, &admin, command).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedKey {
            name: body.name.trim().to_string(),
            key,
        }),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeatureRef {
    pub id: u64,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub feature_type: FeatureType,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeatureStateView {
    pub feature: FeatureRef,
    pub enabled: bool,
    pub feature_state_value: Value,
    #[schema(value_type = Vec<Object>)]
    pub multivariate_feature_state_values: Vec<domain::model::MultivariateAllocation>,
}

impl FeatureStateView {
    pub(crate) fn of(feature: &domain::model::Feature, state: FeatureState) -> Self {
        FeatureStateView {
            feature: FeatureRef {
                id: feature.id,
                name: feature.name.clone(),
                feature_type: feature.feature_type,
            },
            enabled: state.enabled,
            feature_state_value: state.feature_state_value,
            multivariate_feature_state_values: state.multivariate_feature_state_values,
        }
    }
}

pub(crate) async fn project_of(state: &AppState, env: &Environment) -> Result<Project> {
    Ok(state.commands.project(env.project_id).await?.state)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct FeatureStatesQuery {
    /// Only this feature's state.
    pub feature: Option<u64>,
    /// An RFC 3339 instant: the states after the last event recorded at or before it.
    pub as_of: Option<String>,
    /// A log position (instead of `as_of`).
    pub as_of_position: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/featurestates/", tag = "feature states",
    params(("api_key" = String, Path), FeatureStatesQuery),
    responses((status = 200, body = Vec<FeatureStateView>,
               description = "With as_of or as_of_position, the states then; X-Flaglog-As-Of-Position names the position"),
              (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn feature_states(
    State(state): State<AppState>,
    caller: Admin,
    Path(api_key): Path<String>,
    Query(query): Query<FeatureStatesQuery>,
) -> Result<Response> {
    let env = environment_by_key(&state, &api_key).await?.state;
    require_reader(&state, &caller, env.project_id).await?;
    let moment = (query.as_of.as_deref(), query.as_of_position.as_deref());
    let (project, environment, position) = time_travel::now_or_then(&state, env, moment).await?;
    let states: Vec<FeatureStateView> = project
        .features
        .values()
        .filter(|f| query.feature.is_none_or(|id| id == f.id))
        .map(|f| FeatureStateView::of(f, environment.effective_state(f)))
        .collect();
    Ok(time_travel::at_position(
        Json(states).into_response(),
        position,
    ))
}

/// A feature state as sent by clients.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct FeatureStateBody {
    pub enabled: bool,
    #[serde(default)]
    pub feature_state_value: Value,
    /// `[{"multivariate_feature_option": id, "percentage_allocation": 0..100}]`; omitted keeps
    /// the current allocations.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub multivariate_feature_state_values: Option<Vec<domain::environment::AllocationInput>>,
}

impl From<FeatureStateBody> for FeatureStateInput {
    fn from(b: FeatureStateBody) -> Self {
        FeatureStateInput {
            enabled: b.enabled,
            feature_state_value: b.feature_state_value,
            multivariate_feature_state_values: b.multivariate_feature_state_values,
            key: None,
        }
    }
}

#[utoipa::path(put, path = "/api/v1/environments/{api_key}/featurestates/{feature_id}/", tag = "feature states",
    params(("api_key" = String, Path), ("feature_id" = u64, Path)), request_body = FeatureStateBody,
    responses((status = 200, body = FeatureStateView), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn set_feature_state(
    State(state): State<AppState>,
    admin: Admin,
    Path((api_key, feature_id)): Path<(String, u64)>,
    JsonBody(body): JsonBody<FeatureStateBody>,
) -> Result<Json<FeatureStateView>> {
    let env = environment_by_key(&state, &api_key).await?;
    let command = EnvironmentCommand::SetFeatureState {
        environment_id: env.state.id,
        feature_id,
        state: body.into(),
    };
    execute(&state, &admin, command).await?;
    let env = state.commands.environment(env.state.id).await?;
    let project = project_of(&state, &env.state).await?;
    let feature = project.feature(feature_id)?;
    Ok(Json(FeatureStateView::of(
        feature,
        env.state.effective_state(feature),
    )))
}

/// A segment override: its priority and the feature state it gives the segment's identities.
/// (Fields are spelled out rather than flattened, so a bad field is named in the 400.)
#[derive(Deserialize, utoipa::ToSchema)]
pub struct SegmentOverrideBody {
    /// Lower wins among the segments an identity matches.
    #[serde(default)]
    pub priority: Option<i64>,
    pub enabled: bool,
    #[serde(default)]
    pub feature_state_value: Value,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub multivariate_feature_state_values: Option<Vec<domain::environment::AllocationInput>>,
}

#[utoipa::path(put, path = "/api/v1/environments/{api_key}/segment-overrides/{feature_id}/{segment_id}/",
    tag = "feature states",
    params(("api_key" = String, Path), ("feature_id" = u64, Path), ("segment_id" = u64, Path)),
    request_body = SegmentOverrideBody,
    responses((status = 204), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn set_segment_override(
    State(state): State<AppState>,
    admin: Admin,
    Path((api_key, feature_id, segment_id)): Path<(String, u64, u64)>,
    JsonBody(body): JsonBody<SegmentOverrideBody>,
) -> Result<StatusCode> {
    let env = environment_by_key(&state, &api_key).await?;
    let command = EnvironmentCommand::SetSegmentOverride {
        environment_id: env.state.id,
        feature_id,
        segment_id,
        priority: body.priority,
        state: FeatureStateInput {
            enabled: body.enabled,
            feature_state_value: body.feature_state_value,
            multivariate_feature_state_values: body.multivariate_feature_state_values,
            key: None,
        },
    };
    execute(&state, &admin, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/environments/{api_key}/segment-overrides/{feature_id}/{segment_id}/",
    tag = "feature states",
    params(("api_key" = String, Path), ("feature_id" = u64, Path), ("segment_id" = u64, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn remove_segment_override(
    State(state): State<AppState>,
    admin: Admin,
    Path((api_key, feature_id, segment_id)): Path<(String, u64, u64)>,
) -> Result<StatusCode> {
    let env = environment_by_key(&state, &api_key).await?;
    let command = EnvironmentCommand::RemoveSegmentOverride {
        environment_id: env.state.id,
        feature_id,
        segment_id,
    };
    execute(&state, &admin, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

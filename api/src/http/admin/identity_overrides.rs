//! Identity overrides of an environment (named by its client key, as in Flagsmith's admin API):
//! the features an admin set for one identity, each identity's on a stream of its own.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use domain::command::IdentityCommand;
use domain::environment::FeatureStateInput;
use domain::identity::IdentityName;
use serde::Deserialize;
use serde_json::Value;

use crate::http::AppState;
use crate::http::admin::environments::{FeatureStateView, project_of};
use crate::http::admin::{environment_by_key, execute, require_reader};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, JsonBody, Path, Query};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/environments/{api_key}/identity-overrides/",
        get(identity_overrides)
            .post(set_identity_override)
            .delete(remove_identity_override),
    )
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct IdentityQuery {
    pub identifier: String,
    /// With DELETE: the feature whose override to remove.
    pub feature: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/identity-overrides/", tag = "identity overrides",
    params(("api_key" = String, Path), IdentityQuery),
    responses((status = 200, body = Vec<FeatureStateView>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn identity_overrides(
    State(state): State<AppState>,
    caller: Admin,
    Path(api_key): Path<String>,
    Query(query): Query<IdentityQuery>,
) -> Result<Json<Vec<FeatureStateView>>> {
    let env = environment_by_key(&state, &api_key).await?;
    require_reader(&state, &caller, env.state.project_id).await?;
    let project = project_of(&state, &env.state).await?;
    let overrides = state
        .commands
        .identity_overrides(env.state.id, &query.identifier)
        .await?;
    Ok(Json(
        overrides
            .state
            .overrides
            .iter()
            .filter_map(|(feature_id, s)| {
                let feature = project.features.get(feature_id)?;
                Some(FeatureStateView::of(feature, s.clone()))
            })
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct IdentityOverrideBody {
    pub identifier: String,
    pub feature: u64,
    pub enabled: bool,
    #[serde(default)]
    pub feature_state_value: Value,
}

#[utoipa::path(post, path = "/api/v1/environments/{api_key}/identity-overrides/", tag = "identity overrides",
    params(("api_key" = String, Path)), request_body = IdentityOverrideBody,
    responses((status = 204), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn set_identity_override(
    State(state): State<AppState>,
    admin: Admin,
    Path(api_key): Path<String>,
    JsonBody(body): JsonBody<IdentityOverrideBody>,
) -> Result<StatusCode> {
    let env = environment_by_key(&state, &api_key).await?;
    let command = IdentityCommand::SetIdentityOverride {
        environment_id: env.state.id,
        identity: IdentityName::Identifier(body.identifier),
        feature_id: body.feature,
        state: FeatureStateInput {
            enabled: body.enabled,
            feature_state_value: body.feature_state_value,
            multivariate_feature_state_values: None,
            key: None,
        },
    };
    execute(&state, &admin, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/environments/{api_key}/identity-overrides/", tag = "identity overrides",
    params(("api_key" = String, Path), IdentityQuery),
    responses((status = 204), (status = 400, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn remove_identity_override(
    State(state): State<AppState>,
    admin: Admin,
    Path(api_key): Path<String>,
    Query(query): Query<IdentityQuery>,
) -> Result<StatusCode> {
    let feature = query.feature.ok_or_else(|| {
        Error::bad_request("feature", "name the feature whose override to remove")
    })?;
    let env = environment_by_key(&state, &api_key).await?;
    let command = IdentityCommand::RemoveIdentityOverride {
        environment_id: env.state.id,
        identity: IdentityName::Identifier(query.identifier),
        feature_id: feature,
    };
    execute(&state, &admin, command).await?;
    Ok(StatusCode::NO_CONTENT)
}

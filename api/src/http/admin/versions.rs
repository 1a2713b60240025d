//! Feature versions: each published state of a feature in an environment (projected from the
//! log by `projections::feature_versions`), one version, two compared, the same feature compared
//! across two environments, and an old version restored (directly, or through a change request
//! when four-eyes is on there).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::change_request::Scope;
use domain::command::change_request::ChangeRequestCommand;
use domain::feature_version::{Comparison, PublishedState, compare, restore_commands};
use domain::model::Feature;
use projections::feature_versions::{FeatureVersion, versions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::AppState;
use crate::http::admin::change_requests::{open_command, rfc3339};
use crate::http::admin::{environment_by_key, execute_all, require_reader};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Path, Query};

pub fn router() -> Router<AppState> {
    let base = "/api/v1/environments/{api_key}/features/{feature_id}/versions";
    Router::new()
        .route(&format!("{base}/"), get(list))
        .route(&format!("{base}/compare/"), get(compare_versions))
        .route(&format!("{base}/{{number}}/"), get(show))
        .route(&format!("{base}/{{number}}/restore/"), post(restore))
        .route(
            "/api/v1/projects/{project_id}/features/{feature_id}/compare-environments/",
            get(compare_environments),
        )
}

/// One published state of a feature in an environment.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub number: u64,
    /// The log position of the change that published it.
    pub position: u64,
    /// RFC 3339.
    pub published_at: Option<String>,
    pub published_by: String,
    /// `change-request-N`, if a change request published it.
    pub change_request: Option<String>,
    pub approvers: Vec<String>,
    pub reason: Option<String>,
    pub break_glass: bool,
    /// Enabled, value, allocations, and the segment overrides with their priorities.
    #[schema(value_type = Object)]
    pub state: Value,
}

impl VersionView {
    fn of(version: &FeatureVersion) -> VersionView {
        VersionView {
            number: version.number,
            position: version.position,
            published_at: rfc3339(version.published_at_micros),
            published_by: version.published_by.clone(),
            change_request: version.change_request.clone(),
            approvers: version.approvers.clone(),
            reason: version.reason.clone(),
            break_glass: version.break_glass,
            state: serde_json::to_value(&version.state).unwrap_or(Value::Null),
        }
    }
}

/// How one published state differs from another: the feature's own fields, and the segment
/// overrides added, removed and changed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ComparisonView {
    #[schema(value_type = Object)]
    pub from: Value,
    #[schema(value_type = Object)]
    pub to: Value,
    #[schema(value_type = Object)]
    pub differences: Value,
    pub identical: bool,
}

fn comparison_view(from: Value, to: Value, comparison: &Comparison) -> ComparisonView {
    ComparisonView {
        from,
        to,
        differences: serde_json::to_value(comparison).unwrap_or(Value::Null),
        identical: comparison.is_empty(),
    }
}

/// The environment (readable by the caller), the feature, and its versions there.
pub(crate) async fn history(
    state: &AppState,
    caller: &Admin,
    api_key: &str,
    feature_id: u64,
) -> Result<(u64, Feature, Vec<FeatureVersion>)> {
    let environment = environment_by_key(state, api_key).await?;
    require_reader(state, caller, environment.state.project_id).await?;
    let project = state.commands.project(environment.state.project_id).await?;
    let feature = project
        .state
        .feature(feature_id)
        .map_err(commands::Error::from)?
        .clone();
    let all = versions(
        state.commands.store().log().as_ref(),
        environment.state.id,
        &feature,
    )
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok((environment.state.id, feature, all))
}

fn numbered(all: &[FeatureVersion], number: u64) -> Result<&FeatureVersion> {
    all.iter()
        .find(|v| v.number == number)
        .ok_or_else(|| Error::NotFound(format!("version {number} not found")))
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/features/{feature_id}/versions/", tag = "versions",
    params(("api_key" = String, Path), ("feature_id" = u64, Path)),
    responses((status = 200, body = Vec<VersionView>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    Path((api_key, feature_id)): Path<(String, u64)>,
) -> Result<Json<Vec<VersionView>>> {
    let (_, _, all) = history(&state, &caller, &api_key, feature_id).await?;
    Ok(Json(all.iter().map(VersionView::of).collect()))
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/features/{feature_id}/versions/{number}/", tag = "versions",
    params(("api_key" = String, Path), ("feature_id" = u64, Path), ("number" = u64, Path)),
    responses((status = 200, body = VersionView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Admin,
    Path((api_key, feature_id, number)): Path<(String, u64, u64)>,
) -> Result<Json<VersionView>> {
    let (_, _, all) = history(&state, &caller, &api_key, feature_id).await?;
    Ok(Json(VersionView::of(numbered(&all, number)?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct VersionPair {
    pub from: u64,
    pub to: u64,
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/features/{feature_id}/versions/compare/", tag = "versions",
    params(("api_key" = String, Path), ("feature_id" = u64, Path), VersionPair),
    responses((status = 200, body = ComparisonView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn compare_versions(
    State(state): State<AppState>,
    caller: Admin,
    Path((api_key, feature_id)): Path<(String, u64)>,
    Query(pair): Query<VersionPair>,
) -> Result<Json<ComparisonView>> {
    let (_, _, all) = history(&state, &caller, &api_key, feature_id).await?;
    let (from, to) = (numbered(&all, pair.from)?, numbered(&all, pair.to)?);
    Ok(Json(comparison_view(
        serde_json::json!(from.number),
        serde_json::json!(to.number),
        &compare(&from.state, &to.state),
    )))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct EnvironmentPair {
    /// Client key of one environment.
    pub from: String,
    /// Client key of the other.
    pub to: String,
}

#[utoipa::path(get, path = "/api/v1/projects/{project_id}/features/{feature_id}/compare-environments/", tag = "versions",
    params(("project_id" = u64, Path), ("feature_id" = u64, Path), EnvironmentPair),
    responses((status = 200, body = ComparisonView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn compare_environments(
    State(state): State<AppState>,
    caller: Admin,
    Path((project_id, feature_id)): Path<(u64, u64)>,
    Query(pair): Query<EnvironmentPair>,
) -> Result<Json<ComparisonView>> {
    require_reader(&state, &caller, project_id).await?;
    let project = state.commands.project(project_id).await?;
    let feature = project
        .state
        .feature(feature_id)
        .map_err(commands::Error::from)?;
    let mut published = Vec::new();
    for key in [&pair.from, &pair.to] {
        let environment = environment_by_key(&state, key).await?;
        if environment.state.project_id != project_id {
            return Err(Error::NotFound(format!(
                "environment {key} not found in project {project_id}"
            )));
        }
        published.push(PublishedState::of(&environment.state, feature));
    }
    Ok(Json(comparison_view(
        Value::String(pair.from),
        Value::String(pair.to),
        &compare(&published[0], &published[1]),
    )))
}

/// Publishes version `number` again, as a new version. With four-eyes on in the environment
/// (and no break-glass reason), opens a change request proposing it instead (201).
#[utoipa::path(post, path = "/api/v1/environments/{api_key}/features/{feature_id}/versions/{number}/restore/", tag = "versions",
    params(("api_key" = String, Path), ("feature_id" = u64, Path), ("number" = u64, Path)),
    responses((status = 200, body = VersionView, description = "restored: the new version"),
              (status = 201, body = crate::http::admin::change_requests::ChangeRequestView,
               description = "four-eyes is on: a change request proposing the restore"),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    caller: Admin,
    Path((api_key, feature_id, number)): Path<(String, u64, u64)>,
) -> Result<Response> {
    let (environment_id, feature, all) = history(&state, &caller, &api_key, feature_id).await?;
    let target = numbered(&all, number)?;
    let environment = state.commands.environment(environment_id).await?.state;
    let current = PublishedState::of(&environment, &feature);
    let commands = restore_commands(environment_id, feature_id, &current, &target.state);
    if commands.is_empty() {
        return Err(Error::Conflict {
            field: None,
            message: format!("version {number} of feature {feature_id} is what is served now"),
        });
    }
    let guarded = environment.settings.minimum_change_request_approvals > 0;
    if guarded && !caller.metadata.break_glass {
        let scope = Scope::Environment(environment_id);
        let command = ChangeRequestCommand::OpenChangeRequest {
            change_request_id: 0,
            scope,
            title: format!("Restore {} to version {number}", feature.name),
            description: String::new(),
            commands,
            base_versions: Default::default(),
            live_from_micros: None,
            reviewers: vec![],
        };
        return Ok(open_command(&state, &caller, scope, command)
            .await?
            .into_response());
    }
    execute_all(&state, &caller, &commands).await?;
    let (_, _, all) = history(&state, &caller, &api_key, feature_id).await?;
    let newest = all
        .last()
        .ok_or_else(|| Error::Internal("the restore made no version".into()))?;
    Ok((StatusCode::OK, Json(VersionView::of(newest))).into_response())
}

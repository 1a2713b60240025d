//! Flag analytics over a period: a feature's SDK evaluations in an environment per 15 minutes
//! or per hour, and an organisation's SDK API calls per day ([`crate::flag_analytics`]).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::flag_analytics::{self, DAY, FIFTEEN_MINUTES, HOUR};
use crate::http::AppState;
use crate::http::admin::{environment_by_key, require_reader};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Path, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/environments/{api_key}/analytics/flags/",
            get(evaluations),
        )
        .route("/api/v1/organisations/{organisation_id}/usage/", get(usage))
}

/// The longest period one answer covers, in seconds (a year).
const LONGEST_PERIOD: i64 = 366 * DAY;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct EvaluationsQuery {
    /// The feature's name, as SDKs report it.
    pub feature: String,
    /// From this instant (RFC 3339; default: a day before `to`).
    pub from: Option<String>,
    /// To this instant, excluded (RFC 3339; default: now).
    pub to: Option<String>,
    /// `15m` or `1h` (default: `15m` for two days or less, else `1h`).
    pub resolution: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// The bucket's start (RFC 3339, UTC).
    pub start: String,
    pub count: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Evaluations {
    pub feature: String,
    pub from: String,
    pub to: String,
    pub resolution_seconds: i64,
    /// Buckets with evaluations, in order.
    pub buckets: Vec<Bucket>,
    pub total: i64,
}

fn seconds_of(field: &'static str, text: Option<&str>, default: i64) -> Result<i64> {
    match text {
        None => Ok(default),
        Some(text) => OffsetDateTime::parse(text, &Rfc3339)
            .map(|at| at.unix_timestamp())
            .map_err(|e| {
                Error::bad_request(
                    field,
                    format!("not an RFC 3339 instant (e.g. 2026-12-06T14:00:00Z): {e}"),
                )
            }),
    }
}

fn rfc3339(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A period from the query: (from, to) in Unix seconds, checked.
fn period(from: Option<&str>, to: Option<&str>, default_span: i64) -> Result<(i64, i64)> {
    // By default up to the end of the current second (`to` is excluded).
    let now = projections::now_micros() / 1_000_000 + 1;
    let to = seconds_of("to", to, now)?;
    let from = seconds_of("from", from, to - default_span)?;
    if from >= to {
        return Err(Error::bad_request("from", "from must be before to"));
    }
    if to - from > LONGEST_PERIOD {
        return Err(Error::bad_request(
            "from",
            "the period is longer than a year",
        ));
    }
    Ok((from, to))
}

/// A feature's SDK evaluations in an environment over a period, per 15 minutes or per hour
/// (`{"buckets": [{"start", "count"}], "total"}`, buckets without evaluations left out);
/// counts not yet rolled up are included.
#[utoipa::path(get, path = "/api/v1/environments/{api_key}/analytics/flags/", tag = "analytics",
    params(("api_key" = String, Path), EvaluationsQuery),
    responses((status = 200, body = Evaluations), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn evaluations(
    State(state): State<AppState>,
    caller: Admin,
    Path(api_key): Path<String>,
    Query(query): Query<EvaluationsQuery>,
) -> Result<Json<Evaluations>> {
    let env = environment_by_key(&state, &api_key).await?;
    require_reader(&state, &caller, env.state.project_id).await?;
    Ok(Json(evaluations_of(&state, env.state.id, &query).await?))
}

/// [`evaluations`] of the environment `environment_id` (its reader checked by the caller).
pub async fn evaluations_of(
    state: &AppState,
    environment_id: u64,
    query: &EvaluationsQuery,
) -> Result<Evaluations> {
    let (from, to) = period(query.from.as_deref(), query.to.as_deref(), DAY)?;
    let resolution = match query.resolution.as_deref() {
        None if to - from <= 2 * DAY => FIFTEEN_MINUTES,
        None | Some("1h") => HOUR,
        Some("15m") => FIFTEEN_MINUTES,
        Some(other) => {
            return Err(Error::bad_request(
                "resolution",
                format!("{other:?} is not a resolution: 15m or 1h"),
            ));
        }
    };
    let series = flag_analytics::series(
        &state.read_models,
        environment_id,
        &query.feature,
        resolution,
        from,
        to,
    )
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Evaluations {
        feature: query.feature.clone(),
        from: rfc3339(from),
        to: rfc3339(to),
        resolution_seconds: resolution,
        total: series.iter().map(|(_, count)| count).sum(),
        buckets: series
            .into_iter()
            .map(|(start, count)| Bucket {
                start: rfc3339(start),
                count,
            })
            .collect(),
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct UsageQuery {
    /// From this day (RFC 3339 instant; default: 30 days before `to`).
    pub from: Option<String>,
    /// To this instant, excluded (RFC 3339; default: now).
    pub to: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Day {
    /// The day (UTC), e.g. `2026-12-07`.
    pub day: String,
    pub calls: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// Days with calls, in order.
    pub days: Vec<Day>,
    pub total: i64,
}

/// An organisation's SDK API calls per day over a period (every environment of its
/// projects), as each node saved them. Needs an organisation administrator.
#[utoipa::path(get, path = "/api/v1/organisations/{organisation_id}/usage/", tag = "analytics",
    params(("organisation_id" = u64, Path), UsageQuery),
    responses((status = 200, body = Usage), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody)))]
pub async fn usage(
    State(state): State<AppState>,
    caller: Admin,
    Path(organisation_id): Path<u64>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Usage>> {
    if !caller.principal.is_organisation_admin() {
        return Err(Error::Forbidden(
            "an organisation's usage needs an organisation administrator".into(),
        ));
    }
    Ok(Json(usage_of(&state, organisation_id, &query).await?))
}

/// [`usage`] of organisation `organisation_id` (the caller's right to it checked).
pub async fn usage_of(state: &AppState, organisation_id: u64, query: &UsageQuery) -> Result<Usage> {
    let (from, to) = period(query.from.as_deref(), query.to.as_deref(), 30 * DAY)?;
    let directory = state.commands.directory().await?.state;
    if !directory.organisations.contains_key(&organisation_id) {
        return Err(Error::NotFound(format!(
            "organisation {organisation_id} not found"
        )));
    }
    let environments: Vec<u64> = directory
        .environments
        .iter()
        .filter(|(_, (project, _))| directory.projects.get(project) == Some(&organisation_id))
        .map(|(id, _)| *id)
        .collect();
    let days = flag_analytics::calls_per_day(
        &state.read_models,
        &environments,
        from - from.rem_euclid(DAY),
        to,
    )
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Usage {
        total: days.iter().map(|(_, calls)| calls).sum(),
        days: days
            .into_iter()
            .map(|(day, calls)| Day {
                day: rfc3339(day).get(..10).unwrap_or_default().to_string(),
                calls,
            })
            .collect(),
    })
}

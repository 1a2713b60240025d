//! A feature's page: its state in each environment, a link to its audit trail, and a chart
//! per environment of how often SDKs evaluated it over the last day (15-minute buckets, from
//! the flag analytics API's own query); and the organisations' usage page (SDK API calls per
//! day over the last 30 days, administrators).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use time::OffsetDateTime;

use super::chart;
use super::session::Visitor;
use super::{PageError, live_page, page, who};
use crate::flag_analytics::{self, DAY, FIFTEEN_MINUTES};
use crate::http::AppState;
use crate::http::admin::analytics::{UsageQuery, usage_of};
use crate::http::admin::require_reader;
use crate::http::error::Error;
use crate::http::extract::Path;

/// The 15-minute periods of the last day: the first one's start and the end of the current
/// one (Unix seconds).
fn last_day(now: i64) -> (i64, i64) {
    let current = now - now.rem_euclid(FIFTEEN_MINUTES);
    (current - DAY + FIFTEEN_MINUTES, current + FIFTEEN_MINUTES)
}

/// Every period from `first` to `end`, labelled "HH:MM" (UTC), with the counts found (zero
/// for the others), so the chart's time axis is even.
fn every_period(buckets: &[(i64, i64)], (first, end): (i64, i64)) -> Vec<(String, i64)> {
    (first..end)
        .step_by(FIFTEEN_MINUTES as usize)
        .map(|start| {
            let label = OffsetDateTime::from_unix_timestamp(start)
                .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
                .unwrap_or_default();
            let count = buckets
                .iter()
                .filter(|(at, _)| *at == start)
                .map(|(_, c)| *c)
                .sum();
            (label, count)
        })
        .collect()
}

pub async fn feature(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, feature_id)): Path<(u64, u64)>,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    require_reader(&state, caller, project_id).await?;
    let directory = state.commands.directory().await?.state;
    let project = state.commands.project(project_id).await?.state;
    let feature = project.feature(feature_id).map_err(Error::from)?.clone();
    let now = projections::now_micros() / 1_000_000;
    let mut environments = Vec::new();
    for (&id, (owner, _)) in &directory.environments {
        if *owner != project_id {
            continue;
        }
        let environment = state.commands.environment(id).await?.state;
        let period = last_day(now);
        let buckets = flag_analytics::series(
            &state.read_models,
            id,
            &feature.name,
            FIFTEEN_MINUTES,
            period.0,
            period.1,
        )
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        let current = environment.effective_state(&feature);
        environments.push((environment, current, every_period(&buckets, period)));
    }
    let csrf = visitor.csrf_token();
    let body = html! {
        p.crumbs {
            a href="/" { "Organisations" } " / "
            a href={ "/projects/" (project_id) } { (project.settings.name) } " / " (feature.name)
        }
        h1 { code { (feature.name) } }
        @if let Some(description) = &feature.description { p { (description) } }
        p { a href={ "/audit?project=" (project_id) "&feature=" (feature_id) } { "This feature's audit trail" } }
        h2 { "State per environment" }
        div.scroll {
            table.features {
                thead { tr { th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Value" } } }
                tbody {
                    @for (environment, current, _) in &environments {
                        tr {
                            th scope="row" { (environment.name) }
                            td { span class={ "state " (if current.enabled { "on" } else { "off" }) } { (if current.enabled { "On" } else { "Off" }) } }
                            td { @if !current.feature_state_value.is_null() { code { (current.feature_state_value) } } }
                        }
                    }
                }
            }
        }
        h2 { "Evaluations, last 24 hours (UTC)" }
        @for (environment, _, points) in &environments {
            (chart::bars(
                &format!("Evaluations of {} in {}, per 15 minutes", feature.name, environment.name),
                points,
                "evaluations",
            ))
        }
    };
    let title = feature.name.clone();
    Ok(
        visitor
            .finish(live_page(&title, Some((&who(&state, caller), &csrf)), body).into_response()),
    )
}

/// The organisations' SDK API calls per day, last 30 days.
pub async fn usage(State(state): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    if !caller.principal.is_organisation_admin() {
        return Err(PageError::forbidden(
            "usage is for organisation administrators",
        ));
    }
    let directory = state.commands.directory().await?.state;
    let mut organisations = Vec::new();
    for (&id, name) in &directory.organisations {
        let usage = usage_of(
            &state,
            id,
            &UsageQuery {
                from: None,
                to: None,
            },
        )
        .await?;
        let points: Vec<(String, i64)> = usage
            .days
            .iter()
            .map(|d| (d.day.clone(), d.calls))
            .collect();
        organisations.push((name.clone(), points));
    }
    let csrf = visitor.csrf_token();
    let body = html! {
        h1 { "Usage" }
        p { "SDK API calls per day (UTC), last 30 days, days without calls left out." }
        @for (name, points) in &organisations {
            h2 { (name) }
            (chart::bars(&format!("SDK API calls of {name}, per day"), points, "calls"))
        }
    };
    Ok(visitor.finish(page("Usage", Some((&who(&state, caller), &csrf)), body).into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_day_has_96_periods_ending_with_the_current_one_and_zeros_between() {
        let now = 1_765_000_000; // 2025-12-06T05:46:40Z
        let period = last_day(now);
        let current = now - now.rem_euclid(FIFTEEN_MINUTES);
        let points = every_period(
            &[(current, 5), (period.0, 2), (period.0 - FIFTEEN_MINUTES, 9)],
            period,
        );
        assert_eq!(points.len(), 96);
        assert_eq!(points.last().unwrap(), &("05:45".to_string(), 5));
        assert_eq!(points[0], ("06:00".to_string(), 2));
        assert_eq!(
            points.iter().map(|(_, c)| c).sum::<i64>(),
            7,
            "the day before is left out"
        );
    }
}

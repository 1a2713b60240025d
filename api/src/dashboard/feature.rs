//! A feature's page: its state in each environment with the forms that change it
//! ([`super::feature_forms`], [`super::feature_edit`]), a link to its versions and audit trail, and a chart
//! per environment of how often SDKs evaluated it over the last day (15-minute buckets, from
//! the flag analytics API's own query); and the organisations' usage page (SDK API calls per
//! day over the last 30 days, administrators).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use domain::command::{Command, EnvironmentCommand, ProjectCommand};
use domain::environment::Environment;
use domain::model::FeatureState;
use maud::html;
use time::OffsetDateTime;

use super::Query;
use super::projects::{self, may, readable_project};
use super::session::Visitor;
use super::{PageError, change, chart, feature_forms, live_page, page, who};
use crate::flag_analytics::{self, DAY, FIFTEEN_MINUTES};
use crate::http::AppState;
use crate::http::admin::analytics::{UsageQuery, usage_of};
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

#[derive(serde::Deserialize)]
pub struct FeatureQuery {
    /// An identity whose override of the feature to show in each environment.
    identity: Option<String>,
}

pub async fn feature(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, feature_id)): Path<(u64, u64)>,
    Query(query): Query<FeatureQuery>,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    let (directory, project, in_project) = readable_project(&state, caller, project_id).await?;
    let feature = project.feature(feature_id).map_err(Error::from)?.clone();
    let identifier = query
        .identity
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty());
    let now = projections::now_micros() / 1_000_000;
    let mut environments = Vec::new();
    for environment in in_project {
        let id = environment.id;
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
        let probe = Command::from(EnvironmentCommand::RemoveSegmentOverride {
            environment_id: id,
            feature_id,
            segment_id: 0,
        });
        let editable = may(&directory, caller, probe.clone());
        let propose = change::review_scope(&state, &probe).await?.is_some();
        let identity = match identifier {
            Some(identifier) => {
                let overrides = state.commands.identity_overrides(id, identifier).await?;
                Some(overrides.state.overrides.get(&feature_id).cloned())
            }
            None => None,
        };
        environments.push(Shown {
            environment,
            editable,
            propose,
            identity,
            points: every_period(&buckets, period),
        });
    }
    let definition = Command::from(ProjectCommand::DeleteFeature {
        project_id,
        feature_id,
    });
    let may_define = may(&directory, caller, definition.clone());
    let propose_definition = change::review_scope(&state, &definition).await?.is_some();
    let csrf = visitor.csrf_token();
    let body = html! {
        p.crumbs {
            a href="/" { "Organisations" } " / "
            a href={ "/projects/" (project_id) } { (project.settings.name) } " / " (feature.name)
        }
        h1 { code { (feature.name) } }
        @if let Some(description) = &feature.description { p { (description) } }
        @if !feature.tags.is_empty() { p { "Tags: " (feature.tags.join(", ")) } }
        p { a href={ "/audit?project=" (project_id) "&feature=" (feature_id) } { "This feature's audit trail" } }
        @if may_define { (feature_forms::definition_forms(project_id, &feature, &csrf, propose_definition)) }
        h2 { "State per environment" }
        div.scroll {
            table.features {
                thead { tr { th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Segment overrides" } } }
                tbody {
                    @for shown in &environments {
                        @let env = &shown.environment;
                        tr {
                            th scope="row" { a href={ "#environment-" (env.id) } { (env.name) } }
                            td { (projects::state_badge(&env.effective_state(&feature))) }
                            td { (env.segment_overrides.keys().filter(|(f, _)| *f == feature_id).count()) }
                        }
                    }
                }
            }
        }
        @for shown in &environments {
            @let env = &shown.environment;
            section.card id={ "environment-" (env.id) } {
                h3 { (env.name) }
                p {
                    (projects::state_badge(&env.effective_state(&feature)))
                    " · " a href={ "/environments/" (env.id) "/features/" (feature_id) "/versions" } { "Versions" }
                }
                @if shown.editable {
                    (feature_forms::environment_forms(&project, env, &feature, &csrf, shown.propose,
                        identifier.map(|i| (i, shown.identity.as_ref().and_then(Option::as_ref)))))
                }
                (chart::bars(
                    &format!("Evaluations of {} in {}, per 15 minutes, last 24 hours (UTC)", feature.name, env.name),
                    &shown.points,
                    "evaluations",
                ))
            }
        }
    };
    let title = feature.name.clone();
    Ok(
        visitor
            .finish(live_page(&title, Some((&who(&state, caller), &csrf)), body).into_response()),
    )
}

/// One environment as the feature page shows it.
struct Shown {
    environment: Environment,
    /// The visitor may change the feature's state here, directly or by proposing.
    editable: bool,
    propose: bool,
    /// The looked-up identity's override here (the outer `None`: none looked up).
    identity: Option<Option<FeatureState>>,
    points: Vec<(String, i64)>,
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

//! A feature's versions in one environment (each published state, from the feature versions
//! projection): who published each and how (change request, approvers, reason), any two
//! compared field by field and override by override, and a restore button that publishes an
//! old version again, through [`change::apply`] (proposed where four-eyes is on).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use domain::command::{Command, EnvironmentCommand};
use domain::feature_version::{Comparison, PublishedState, compare, restore_commands};
use maud::{Markup, html};
use serde::Deserialize;

use super::Query;
use super::fields::Fields;
use super::projects::may;
use super::session::{CSRF_FIELD, Visitor};
use super::{Form, PageError, change, live_page, who};
use crate::http::AppState;
use crate::http::admin::change_requests::rfc3339;
use crate::http::admin::versions::history;
use crate::http::error::Error;
use crate::http::extract::Path;

#[derive(Deserialize)]
pub struct Pair {
    from: Option<u64>,
    to: Option<u64>,
}

/// A comparison written out: each field's change, then the overrides added, removed, changed.
fn differences(comparison: &Comparison) -> Markup {
    html! {
        @if comparison.is_empty() { p { "Identical." } } @else {
            ul.differences {
                @for change in &comparison.changes {
                    li { code { (change.field) } ": " code { (change.from) } " → " code { (change.to) } }
                }
                @for o in &comparison.segment_overrides_added {
                    li { "Segment " (o.segment_id) " override added: " (if o.enabled { "on" } else { "off" })
                        @if !o.feature_state_value.is_null() { ", value " code { (o.feature_state_value) } } }
                }
                @for o in &comparison.segment_overrides_removed {
                    li { "Segment " (o.segment_id) " override removed" }
                }
                @for o in &comparison.segment_overrides_changed {
                    @for change in &o.changes {
                        li { "Segment " (o.segment_id) " override " code { (change.field) } ": "
                            code { (change.from) } " → " code { (change.to) } }
                    }
                }
            }
        }
    }
}

pub async fn versions(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id)): Path<(u64, u64)>,
    Query(pair): Query<Pair>,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    let environment = state.commands.environment(environment_id).await?.state;
    let (_, feature, all) = history(&state, caller, &environment.client_key, feature_id).await?;
    let directory = state.commands.directory().await?.state;
    let probe = Command::from(EnvironmentCommand::RemoveSegmentOverride {
        environment_id,
        feature_id,
        segment_id: 0,
    });
    let editable = may(&directory, caller, probe.clone());
    let propose = change::review_scope(&state, &probe).await?.is_some();
    let current = PublishedState::of(&environment, &feature);
    let numbered = |n: Option<u64>| n.and_then(|n| all.iter().find(|v| v.number == n));
    let compared = match (numbered(pair.from), numbered(pair.to)) {
        (Some(from), Some(to)) => Some((from.number, to.number, compare(&from.state, &to.state))),
        _ => None,
    };
    let newest = all.last().map_or(0, |v| v.number);
    let csrf = visitor.csrf_token();
    let project_id = environment.project_id;
    let body = html! {
        p.crumbs {
            a href={ "/projects/" (project_id) } { "Project" } " / "
            a href={ "/projects/" (project_id) "/features/" (feature_id) } { (feature.name) } " / Versions in " (environment.name)
        }
        h1 { "Versions of " code { (feature.name) } " in " (environment.name) }
        @if !environment.settings.feature_versioning {
            p.hint { "Feature versioning is off in this environment's settings; its versions are kept all the same." }
        }
        @if all.len() >= 2 {
            form.inline method="get" {
                label for="from" { "Compare version" }
                select #from name="from" { @for v in &all { option value=(v.number) selected[pair.from.map_or(v.number + 1 == newest, |f| f == v.number)] { (v.number) } } }
                label for="to" { "with" }
                select #to name="to" { @for v in &all { option value=(v.number) selected[pair.to.map_or(v.number == newest, |t| t == v.number)] { (v.number) } } }
                button type="submit" { "Compare" }
            }
        }
        @if let Some((from, to, comparison)) = &compared {
            section.card { h2 { "Version " (from) " → version " (to) } (differences(comparison)) }
        }
        div.scroll {
            table.features {
                thead { tr {
                    th scope="col" { "Version" } th scope="col" { "Published" } th scope="col" { "By" }
                    th scope="col" { "How" } th scope="col" { "Differs from now" } th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody {
                    @for v in all.iter().rev() {
                        @let since = compare(&v.state, &current);
                        tr {
                            td { (v.number) @if v.number == newest { " (live)" } }
                            td { (rfc3339(v.published_at_micros).unwrap_or_default()) }
                            td { (v.published_by) }
                            td {
                                @if let Some(cr) = &v.change_request { (cr) }
                                @if !v.approvers.is_empty() { " approved by " (v.approvers.join(", ")) }
                                @if v.break_glass { " break-glass" }
                                @if let Some(reason) = &v.reason { ": " (reason) }
                            }
                            td { @if since.is_empty() { "no" } @else { "yes" } }
                            td {
                                @if editable && !since.is_empty() {
                                    form.toggle method="post" action={ "/environments/" (environment_id) "/features/" (feature_id) "/versions/" (v.number) "/restore" } {
                                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                        button type="submit" aria-label={ "Restore version " (v.number) } {
                                            @if propose { "Propose restoring" } @else { "Restore" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let title = format!("Versions of {}", feature.name);
    Ok(
        visitor
            .finish(live_page(&title, Some((&who(&state, caller), &csrf)), body).into_response()),
    )
}

pub async fn restore(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id, number)): Path<(u64, u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let caller = visitor.require()?;
    let environment = state.commands.environment(environment_id).await?.state;
    let (_, feature, all) = history(&state, caller, &environment.client_key, feature_id).await?;
    let target = all
        .iter()
        .find(|v| v.number == number)
        .ok_or_else(|| Error::NotFound(format!("version {number} not found")))?;
    let current = PublishedState::of(&environment, &feature);
    let commands = restore_commands(environment_id, feature_id, &current, &target.state);
    if commands.is_empty() {
        return Err(PageError::from(Error::Conflict {
            field: None,
            message: format!("version {number} of {} is what is served now", feature.name),
        }));
    }
    let title = format!(
        "Restore {} to version {number} in {}",
        feature.name, environment.name
    );
    let outcome = change::apply(
        &state,
        &visitor,
        fields.one(CSRF_FIELD),
        commands,
        title,
        "",
    )
    .await?;
    Ok(outcome.redirect(&format!(
        "/environments/{environment_id}/features/{feature_id}/versions"
    )))
}

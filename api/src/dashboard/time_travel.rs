//! Time travel for auditors: pick an environment of a project and an instant (UTC) or a log
//! position, and see every feature as that environment served it then (on/off, value, segment
//! overrides), folded from the log by the API's own time travel ([`time_travel::now_or_then`]),
//! beside how it is now.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::Query;
use super::projects::{readable_project, state_badge};
use super::session::Visitor;
use super::{PageError, change, page, who};
use crate::http::AppState;
use crate::http::extract::Path;
use crate::http::time_travel::now_or_then;

#[derive(Deserialize)]
pub struct Moment {
    environment: Option<u64>,
    /// A datetime-local value, UTC.
    #[serde(default)]
    at: String,
    #[serde(default)]
    position: String,
}

pub async fn time_travel(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
    Query(moment): Query<Moment>,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    let (_, project, environments) = readable_project(&state, caller, project_id).await?;
    let chosen = moment
        .environment
        .and_then(|id| environments.iter().find(|e| e.id == id))
        .or(environments.first());
    let instant = change::schedule(&moment.at)?.and_then(domain::log::rfc3339);
    let position = Some(moment.position.trim()).filter(|p| !p.is_empty());
    let past = match (chosen, instant.as_deref(), position) {
        (Some(environment), at, position) if at.is_some() || position.is_some() => {
            Some(now_or_then(&state, environment.clone(), (at, position)).await?)
        }
        _ => None,
    };
    let csrf = visitor.csrf_token();
    let body = html! {
        p.crumbs { a href="/" { "Organisations" } " / " a href={ "/projects/" (project_id) } { (project.settings.name) } " / Time travel" }
        h1 { "Time travel" }
        p { "What an environment served at a past moment, folded from the log." }
        form.filters method="get" {
            div {
                label for="environment" { "Environment" }
                select #environment name="environment" {
                    @for env in &environments { option value=(env.id) selected[chosen.is_some_and(|c| c.id == env.id)] { (env.name) } }
                }
            }
            div {
                label for="at" { "At (UTC)" }
                input #at type="datetime-local" step="1" name="at" value=(moment.at);
            }
            div {
                label for="position" { "or at log position" }
                input #position type="number" min="1" name="position" value=(moment.position);
            }
            div { button type="submit" { "Show" } }
        }
        @if let (Some(now), Some((then_project, then, at_position))) = (chosen, &past) {
            h2 { (now.name) " as of position " (at_position.unwrap_or(0)) }
            div.scroll {
                table.features {
                    thead { tr { th scope="col" { "Feature" } th scope="col" { "Then" } th scope="col" { "Overrides then" } th scope="col" { "Now" } } }
                    tbody {
                        @for feature in then_project.features.values() {
                            tr {
                                th scope="row" { code { (feature.name) } }
                                td { (state_badge(&then.effective_state(feature))) }
                                td { (then.segment_overrides.keys().filter(|(f, _)| *f == feature.id).count()) }
                                td {
                                    @match project.features.get(&feature.id) {
                                        Some(current) => (state_badge(&now.effective_state(current))),
                                        None => "deleted since",
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p { "The environment document as SDKs were served it then: "
                code { "GET /api/v1/environment-document/?environment=" (now.client_key) "&as_of_position=" (at_position.unwrap_or(0)) }
                " (admin token)." }
        }
    };
    Ok(visitor
        .finish(page("Time travel", Some((&who(&state, caller), &csrf)), body).into_response()))
}

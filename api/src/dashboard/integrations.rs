//! A project's integrations (administrators of the project): each one configured on the project
//! or one of its environments, with where its delivery stands (the API's own status: position,
//! lag in events and seconds, consecutive failures, last error, dead letters) and its dead
//! letters, with a button that replays them. Integrations are configured through the API
//! (`POST …/integrations/`); secrets are never shown, only which are set.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use domain::access::{Requirement, Role, Scope};
use domain::integration::IntegrationScope;
use maud::html;
use projections::integrations::store;

use super::fields::Fields;
use super::session::{CSRF_FIELD, Visitor};
use super::{Form, PageError, live_page, who};
use crate::http::AppState;
use crate::http::admin::integrations::status_of;
use crate::http::admin::require;
use crate::http::error::Error;
use crate::http::extract::Path;

/// The integrations of `project_id` and its environments, with their environments' names.
async fn of_project(
    state: &AppState,
    project_id: u64,
) -> Result<Vec<(domain::integration::Integration, String)>, PageError> {
    let directory = state.commands.directory().await?.state;
    let mut found = Vec::new();
    for integration in directory.integrations.values() {
        let place = match integration.scope {
            IntegrationScope::Project(id) if id == project_id => "the project".to_string(),
            IntegrationScope::Environment(id) => match directory.environments.get(&id) {
                Some((owner, _)) if *owner == project_id => {
                    let environment = state.commands.environment(id).await?.state;
                    format!("environment {}", environment.name)
                }
                _ => continue,
            },
            _ => continue,
        };
        found.push((integration.clone(), place));
    }
    Ok(found)
}

async fn require_admin(
    state: &AppState,
    visitor: &Visitor,
    project_id: u64,
) -> Result<(), PageError> {
    let caller = visitor.require()?;
    let needed = Requirement {
        scope: Scope::Project(project_id),
        role: Role::Admin,
    };
    Ok(require(state, caller, &needed).await?)
}

pub async fn integrations(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
) -> Result<Response, PageError> {
    require_admin(&state, &visitor, project_id).await?;
    let caller = visitor.require()?;
    let project = state.commands.project(project_id).await?.state;
    let mut shown = Vec::new();
    for (integration, place) in of_project(&state, project_id).await? {
        let letters = store::dead_letters(&state.read_models, integration.id, None)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let status = status_of(&state, integration.clone()).await?;
        shown.push((integration, place, status, letters));
    }
    let csrf = visitor.csrf_token();
    let body = html! {
        p.crumbs { a href="/" { "Organisations" } " / " a href={ "/projects/" (project_id) } { (project.settings.name) } " / Integrations" }
        h1 { "Integrations" }
        @if shown.is_empty() {
            p { "No integrations yet. Configure one with " code { "POST /api/v1/projects/" (project_id) "/integrations/" }
                " or an environment's " code { "…/environments/{key}/integrations/" } "; the catalogue is at "
                a href="/api/v1/integrations/catalogue" { code { "/api/v1/integrations/catalogue" } } "." }
        }
        @for (integration, place, status, letters) in &shown {
            section.card id={ "integration-" (integration.id) } {
                h2 { (integration.kind) " on " (place) @if !integration.enabled { " (disabled)" } }
                dl.status {
                    dt { "Delivered up to position" } dd { (status.position) " (" (status.delivered) " delivered)" }
                    dt { "Lag" } dd { (status.lag_events) " events, " (format!("{:.1}", status.lag_seconds)) " s" }
                    dt { "Consecutive failures" } dd { (status.consecutive_failures) }
                    dt { "Last error" } dd { (status.last_error.as_deref().unwrap_or("none")) }
                    dt { "Last delivered" } dd { (status.last_delivered_at.as_deref().unwrap_or("never")) }
                    dt { "Dead letters" } dd { (status.dead_letters) }
                    @if let Some(dropped) = status.dropped { dt { "Dropped (queue full)" } dd { (dropped) } }
                    @if !integration.secrets.is_empty() {
                        dt { "Secrets set" } dd { (integration.secrets.keys().cloned().collect::<Vec<_>>().join(", ")) }
                    }
                }
                @if !letters.is_empty() {
                    div.scroll {
                        table.features {
                            caption { "Dead letters" }
                            thead { tr { th scope="col" { "Position" } th scope="col" { "Attempts" } th scope="col" { "Last error" } th scope="col" { "Status" } } }
                            tbody {
                                @for letter in letters {
                                    tr { td { (letter.position) } td { (letter.attempts) } td { (letter.last_error) } td { (letter.status) } }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action={ "/projects/" (project_id) "/integrations/" (integration.id) "/replay" } {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    label for={ "replay-from-" (integration.id) } { "Replay from position (empty: the dead letters)" }
                    input id={ "replay-from-" (integration.id) } type="number" min="1" name="from_position";
                    button type="submit" { "Replay" }
                }
            }
        }
    };
    Ok(visitor.finish(
        live_page("Integrations", Some((&who(&state, caller), &csrf)), body).into_response(),
    ))
}

pub async fn replay(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, integration_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    visitor.check_csrf(fields.one(CSRF_FIELD))?;
    require_admin(&state, &visitor, project_id).await?;
    if !of_project(&state, project_id)
        .await?
        .iter()
        .any(|(i, _)| i.id == integration_id)
    {
        return Err(PageError::from(Error::NotFound(format!(
            "integration {integration_id} not found in project {project_id}"
        ))));
    }
    let storage = |e: projections::Error| PageError::from(Error::from(e));
    match fields.number::<u64>("from_position")? {
        Some(0) => {
            return Err(super::fields::invalid(
                "from_position",
                "positions start at 1",
            ));
        }
        Some(from) => store::request_replay_from(&state.read_models, integration_id, from)
            .await
            .map_err(storage)?,
        None => {
            store::replay_dead_letters(&state.read_models, integration_id)
                .await
                .map_err(storage)?;
        }
    }
    Ok(Redirect::to(&format!(
        "/projects/{project_id}/integrations#integration-{integration_id}"
    ))
    .into_response())
}

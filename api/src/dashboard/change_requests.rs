//! Four-eyes in the dashboard: where an environment asks for review, a feature's toggle
//! proposes the change as a change request; the approver's inbox lists the open requests with
//! their approval counts and conflicts; a request's page shows what it changes (each flag's
//! state now and as proposed), its approvals and comments, and the actions (approve, withdraw,
//! comment, reject, commit, close, cancel a schedule), each the API's own handler run as the
//! signed-in person; and, while it may still go live, its impact on known identities.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use domain::change_request::{Scope, Status};
use domain::command::Command;
use domain::command::change_request::ChangeRequestCommand;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::Form;
use super::projects::{EnabledForm, enabled_command};
use super::session::{CSRF_FIELD, Visitor};
use super::{PageError, change_diff, live_page};
use crate::http::AppState;
use crate::http::admin::change_requests::inbox::{self, InboxQueryParams};
use crate::http::admin::change_requests::{
    self as api, ChangeRequestView, Comment, Reason, impact,
};
use crate::http::extract::{Admin, JsonBody, Path, Query};

/// Proposes turning a feature on or off in an environment that asks for review.
pub async fn propose_enabled(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id)): Path<(u64, u64)>,
    Form(form): Form<EnabledForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let caller = visitor.require()?;
    let (command, environment, feature_name) =
        enabled_command(&state, environment_id, feature_id, form.enabled).await?;
    let title = format!(
        "Turn {} {} in {}",
        if form.enabled { "on" } else { "off" },
        feature_name,
        environment.name
    );
    let open = ChangeRequestCommand::OpenChangeRequest {
        change_request_id: 0,
        scope: Scope::Environment(environment_id),
        title,
        description: String::new(),
        commands: vec![Command::from(command)],
        base_versions: Default::default(),
        live_from_micros: None,
        reviewers: Vec::new(),
    };
    let (_, axum::Json(opened)) =
        api::open_command(&state, caller, Scope::Environment(environment_id), open).await?;
    Ok(Redirect::to(&format!("/change-requests/{}", opened.id)).into_response())
}

/// The open and scheduled requests the visitor may read, newest first.
pub async fn inbox_page(
    State(state): State<AppState>,
    mut visitor: Visitor,
) -> Result<Response, PageError> {
    let caller = visitor.take_caller()?;
    let directory = state.commands.directory().await?.state;
    let email = super::who(&state, &caller);
    let me = caller.principal.user_id();
    let params = InboxQueryParams {
        environment: None,
        project: None,
        status: Some("open,scheduled".into()),
        author: None,
        reviewer: None,
        feature: None,
        before: None,
        limit: None,
    };
    let axum::Json(requests) = inbox::inbox(State(state), caller, Query(params)).await?;
    let body = html! {
        h1 { "Change requests" }
        @if requests.is_empty() {
            p { "Nothing waits for review." }
        } @else {
            ul.requests {
                @for request in &requests {
                    li.card {
                        a href={ "/change-requests/" (request.id) } { (request.title) }
                        " · " (status_of(request))
                        " · by " (email_of(&directory, request.author))
                        @if Some(request.author) == me { " (you)" }
                        " · " strong { (request.approval_count) " of " (request.required_approvals) } " approvals"
                        @if !request.conflicts.is_empty() { " · " span.error { "conflicts" } }
                        @if let Some(at) = &request.live_from { " · goes live " (at) }
                    }
                }
            }
        }
    };
    let csrf = visitor.csrf_token();
    Ok(visitor.finish(live_page("Change requests", Some((&email, &csrf)), body).into_response()))
}

fn email_of(directory: &domain::directory::Directory, user: u64) -> String {
    directory
        .users
        .get(&user)
        .map_or_else(|| format!("user {user}"), |u| u.email.clone())
}

fn status_of(request: &ChangeRequestView) -> &'static str {
    match request.status {
        Status::Open => "open",
        Status::Scheduled => "scheduled",
        Status::Committed => "committed",
        Status::Rejected => "rejected",
        Status::Closed => "closed",
        Status::Failed => "failed",
    }
}

/// One request: what it changes, its review, and the actions.
pub async fn request_page(
    State(state): State<AppState>,
    mut visitor: Visitor,
    Path(id): Path<u64>,
) -> Result<Response, PageError> {
    let caller = visitor.take_caller()?;
    let directory = state.commands.directory().await?.state;
    let email = super::who(&state, &caller);
    let me = caller.principal.user_id();
    let open = matches!(
        state.commands.change_request(id).await?.state.status,
        Status::Open
    );
    let axum::Json(request) = api::show(State(state.clone()), caller.clone(), Path(id)).await?;
    let changes = change_diff::describe(&state, &request.commands).await?;
    let scheduled = matches!(request.status, Status::Scheduled);
    let impact = if open || scheduled {
        impact::impact_of(State(state.clone()), caller, Path(id))
            .await
            .map(|axum::Json(impact)| impact)
            .ok()
    } else {
        None
    };
    let mut environment_names = std::collections::BTreeMap::new();
    for environment in impact.iter().flatten() {
        let id = environment.environment_id;
        let name = state.commands.environment(id).await?.state.name;
        environment_names.insert(id, name);
    }
    let csrf = visitor.csrf_token();
    let mine = Some(request.author) == me;
    let approved_by_me = request
        .approvals
        .iter()
        .any(|a| Some(a.user_id) == me && a.current);
    let action = |name: &str, label: &str| -> Markup {
        html! {
            form.inline method="post" action={ "/change-requests/" (id) "/" (name) } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                button type="submit" { (label) }
            }
        }
    };
    let body = html! {
        p.crumbs { a href="/change-requests" { "Change requests" } " / #" (id) }
        h1 { (request.title) }
        p {
            "Status: " strong { (status_of(&request)) }
            " · opened by " (email_of(&directory, request.author))
            @if let Some(reason) = &request.reason { " · " (reason) }
        }
        h2 { "What it changes" }
        div.scroll {
            table.features {
                thead { tr { th scope="col" { "Change" } th scope="col" { "Now" } th scope="col" { "Proposed" } } }
                tbody {
                    @for (what, now, proposed) in &changes {
                        tr { td { (what) } td { (now) } td { (proposed) } }
                    }
                }
            }
        }
        @if let Some(at) = &request.live_from {
            p { "Goes live at " strong { (at) } @if scheduled { " (scheduled)" } }
        }
        @if let Some(impact) = &impact {
            h2 { "Impact" }
            @for environment in impact {
                p {
                    (environment_names.get(&environment.environment_id).map_or("", String::as_str)) ": "
                    strong { (environment.identities_affected) } " of " (environment.identities_evaluated)
                    " known identities would be served something else"
                }
                @if !environment.sample.is_empty() {
                    ul {
                        @for affected in &environment.sample {
                            li { code { (affected.identifier) } ": "
                                @for (i, change) in affected.changes.iter().enumerate() {
                                    @if i > 0 { "; " }
                                    (change.feature) " " (served_text(change.before.as_ref())) " → " (served_text(change.after.as_ref()))
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Review" }
        p.approvals {
            strong { (request.approval_count) " of " (request.required_approvals) } " approvals"
            @if !request.approvals.is_empty() {
                ": "
                @for (i, approval) in request.approvals.iter().enumerate() {
                    @if i > 0 { ", " }
                    (email_of(&directory, approval.user_id))
                    @if !approval.current { " (of an earlier version)" }
                }
            }
        }
        @if !request.conflicts.is_empty() {
            p.error role="alert" { "Conflicts: what it changes changed since it was proposed; it cannot be committed as it is." }
        }
        @for comment in &request.comments {
            blockquote { (comment.text) footer { "— " (email_of(&directory, comment.user_id)) } }
        }
        @if scheduled { div.actions { (action("cancel-schedule", "Cancel the schedule")) } }
        @if open {
            div.actions {
                @if !mine && !approved_by_me { (action("approve", "Approve")) }
                @if approved_by_me { (action("withdraw-approval", "Withdraw my approval")) }
                (action("commit", "Commit"))
                @if mine { (action("close", "Close")) }
            }
            form.inline method="post" action={ "/change-requests/" (id) "/schedule" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="live-from" { "Go live at (UTC; empty: when committed)" }
                input #live-from type="datetime-local" name="live_from";
                button type="submit" { "Set the schedule" }
            }
            form method="post" action={ "/change-requests/" (id) "/comment" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="comment" { "Comment" }
                input #comment name="text" required maxlength="5000";
                button type="submit" { "Comment" }
            }
            @if !mine {
                form method="post" action={ "/change-requests/" (id) "/reject" } {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    label for="reason" { "Reason to reject" }
                    input #reason name="reason" required maxlength="5000";
                    button type="submit" { "Reject" }
                }
            }
        }
    };
    let title = format!("Change request #{id}");
    Ok(visitor.finish(live_page(&title, Some((&email, &csrf)), body).into_response()))
}

fn served_text(served: Option<&domain::impact::Served>) -> String {
    served.map_or_else(|| "absent".to_string(), |s| flag_text(s.enabled, &s.value))
}

fn flag_text(enabled: bool, value: &Value) -> String {
    let state = if enabled { "On" } else { "Off" };
    if value.is_null() {
        state.to_string()
    } else {
        format!("{state}, value {value}")
    }
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    reason: String,
    /// A new schedule (datetime-local, UTC); empty: when committed.
    #[serde(default)]
    live_from: String,
}

/// Runs action `name` on request `id` through the API's handler for it.
pub async fn act(
    State(state): State<AppState>,
    mut visitor: Visitor,
    Path((id, name)): Path<(u64, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let caller: Admin = visitor.take_caller()?;
    let state_ = State(state);
    let path = Path(id);
    // Each answers the request as it then is; the page shows it again after the redirect.
    let _shown = match name.as_str() {
        "approve" => api::approve(state_, caller, path).await?,
        "withdraw-approval" => api::withdraw_approval(state_, caller, path).await?,
        "commit" => api::commit(state_, caller, path).await?,
        "close" => api::close(state_, caller, path).await?,
        "cancel-schedule" => api::cancel_schedule(state_, caller, path).await?,
        "schedule" => {
            let live_from = match super::change::schedule(&form.live_from)? {
                Some(micros) => Value::String(domain::log::rfc3339(micros).unwrap_or_default()),
                None => Value::Null,
            };
            let edit = api::EditChangeRequest {
                title: None,
                description: None,
                commands: None,
                live_from: Some(live_from),
                reviewers: Vec::new(),
            };
            api::edit(state_, caller, path, JsonBody(edit)).await?
        }
        "comment" => {
            api::comment(state_, caller, path, JsonBody(Comment { text: form.text })).await?
        }
        "reject" => {
            let reason = Reason {
                reason: form.reason,
            };
            api::reject(state_, caller, path, JsonBody(reason)).await?
        }
        other => {
            return Err(PageError::from(crate::http::error::Error::NotFound(
                format!("no action {other:?} on change requests"),
            )));
        }
    };
    Ok(Redirect::to(&format!("/change-requests/{id}")).into_response())
}

//! The dashboard: HTML pages served by `flaglog serve` itself at `/`, written on the server
//! (maud) and readable without JavaScript; its stylesheet is embedded in the binary.
//!
//! Pages read what the admin API reads (the command side's aggregates) and every form executes
//! a command through [`crate::http::admin::execute`], as the signed-in person ([`session`]):
//! roles, four-eyes and validation are the API's own. Errors are pages with the API's status
//! codes (a form that fails validation shows why, 400; a refused change, 403).

mod audit;
mod change;
mod change_diff;
mod change_requests;
mod chart;
#[cfg(test)]
mod contrast;
mod feature;
mod feature_edit;
mod feature_forms;
mod fields;
mod integrations;
mod live;
pub mod own_flags;
mod pages;
mod projects;
mod segments;
pub mod session;
mod settings;
mod time_travel;
mod tokens;
mod users;
mod versions;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::de::DeserializeOwned;

use domain::directory::Principal;

use crate::http::AppState;
use crate::http::error::Error;
use crate::http::extract::Admin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(projects::home))
        .route("/setup", get(pages::setup_form).post(pages::setup))
        .route("/login", get(pages::sign_in_form).post(pages::sign_in))
        .route("/logout", post(pages::sign_out))
        .route("/organisations", post(projects::create_organisation))
        .route(
            "/organisations/{organisation_id}/projects",
            post(projects::create_project),
        )
        .route("/users", get(users::users).post(users::create_user))
        .route("/users/roles", post(users::set_role))
        .route("/tokens", get(tokens::tokens).post(tokens::issue))
        .route("/tokens/service", post(tokens::issue_service))
        .route("/tokens/{token_id}/{action}", post(tokens::act))
        .route("/audit", get(audit::audit))
        .route("/audit/export", get(audit::export))
        .route("/audit/verify", get(audit::verify))
        .route("/projects/{project_id}", get(projects::project))
        .route(
            "/projects/{project_id}/features/{feature_id}",
            get(feature::feature),
        )
        .route(
            "/projects/{project_id}/features/{feature_id}/definition",
            post(feature_edit::update_definition),
        )
        .route(
            "/projects/{project_id}/features/{feature_id}/delete",
            post(feature_edit::delete),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/state",
            post(feature_edit::set_state),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/segment-overrides",
            post(feature_edit::set_segment_override),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/segment-overrides/{segment_id}/remove",
            post(feature_edit::remove_segment_override),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/identity-overrides",
            post(feature_edit::identity_override),
        )
        .route(
            "/projects/{project_id}/segments",
            get(segments::list).post(segments::create),
        )
        .route(
            "/projects/{project_id}/segments/{segment_id}",
            get(segments::show).post(segments::update),
        )
        .route(
            "/projects/{project_id}/segments/{segment_id}/delete",
            post(segments::delete),
        )
        .route(
            "/projects/{project_id}/settings",
            get(settings::settings).post(settings::update_project),
        )
        .route(
            "/projects/{project_id}/integrations",
            get(integrations::integrations),
        )
        .route(
            "/projects/{project_id}/integrations/{integration_id}/replay",
            post(integrations::replay),
        )
        .route(
            "/projects/{project_id}/time-travel",
            get(time_travel::time_travel),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/versions",
            get(versions::versions),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/versions/{number}/restore",
            post(versions::restore),
        )
        .route("/usage", get(feature::usage))
        .route("/live", get(live::live))
        .route(
            "/projects/{project_id}/environments",
            post(projects::create_environment),
        )
        .route(
            "/projects/{project_id}/features",
            post(projects::create_feature),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/enabled",
            post(projects::set_enabled),
        )
        .route(
            "/environments/{environment_id}/features/{feature_id}/propose",
            post(change_requests::propose_enabled),
        )
        .route(
            "/environments/{environment_id}/settings",
            post(settings::update_environment),
        )
        .route("/change-requests", get(change_requests::inbox_page))
        .route("/change-requests/{id}", get(change_requests::request_page))
        .route("/change-requests/{id}/{action}", post(change_requests::act))
        .route(
            "/assets/dashboard.css",
            get(|| asset("text/css; charset=utf-8", STYLESHEET)),
        )
        .route(
            "/assets/live.js",
            get(|| asset("text/javascript; charset=utf-8", LIVE)),
        )
        .route(
            "/assets/favicon.svg",
            get(|| asset("image/svg+xml", FAVICON)),
        )
}

const STYLESHEET: &str = include_str!("../../assets/dashboard.css");
const FAVICON: &str = include_str!("../../assets/favicon.svg");
const LIVE: &str = include_str!("../../assets/live.js");

/// An embedded asset.
async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Who a page is for, as its header shows them, with the dashboard's own flags.
pub struct Who {
    pub email: String,
    /// An organisation administrator (the header links to the users page).
    pub admin: bool,
    pub own_flags: own_flags::OwnFlags,
}

/// The signed-in person as the header shows them.
pub fn who(state: &AppState, caller: &Admin) -> Who {
    let email = match &caller.principal {
        Principal::User { user, .. } => user.email.clone(),
        other => other.actor(),
    };
    Who {
        email,
        admin: caller.principal.is_organisation_admin(),
        own_flags: state.own_flags.get(),
    }
}

/// A whole page: the layout around `body`, titled `title`; `who` is the signed-in person
/// (with a sign-out button carrying the CSRF token given with them).
pub fn page(title: &str, who: Option<(&Who, &str)>, body: Markup) -> Markup {
    layout(title, who, body, false)
}

/// [`page`], kept current as the log grows ([`live`]).
pub fn live_page(title: &str, who: Option<(&Who, &str)>, body: Markup) -> Markup {
    layout(title, who, body, true)
}

fn layout(title: &str, who: Option<(&Who, &str)>, body: Markup, live: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" class=[who.filter(|(w, _)| w.own_flags.dark_mode).map(|_| "dark")] {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · flaglog" }
                link rel="stylesheet" href="/assets/dashboard.css";
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
            }
            body {
                header.top {
                    a.brand href="/" { "flaglog" }
                    @if let Some((who, csrf)) = who {
                        nav aria-label="Main" {
                            a href="/" { "Projects" }
                            a href="/change-requests" { "Change requests" }
                            a href="/audit" { "Audit log" }
                            a href="/tokens" { "API tokens" }
                            @if who.admin { a href="/users" { "Users" } a href="/usage" { "Usage" } }
                        }
                        form.signout method="post" action="/logout" {
                            span { (who.email) }
                            input type="hidden" name=(session::CSRF_FIELD) value=(csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                @if let Some(text) = who.and_then(|(w, _)| w.own_flags.announcement.as_deref()) {
                    div.banner role="status" { (text) }
                }
                main data-live[live] { (body) }
                @if live { script src="/assets/live.js" defer {} }
            }
        }
    }
}

/// A form's body; one that does not parse is a 400 page saying what is wrong (not axum's
/// plain-text rejection).
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, PageError> {
        axum::Form::<T>::from_request(request, state)
            .await
            .map(|form| Form(form.0))
            .map_err(|e| PageError::Status(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// A page's query string; one that does not parse is a 400 page saying what is wrong.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, PageError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|query| Query(query.0))
            .map_err(|e| PageError::Status(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// A page's failure, shown as a page (or, for a visitor who must sign in, a redirect).
#[derive(Debug)]
pub enum PageError {
    SignIn,
    Status(StatusCode, String),
}

impl PageError {
    pub fn forbidden(message: &str) -> Self {
        PageError::Status(StatusCode::FORBIDDEN, message.to_string())
    }

    pub fn storage(e: sqlx::Error) -> Self {
        PageError::from(Error::Internal(format!("dashboard sessions: {e}")))
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        let response = match &e {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; see the server's log".to_string()
            }
            other => other.to_string(),
        };
        PageError::Status(e.status(), response)
    }
}

impl From<commands::Error> for PageError {
    fn from(e: commands::Error) -> Self {
        PageError::from(Error::from(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/login").into_response(),
            PageError::Status(status, message) => {
                let body = page(
                    status.canonical_reason().unwrap_or("Error"),
                    None,
                    html! {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                        p.error role="alert" { (message) }
                        p { a href="/" { "Back to the dashboard" } }
                    },
                );
                (status, body).into_response()
            }
        }
    }
}

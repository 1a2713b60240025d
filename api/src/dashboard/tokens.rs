//! API tokens: the tokens the visitor may manage (their own, the service tokens of projects they
//! administer, every one for an organisation administrator), and forms to issue a personal or a
//! service token, rotate one (its new secret shown once) and revoke one. Each is the API's own
//! handler run as the signed-in person.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Form;
use super::session::{CSRF_FIELD, Visitor};
use super::{PageError, page, who};
use crate::http::AppState;
use crate::http::admin::tokens::{self as api, IssuedToken, NewPersonalToken, NewServiceToken};
use crate::http::extract::{JsonBody, Path};

const ROLES: [&str; 4] = ["viewer", "editor", "approver", "admin"];

pub async fn tokens(
    State(state): State<AppState>,
    mut visitor: Visitor,
) -> Result<Response, PageError> {
    let caller = visitor.take_caller()?;
    let header = who(&state, &caller);
    let directory = state.commands.directory().await?.state;
    let mut projects = Vec::new();
    for &id in directory.projects.keys() {
        let role = caller.principal.role_on(&directory, id);
        if caller.principal.is_organisation_admin() || role == Some(domain::access::Role::Admin) {
            projects.push((id, state.commands.project(id).await?.state.settings.name));
        }
    }
    let users = directory.users.clone();
    let axum::Json(tokens) = api::list(State(state), caller).await?;
    let csrf = visitor.csrf_token();
    let body = html! {
        h1 { "API tokens" }
        p { "Send a token as " code { "Authorization: Token <token>" } ". Secrets are shown once, when issued or rotated." }
        div.scroll {
            table.features {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Whose" } th scope="col" { "Actions" } } }
                tbody {
                    @for token in &tokens {
                        tr {
                            td { (token.name) }
                            td {
                                @if let Some(user) = token.user_id {
                                    (users.get(&user).map_or_else(|| format!("user {user}"), |u| u.email.clone()))
                                } @else if let (Some(project), Some(role)) = (token.project_id, token.role) {
                                    "service: " (role.as_str()) " on project " (project)
                                }
                            }
                            td {
                                form.toggle method="post" action={ "/tokens/" (token.id) "/rotate" } {
                                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                    button type="submit" aria-label={ "Rotate " (token.name) } { "Rotate" }
                                }
                                form.toggle method="post" action={ "/tokens/" (token.id) "/revoke" } {
                                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                    button type="submit" aria-label={ "Revoke " (token.name) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Issue a personal token" }
        form.inline method="post" action="/tokens" {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            label for="token-name" { "Name" }
            input #token-name name="name" required maxlength="100" placeholder="e.g. laptop";
            button type="submit" { "Issue" }
        }
        @if !projects.is_empty() {
            h2 { "Issue a service token" }
            form method="post" action="/tokens/service" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="service-name" { "Name" }
                input #service-name name="name" required maxlength="100" placeholder="e.g. ci";
                label for="service-project" { "Project" }
                select #service-project name="project_id" {
                    @for (id, name) in &projects { option value=(id) { (name) } }
                }
                label for="service-role" { "Role" }
                select #service-role name="role" {
                    @for role in ROLES { option value=(role) { (role) } }
                }
                button type="submit" { "Issue service token" }
            }
        }
    };
    Ok(visitor.finish(page("API tokens", Some((&header, &csrf)), body).into_response()))
}

/// The page that shows a secret once.
fn secret_page(visitor: &Visitor, header: &super::Who, issued: &IssuedToken, verb: &str) -> Markup {
    let csrf = visitor.csrf_token();
    page(
        "Token",
        Some((header, &csrf)),
        html! {
            h1 { (verb) " " (issued.token.name) }
            p { "Its secret, shown this once:" }
            p { code.key { (issued.secret) } }
            p { a href="/tokens" { "Back to tokens" } }
        },
    )
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    project_id: u64,
    #[serde(default)]
    role: String,
}

pub async fn issue(
    State(state): State<AppState>,
    mut visitor: Visitor,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let caller = visitor.take_caller()?;
    let header = who(&state, &caller);
    let body = JsonBody(NewPersonalToken { name: form.name });
    let (_, axum::Json(issued)) = api::issue_personal(State(state), caller, body).await?;
    let page = secret_page(&visitor, &header, &issued, "Issued");
    Ok(visitor.finish((StatusCode::CREATED, page).into_response()))
}

pub async fn issue_service(
    State(state): State<AppState>,
    mut visitor: Visitor,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let caller = visitor.take_caller()?;
    let header = who(&state, &caller);
    let role = serde_json::from_value(serde_json::Value::String(form.role)).map_err(|_| {
        crate::http::error::Error::bad_request("role", "viewer, editor, approver or admin")
    })?;
    let body = JsonBody(NewServiceToken {
        name: form.name,
        role,
    });
    let (_, axum::Json(issued)) =
        api::issue_service(State(state), caller, Path(form.project_id), body).await?;
    let page = secret_page(&visitor, &header, &issued, "Issued");
    Ok(visitor.finish((StatusCode::CREATED, page).into_response()))
}

/// Rotates (`rotate`) or revokes (`revoke`) a token.
pub async fn act(
    State(state): State<AppState>,
    mut visitor: Visitor,
    Path((token_id, action)): Path<(u64, String)>,
    Form(form): Form<TokenForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let caller = visitor.take_caller()?;
    let header = who(&state, &caller);
    match action.as_str() {
        "rotate" => {
            let axum::Json(issued) = api::rotate(State(state), caller, Path(token_id)).await?;
            let page = secret_page(&visitor, &header, &issued, "Rotated");
            Ok(visitor.finish(page.into_response()))
        }
        "revoke" => {
            api::revoke(State(state), caller, Path(token_id)).await?;
            Ok(Redirect::to("/tokens").into_response())
        }
        other => Err(PageError::from(crate::http::error::Error::NotFound(
            format!("no action {other:?} on tokens"),
        ))),
    }
}

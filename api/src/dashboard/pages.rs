//! Signing in and out, and the first run: while no user exists, the dashboard offers to
//! create the first administrator (what `POST /api/v1/users/config/init/` does) and signs
//! them in.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Form;
use super::session::{CSRF_FIELD, Visitor};
use super::{PageError, page};
use crate::http::AppState;
use crate::http::extract::RequestInfo;

#[derive(Deserialize)]
pub struct Credentials {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// Whether flaglog has no user yet (the first run).
pub async fn first_run(state: &AppState) -> Result<bool, PageError> {
    Ok(state.commands.directory().await?.state.users.is_empty())
}

pub async fn setup_form(
    State(state): State<AppState>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    if !first_run(&state).await? {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(visitor.finish(setup_page(&visitor, "", None).into_response()))
}

fn setup_page(visitor: &Visitor, email: &str, error: Option<&str>) -> Markup {
    page(
        "Welcome",
        None,
        html! {
            h1 { "Welcome to flaglog" }
            p { "No one uses this flaglog yet. Create its first administrator: you will then add an organisation, a project, environments and flags." }
            (error_line(error))
            form method="post" action="/setup" {
                input type="hidden" name=(CSRF_FIELD) value=(visitor.csrf_token());
                label for="email" { "E-mail" }
                input #email type="email" name="email" required autocomplete="username" value=(email);
                label for="password" { "Password (at least 8 characters)" }
                input #password type="password" name="password" required minlength="8" autocomplete="new-password";
                button type="submit" { "Create the administrator" }
            }
        },
    )
}

pub async fn setup(
    State(state): State<AppState>,
    visitor: Visitor,
    request: RequestInfo,
    Form(form): Form<Credentials>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let metadata = request.metadata("system:init");
    let created = state
        .commands
        .create_user(&metadata, &form.email, Some(&form.password), true, true)
        .await;
    match created {
        Ok(_) => {}
        Err(e) => {
            let error = PageError::from(e);
            return match error {
                PageError::Status(status, message) if status == StatusCode::BAD_REQUEST => {
                    let body = setup_page(&visitor, &form.email, Some(&message));
                    Ok((status, body).into_response())
                }
                other => Err(other),
            };
        }
    }
    let principal = state
        .commands
        .principal_for_password(&form.email, &form.password)
        .await?
        .ok_or_else(|| PageError::forbidden("the new administrator cannot sign in"))?;
    let mut response = Redirect::to("/").into_response();
    visitor
        .sign_in(&state.read_models, &principal, &mut response)
        .await?;
    Ok(response)
}

pub async fn sign_in_form(
    State(state): State<AppState>,
    visitor: Visitor,
) -> Result<Response, PageError> {
    if first_run(&state).await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    if visitor.signed_in.is_some() {
        return Ok(Redirect::to("/").into_response());
    }
    Ok(visitor.finish(sign_in_page(&visitor, "", None).into_response()))
}

fn sign_in_page(visitor: &Visitor, email: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            (error_line(error))
            form method="post" action="/login" {
                input type="hidden" name=(CSRF_FIELD) value=(visitor.csrf_token());
                label for="email" { "E-mail" }
                input #email type="email" name="email" required autocomplete="username" value=(email);
                label for="password" { "Password" }
                input #password type="password" name="password" required autocomplete="current-password";
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub async fn sign_in(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<Credentials>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let principal = state
        .commands
        .principal_for_password(&form.email, &form.password)
        .await?;
    let Some(principal) = principal else {
        let body = sign_in_page(
            &visitor,
            &form.email,
            Some("that e-mail and password do not match a user"),
        );
        return Ok((StatusCode::UNAUTHORIZED, body).into_response());
    };
    let mut response = Redirect::to("/").into_response();
    visitor
        .sign_in(&state.read_models, &principal, &mut response)
        .await?;
    Ok(response)
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let mut response = Redirect::to("/login").into_response();
    visitor
        .sign_out(&state.read_models, &headers, &mut response)
        .await?;
    Ok(response)
}

/// An error line above a form (none when `error` is `None`).
pub fn error_line(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
    }
}

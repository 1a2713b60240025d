//! Users and roles: the people of this flaglog with their roles per project, a form to add a
//! person (e-mail, password, whether an organisation administrator; their first API token is
//! shown once, as the API shows it), and a form to give or take a role on a project.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use commands::handlers::new_user_command;
use domain::access::Role;
use domain::command::DirectoryCommand;
use maud::html;
use serde::Deserialize;

use super::Form;
use super::session::{CSRF_FIELD, Visitor};
use super::{PageError, page};
use crate::http::AppState;
use crate::http::admin::execute;

const ROLES: [Role; 4] = [Role::Viewer, Role::Editor, Role::Approver, Role::Admin];

pub async fn users(State(state): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    if !caller.principal.is_organisation_admin() {
        return Err(PageError::forbidden(
            "only an organisation administrator manages users",
        ));
    }
    let directory = state.commands.directory().await?.state;
    let mut projects = Vec::new();
    for &id in directory.projects.keys() {
        projects.push((id, state.commands.project(id).await?.state.settings.name));
    }
    let project_name = |id: u64| {
        projects
            .iter()
            .find(|(p, _)| *p == id)
            .map_or_else(|| format!("project {id}"), |(_, name)| name.clone())
    };
    let csrf = visitor.csrf_token();
    let email = super::who(&state, caller);
    let body = html! {
        h1 { "Users and roles" }
        div.scroll {
            table.features {
                thead { tr { th scope="col" { "E-mail" } th scope="col" { "Roles" } } }
                tbody {
                    @for user in directory.users.values() {
                        tr {
                            td { (user.email) @if user.is_admin { " " small { "(organisation administrator)" } } }
                            td {
                                @for ((project, holder), role) in &directory.roles {
                                    @if *holder == user.id { (role.as_str()) " on " (project_name(*project)) br; }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a person" }
        form method="post" action="/users" {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            label for="new-email" { "E-mail" }
            input #new-email type="email" name="email" required;
            label for="new-password" { "Password (at least 8 characters)" }
            input #new-password type="password" name="password" required minlength="8" autocomplete="new-password";
            label { input type="checkbox" name="is_admin" value="true"; " Organisation administrator" }
            button type="submit" { "Add" }
        }
        @if !projects.is_empty() {
            h2 { "Give a role" }
            form method="post" action="/users/roles" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="role-user" { "Person" }
                select #role-user name="user_id" {
                    @for user in directory.users.values() { option value=(user.id) { (user.email) } }
                }
                label for="role-project" { "Project" }
                select #role-project name="project_id" {
                    @for (id, name) in &projects { option value=(id) { (name) } }
                }
                label for="role-role" { "Role" }
                select #role-role name="role" {
                    @for role in ROLES { option value=(role.as_str()) { (role.as_str()) } }
                    option value="" { "none (take the role away)" }
                }
                button type="submit" { "Set the role" }
            }
        }
    };
    Ok(visitor.finish(page("Users", Some((&email, &csrf)), body).into_response()))
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    is_admin: bool,
}

pub async fn create_user(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<NewUserForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let caller = visitor.require()?;
    let (command, token) =
        new_user_command(&form.email, Some(&form.password), form.is_admin, false)
            .map_err(crate::http::error::Error::from)?;
    execute(&state, caller, command).await?;
    let csrf = visitor.csrf_token();
    let email = super::who(&state, caller);
    let body = html! {
        h1 { "Added " (form.email.trim()) }
        p { "They sign in with the password you gave. Their first API token, shown this once:" }
        p { code.key { (token) } }
        p { a href="/users" { "Back to users" } }
    };
    let page = page("User added", Some((&email, &csrf)), body);
    Ok(visitor.finish((StatusCode::CREATED, page).into_response()))
}

#[derive(Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    csrf: String,
    user_id: u64,
    project_id: u64,
    #[serde(default)]
    role: String,
}

pub async fn set_role(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<RoleForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    let caller = visitor.require()?;
    let role = if form.role.is_empty() {
        None
    } else {
        Some(
            ROLES
                .into_iter()
                .find(|r| r.as_str() == form.role)
                .ok_or_else(|| {
                    crate::http::error::Error::bad_request(
                        "role",
                        "viewer, editor, approver, admin, or none",
                    )
                })?,
        )
    };
    let command = DirectoryCommand::SetProjectRole {
        project_id: form.project_id,
        user_id: form.user_id,
        role,
    };
    execute(&state, caller, command).await?;
    Ok(Redirect::to("/users").into_response())
}

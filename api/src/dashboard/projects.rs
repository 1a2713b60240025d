//! Organisations, projects, environments and features: the home page (what the visitor may
//! read), a project's page (each feature's state per environment side by side, with the SDK
//! keys), and the forms that create and toggle them. Controls are shown where the visitor's
//! role allows the command behind them ([`may`]), and the command is checked again when run.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use commands::secrets;
use domain::access;
use domain::command::{Command, DirectoryCommand, EnvironmentCommand, ProjectCommand};
use domain::directory::Directory;
use domain::environment::{Environment, FeatureStateInput};
use domain::model::FeatureState;
use domain::project::{FeatureInput, Project, ProjectSettings};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::Query;
use super::pages::first_run;
use super::session::{CSRF_FIELD, Visitor};
use super::{Form, change};
use super::{PageError, page, who};
use crate::http::AppState;
use crate::http::admin::{execute, may_read, require_reader};
use crate::http::extract::{Admin, Path};

/// Whether `caller` may run `command` (the API's own rule, [`access::allows`]).
pub(super) fn may(directory: &Directory, caller: &Admin, command: impl Into<Command>) -> bool {
    access::allows(
        directory,
        &caller.principal,
        &access::requirement(&command.into()),
    )
}

/// A standard feature named `name`, off and without a value until set.
fn new_feature(project_id: u64, name: String) -> ProjectCommand {
    ProjectCommand::CreateFeature {
        project_id,
        feature: FeatureInput {
            id: None,
            name,
            feature_type: Default::default(),
            default_enabled: false,
            initial_value: Value::Null,
            description: None,
            tags: Vec::new(),
            multivariate_options: Vec::new(),
        },
    }
}

/// Runs a form's command as the signed-in visitor, once its CSRF token checks out.
pub(super) async fn submit(
    state: &AppState,
    visitor: &Visitor,
    csrf: &str,
    command: impl Into<Command>,
) -> Result<commands::handlers::Executed, PageError> {
    visitor.check_csrf(csrf)?;
    let caller = visitor.require()?;
    Ok(execute(state, caller, command).await?)
}

pub async fn home(State(state): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    if first_run(&state).await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let caller = visitor.require()?;
    let directory = state.commands.directory().await?.state;
    let csrf = visitor.csrf_token();
    let mut organisations = Vec::new();
    for (&organisation_id, name) in &directory.organisations {
        let mut projects = Vec::new();
        for (&project_id, &owner) in &directory.projects {
            if owner == organisation_id && may_read(&directory, caller, project_id) {
                let project = state.commands.project(project_id).await?.state;
                projects.push((project_id, project.settings.name.clone()));
            }
        }
        let may_create = may(
            &directory,
            caller,
            DirectoryCommand::CreateProject {
                organisation_id,
                settings: ProjectSettings::default(),
            },
        );
        if !projects.is_empty() || may_create {
            organisations.push((organisation_id, name.clone(), projects, may_create));
        }
    }
    let may_create_organisation = may(
        &directory,
        caller,
        DirectoryCommand::CreateOrganisation {
            name: String::new(),
        },
    );
    let email = who(&state, caller);
    let body = html! {
        h1 { "Organisations" }
        @if organisations.is_empty() {
            p { "You have no role on any project yet." }
        }
        @for (organisation_id, name, projects, may_create) in &organisations {
            section.card {
                h2 { (name) }
                @if projects.is_empty() { p { "No projects yet." } }
                ul.projects {
                    @for (project_id, project_name) in projects {
                        li { a href={ "/projects/" (project_id) } { (project_name) } }
                    }
                }
                @if *may_create {
                    form.inline method="post" action={ "/organisations/" (organisation_id) "/projects" } {
                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                        label for={ "project-name-" (organisation_id) } { "New project in " (name) }
                        input id={ "project-name-" (organisation_id) } name="name" required maxlength="200";
                        button type="submit" { "Create project" }
                    }
                }
            }
        }
        @if may_create_organisation {
            form.inline method="post" action="/organisations" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="organisation-name" { "New organisation" }
                input #organisation-name name="name" required maxlength="200";
                button type="submit" { "Create organisation" }
            }
        }
    };
    Ok(visitor.finish(page("Organisations", Some((&email, &csrf)), body).into_response()))
}

#[derive(Deserialize)]
pub struct NameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create_organisation(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<NameForm>,
) -> Result<Response, PageError> {
    let command = DirectoryCommand::CreateOrganisation { name: form.name };
    submit(&state, &visitor, &form.csrf, command).await?;
    Ok(Redirect::to("/").into_response())
}

pub async fn create_project(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(organisation_id): Path<u64>,
    Form(form): Form<NameForm>,
) -> Result<Response, PageError> {
    let command = DirectoryCommand::CreateProject {
        organisation_id,
        settings: ProjectSettings {
            name: form.name,
            ..ProjectSettings::default()
        },
    };
    let id = submit(&state, &visitor, &form.csrf, command)
        .await?
        .created_id()?;
    Ok(Redirect::to(&format!("/projects/{id}")).into_response())
}

pub async fn create_environment(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
    Form(form): Form<NameForm>,
) -> Result<Response, PageError> {
    let command = DirectoryCommand::CreateEnvironment {
        project_id,
        name: form.name,
        client_key: secrets::new_client_key(),
    };
    submit(&state, &visitor, &form.csrf, command).await?;
    Ok(Redirect::to(&format!("/projects/{project_id}")).into_response())
}

pub async fn create_feature(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
    Form(form): Form<NameForm>,
) -> Result<Response, PageError> {
    let title = format!("Create feature {}", form.name);
    let command = new_feature(project_id, form.name);
    let outcome = change::apply(
        &state,
        &visitor,
        &form.csrf,
        vec![command.into()],
        title,
        "",
    )
    .await?;
    Ok(outcome.redirect(&format!("/projects/{project_id}")))
}

#[derive(Deserialize)]
pub struct EnabledForm {
    #[serde(default)]
    pub(super) csrf: String,
    /// The state to set (`true` or `false`), not a flip: a form sent twice sets it once.
    pub(super) enabled: bool,
}

/// The command that turns a feature on or off in an environment, keeping its value; with the
/// environment and the feature's name, which pages show.
pub(super) async fn enabled_command(
    state: &AppState,
    environment_id: u64,
    feature_id: u64,
    enabled: bool,
) -> Result<(EnvironmentCommand, Environment, String), PageError> {
    let environment = state.commands.environment(environment_id).await?.state;
    let project = state.commands.project(environment.project_id).await?.state;
    let feature = project
        .feature(feature_id)
        .map_err(crate::http::error::Error::from)?;
    let current = environment.effective_state(feature);
    let command = EnvironmentCommand::SetFeatureState {
        environment_id,
        feature_id,
        state: FeatureStateInput {
            enabled,
            feature_state_value: current.feature_state_value,
            multivariate_feature_state_values: None,
            key: None,
        },
    };
    Ok((command, environment, feature.name.clone()))
}

pub async fn set_enabled(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id)): Path<(u64, u64)>,
    Form(form): Form<EnabledForm>,
) -> Result<Response, PageError> {
    visitor.check_csrf(&form.csrf)?;
    visitor.require()?;
    let (command, environment, _) =
        enabled_command(&state, environment_id, feature_id, form.enabled).await?;
    submit(&state, &visitor, &form.csrf, command).await?;
    Ok(Redirect::to(&format!(
        "/projects/{}#feature-{feature_id}",
        environment.project_id
    ))
    .into_response())
}

#[derive(Deserialize)]
pub struct SearchQuery {
    /// Features whose name, description or a tag contains this, ignoring case.
    #[serde(default)]
    q: String,
}

/// Whether `feature` is found by `query` (lowercase; empty finds every feature).
fn found(feature: &domain::model::Feature, query: &str) -> bool {
    let has = |text: &str| text.to_lowercase().contains(query);
    query.is_empty()
        || has(&feature.name)
        || feature.description.as_deref().is_some_and(has)
        || feature.tags.iter().any(|t| has(t))
}

pub async fn project(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
    Query(search): Query<SearchQuery>,
) -> Result<Response, PageError> {
    let query = search.q.trim().to_lowercase();
    let caller = visitor.require()?;
    let (directory, project, environments) = readable_project(&state, caller, project_id).await?;
    let csrf = visitor.csrf_token();
    let may_create_environment = may(
        &directory,
        caller,
        DirectoryCommand::CreateEnvironment {
            project_id,
            name: String::new(),
            client_key: String::new(),
        },
    );
    let may_create_feature = may(&directory, caller, new_feature(project_id, String::new()));
    let propose_feature =
        change::review_scope(&state, &new_feature(project_id, String::new()).into())
            .await?
            .is_some();
    // Per environment: whether the visitor may change a flag's state there, and whether such
    // a change must be proposed (four-eyes: the API's own rule, access::four_eyes).
    let may_edit: Vec<(bool, bool)> = environments
        .iter()
        .map(|env| {
            let command = Command::from(EnvironmentCommand::SetFeatureState {
                environment_id: env.id,
                feature_id: 0,
                state: FeatureStateInput {
                    enabled: false,
                    feature_state_value: Value::Null,
                    multivariate_feature_state_values: None,
                    key: None,
                },
            });
            let propose = access::four_eyes(
                &command,
                env.settings.minimum_change_request_approvals,
                access::Review::Direct,
            )
            .is_err();
            (may(&directory, caller, command), propose)
        })
        .collect();
    let email = who(&state, caller);
    let name = project.settings.name.clone();
    let body = html! {
        p.crumbs { a href="/" { "Organisations" } " / " (name) }
        h1 { (name) }
        nav.sub aria-label="Project" {
            a href={ "/projects/" (project_id) "/segments" } { "Segments" }
            a href={ "/projects/" (project_id) "/settings" } { "Settings" }
            a href={ "/projects/" (project_id) "/integrations" } { "Integrations" }
            a href={ "/projects/" (project_id) "/time-travel" } { "Time travel" }
            a href={ "/audit?project=" (project_id) } { "Audit trail" }
        }
        @if environments.is_empty() {
            p { "No environments yet: create one (e.g. Development, Production) to serve flags." }
        }
        @if project.features.is_empty() {
            p { "No features yet." }
        } @else {
            form.inline role="search" method="get" action={ "/projects/" (project_id) } {
                label for="search" { "Search features" }
                input #search type="search" name="q" value=(search.q) placeholder="name, description or tag";
                button type="submit" { "Search" }
                @if !query.is_empty() { a href={ "/projects/" (project_id) } { "Show all" } }
            }
            div.scroll {
                table.features {
                    caption { "Each feature's state per environment" }
                    thead {
                        tr {
                            th scope="col" { "Feature" }
                            @for env in &environments { th scope="col" { (env.name) } }
                        }
                    }
                    tbody {
                        @for feature in project.features.values().filter(|f| found(f, &query)) {
                            tr id={ "feature-" (feature.id) } {
                                th scope="row" {
                                    a href={ "/projects/" (project_id) "/features/" (feature.id) } { code { (feature.name) } }
                                    br;
                                    small { a href={ "/audit?project=" (project_id) "&feature=" (feature.id) } { "history" } }
                                }
                                @for (env, (editable, propose)) in environments.iter().zip(&may_edit) {
                                    @let state = env.effective_state(feature);
                                    td {
                                        (state_badge(&state))
                                        @if *editable {
                                            @let (route, verb) = if *propose { ("propose", "Propose turning") } else { ("enabled", "Turn") };
                                            @let direction = if state.enabled { "off" } else { "on" };
                                            form.toggle method="post" action={ "/environments/" (env.id) "/features/" (feature.id) "/" (route) } {
                                                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                                input type="hidden" name="enabled" value=(!state.enabled);
                                                button type="submit" aria-label={ (verb) " " (direction) " " (feature.name) " in " (env.name) } {
                                                    (verb) " " (direction)
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_create_feature {
            form.inline method="post" action={ "/projects/" (project_id) "/features" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="feature-name" { "New feature" }
                input #feature-name name="name" required maxlength="2000" placeholder="e.g. checkout_v2";
                button type="submit" { @if propose_feature { "Propose feature" } @else { "Create feature" } }
            }
        }
        @if may_create_environment {
            form.inline method="post" action={ "/projects/" (project_id) "/environments" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="environment-name" { "New environment" }
                input #environment-name name="name" required maxlength="200" placeholder="e.g. Production";
                button type="submit" { "Create environment" }
            }
        }
        @if !environments.is_empty() {
            h2 { "SDK keys" }
            @for env in &environments {
                section.card {
                    h3 { (env.name) }
                    p { "Client-side environment key: " code.key { (env.client_key) } }
                    p { "Approvals a change needs: " (env.settings.minimum_change_request_approvals)
                        " · " a href={ "/projects/" (project_id) "/settings" } { "settings" } }
                    pre.snippet { code { (sdk_snippet(&env.client_key)) } }
                }
            }
        }
    };
    Ok(visitor.finish(page(&name, Some((&email, &csrf)), body).into_response()))
}

/// A project the caller may read (403 otherwise), with the directory and the project's
/// environments, as they are now.
pub(super) async fn readable_project(
    state: &AppState,
    caller: &Admin,
    project_id: u64,
) -> Result<(Directory, Project, Vec<Environment>), PageError> {
    require_reader(state, caller, project_id).await?;
    let directory = state.commands.directory().await?.state;
    let project = state.commands.project(project_id).await?.state;
    let mut environments = Vec::new();
    for (&id, (owner, _)) in &directory.environments {
        if *owner == project_id {
            environments.push(state.commands.environment(id).await?.state);
        }
    }
    Ok((directory, project, environments))
}

/// A flag's state as a badge ("On"/"Off") and its value.
pub(super) fn state_badge(state: &FeatureState) -> Markup {
    html! {
        span class={ "state " (if state.enabled { "on" } else { "off" }) } {
            (if state.enabled { "On" } else { "Off" })
        }
        @if !state.feature_state_value.is_null() {
            " " code.value { (state.feature_state_value) }
        }
    }
}

/// How to point Flagsmith's Python SDK and an OpenFeature OFREP provider at this environment.
fn sdk_snippet(client_key: &str) -> String {
    format!(
        "# Flagsmith SDKs: point api_url at this server\n\
         from flagsmith import Flagsmith\n\
         flagsmith = Flagsmith(environment_key=\"{client_key}\", api_url=\"<this server>/api/v1/\")\n\
         flags = flagsmith.get_environment_flags()\n\
         \n\
         # OpenFeature (OFREP): base URL <this server>, header Authorization: Bearer {client_key}"
    )
}

//! A project's settings page (administrators): the project's own settings (name, feature name
//! regex, case sensitivity, hiding disabled flags, four-eyes for its definitions) and each
//! environment's four-eyes and versioning settings. Read-only for others who may read the
//! project.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use domain::command::{EnvironmentCommand, ProjectCommand};
use domain::environment::EnvironmentSettingsChanges;
use domain::project::ProjectSettings;
use maud::html;

use super::fields::Fields;
use super::projects::{may, readable_project, submit};
use super::session::{CSRF_FIELD, Visitor};
use super::{Form, PageError, page, who};
use crate::http::AppState;
use crate::http::extract::Path;

pub async fn settings(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    let (directory, project, environments) = readable_project(&state, caller, project_id).await?;
    let settings = &project.settings;
    let editable = may(
        &directory,
        caller,
        ProjectCommand::UpdateProject {
            project_id,
            settings: settings.clone(),
        },
    );
    let disabled = !editable;
    let csrf = visitor.csrf_token();
    let body = html! {
        p.crumbs { a href="/" { "Organisations" } " / " a href={ "/projects/" (project_id) } { (settings.name) } " / Settings" }
        h1 { "Settings of " (settings.name) }
        @if disabled { p { "Only an administrator of the project changes its settings." } }
        form method="post" action={ "/projects/" (project_id) "/settings" } {
            input type="hidden" name=(CSRF_FIELD) value=(csrf);
            fieldset disabled[disabled] {
                legend { "Project" }
                label for="project-name" { "Name" }
                input #project-name name="name" required maxlength="200" value=(settings.name);
                label for="feature-name-regex" { "Feature names must match (regular expression, empty: any)" }
                input #feature-name-regex name="feature_name_regex" maxlength="500"
                    value=(settings.feature_name_regex.clone().unwrap_or_default());
                label.check { input type="checkbox" name="case_sensitive_feature_names" checked[settings.case_sensitive_feature_names]; " Feature names are case-sensitive" }
                label.check { input type="checkbox" name="hide_disabled_flags" checked[settings.hide_disabled_flags]; " Hide disabled flags from SDKs" }
                label for="project-approvals" { "Approvals a change of the project's features and segments needs (0: none)" }
                input #project-approvals type="number" min="0" max="10" name="minimum_change_request_approvals"
                    value=(settings.minimum_change_request_approvals);
                label.check { input type="checkbox" name="approvals_from_assigned_reviewers_only" checked[settings.approvals_from_assigned_reviewers_only]; " Only assigned reviewers' approvals count" }
                button type="submit" { "Save project settings" }
            }
        }
        @for env in &environments {
            form method="post" action={ "/environments/" (env.id) "/settings" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                fieldset disabled[!may(&directory, caller, settings_command(env.id, EnvironmentSettingsChanges::default()))] {
                    legend { "Environment " (env.name) }
                    label for={ "approvals-" (env.id) } { "Approvals a change in " (env.name) " needs (0: none)" }
                    input id={ "approvals-" (env.id) } type="number" min="0" max="10" name="minimum_change_request_approvals"
                        value=(env.settings.minimum_change_request_approvals);
                    label.check { input type="checkbox" name="approvals_from_assigned_reviewers_only" checked[env.settings.approvals_from_assigned_reviewers_only]; " Only assigned reviewers' approvals count" }
                    label.check { input type="checkbox" name="feature_versioning" checked[env.settings.feature_versioning]; " Feature versioning (show each published state as a version)" }
                    button type="submit" { "Save " (env.name) " settings" }
                }
            }
        }
    };
    let title = format!("Settings of {}", settings.name);
    Ok(visitor.finish(page(&title, Some((&who(&state, caller), &csrf)), body).into_response()))
}

pub async fn update_project(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(project_id): Path<u64>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let regex = fields.one("feature_name_regex").trim();
    let settings = ProjectSettings {
        name: fields.one("name").trim().to_string(),
        feature_name_regex: (!regex.is_empty()).then(|| regex.to_string()),
        case_sensitive_feature_names: fields.ticked("case_sensitive_feature_names"),
        hide_disabled_flags: fields.ticked("hide_disabled_flags"),
        minimum_change_request_approvals: fields
            .number("minimum_change_request_approvals")?
            .unwrap_or(0),
        approvals_from_assigned_reviewers_only: fields
            .ticked("approvals_from_assigned_reviewers_only"),
    };
    let command = ProjectCommand::UpdateProject {
        project_id,
        settings,
    };
    submit(&state, &visitor, fields.one(CSRF_FIELD), command).await?;
    Ok(Redirect::to(&format!("/projects/{project_id}/settings")).into_response())
}

fn settings_command(
    environment_id: u64,
    changes: EnvironmentSettingsChanges,
) -> EnvironmentCommand {
    EnvironmentCommand::UpdateEnvironmentSettings {
        environment_id,
        changes,
    }
}

pub async fn update_environment(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(environment_id): Path<u64>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let changes = EnvironmentSettingsChanges {
        minimum_change_request_approvals: Some(
            fields
                .number("minimum_change_request_approvals")?
                .unwrap_or(0),
        ),
        approvals_from_assigned_reviewers_only: Some(
            fields.ticked("approvals_from_assigned_reviewers_only"),
        ),
        feature_versioning: Some(fields.ticked("feature_versioning")),
    };
    let command = settings_command(environment_id, changes);
    submit(&state, &visitor, fields.one(CSRF_FIELD), command).await?;
    let project_id = state
        .commands
        .environment(environment_id)
        .await?
        .state
        .project_id;
    Ok(Redirect::to(&format!("/projects/{project_id}/settings")).into_response())
}

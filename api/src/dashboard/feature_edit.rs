//! Editing a feature from its page: its definition (description, tags, defaults, multivariate
//! options) and deletion, project-wide; and per environment its state (on/off, value, each
//! option's allocation), its segment overrides with their priority, and identity overrides.
//! Each form's commands go through [`change::apply`]: applied, or proposed where four-eyes
//! asks for review. The forms themselves are drawn here too, beside what reads them.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use domain::command::{Command, EnvironmentCommand, IdentityCommand, ProjectCommand};
use domain::environment::{AllocationInput, Environment, FeatureStateInput};
use domain::identity::IdentityName;
use domain::model::{Feature, FeatureState};
use domain::project::{FeatureChanges, OptionInput, Project};
use maud::{Markup, html};

use super::Form;
use super::change::{self, Outcome};
use super::fields::{Fields, invalid, number, value_field, value_inputs};
use super::session::{CSRF_FIELD, Visitor};
use super::{PageError, projects};
use crate::http::AppState;
use crate::http::extract::Path;

/// Spare rows the definition form offers for new multivariate options.
const SPARE_OPTIONS: usize = 2;

fn feature_page(project_id: u64, feature_id: u64, anchor: &str) -> String {
    format!("/projects/{project_id}/features/{feature_id}{anchor}")
}

async fn environment_and_feature(
    state: &AppState,
    environment_id: u64,
    feature_id: u64,
) -> Result<(Environment, Feature), PageError> {
    let environment = state.commands.environment(environment_id).await?.state;
    let project = state.commands.project(environment.project_id).await?.state;
    let feature = project
        .feature(feature_id)
        .map_err(crate::http::error::Error::from)?
        .clone();
    Ok((environment, feature))
}

/// Back to the feature's page at the environment's section, or to the proposal.
fn back(outcome: Outcome, environment: &Environment, feature_id: u64) -> Response {
    let anchor = format!("#environment-{}", environment.id);
    outcome.redirect(&feature_page(environment.project_id, feature_id, &anchor))
}

pub async fn update_definition(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, feature_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let project = state.commands.project(project_id).await?.state;
    let feature = project
        .feature(feature_id)
        .map_err(crate::http::error::Error::from)?;
    let mut options = Vec::new();
    for i in 0.. {
        let prefix = format!("option{i}_");
        if !fields.ticked(&format!("{prefix}kind")) {
            break;
        }
        let id: Option<u64> = fields.number(&format!("{prefix}id"))?;
        let text = fields.one(&format!("{prefix}value"));
        if fields.ticked(&format!("{prefix}remove")) || (id.is_none() && text.is_empty()) {
            continue;
        }
        let key = fields.one(&format!("{prefix}key")).trim();
        options.push(OptionInput {
            id,
            value: value_field(&fields, &prefix)?,
            default_percentage_allocation: fields
                .number(&format!("{prefix}percentage"))?
                .unwrap_or(0.0),
            key: (!key.is_empty()).then(|| key.to_string()),
        });
    }
    let tags = fields
        .one("tags")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let command = ProjectCommand::UpdateFeature {
        project_id,
        feature_id,
        changes: FeatureChanges {
            default_enabled: Some(fields.ticked("default_enabled")),
            initial_value: Some(value_field(&fields, "initial_")?),
            description: Some(fields.one("description").to_string()),
            tags: Some(tags),
            multivariate_options: Some(options),
        },
    };
    let title = format!("Change the definition of {}", feature.name);
    let outcome = change::apply(
        &state,
        &visitor,
        fields.one(CSRF_FIELD),
        vec![command.into()],
        title,
        fields.one("live_from"),
    )
    .await?;
    Ok(outcome.redirect(&feature_page(project_id, feature_id, "")))
}

pub async fn delete(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((project_id, feature_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let project = state.commands.project(project_id).await?.state;
    let name = project
        .feature(feature_id)
        .map_err(crate::http::error::Error::from)?
        .name
        .clone();
    let command = ProjectCommand::DeleteFeature {
        project_id,
        feature_id,
    };
    let outcome = change::apply(
        &state,
        &visitor,
        fields.one(CSRF_FIELD),
        vec![command.into()],
        format!("Delete {name}"),
        fields.one("live_from"),
    )
    .await?;
    Ok(outcome.redirect(&format!("/projects/{project_id}")))
}

/// A state as the form gives it: `enabled`, the value, and (for a multivariate feature) each
/// option's share from `allocation_{option id}`.
fn state_input(fields: &Fields, feature: &Feature) -> Result<FeatureStateInput, PageError> {
    let allocations = if feature.multivariate_options.is_empty() {
        None
    } else {
        let mut shares = Vec::new();
        for option in &feature.multivariate_options {
            let field = format!("allocation_{}", option.id);
            shares.push(AllocationInput {
                multivariate_feature_option: option.id,
                percentage_allocation: number(&field, fields.one(&field))?.unwrap_or(0.0),
                id: None,
                uuid: None,
            });
        }
        Some(shares)
    };
    Ok(FeatureStateInput {
        enabled: fields.ticked("enabled"),
        feature_state_value: value_field(fields, "")?,
        multivariate_feature_state_values: allocations,
        key: None,
    })
}

pub async fn set_state(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let (environment, feature) =
        environment_and_feature(&state, environment_id, feature_id).await?;
    let command = EnvironmentCommand::SetFeatureState {
        environment_id,
        feature_id,
        state: state_input(&fields, &feature)?,
    };
    let title = format!("Change {} in {}", feature.name, environment.name);
    let outcome = change::apply(
        &state,
        &visitor,
        fields.one(CSRF_FIELD),
        vec![command.into()],
        title,
        fields.one("live_from"),
    )
    .await?;
    Ok(back(outcome, &environment, feature_id))
}

pub async fn set_segment_override(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let (environment, feature) =
        environment_and_feature(&state, environment_id, feature_id).await?;
    let segment_id = fields
        .number("segment")?
        .ok_or_else(|| invalid("segment", "choose a segment"))?;
    let command = EnvironmentCommand::SetSegmentOverride {
        environment_id,
        feature_id,
        segment_id,
        priority: fields.number("priority")?,
        state: state_input(&fields, &feature)?,
    };
    let title = format!(
        "Override {} for segment {segment_id} in {}",
        feature.name, environment.name
    );
    let outcome = change::apply(
        &state,
        &visitor,
        fields.one(CSRF_FIELD),
        vec![command.into()],
        title,
        fields.one("live_from"),
    )
    .await?;
    Ok(back(outcome, &environment, feature_id))
}

pub async fn remove_segment_override(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id, segment_id)): Path<(u64, u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let (environment, feature) =
        environment_and_feature(&state, environment_id, feature_id).await?;
    let command = EnvironmentCommand::RemoveSegmentOverride {
        environment_id,
        feature_id,
        segment_id,
    };
    let title = format!(
        "Remove the override of {} for segment {segment_id} in {}",
        feature.name, environment.name
    );
    let outcome = change::apply(
        &state,
        &visitor,
        fields.one(CSRF_FIELD),
        vec![command.into()],
        title,
        "",
    )
    .await?;
    Ok(back(outcome, &environment, feature_id))
}

pub async fn identity_override(
    State(state): State<AppState>,
    visitor: Visitor,
    Path((environment_id, feature_id)): Path<(u64, u64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let fields = Fields(form);
    let (environment, feature) =
        environment_and_feature(&state, environment_id, feature_id).await?;
    let identifier = fields.one("identifier").trim().to_string();
    if identifier.is_empty() {
        return Err(invalid("identifier", "name the identity"));
    }
    let identity = IdentityName::Identifier(identifier.clone());
    let (command, title): (Command, String) = if fields.ticked("remove") {
        let command = IdentityCommand::RemoveIdentityOverride {
            environment_id,
            identity,
            feature_id,
        };
        (
            command.into(),
            format!("Remove {identifier}'s override of {}", feature.name),
        )
    } else {
        let command = IdentityCommand::SetIdentityOverride {
            environment_id,
            identity,
            feature_id,
            state: FeatureStateInput {
                enabled: fields.ticked("enabled"),
                feature_state_value: value_field(&fields, "")?,
                multivariate_feature_state_values: None,
                key: None,
            },
        };
        (
            command.into(),
            format!("Override {} for {identifier}", feature.name),
        )
    };
    let outcome = change::apply(
        &state,
        &visitor,
        fields.one(CSRF_FIELD),
        vec![command],
        title,
        fields.one("live_from"),
    )
    .await?;
    let anchor = format!(
        "?identity={}#environment-{environment_id}",
        form_urlencoded::byte_serialize(identifier.as_bytes()).collect::<String>()
    );
    Ok(match outcome {
        Outcome::Applied => {
            Redirect::to(&feature_page(environment.project_id, feature_id, &anchor)).into_response()
        }
        proposed => back(proposed, &environment, feature_id),
    })
}

/// The schedule field of a form that proposes.
fn schedule_input(id: &str) -> Markup {
    html! {
        label for=(id) { "Go live at (UTC, optional)" }
        input id=(id) type="datetime-local" name="live_from";
    }
}

fn submit_label(propose: bool) -> &'static str {
    if propose { "Propose change" } else { "Save" }
}

/// The definition form and the delete button (for someone who may change the project).
pub fn definition_forms(project_id: u64, feature: &Feature, csrf: &str, propose: bool) -> Markup {
    let action = format!("/projects/{project_id}/features/{}/definition", feature.id);
    let rows = feature.multivariate_options.len() + SPARE_OPTIONS;
    html! {
        details.edit {
            summary { "Edit definition" @if propose { " (four-eyes: proposes a change)" } }
            form method="post" action=(action) {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for="description" { "Description" }
                input #description name="description" value=(feature.description.clone().unwrap_or_default()) maxlength="2000";
                label for="tags" { "Tags (comma-separated)" }
                input #tags name="tags" value=(feature.tags.join(", ")) maxlength="2000";
                label.check { input type="checkbox" name="default_enabled" checked[feature.default_enabled]; " On by default in new environments" }
                (value_inputs("initial_", "initial", &feature.initial_value))
                fieldset {
                    legend { "Multivariate options (value, key, default share %)" }
                    @for i in 0..rows {
                        @let option = feature.multivariate_options.get(i);
                        @let value = option.map_or(serde_json::Value::Null, |o| o.value.clone());
                        div.option {
                            @if let Some(option) = option { input type="hidden" name={ "option" (i) "_id" } value=(option.id); }
                            (value_inputs(&format!("option{i}_"), &format!("option{i}"), &if option.is_some() { value } else { serde_json::Value::String(String::new()) }))
                            label for={ "option" (i) "-key" } { "Key" }
                            input id={ "option" (i) "-key" } name={ "option" (i) "_key" } value=(option.and_then(|o| o.key.clone()).unwrap_or_default()) maxlength="200";
                            label for={ "option" (i) "-percentage" } { "Default share %" }
                            input id={ "option" (i) "-percentage" } name={ "option" (i) "_percentage" } type="number" min="0" max="100" step="any"
                                value=(option.map_or(0.0, |o| o.default_percentage_allocation));
                            @if option.is_some() { label.check { input type="checkbox" name={ "option" (i) "_remove" }; " Remove" } }
                        }
                    }
                }
                @if propose { (schedule_input("definition-live-from")) }
                button type="submit" { (submit_label(propose)) }
            }
            form.inline method="post" action={ "/projects/" (project_id) "/features/" (feature.id) "/delete" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                button.danger type="submit" aria-label={ "Delete " (feature.name) } {
                    @if propose { "Propose deleting this feature" } @else { "Delete this feature" }
                }
            }
        }
    }
}

/// The state form's inputs for `state` of `feature` (ids made unique by `id`).
fn state_inputs(id: &str, feature: &Feature, state: &FeatureState) -> Markup {
    html! {
        label.check { input type="checkbox" name="enabled" checked[state.enabled]; " Enabled" }
        (value_inputs("", id, &state.feature_state_value))
        @for option in &feature.multivariate_options {
            @let share = state.multivariate_feature_state_values.iter()
                .find(|a| a.multivariate_feature_option == option.id)
                .map_or(0.0, |a| a.percentage_allocation);
            label for={ (id) "-allocation-" (option.id) } { "Share % for " code { (option.value) } }
            input id={ (id) "-allocation-" (option.id) } type="number" min="0" max="100" step="any"
                name={ "allocation_" (option.id) } value=(share);
        }
    }
}

/// One environment's editing forms: state, segment overrides, identity overrides; and
/// `identity`'s override here if one was looked up.
pub fn environment_forms(
    project: &Project,
    environment: &Environment,
    feature: &Feature,
    csrf: &str,
    propose: bool,
    identity: Option<(&str, Option<&FeatureState>)>,
) -> Markup {
    let base = format!("/environments/{}/features/{}", environment.id, feature.id);
    let id = format!("env{}", environment.id);
    let overrides: Vec<_> = environment
        .segment_overrides
        .iter()
        .filter(|((f, _), _)| *f == feature.id)
        .map(|(_, o)| o)
        .collect();
    html! {
        details.edit {
            summary { "Change state in " (environment.name) @if propose { " (four-eyes: proposes a change)" } }
            form method="post" action={ (base) "/state" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                (state_inputs(&id, feature, &environment.effective_state(feature)))
                @if propose { (schedule_input(&format!("{id}-live-from"))) }
                button type="submit" { (submit_label(propose)) }
            }
        }
        h4 { "Segment overrides" }
        @if overrides.is_empty() { p { "None." } } @else {
            table.features {
                thead { tr { th scope="col" { "Priority" } th scope="col" { "Segment" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } } } }
                tbody {
                    @for o in &overrides {
                        tr {
                            td { (o.priority.map_or("last".to_string(), |p| p.to_string())) }
                            td { (project.segments.get(&o.segment_id).map_or_else(|| format!("segment {}", o.segment_id), |s| s.name.clone())) }
                            td { (projects::state_badge(&o.state)) }
                            td {
                                form.toggle method="post" action={ (base) "/segment-overrides/" (o.segment_id) "/remove" } {
                                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                                    button type="submit" { @if propose { "Propose removing" } @else { "Remove" } }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !project.segments.is_empty() {
            details.edit {
                summary { "Add or change a segment override" }
                form method="post" action={ (base) "/segment-overrides" } {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    label for={ (id) "-segment" } { "Segment" }
                    select id={ (id) "-segment" } name="segment" required {
                        @for segment in project.segments.values() { option value=(segment.id) { (segment.name) } }
                    }
                    label for={ (id) "-priority" } { "Priority (lower wins; empty: last)" }
                    input id={ (id) "-priority" } name="priority" type="number";
                    (state_inputs(&format!("{id}-override"), feature, &environment.effective_state(feature)))
                    @if propose { (schedule_input(&format!("{id}-override-live-from"))) }
                    button type="submit" { (submit_label(propose)) }
                }
            }
        }
        h4 { "Identity overrides" }
        form.inline method="get" action={ "/projects/" (project.id) "/features/" (feature.id) "#environment-" (environment.id) } {
            label for={ (id) "-lookup" } { "Look up an identity" }
            input id={ (id) "-lookup" } name="identity" value=(identity.map_or("", |(i, _)| i)) required;
            button type="submit" { "Look up" }
        }
        @if let Some((identifier, found)) = identity {
            p {
                code { (identifier) } ": "
                @match found { Some(state) => (projects::state_badge(state)), None => "no override of this feature here" }
            }
        }
        details.edit {
            summary { "Override for one identity" }
            form method="post" action={ (base) "/identity-overrides" } {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                label for={ (id) "-identifier" } { "Identity" }
                input id={ (id) "-identifier" } name="identifier" required value=(identity.map_or("", |(i, _)| i));
                label.check { input type="checkbox" name="enabled"; " Enabled" }
                (value_inputs("", &format!("{id}-identity"), &serde_json::Value::Null))
                label.check { input type="checkbox" name="remove"; " Remove this identity's override instead" }
                button type="submit" { (submit_label(propose)) }
            }
        }
    }
}

//! The forms of a feature's page that [`super::feature_edit`] reads: the definition (with
//! spare rows for new multivariate options) and delete button; per environment the state (with
//! each option's share), segment overrides, an identity look-up and override. Each says
//! "Propose change" and offers a schedule where four-eyes asks for review.

use domain::environment::Environment;
use domain::model::{Feature, FeatureState};
use domain::project::Project;
use maud::{Markup, html};

use super::fields::value_inputs;
use super::projects;
use super::session::CSRF_FIELD;

/// Spare rows the definition form offers for new multivariate options.
const SPARE_OPTIONS: usize = 2;

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

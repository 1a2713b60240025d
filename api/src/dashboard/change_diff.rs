//! What a change request would change, command by command, as a before/after a reviewer reads:
//! a flag's state now and as proposed, a segment override's priority and state, a feature's
//! definition fields, a segment's rules written out; each read from the aggregates as they are
//! now (the request page says separately when they moved since it was proposed).

use domain::command::{Command, EnvironmentCommand, IdentityCommand, ProjectCommand};
use domain::environment::FeatureStateInput;
use domain::identity::IdentityName;
use domain::project::{FeatureChanges, Project};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::PageError;
use super::segments::readable;
use crate::http::AppState;

/// One row: what, before, after.
pub type Row = (String, Markup, Markup);

fn state_text(enabled: bool, value: &Value) -> Markup {
    html! {
        span class={ "state " (if enabled { "on" } else { "off" }) } { (if enabled { "On" } else { "Off" }) }
        @if !value.is_null() { " " code { (value) } }
    }
}

fn proposed_state(state: &FeatureStateInput) -> Markup {
    html! {
        (state_text(state.enabled, &state.feature_state_value))
        @if let Some(shares) = &state.multivariate_feature_state_values {
            @for share in shares { br; "option " (share.multivariate_feature_option) ": " (share.percentage_allocation) "%" }
        }
    }
}

fn nothing(text: &str) -> Markup {
    html! { em { (text) } }
}

fn feature_name(project: &Project, id: u64) -> String {
    project
        .features
        .get(&id)
        .map_or_else(|| format!("feature {id}"), |f| f.name.clone())
}

fn segment_name(project: &Project, id: u64) -> String {
    project
        .segments
        .get(&id)
        .map_or_else(|| format!("segment {id}"), |s| s.name.clone())
}

/// The fields `changes` sets, each as it is now and as proposed.
fn definition_rows(name: &str, now: &Value, changes: &FeatureChanges) -> Vec<Row> {
    let proposed = serde_json::to_value(changes).unwrap_or(Value::Null);
    let Some(fields) = proposed.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .filter(|(field, value)| now.get(field.as_str()) != Some(*value))
        .map(|(field, value)| {
            let before = now.get(field.as_str()).cloned().unwrap_or(Value::Null);
            (
                format!("{name}: {field}"),
                html! { code { (before) } },
                html! { code { (value) } },
            )
        })
        .collect()
}

fn identity_label(identity: &IdentityName) -> String {
    match identity {
        IdentityName::Identifier(identifier) => identifier.clone(),
        IdentityName::Identity(_) => "an identity".to_string(),
    }
}

/// The rows of one command.
async fn rows_of(state: &AppState, command: &Command) -> Result<Vec<Row>, PageError> {
    Ok(match command {
        Command::Environment(c) => {
            let environment = state.commands.environment(c.environment_id()).await?.state;
            let project = state.commands.project(environment.project_id).await?.state;
            let place = |feature: u64| {
                format!(
                    "{} in {}",
                    feature_name(&project, feature),
                    environment.name
                )
            };
            let current = |feature: u64| {
                project
                    .features
                    .get(&feature)
                    .map(|f| environment.effective_state(f))
            };
            match c {
                EnvironmentCommand::SetFeatureState {
                    feature_id,
                    state: proposed,
                    ..
                } => {
                    let before = current(*feature_id).map_or_else(
                        || nothing("no such feature"),
                        |now| state_text(now.enabled, &now.feature_state_value),
                    );
                    vec![(place(*feature_id), before, proposed_state(proposed))]
                }
                EnvironmentCommand::SetSegmentOverride {
                    feature_id,
                    segment_id,
                    priority,
                    state: proposed,
                    ..
                } => {
                    let before = environment.segment_overrides.get(&(*feature_id, *segment_id)).map_or_else(
                        || nothing("no override"),
                        |o| html! { "priority " (o.priority.map_or("last".into(), |p| p.to_string())) ", " (state_text(o.state.enabled, &o.state.feature_state_value)) },
                    );
                    let after = html! { "priority " (priority.map_or("last".into(), |p| p.to_string())) ", " (proposed_state(proposed)) };
                    vec![(
                        format!(
                            "{}, segment {}",
                            place(*feature_id),
                            segment_name(&project, *segment_id)
                        ),
                        before,
                        after,
                    )]
                }
                EnvironmentCommand::RemoveSegmentOverride {
                    feature_id,
                    segment_id,
                    ..
                } => {
                    let before = environment
                        .segment_overrides
                        .get(&(*feature_id, *segment_id))
                        .map_or_else(
                            || nothing("no override"),
                            |o| state_text(o.state.enabled, &o.state.feature_state_value),
                        );
                    vec![(
                        format!(
                            "{}, segment {}",
                            place(*feature_id),
                            segment_name(&project, *segment_id)
                        ),
                        before,
                        nothing("removed"),
                    )]
                }
                other => vec![json_row(other.clone().into())],
            }
        }
        Command::Project(c) => {
            let project = state.commands.project(c.project_id()).await?.state;
            match c {
                ProjectCommand::UpdateFeature {
                    feature_id,
                    changes,
                    ..
                } => {
                    let name = feature_name(&project, *feature_id);
                    let now = project
                        .features
                        .get(feature_id)
                        .map_or(Value::Null, |f| json!(f));
                    definition_rows(&name, &now, changes)
                }
                ProjectCommand::DeleteFeature { feature_id, .. } => {
                    vec![(
                        feature_name(&project, *feature_id),
                        html! { "exists" },
                        nothing("deleted"),
                    )]
                }
                ProjectCommand::CreateSegment { segment, .. } => {
                    vec![(
                        format!("segment {}", segment.name),
                        nothing("none"),
                        readable(&segment.rules),
                    )]
                }
                ProjectCommand::UpdateSegment {
                    segment_id,
                    segment,
                    ..
                } => {
                    let before = project
                        .segments
                        .get(segment_id)
                        .map_or_else(|| nothing("none"), |s| readable(&s.rules));
                    vec![(
                        format!("segment {}", segment.name),
                        before,
                        readable(&segment.rules),
                    )]
                }
                ProjectCommand::DeleteSegment { segment_id, .. } => {
                    let before = project
                        .segments
                        .get(segment_id)
                        .map_or_else(|| nothing("none"), |s| readable(&s.rules));
                    vec![(
                        format!("segment {}", segment_name(&project, *segment_id)),
                        before,
                        nothing("deleted"),
                    )]
                }
                other => vec![json_row(other.clone().into())],
            }
        }
        Command::Identity(c) => {
            let environment = state.commands.environment(c.environment_id()).await?.state;
            let project = state.commands.project(environment.project_id).await?.state;
            match c {
                IdentityCommand::SetIdentityOverride {
                    identity,
                    feature_id,
                    state: proposed,
                    ..
                } => vec![(
                    format!(
                        "{} for {} in {}",
                        feature_name(&project, *feature_id),
                        identity_label(identity),
                        environment.name
                    ),
                    nothing("as served now"),
                    proposed_state(proposed),
                )],
                IdentityCommand::RemoveIdentityOverride {
                    identity,
                    feature_id,
                    ..
                } => vec![(
                    format!(
                        "{} for {} in {}",
                        feature_name(&project, *feature_id),
                        identity_label(identity),
                        environment.name
                    ),
                    nothing("its override"),
                    nothing("removed"),
                )],
                other => vec![json_row(other.clone().into())],
            }
        }
        Command::Directory(c) => vec![json_row(c.clone().into())],
    })
}

fn json_row(command: Command) -> Row {
    let value = serde_json::to_value(&command).unwrap_or(Value::Null);
    let kind = command.type_name().replace('_', " ");
    (
        kind,
        html! {},
        html! { pre { (serde_json::to_string_pretty(&value).unwrap_or_default()) } },
    )
}

/// Every row of the request's `commands` (in the JSON the API shows them in).
pub async fn describe(state: &AppState, commands: &[Value]) -> Result<Vec<Row>, PageError> {
    let mut rows = Vec::new();
    for value in commands {
        match serde_json::from_value::<Command>(value.clone()) {
            Ok(command) => rows.extend(rows_of(state, &command).await?),
            Err(_) => rows.push((
                "command".to_string(),
                html! {},
                html! { pre { (serde_json::to_string_pretty(value).unwrap_or_default()) } },
            )),
        }
    }
    Ok(rows)
}

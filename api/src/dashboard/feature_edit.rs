//! Editing a feature from its page: its definition (description, tags, defaults, multivariate
//! options) and deletion, project-wide; and per environment its state (on/off, value, each
//! option's allocation), its segment overrides with their priority, and identity overrides.
//! Each form's commands go through [`change::apply_form`]: applied, or proposed where four-eyes
//! asks for review. The forms are drawn by [`super::feature_forms`].

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use domain::command::{Command, EnvironmentCommand, IdentityCommand, ProjectCommand};
use domain::environment::{AllocationInput, Environment, FeatureStateInput};
use domain::identity::IdentityName;
use domain::model::Feature;
use domain::project::{FeatureChanges, OptionInput};

use super::Form;
use super::PageError;
use super::change::{self, Outcome};
use super::fields::{Fields, invalid, number, value_field};
use super::session::Visitor;
use crate::http::AppState;
use crate::http::extract::Path;

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
    let outcome = change::apply_form(&state, &visitor, &fields, command, title).await?;
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
    let outcome =
        change::apply_form(&state, &visitor, &fields, command, format!("Delete {name}")).await?;
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
    let outcome = change::apply_form(&state, &visitor, &fields, command, title).await?;
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
    let outcome = change::apply_form(&state, &visitor, &fields, command, title).await?;
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
    let outcome = change::apply_form(&state, &visitor, &fields, command, title).await?;
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
    let outcome = change::apply_form(&state, &visitor, &fields, command, title).await?;
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

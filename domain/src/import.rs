//! Importing a Flagsmith environment document: the decision of which events make up the new
//! project, environment, features, segments and overrides.
//!
//! Every event goes through the same decisions as the admin API's commands, so an imported
//! project is indistinguishable from one built by hand, and a document the rules refuse is refused
//! as a whole, naming the path of the offending part. The ids evaluation hashes on are kept:
//! segment ids, feature ids, feature-state `django_id`/`featurestate_uuid` and multivariate value
//! `id`/`mv_fs_value_uuid`, so identities stay in the buckets they had in Flagsmith.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::directory::{Directory, DirectoryEvent};
use crate::environment::{AllocationInput, Environment, EnvironmentEvent, FeatureStateInput};
use crate::error::{Error, Result};
use crate::flagsmith::{self, EnvironmentDocument};
use crate::identity::{self, IdentityEvent, IdentityOverrides, IdentityRef};
use crate::model::{EnvironmentId, Feature, FeatureId, FeatureStateKey, FeatureType, ProjectId};
use crate::project::{
    FeatureInput, OptionInput, Project, ProjectEvent, ProjectSettings, SegmentInput,
};

/// What an import appends, stream by stream, and the ids it gave.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub project_id: ProjectId,
    pub environment_id: EnvironmentId,
    pub client_key: String,
    pub directory_events: Vec<DirectoryEvent>,
    pub project_events: Vec<ProjectEvent>,
    pub environment_events: Vec<EnvironmentEvent>,
    /// Identity reference → its override events (each identity is a stream of its own).
    pub identity_events: BTreeMap<IdentityRef, Vec<IdentityEvent>>,
    /// Identity reference → the identifier it stands for (what the write side records beside
    /// the log; the events hold the reference only).
    pub identifiers: BTreeMap<IdentityRef, String>,
    pub feature_count: usize,
    pub segment_count: usize,
}

fn apply_all<A: Aggregate>(state: &mut A, events: &[A::Event]) {
    events.iter().for_each(|e| state.apply(e));
}

/// Decides the import of `document` into the installation described by `directory`, with a
/// server-side key whose hash is `server_key_hash`; each identity gets the reference
/// `reference_of` gives its identifier.
pub fn plan(
    directory: &Directory,
    document: &EnvironmentDocument,
    server_key_hash: String,
    reference_of: &mut dyn FnMut(&str) -> IdentityRef,
) -> Result<ImportPlan> {
    let mut directory = directory.clone();
    let mut directory_events = Vec::new();

    let organisation_id = match directory.organisations.keys().next() {
        Some(id) => *id,
        None => {
            let name = &document.project.organisation.name;
            let name = if name.trim().is_empty() {
                "Imported organisation"
            } else {
                name
            };
            let (id, events) = directory.create_organisation(name)?;
            apply_all(&mut directory, &events);
            directory_events.extend(events);
            id
        }
    };

    let (project_id, events) = directory.register_project(organisation_id)?;
    apply_all(&mut directory, &events);
    directory_events.extend(events);
    let project_name = if document.project.name.trim().is_empty() {
        "Imported project".to_string()
    } else {
        document.project.name.clone()
    };
    let mut project = Project::default();
    let mut project_events = Project::create(
        project_id,
        organisation_id,
        ProjectSettings {
            name: project_name,
            feature_name_regex: None,
            // Flagsmith lets two features differ only in case; an import must not lose one.
            case_sensitive_feature_names: true,
            hide_disabled_flags: document.project.hide_disabled_flags,
            ..ProjectSettings::default()
        },
    )
    .map_err(|e| e.within("project"))?;
    apply_all(&mut project, &project_events);

    let client_key = document.api_key.clone();
    let (environment_id, events) = directory
        .register_environment(project_id, &client_key)
        .map_err(|e| e.within("api_key").relabel("api_key"))?;
    directory_events.extend(events);

    // Features, from the environment's feature states (each carries its feature). A feature's
    // options are every option any of its states allocates: the environment's, its segment
    // overrides' and its identity overrides'.
    let options = options_by_feature(document);
    let mut features: BTreeMap<FeatureId, Feature> = BTreeMap::new();
    for (i, state) in document.feature_states.iter().enumerate() {
        let at = format!("feature_states[{i}]");
        let input = feature_input(state, &options).map_err(|e| e.within(&at))?;
        let (feature, events) = project.create_feature(input).map_err(|e| e.within(&at))?;
        apply_all(&mut project, &events);
        project_events.extend(events);
        features.insert(feature.id, feature);
    }

    for (i, segment) in document.project.segments.iter().enumerate() {
        let at = format!("project.segments[{i}]");
        let input = SegmentInput {
            id: Some(positive_id(segment.id).map_err(|e| e.within(&at))?),
            name: segment.name.clone(),
            description: None,
            rules: convert(&segment.rules, "rules").map_err(|e| e.within(&at))?,
        };
        let (_, events) = project.create_segment(input).map_err(|e| e.within(&at))?;
        apply_all(&mut project, &events);
        project_events.extend(events);
    }

    let mut environment = Environment::default();
    let environment_name = document
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "Imported environment".into());
    let mut environment_events =
        Environment::create(environment_id, project_id, &environment_name, &client_key)?;
    apply_all(&mut environment, &environment_events);
    let events = environment.issue_server_side_key("imported", server_key_hash)?;
    apply_all(&mut environment, &events);
    environment_events.extend(events);

    for (i, state) in document.feature_states.iter().enumerate() {
        let at = format!("feature_states[{i}]");
        let feature = feature_of(&features, state).map_err(|e| e.within(&at))?;
        let input = state_input(state, feature).map_err(|e| e.within(&at))?;
        let events = environment
            .set_feature_state(feature, input)
            .map_err(|e| e.within(&at))?;
        apply_all(&mut environment, &events);
        environment_events.extend(events);
    }

    for (i, segment) in document.project.segments.iter().enumerate() {
        for (j, state) in segment.feature_states.iter().enumerate() {
            let at = format!("project.segments[{i}].feature_states[{j}]");
            let feature = feature_of(&features, state).map_err(|e| e.within(&at))?;
            let input = state_input(state, feature).map_err(|e| e.within(&at))?;
            let priority = state.feature_segment.as_ref().and_then(|s| s.priority);
            let events = environment
                .set_segment_override(feature, positive_id(segment.id)?, priority, input)
                .map_err(|e| e.within(&at))?;
            apply_all(&mut environment, &events);
            environment_events.extend(events);
        }
    }

    let mut identity_events: BTreeMap<IdentityRef, Vec<IdentityEvent>> = BTreeMap::new();
    let mut identifiers = BTreeMap::new();
    for (i, identity) in document
        .identity_overrides
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        identity::validate_identifier(&identity.identifier)
            .map_err(|e| e.within(&format!("identity_overrides[{i}]")))?;
        let reference = reference_of(&identity.identifier);
        identifiers.insert(reference.clone(), identity.identifier.clone());
        let mut overrides = IdentityOverrides::default();
        let events_of_identity = identity_events.entry(reference.clone()).or_default();
        apply_all(&mut overrides, events_of_identity);
        for (j, state) in identity.identity_features.iter().enumerate() {
            let at = format!("identity_overrides[{i}].identity_features[{j}]");
            let feature = feature_of(&features, state).map_err(|e| e.within(&at))?;
            let input = state_input(state, feature).map_err(|e| e.within(&at))?;
            let events = overrides
                .set(environment_id, &reference, feature, input)
                .map_err(|e| e.within(&format!("identity_overrides[{i}]")))?;
            apply_all(&mut overrides, &events);
            events_of_identity.extend(events);
        }
    }

    Ok(ImportPlan {
        project_id,
        environment_id,
        client_key,
        directory_events,
        project_events,
        environment_events,
        identity_events,
        identifiers,
        feature_count: features.len(),
        segment_count: document.project.segments.len(),
    })
}

impl Error {
    /// The same error, but reported at `field` whatever field it named.
    fn relabel(self, field: &str) -> Self {
        match self {
            Error::Conflict { message, .. } => Error::conflict(field, message),
            Error::Invalid { message, .. } => Error::invalid(field, message),
            other => other,
        }
    }
}

fn positive_id(id: i64) -> Result<u64> {
    u64::try_from(id).map_err(|_| Error::invalid("id", "must not be negative"))
}

/// Converts between two serde models of the same JSON shape (the document's and ours).
fn convert<A: serde::Serialize, B: serde::de::DeserializeOwned>(
    value: &A,
    field: &str,
) -> Result<B> {
    let json = serde_json::to_value(value).map_err(|e| Error::invalid(field, e.to_string()))?;
    serde_json::from_value(json).map_err(|e| Error::invalid(field, e.to_string()))
}

fn feature_of<'a>(
    features: &'a BTreeMap<FeatureId, Feature>,
    state: &flagsmith::FeatureState,
) -> Result<&'a Feature> {
    let id = positive_id(state.feature.id).map_err(|e| e.within("feature"))?;
    features.get(&id).ok_or_else(|| {
        Error::invalid(
            "feature.id",
            format!(
                "feature {} ({}) is not among the environment's feature_states",
                id, state.feature.name
            ),
        )
    })
}

fn percentage(number: &serde_json::Number) -> f64 {
    number.as_f64().unwrap_or(f64::NAN)
}

/// Every option each feature's states allocate, in order of first appearance; the default
/// allocation is the environment state's, 0 for options only overrides allocate. Options without
/// an id are told apart by value.
fn options_by_feature(document: &EnvironmentDocument) -> BTreeMap<FeatureId, Vec<OptionInput>> {
    let segment_states = document
        .project
        .segments
        .iter()
        .flat_map(|s| s.feature_states.iter());
    let identity_states = document
        .identity_overrides
        .iter()
        .flatten()
        .flat_map(|i| i.identity_features.iter());
    let environment_states = document.feature_states.iter().map(|s| (s, true));
    let override_states = segment_states.chain(identity_states).map(|s| (s, false));
    let mut options: BTreeMap<FeatureId, Vec<OptionInput>> = BTreeMap::new();
    for (state, is_environment_state) in environment_states.chain(override_states) {
        let Ok(feature_id) = positive_id(state.feature.id) else {
            continue; // reported with its path where the feature is created
        };
        let known = options.entry(feature_id).or_default();
        for mv in &state.multivariate_feature_state_values {
            let option = &mv.multivariate_feature_option;
            let id = option.id.and_then(|id| positive_id(id).ok());
            let seen = known.iter().any(|o| match id {
                Some(id) => o.id == Some(id),
                None => o.id.is_none() && o.value == option.value,
            });
            if !seen {
                known.push(OptionInput {
                    id,
                    key: option.key.clone(),
                    value: option.value.clone(),
                    default_percentage_allocation: if is_environment_state {
                        percentage(&mv.percentage_allocation)
                    } else {
                        0.0
                    },
                });
            }
        }
    }
    options
}

fn feature_input(
    state: &flagsmith::FeatureState,
    options: &BTreeMap<FeatureId, Vec<OptionInput>>,
) -> Result<FeatureInput> {
    let feature_id = positive_id(state.feature.id).map_err(|e| e.within("feature"))?;
    let options = options.get(&feature_id).cloned().unwrap_or_default();
    let feature_type = match state.feature.feature_type.as_deref() {
        Some("MULTIVARIATE") => FeatureType::Multivariate,
        _ if !options.is_empty() => FeatureType::Multivariate,
        _ => FeatureType::Standard,
    };
    Ok(FeatureInput {
        id: Some(feature_id),
        name: state.feature.name.clone(),
        feature_type,
        default_enabled: state.enabled,
        initial_value: state.feature_state_value.clone(),
        description: None,
        tags: vec![],
        multivariate_options: options,
    })
}

/// The state a document's feature state describes, with its hashing keys. Options without an id
/// in the document are matched to the feature's options by value.
fn state_input(state: &flagsmith::FeatureState, feature: &Feature) -> Result<FeatureStateInput> {
    let mut allocations = Vec::with_capacity(state.multivariate_feature_state_values.len());
    for (i, mv) in state.multivariate_feature_state_values.iter().enumerate() {
        let option = &mv.multivariate_feature_option;
        let option_id = match option.id {
            Some(id) => positive_id(id)?,
            None => option_by_value(feature, &option.value).ok_or_else(|| {
                Error::invalid(
                    format!("multivariate_feature_state_values[{i}].multivariate_feature_option"),
                    format!("feature {} has no option with this value", feature.name),
                )
            })?,
        };
        allocations.push(AllocationInput {
            multivariate_feature_option: option_id,
            percentage_allocation: percentage(&mv.percentage_allocation),
            id: mv.id.map(positive_id).transpose()?,
            uuid: mv.mv_fs_value_uuid.clone(),
        });
    }
    Ok(FeatureStateInput {
        enabled: state.enabled,
        feature_state_value: state.feature_state_value.clone(),
        multivariate_feature_state_values: Some(allocations),
        key: Some(FeatureStateKey {
            django_id: state.django_id.map(positive_id).transpose()?,
            featurestate_uuid: state.featurestate_uuid.clone(),
        }),
    })
}

fn option_by_value(feature: &Feature, value: &Value) -> Option<u64> {
    feature
        .multivariate_options
        .iter()
        .find(|o| &o.value == value)
        .map(|o| o.id)
}

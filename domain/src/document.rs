//! Rendering an environment's Flagsmith environment document from the aggregates: what
//! server-side SDKs download for local evaluation, and what remote evaluation evaluates.
//!
//! The document carries the ids evaluation hashes on exactly as the aggregates keep them (segment
//! ids, feature-state keys, multivariate value ids), so local evaluation in an SDK and remote
//! evaluation in flaglog put every identity in the same bucket.

use serde_json::Value;

use crate::environment::Environment;
use crate::flagsmith::{
    self, EnvironmentDocument, FeatureSegment, IdentityOverride, MultivariateFeatureOption,
    MultivariateFeatureStateValue, Organisation,
};
use crate::identity::IdentityOverrides;
use crate::model::{Feature, FeatureState, FeatureType};
use crate::project::Project;

/// Everything a document is made of.
pub struct DocumentSource<'a> {
    pub organisation_name: &'a str,
    pub project: &'a Project,
    pub environment: &'a Environment,
    /// Identifier → that identity's overrides in this environment.
    pub identity_overrides: &'a mut dyn Iterator<Item = (&'a str, &'a IdentityOverrides)>,
    /// RFC 3339 time of the last change that went into the document.
    pub updated_at: String,
}

pub fn render(source: DocumentSource<'_>) -> EnvironmentDocument {
    let DocumentSource {
        organisation_name,
        project,
        environment,
        identity_overrides,
        updated_at,
    } = source;
    let feature_states = project
        .features
        .values()
        .map(|feature| feature_state(feature, &environment.effective_state(feature), None))
        .collect();
    let segments = project
        .segments
        .values()
        .map(|segment| flagsmith::Segment {
            id: segment.id as i64,
            name: segment.name.clone(),
            rules: serde_json::to_value(&segment.rules)
                .and_then(serde_json::from_value)
                .unwrap_or_default(),
            feature_states: environment
                .segment_overrides
                .iter()
                .filter(|((_, segment_id), _)| *segment_id == segment.id)
                .filter_map(|((feature_id, _), o)| {
                    let feature = project.features.get(feature_id)?;
                    Some(feature_state(
                        feature,
                        &o.state,
                        Some(FeatureSegment {
                            priority: o.priority,
                        }),
                    ))
                })
                .collect(),
        })
        .collect();
    let identity_overrides = identity_overrides
        .filter_map(|(identifier, overrides)| {
            let identity_features: Vec<_> = overrides
                .overrides
                .iter()
                .filter_map(|(feature_id, state)| {
                    Some(feature_state(
                        project.features.get(feature_id)?,
                        state,
                        None,
                    ))
                })
                .collect();
            (!identity_features.is_empty()).then(|| IdentityOverride {
                identifier: identifier.to_string(),
                environment_api_key: Some(environment.client_key.clone()),
                identity_features,
                identity_traits: None,
                identity_uuid: None,
                created_date: None,
                django_id: None,
                composite_key: None,
                dashboard_alias: None,
            })
        })
        .collect();

    EnvironmentDocument {
        id: environment.id as i64,
        api_key: environment.client_key.clone(),
        name: Some(environment.name.clone()),
        updated_at: Some(updated_at),
        project: flagsmith::Project {
            id: project.id as i64,
            name: project.settings.name.clone(),
            organisation: Organisation {
                id: project.organisation_id as i64,
                name: organisation_name.to_string(),
                feature_analytics: false,
                stop_serving_flags: false,
                persist_trait_data: true,
            },
            hide_disabled_flags: project.settings.hide_disabled_flags,
            segments,
            enable_realtime_updates: None,
            server_key_only_feature_ids: None,
        },
        feature_states,
        identity_overrides: Some(identity_overrides),
        allow_client_traits: Some(true),
        hide_sensitive_data: Some(false),
        hide_disabled_flags: None,
        use_identity_composite_key_for_hashing: Some(true),
        use_identity_overrides_in_local_eval: Some(true),
        amplitude_config: None,
        dynatrace_config: None,
        heap_config: None,
        mixpanel_config: None,
        rudderstack_config: None,
        segment_config: None,
        webhook_config: None,
    }
}

fn feature_state(
    feature: &Feature,
    state: &FeatureState,
    feature_segment: Option<FeatureSegment>,
) -> flagsmith::FeatureState {
    flagsmith::FeatureState {
        feature: flagsmith::Feature {
            id: feature.id as i64,
            name: feature.name.clone(),
            feature_type: Some(
                match feature.feature_type {
                    FeatureType::Standard => "STANDARD",
                    FeatureType::Multivariate => "MULTIVARIATE",
                }
                .to_string(),
            ),
        },
        enabled: state.enabled,
        django_id: state.key.django_id.map(|id| id as i64),
        featurestate_uuid: state.key.featurestate_uuid.clone(),
        feature_state_value: state.feature_state_value.clone(),
        multivariate_feature_state_values: state
            .multivariate_feature_state_values
            .iter()
            .filter_map(|allocation| {
                let option = feature
                    .multivariate_options
                    .iter()
                    .find(|o| o.id == allocation.multivariate_feature_option)?;
                Some(MultivariateFeatureStateValue {
                    multivariate_feature_option: MultivariateFeatureOption {
                        value: option.value.clone(),
                        id: Some(option.id as i64),
                        key: option.key.clone(),
                    },
                    percentage_allocation: serde_json::Number::from_f64(
                        allocation.percentage_allocation,
                    )
                    .unwrap_or_else(|| 0.into()),
                    id: allocation.id.map(|id| id as i64),
                    mv_fs_value_uuid: allocation.uuid.clone(),
                })
            })
            .collect(),
        feature_segment,
    }
}

/// A flag as `GET /api/v1/flags/` and `POST /api/v1/identities/` list it (Flagsmith's shape;
/// SDKs read `feature.id`, `feature.name`, `enabled` and `feature_state_value`).
pub fn api_flag(
    feature: &flagsmith::Feature,
    enabled: bool,
    value: &Value,
    environment_id: u64,
) -> Value {
    serde_json::json!({
        "id": feature.id,
        "feature": {
            "id": feature.id,
            "name": feature.name,
            "type": feature.feature_type.as_deref().unwrap_or("STANDARD"),
        },
        "feature_state_value": value,
        "enabled": enabled,
        "environment": environment_id,
        "identity": null,
        "feature_segment": null,
    })
}

/// The flags of an evaluation result as SDK endpoints list them: in the document's feature
/// order, without disabled flags when the project hides them.
pub fn api_flags(
    document: &EnvironmentDocument,
    result: &crate::evaluation::EvaluationResult,
) -> Vec<Value> {
    let hide_disabled = document
        .hide_disabled_flags
        .unwrap_or(document.project.hide_disabled_flags);
    document
        .feature_states
        .iter()
        .filter_map(|state| {
            let flag = result.flags.get(&state.feature.name)?;
            if hide_disabled && !flag.enabled {
                return None;
            }
            Some(api_flag(
                &state.feature,
                flag.enabled,
                &flag.value,
                document.id as u64,
            ))
        })
        .collect()
}

//! Rendering an environment's Flagsmith environment document from the aggregates: what
//! server-side SDKs download for local evaluation, and what remote evaluation evaluates.
//!
//! The document carries the ids evaluation hashes on exactly as the aggregates keep them (segment
//! ids, feature-state keys, multivariate value ids), so local evaluation in an SDK and remote
//! evaluation in flaglog put every identity in the same bucket.

use serde::Serialize;
use serde_json::Value;

use crate::environment::Environment;
use crate::evaluation::{Evaluation, environment_evaluation};
use crate::flagsmith::{
    self, EnvironmentDocument, FeatureSegment, IdentityOverride, MultivariateFeatureOption,
    MultivariateFeatureStateValue, Organisation,
};
use crate::identity::IdentityOverrides;
use crate::model::{Feature, FeatureState, FeatureType};
use crate::project::Project;

mod changed;
mod listing;

pub use changed::{ChangedFlag, ChangedFlags, TYPICAL_VALUE_BYTES};
pub use listing::{FlagListing, FlagsWritten, ListedFeature};

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
/// SDKs read `feature.id`, `feature.name`, `enabled` and `feature_state_value`), borrowed from
/// the evaluation result and the feature list and serialised directly.
///
/// Fields are declared in alphabetical order: the bodies were written from `serde_json::Value`
/// objects (sorted keys) before, and stay byte-identical.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ApiFlag<'a> {
    pub enabled: bool,
    pub environment: u64,
    pub feature: FeatureRef<'a>,
    /// Always `null`.
    pub feature_segment: Option<()>,
    pub feature_state_value: &'a Value,
    /// The feature's id (Flagsmith's feature-state id is not exposed).
    pub id: i64,
    /// Always `null`.
    pub identity: Option<()>,
}

/// The `feature` of an [`ApiFlag`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FeatureRef<'a> {
    pub id: i64,
    pub name: &'a str,
    #[serde(rename = "type")]
    pub feature_type: &'a str,
}

impl<'a> FeatureRef<'a> {
    pub fn of(feature: &'a flagsmith::Feature) -> Self {
        FeatureRef {
            id: feature.id,
            name: &feature.name,
            feature_type: feature.feature_type.as_deref().unwrap_or("STANDARD"),
        }
    }
}

impl<'a> ApiFlag<'a> {
    pub fn new(
        feature: FeatureRef<'a>,
        enabled: bool,
        value: &'a Value,
        environment_id: u64,
    ) -> Self {
        ApiFlag {
            enabled,
            environment: environment_id,
            feature,
            feature_segment: None,
            feature_state_value: value,
            id: feature.id,
            identity: None,
        }
    }
}

/// The flags of an evaluation as SDK endpoints list them: in the order of `features` (the
/// document's feature order), without disabled flags when `hide_disabled`.
pub fn api_flags_of<'a>(
    environment_id: u64,
    hide_disabled: bool,
    features: impl IntoIterator<Item = FeatureRef<'a>>,
    evaluation: &Evaluation<'a>,
) -> Vec<ApiFlag<'a>> {
    features
        .into_iter()
        .filter_map(|feature| {
            let flag = evaluation.flag(feature.name)?;
            if hide_disabled && !flag.enabled() {
                return None;
            }
            Some(ApiFlag::new(
                feature,
                flag.enabled(),
                flag.value,
                environment_id,
            ))
        })
        .collect()
}

/// Whether the document's SDK endpoints leave disabled flags out.
pub fn hides_disabled_flags(document: &EnvironmentDocument) -> bool {
    document
        .hide_disabled_flags
        .unwrap_or(document.project.hide_disabled_flags)
}

/// The body of `GET /api/v1/flags/`: every feature of the document in its environment-wide
/// state (no identity, no segments: [`environment_evaluation`], what anonymous OFREP requests
/// are answered too), listed as SDK endpoints list flags.
pub fn environment_flags_body(document: &EnvironmentDocument) -> Vec<u8> {
    let context = document.to_evaluation_context();
    let flags = api_flags(document, &environment_evaluation(&context));
    serde_json::to_vec(&flags).unwrap_or_else(|_| b"[]".to_vec())
}

/// [`api_flags_of`] with the document's features and setting.
pub fn api_flags<'a>(
    document: &'a EnvironmentDocument,
    evaluation: &Evaluation<'a>,
) -> Vec<ApiFlag<'a>> {
    api_flags_of(
        document.id as u64,
        hides_disabled_flags(document),
        document
            .feature_states
            .iter()
            .map(|state| FeatureRef::of(&state.feature)),
        evaluation,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::evaluation::evaluation;
    use crate::flagsmith::identity_context;

    /// How flags were written before [`ApiFlag`]: through `serde_json::Value`.
    fn value_tree_flags(document: &EnvironmentDocument, result: &Evaluation<'_>) -> Vec<Value> {
        document
            .feature_states
            .iter()
            .filter_map(|state| {
                let flag = result.flag(&state.feature.name)?;
                if hides_disabled_flags(document) && !flag.enabled() {
                    return None;
                }
                Some(serde_json::json!({
                    "id": state.feature.id,
                    "feature": {
                        "id": state.feature.id,
                        "name": state.feature.name,
                        "type": state.feature.feature_type.as_deref().unwrap_or("STANDARD"),
                    },
                    "feature_state_value": flag.value,
                    "enabled": flag.enabled(),
                    "environment": document.id as u64,
                    "identity": null,
                    "feature_segment": null,
                }))
            })
            .collect()
    }

    /// On every conformance seed, without identity and for each of its identities (traits
    /// included), with and without hidden disabled flags: the direct serialisation writes the
    /// bytes the `Value` tree did, and so does the listing, which copies the flags an identity
    /// shares with the environment from the flags body.
    #[test]
    fn api_flags_serialise_as_the_value_tree_did() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/flagsmith/conformance/documents");
        let mut compared = 0;
        let mut counts = FlagsWritten::default();
        for n in 1..=8 {
            let path = dir.join(format!("seed-{n}.json"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let seed: Value = serde_json::from_str(&text).unwrap();
            let mut document: EnvironmentDocument =
                serde_json::from_value(seed["environment_document"].clone()).unwrap();
            for hide in [None, Some(true)] {
                document.hide_disabled_flags = hide;
                let context = Arc::new(document.to_evaluation_context());
                let flags_body = Bytes::from(environment_flags_body(&document));
                let listing = FlagListing::of(&document, context.clone(), flags_body);
                let mut identities = vec![None];
                for identity in seed["identities"].as_array().unwrap() {
                    let traits = identity["traits"].as_object().cloned().unwrap_or_default();
                    let identifier = identity["identifier"].as_str().unwrap();
                    identities.push(Some(identity_context(identifier, traits)));
                }
                for identity in &identities {
                    let result = evaluation(&context, identity.as_ref());
                    let direct = serde_json::to_string(&api_flags(&document, &result)).unwrap();
                    let tree =
                        serde_json::to_string(&value_tree_flags(&document, &result)).unwrap();
                    assert_eq!(direct, tree, "seed {n}");
                    let listed = serde_json::to_string(&listing.api_flags(&result)).unwrap();
                    assert_eq!(listed, tree, "seed {n}");
                    let mut out = Vec::new();
                    let mut changed = ChangedFlags::default();
                    let written = listing
                        .write_flags(&result, &mut out, Some(&mut changed))
                        .unwrap();
                    // The same flags from the own states and the changed ones, as identity
                    // analytics take them.
                    let changed: std::collections::HashMap<usize, (bool, Value)> = changed
                        .iter()
                        .map(|flag| {
                            let value = serde_json::from_slice(flag.value_json).unwrap();
                            (flag.index, (flag.enabled, value))
                        })
                        .collect();
                    let by_index: Vec<ApiFlag<'_>> = listing
                        .features
                        .iter()
                        .enumerate()
                        .filter_map(|(i, listed)| {
                            let (enabled, value) = match changed.get(&i) {
                                Some((enabled, value)) => (*enabled, value),
                                None => listing.own_state(listed)?,
                            };
                            if listing.hide_disabled && !enabled {
                                return None;
                            }
                            let feature = listing.feature_ref(listed)?;
                            Some(ApiFlag::new(
                                feature,
                                enabled,
                                value,
                                listing.environment_id,
                            ))
                        })
                        .collect();
                    assert_eq!(serde_json::to_string(&by_index).unwrap(), tree, "seed {n}");
                    assert_eq!(
                        written.copied + written.around_copied + written.serialised,
                        serde_json::from_slice::<Vec<Value>>(&out).unwrap().len()
                    );
                    counts.copied += written.copied;
                    counts.around_copied += written.around_copied;
                    counts.serialised += written.serialised;
                    assert_eq!(String::from_utf8(out).unwrap(), tree, "seed {n}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 8 * 2 * 61);
        // Most flags are copied; overrides and splits are written around copied parts; only
        // flags hidden in the environment's body (disabled there) are serialised from scratch.
        assert!(counts.copied > counts.around_copied, "{counts:?}");
        assert!(
            counts.around_copied > 0 && counts.serialised > 0,
            "{counts:?}"
        );
    }

    /// A body that is not the listing's own is never copied from.
    #[test]
    fn a_foreign_flags_body_is_not_copied_from() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/flagsmith/conformance/documents");
        let text = std::fs::read_to_string(dir.join("seed-1.json")).unwrap();
        let seed: Value = serde_json::from_str(&text).unwrap();
        let document: EnvironmentDocument =
            serde_json::from_value(seed["environment_document"].clone()).unwrap();
        let context = Arc::new(document.to_evaluation_context());
        let identity = &seed["identities"][0];
        let who = identity_context(
            identity["identifier"].as_str().unwrap(),
            identity["traits"].as_object().cloned().unwrap_or_default(),
        );
        let result = evaluation(&context, Some(&who));
        let want = serde_json::to_string(&api_flags(&document, &result)).unwrap();
        let body = environment_flags_body(&document);
        let mut foreign = body.clone();
        foreign.insert(1, b' ');
        for flags_body in [foreign, b"[]".to_vec(), Vec::new()] {
            let listing = FlagListing::of(&document, context.clone(), Bytes::from(flags_body));
            let mut out = Vec::new();
            let written = listing.write_flags(&result, &mut out, None).unwrap();
            assert_eq!(written.copied + written.around_copied, 0);
            assert!(String::from_utf8(out).unwrap() == want);
        }
        // The listing's own body copies, in its own context and in an equal one that is not its
        // own (where features are found by name).
        let listing = FlagListing::of(&document, context.clone(), Bytes::from(body));
        let copy = document.to_evaluation_context();
        for result in [result, evaluation(&copy, Some(&who))] {
            let mut out = Vec::new();
            let written = listing.write_flags(&result, &mut out, None).unwrap();
            assert!(written.copied > 0);
            assert!(String::from_utf8(out).unwrap() == want);
        }
    }
    /// The anonymous evaluation is the engine's without identity and without segments, on
    /// every conformance seed, and it is what Flagsmith serves without identity
    /// (`environment_result`), though the full context has segments that match an empty one.
    #[test]
    fn the_environment_evaluation_ignores_segments_as_flagsmith_does_without_identity() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/reference/flagsmith/conformance/documents");
        let mut segments_matching_nobody = 0;
        for n in 1..=8 {
            let text = std::fs::read_to_string(dir.join(format!("seed-{n}.json"))).unwrap();
            let seed: Value = serde_json::from_str(&text).unwrap();
            let document: EnvironmentDocument =
                serde_json::from_value(seed["environment_document"].clone()).unwrap();
            let context = document.to_evaluation_context();
            let mut without_segments = context.clone();
            without_segments.segments.clear();
            let anonymous = environment_evaluation(&context).to_result();
            let engine = evaluation(&without_segments, None).to_result();
            assert_eq!(anonymous, engine, "seed {n}");
            for (name, flag) in &anonymous.flags {
                let want = &seed["environment_result"]["flags"][name];
                assert_eq!(flag.enabled, want["enabled"], "seed {n}: {name}");
                assert_eq!(flag.value, want["value"], "seed {n}: {name}");
                assert_eq!(flag.reason, "STATIC", "seed {n}: {name}");
            }
            segments_matching_nobody += evaluation(&context, None).segments.len();
        }
        // The case this guards: with segments, an empty context matches some of them.
        assert!(segments_matching_nobody > 0);
    }
}

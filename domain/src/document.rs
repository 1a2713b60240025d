//! Rendering an environment's Flagsmith environment document from the aggregates: what
//! server-side SDKs download for local evaluation, and what remote evaluation evaluates.
//!
//! The document carries the ids evaluation hashes on exactly as the aggregates keep them (segment
//! ids, feature-state keys, multivariate value ids), so local evaluation in an SDK and remote
//! evaluation in flaglog put every identity in the same bucket.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::environment::Environment;
use crate::evaluation::{
    Evaluation, EvaluationContext, FeatureContext, Flag, environment_evaluation,
};
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

/// What listing an environment's flags needs of its document, without the rest of it: the
/// features in document order, whether disabled flags are hidden, the environment's
/// pre-serialised flags body and where each feature's flag sits in it. Servers keep this next to
/// the evaluation context instead of the parsed document.
///
/// The listing holds the very body its spans were found in (a shared [`Bytes`], not a copy), so
/// there is no way to hand it another one: it can neither panic nor splice a foreign body.
///
/// Most flags of an identity are the environment's own: no segment override and no
/// multivariate split touched them. [`FlagListing::write_flags`] copies those from the body
/// instead of serialising them again. Of a flag that differs, only `enabled` and the value
/// depend on the identity: the rest of it (the feature, the ids) is copied from the body too.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagListing {
    pub environment_id: u64,
    pub hide_disabled: bool,
    /// In document order.
    pub features: Vec<ListedFeature>,
    /// The evaluation context the features' indices point into.
    context: Arc<EvaluationContext>,
    /// The flags body the features' spans point into.
    body: Bytes,
}

/// One flag of [`FlagListing::changed_flags`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListedFlag<'a> {
    /// The feature's index in [`FlagListing::features`].
    pub index: usize,
    pub enabled: bool,
    pub value: &'a Value,
}

/// A feature as the listing keeps it; its name is the one of its context feature.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedFeature {
    pub id: i64,
    /// Borrowed for Flagsmith's two types: no heap for the usual case.
    pub feature_type: Cow<'static, str>,
    /// Where the feature is in the evaluation context's features.
    context_index: Option<usize>,
    /// Where the feature's flag is in the flags body (absent when it is hidden there).
    written: Option<Written>,
}

/// Where one feature's flag is in the flags body: all of it, and the parts of it that do not
/// depend on the flag's state, so that a flag with another state is written around them.
#[derive(Debug, Clone, PartialEq)]
struct Written {
    whole: Range<u32>,
    /// `"environment":…,"feature_state_value":`, between `{"enabled":B,` and the value, and
    /// what follows the value (`,"id":…}`); absent if the flag's bytes are not in that shape.
    around_value: Option<(Range<u32>, Range<u32>)>,
}

/// What [`FlagListing::write_flags`] did with the flags it wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagsWritten {
    /// Copied whole from the flags body.
    pub copied: usize,
    /// Written with a state of their own around parts copied from the flags body.
    pub around_copied: usize,
    /// Serialised from scratch.
    pub serialised: usize,
}

/// The start of a flag's JSON, which holds its `enabled`.
fn enabled_head(enabled: bool) -> &'static [u8] {
    if enabled {
        b"{\"enabled\":true,"
    } else {
        b"{\"enabled\":false,"
    }
}

impl FlagListing {
    /// The listing of `document`, whose evaluation context is `context` and whose flags body
    /// (`GET /api/v1/flags/`, as [`environment_flags_body`] writes it) is `flags_body`, which
    /// the listing keeps. A body that is not that document's leaves every flag to be
    /// serialised, never copied wrongly.
    pub fn of(
        document: &EnvironmentDocument,
        context: Arc<EvaluationContext>,
        flags_body: Bytes,
    ) -> Self {
        let mut listing = FlagListing {
            environment_id: document.id as u64,
            hide_disabled: hides_disabled_flags(document),
            features: document
                .feature_states
                .iter()
                .map(|state| {
                    let feature = FeatureRef::of(&state.feature);
                    ListedFeature {
                        id: feature.id,
                        feature_type: match feature.feature_type {
                            "STANDARD" => Cow::Borrowed("STANDARD"),
                            "MULTIVARIATE" => Cow::Borrowed("MULTIVARIATE"),
                            other => Cow::Owned(other.to_owned()),
                        },
                        context_index: context.features.get_index_of(feature.name),
                        written: None,
                    }
                })
                .collect(),
            context,
            body: flags_body,
        };
        if let Some(written) = listing.find_written(&listing.context, &listing.body) {
            for (feature, written) in listing.features.iter_mut().zip(written) {
                feature.written = written;
            }
        }
        listing
    }

    /// Where each listed feature's flag is in `flags_body` ([`environment_flags_body`]: every
    /// feature in its default state), found by serialising the features' default flags one by
    /// one and checking each against the body; `None` if the body is not theirs.
    fn find_written(
        &self,
        context: &EvaluationContext,
        flags_body: &[u8],
    ) -> Option<Vec<Option<Written>>> {
        u32::try_from(flags_body.len()).ok()?;
        let mut found = Vec::with_capacity(self.features.len());
        let mut offset = 1;
        let mut scratch = Vec::new();
        for listed in &self.features {
            let Some((_, feature)) = self.feature_of(listed, context) else {
                found.push(None);
                continue;
            };
            if self.hide_disabled && !feature.enabled {
                found.push(None);
                continue;
            }
            scratch.clear();
            let flag = self.api_flag(listed, feature.enabled, &feature.value)?;
            serde_json::to_writer(&mut scratch, &flag).ok()?;
            let end = offset + scratch.len();
            if flags_body.get(offset..end)? != scratch.as_slice() {
                return None;
            }
            let around_value =
                self.around_value(listed, feature, &scratch)
                    .map(|(middle, tail)| {
                        let at =
                            |r: Range<usize>| (offset + r.start) as u32..(offset + r.end) as u32;
                        (at(middle), at(tail))
                    });
            found.push(Some(Written {
                whole: offset as u32..end as u32,
                around_value,
            }));
            offset = end + 1;
        }
        (flags_body.first() == Some(&b'[') && offset.max(2) == flags_body.len()).then_some(found)
    }

    /// In the bytes of a feature's default flag, the parts before and after the value (after
    /// the `enabled` head), if the flag is `head + middle + value + tail`; found by writing the
    /// flag with a marker for a value.
    fn around_value(
        &self,
        listed: &ListedFeature,
        feature: &FeatureContext,
        flag: &[u8],
    ) -> Option<(Range<usize>, Range<usize>)> {
        let marker = Value::String("\u{0}".into());
        let marked = serde_json::to_vec(&self.api_flag(listed, feature.enabled, &marker)?).ok()?;
        let marker_bytes = serde_json::to_vec(&marker).ok()?;
        let at = marked
            .windows(marker_bytes.len())
            .rposition(|w| w == marker_bytes.as_slice())?;
        let tail = &marked[at + marker_bytes.len()..];
        let value = serde_json::to_vec(&feature.value).ok()?;
        let head = enabled_head(feature.enabled);
        let middle_end = flag.len().checked_sub(tail.len() + value.len())?;
        let rebuilt = [head, &marked[head.len()..at], &value, tail].concat();
        (rebuilt == flag && marked.starts_with(head) && head.len() <= middle_end)
            .then_some((head.len()..middle_end, flag.len() - tail.len()..flag.len()))
    }

    /// The evaluation context this listing was made with.
    pub fn context(&self) -> &Arc<EvaluationContext> {
        &self.context
    }

    /// The flags body this listing was made with (and copies from).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The bytes of a span of the body. Spans were checked against this very body when the
    /// listing was made, so this is always `Some`; it is checked all the same, and a flag
    /// whose span were missing would be serialised instead.
    fn span(&self, range: &Range<u32>) -> Option<&[u8]> {
        self.body.get(range.start as usize..range.end as usize)
    }

    /// A listed feature's name (none if its document feature is not in the context).
    fn name_of(&self, listed: &ListedFeature) -> Option<&str> {
        let (name, _) = self.context.features.get_index(listed.context_index?)?;
        Some(name)
    }

    /// A listed feature in a context: its index and its default state. In the listing's own
    /// context the index it recorded is right; in another, the feature is found by name.
    fn feature_of<'a>(
        &self,
        listed: &ListedFeature,
        context: &'a EvaluationContext,
    ) -> Option<(usize, &'a FeatureContext)> {
        if std::ptr::eq(context, Arc::as_ptr(&self.context)) {
            let i = listed.context_index?;
            return Some((i, context.features.get_index(i)?.1));
        }
        let (i, _, feature) = context.features.get_full(self.name_of(listed)?)?;
        Some((i, feature))
    }

    /// The flag of a listed feature in an evaluation, with the feature's default state.
    fn flag_of<'e, 'a>(
        &self,
        listed: &ListedFeature,
        evaluation: &'e Evaluation<'a>,
    ) -> Option<(&'e Flag<'a>, &'a FeatureContext)> {
        let (i, feature) = self.feature_of(listed, evaluation.context())?;
        Some((evaluation.flags.get(i)?, feature))
    }

    /// A listed feature's id, name and type (none for a feature the context lacks).
    pub fn feature_ref<'a>(&'a self, listed: &'a ListedFeature) -> Option<FeatureRef<'a>> {
        Some(FeatureRef {
            id: listed.id,
            name: self.name_of(listed)?,
            feature_type: &listed.feature_type,
        })
    }

    /// The evaluation's flags that are not in their feature's own state ([`Self::own_state`]:
    /// a segment override or a multivariate split chose them), hidden or not, by the feature's
    /// index in [`Self::features`]. With the own states, what [`Self::api_flags`] lists: most
    /// identities differ from the environment in a few flags.
    pub fn changed_flags<'e, 'a>(
        &'e self,
        evaluation: &'e Evaluation<'a>,
    ) -> impl Iterator<Item = ListedFlag<'a>> + 'e {
        self.features
            .iter()
            .enumerate()
            .filter_map(move |(index, listed)| {
                let (flag, feature) = self.flag_of(listed, evaluation)?;
                (!flag.is_default_state_of(feature)).then(|| ListedFlag {
                    index,
                    enabled: flag.enabled(),
                    value: flag.value,
                })
            })
    }

    /// A listed feature's own state: whether it is enabled and its value when no segment
    /// override or multivariate split applies (none for a feature the context lacks, which is
    /// never listed).
    pub fn own_state(&self, listed: &ListedFeature) -> Option<(bool, &Value)> {
        self.feature_ref(listed)?;
        let feature = self.feature_of(listed, &self.context)?.1;
        Some((feature.enabled, &feature.value))
    }

    fn api_flag<'a>(
        &'a self,
        listed: &'a ListedFeature,
        enabled: bool,
        value: &'a Value,
    ) -> Option<ApiFlag<'a>> {
        Some(ApiFlag::new(
            self.feature_ref(listed)?,
            enabled,
            value,
            self.environment_id,
        ))
    }

    /// Appends the JSON array of the evaluation's flags to `out`: the bytes
    /// `serde_json::to_vec(&listing.api_flags(evaluation))` writes. Flags in their
    /// environment-wide state are copied from the listing's flags body, and the others are
    /// written around parts copied from it.
    pub fn write_flags(
        &self,
        evaluation: &Evaluation<'_>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<FlagsWritten> {
        let mut counts = FlagsWritten::default();
        let mut first = true;
        out.push(b'[');
        for listed in &self.features {
            let Some((flag, feature)) = self.flag_of(listed, evaluation) else {
                continue;
            };
            if self.hide_disabled && !flag.enabled() {
                continue;
            }
            let Some(feature_ref) = self.feature_ref(listed) else {
                continue;
            };
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            let whole = listed
                .written
                .as_ref()
                .filter(|_| flag.is_default_state_of(feature))
                .and_then(|written| self.span(&written.whole));
            let around = match &listed.written {
                Some(Written {
                    around_value: Some((middle, tail)),
                    ..
                }) => self.span(middle).zip(self.span(tail)),
                _ => None,
            };
            match (whole, around) {
                (Some(whole), _) => {
                    out.extend_from_slice(whole);
                    counts.copied += 1;
                }
                (None, Some((middle, tail))) => {
                    out.extend_from_slice(enabled_head(flag.enabled()));
                    out.extend_from_slice(middle);
                    serde_json::to_writer(&mut *out, flag.value)?;
                    out.extend_from_slice(tail);
                    counts.around_copied += 1;
                }
                (None, None) => {
                    let flag =
                        ApiFlag::new(feature_ref, flag.enabled(), flag.value, self.environment_id);
                    serde_json::to_writer(&mut *out, &flag)?;
                    counts.serialised += 1;
                }
            }
        }
        out.push(b']');
        Ok(counts)
    }

    /// [`api_flags_of`] with these features and setting.
    pub fn api_flags<'a>(&'a self, evaluation: &Evaluation<'a>) -> Vec<ApiFlag<'a>> {
        api_flags_of(
            self.environment_id,
            self.hide_disabled,
            self.features
                .iter()
                .filter_map(|listed| self.feature_ref(listed)),
            evaluation,
        )
    }

    /// Roughly the heap bytes this listing holds (its context and its body apart: both are
    /// usually shared).
    pub fn heap_size(&self) -> usize {
        self.features.capacity() * std::mem::size_of::<ListedFeature>()
            + self
                .features
                .iter()
                .map(|f| match &f.feature_type {
                    Cow::Owned(owned) => owned.capacity(),
                    Cow::Borrowed(_) => 0,
                })
                .sum::<usize>()
    }
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
                    // The same flags from the own states and the changed ones, as identity
                    // analytics take them.
                    let changed: std::collections::HashMap<usize, ListedFlag<'_>> = listing
                        .changed_flags(&result)
                        .map(|flag| (flag.index, flag))
                        .collect();
                    let by_index: Vec<ApiFlag<'_>> = listing
                        .features
                        .iter()
                        .enumerate()
                        .filter_map(|(i, listed)| {
                            let (enabled, value) = match changed.get(&i) {
                                Some(flag) => (flag.enabled, flag.value),
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
                    let mut out = Vec::new();
                    let written = listing.write_flags(&result, &mut out).unwrap();
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
            let written = listing.write_flags(&result, &mut out).unwrap();
            assert_eq!(written.copied + written.around_copied, 0);
            assert!(String::from_utf8(out).unwrap() == want);
        }
        // The listing's own body copies, in its own context and in an equal one that is not its
        // own (where features are found by name).
        let listing = FlagListing::of(&document, context.clone(), Bytes::from(body));
        let copy = document.to_evaluation_context();
        for result in [result, evaluation(&copy, Some(&who))] {
            let mut out = Vec::new();
            let written = listing.write_flags(&result, &mut out).unwrap();
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

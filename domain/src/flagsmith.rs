//! The Flagsmith environment document: its serde model, and its mapping to an evaluation context.
//!
//! The environment document is what a Flagsmith server-side SDK downloads
//! (`GET /api/v1/environment-document/`) to evaluate flags locally. flaglog imports such
//! documents and serves its own in the same shape, so the model keeps every field Flagsmith
//! writes, and above all every id that evaluation hashes on: a segment's `id` (percentage
//! splits), a feature state's `django_id` or `featurestate_uuid` (multivariate allocation) and a
//! multivariate value's `id` or `mv_fs_value_uuid` (the order of variants). Changing any of them
//! would move identities between buckets.
//!
//! [`EnvironmentDocument::to_evaluation_context`] and [`identity_context`] build the evaluation
//! context exactly as the Flagsmith Python SDK (6.3.0, `flagsmith/mappers.py`) does, so an
//! identity gets the same flags from flaglog as from an SDK evaluating the document itself.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::evaluation::{
    ConditionOperator, ContextMap, EnvironmentContext, EvaluationContext, FeatureContext,
    FeatureValue, IdentityContext, Priority, RuleType, SegmentCondition as ContextCondition,
    SegmentContext, SegmentRule as ContextRule,
};

/// At most how many bytes of heap [`EnvironmentDocument::to_evaluation_context`] holds per byte
/// of the document's JSON text; servers weigh their caches of contexts by it
/// (`domain/tests/context_memory.rs` checks it on the conformance documents).
pub const CONTEXT_BYTES_PER_DOCUMENT_BYTE: f64 = 2.0;

/// An environment document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentDocument {
    pub id: i64,
    /// The environment's client-side key (the SDKs' environment key).
    pub api_key: String,
    /// Required by current SDKs; absent from some older documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ISO 8601 time of the last change; SDKs compare it with realtime events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    pub project: Project,
    /// The environment's default feature states.
    #[serde(default)]
    pub feature_states: Vec<FeatureState>,
    /// Per-identity overrides, when the environment serves them for local evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_overrides: Option<Vec<IdentityOverride>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_client_traits: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hide_sensitive_data: Option<bool>,
    /// Overrides the project's setting when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hide_disabled_flags: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_identity_composite_key_for_hashing: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_identity_overrides_in_local_eval: Option<bool>,
    /// Integration settings, kept as Flagsmith wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amplitude_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynatrace_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixpanel_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rudderstack_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_config: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_config: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub organisation: Organisation,
    #[serde(default)]
    pub hide_disabled_flags: bool,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_realtime_updates: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_key_only_feature_ids: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organisation {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub feature_analytics: bool,
    #[serde(default)]
    pub stop_serving_flags: bool,
    #[serde(default = "default_true")]
    pub persist_trait_data: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Percentage-split conditions hash on this id.
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
    /// The segment's overrides (each with a `feature_segment` priority).
    #[serde(default, deserialize_with = "null_as_default")]
    pub feature_states: Vec<FeatureState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRule {
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
    #[serde(default)]
    pub conditions: Vec<SegmentCondition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentCondition {
    pub operator: ConditionOperator,
    /// A trait name or a `$.` JSONPath; empty or absent for a percentage split on the identity.
    #[serde(default)]
    pub property_: Option<String>,
    /// Flagsmith stores condition values as strings (numbers are stringified on the way in).
    #[serde(default, deserialize_with = "lax_string")]
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureState {
    pub feature: Feature,
    pub enabled: bool,
    /// The feature state's database id; multivariate allocation hashes on it.
    #[serde(default)]
    pub django_id: Option<i64>,
    /// Stands in for `django_id` where there is none (states that live only in the document).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub featurestate_uuid: Option<String>,
    /// A string, number, boolean or null.
    #[serde(default)]
    pub feature_state_value: Value,
    #[serde(default, deserialize_with = "null_as_default")]
    pub multivariate_feature_state_values: Vec<MultivariateFeatureStateValue>,
    /// Present (with a priority) on segment overrides, null on environment defaults.
    #[serde(default)]
    pub feature_segment: Option<FeatureSegment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub id: i64,
    pub name: String,
    /// `STANDARD` or `MULTIVARIATE`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub feature_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSegment {
    /// Lower wins among matching segments.
    #[serde(default)]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultivariateFeatureStateValue {
    pub multivariate_feature_option: MultivariateFeatureOption,
    /// Kept as the JSON number it was: the `SPLIT; weight=W` reason prints it as written.
    pub percentage_allocation: serde_json::Number,
    /// Orders the variants for allocation.
    #[serde(default)]
    pub id: Option<i64>,
    /// Orders the variants (read as a 128-bit integer) where there is no `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mv_fs_value_uuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultivariateFeatureOption {
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// Reported as the flag's `variant` when chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// One identity's overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityOverride {
    pub identifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_api_key: Option<String>,
    #[serde(default)]
    pub identity_features: Vec<FeatureState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_traits: Option<Vec<IdentityTrait>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub django_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_alias: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityTrait {
    pub trait_key: String,
    #[serde(default)]
    pub trait_value: Value,
}

/// The name the SDK gives the segments it builds from identity overrides.
pub const IDENTITY_OVERRIDES_SEGMENT_NAME: &str = "identity_overrides";

impl EnvironmentDocument {
    /// The evaluation context for this document, without an identity: the document's features,
    /// its segments (keyed by segment id) and one segment per distinct set of identity overrides,
    /// as the Flagsmith SDK builds it.
    pub fn to_evaluation_context(&self) -> EvaluationContext {
        let features = self
            .feature_states
            .iter()
            .map(|state| {
                let feature = feature_context(state);
                (feature.name.clone(), feature)
            })
            .collect();

        let mut segments: ContextMap<SegmentContext> = self
            .project
            .segments
            .iter()
            .map(|segment| {
                let key = segment.id.to_string();
                let context = SegmentContext {
                    key: key.clone(),
                    name: segment.name.clone(),
                    rules: segment.rules.iter().map(context_rule).collect(),
                    overrides: segment.feature_states.iter().map(feature_context).collect(),
                    metadata: Some(serde_json::json!({"id": segment.id, "source": "api"}).into()),
                };
                (key, context)
            })
            .collect();
        for segment in identity_override_segments(self.identity_overrides.as_deref().unwrap_or(&[]))
        {
            segments.insert(segment.key.clone(), segment);
        }

        EvaluationContext {
            environment: EnvironmentContext {
                key: self.api_key.clone(),
                name: self.name.clone().unwrap_or_default(),
            },
            identity: None,
            segments,
            features,
        }
    }
}

/// The identity part of a context, as the SDK builds it from an identifier and traits: no key
/// (so the engine derives `{environment key}_{identifier}`), and each trait's value, where a
/// trait given as `{"value": ..., "transient": ...}` contributes its `value`.
pub fn identity_context<I, K>(identifier: &str, traits: I) -> IdentityContext
where
    I: IntoIterator<Item = (K, Value)>,
    K: Into<String>,
{
    let traits = traits
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Value::Object(mut config) => config.remove("value").unwrap_or(Value::Null),
                other => other,
            };
            (key.into(), value)
        })
        .collect();
    IdentityContext {
        identifier: identifier.to_owned(),
        key: None,
        traits,
    }
}

fn feature_context(state: &FeatureState) -> FeatureContext {
    let variants = state
        .multivariate_feature_state_values
        .iter()
        .map(|value| FeatureValue {
            key: value.multivariate_feature_option.key.clone(),
            value: value.multivariate_feature_option.value.clone(),
            weight: value.percentage_allocation.clone(),
            priority: variant_priority(value),
        })
        .collect();
    FeatureContext {
        key: feature_state_key(state),
        name: state.feature.name.clone(),
        enabled: state.enabled,
        value: state.feature_state_value.clone(),
        variants,
        priority: state
            .feature_segment
            .as_ref()
            .and_then(|segment| segment.priority)
            .map(|priority| priority as f64),
        metadata: Some(serde_json::json!({"id": state.feature.id}).into()),
    }
}

/// The id multivariate allocation hashes on: `django_id`, else `featurestate_uuid` (a zero id
/// counts as none, as Python's `or` has it).
fn feature_state_key(state: &FeatureState) -> String {
    match state.django_id {
        Some(id) if id != 0 => id.to_string(),
        _ => state.featurestate_uuid.clone().unwrap_or_default(),
    }
}

/// A variant's priority: its `id`, else its `mv_fs_value_uuid` as a 128-bit integer.
fn variant_priority(value: &MultivariateFeatureStateValue) -> Priority {
    match value.id {
        Some(id) if id != 0 => Priority::from(id),
        _ => value
            .mv_fs_value_uuid
            .as_deref()
            .and_then(|text| uuid::Uuid::parse_str(text).ok())
            .map_or(Priority::Int(0), |uuid| Priority::from(uuid.as_u128())),
    }
}

fn context_rule(rule: &SegmentRule) -> ContextRule {
    ContextRule {
        rule_type: rule.rule_type,
        conditions: rule
            .conditions
            .iter()
            .map(|condition| ContextCondition {
                property: condition.property_.clone().unwrap_or_default(),
                operator: condition.operator.clone(),
                value: condition.value.clone().map_or(Value::Null, Value::String),
            })
            .collect(),
        rules: rule.rules.iter().map(context_rule).collect(),
    }
}

/// One segment per distinct set of overrides, matching the identifiers that share it through an
/// IN condition on `$.identity.identifier`, with overrides that beat every segment.
///
/// Sets are compared as the SDK compares them: the (feature id, name, enabled, value) of each
/// override, ordered by feature name, with Python's equality (so `1`, `1.0` and `true` are the
/// same value, and the first identity seen decides which one is served). Identities without
/// overrides get no segment.
fn identity_override_segments(overrides: &[IdentityOverride]) -> Vec<SegmentContext> {
    struct Group<'a> {
        features: Vec<&'a FeatureState>,
        identifiers: Vec<Value>,
    }
    let same = |a: &[&FeatureState], b: &[&FeatureState]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.feature.id == y.feature.id
                    && x.feature.name == y.feature.name
                    && x.enabled == y.enabled
                    && crate::evaluation::python_eq(&x.feature_state_value, &y.feature_state_value)
            })
    };

    let mut groups: Vec<Group> = Vec::new();
    for identity in overrides {
        if identity.identity_features.is_empty() {
            continue;
        }
        let mut features: Vec<&FeatureState> = identity.identity_features.iter().collect();
        features.sort_by(|a, b| a.feature.name.cmp(&b.feature.name));
        let identifier = Value::String(identity.identifier.clone());
        match groups
            .iter_mut()
            .find(|group| same(&group.features, &features))
        {
            Some(group) => group.identifiers.push(identifier),
            None => groups.push(Group {
                features,
                identifiers: vec![identifier],
            }),
        }
    }

    groups
        .into_iter()
        .enumerate()
        .map(|(index, group)| SegmentContext {
            // The SDK keys these by a per-process hash; any key unique in the context will do,
            // since nothing hashes on it (no percentage split here).
            key: format!("{IDENTITY_OVERRIDES_SEGMENT_NAME}:{index}"),
            name: IDENTITY_OVERRIDES_SEGMENT_NAME.to_owned(),
            rules: vec![ContextRule {
                rule_type: RuleType::All,
                conditions: vec![ContextCondition {
                    property: "$.identity.identifier".to_owned(),
                    operator: ConditionOperator::In,
                    value: Value::Array(group.identifiers),
                }],
                rules: Vec::new(),
            }],
            overrides: group
                .features
                .iter()
                .map(|state| FeatureContext {
                    // Identity overrides never carry multivariate values.
                    key: String::new(),
                    name: state.feature.name.clone(),
                    enabled: state.enabled,
                    value: state.feature_state_value.clone(),
                    variants: Vec::new(),
                    priority: Some(f64::NEG_INFINITY),
                    metadata: Some(serde_json::json!({"id": state.feature.id}).into()),
                })
                .collect(),
            metadata: Some(serde_json::json!({"source": IDENTITY_OVERRIDES_SEGMENT_NAME}).into()),
        })
        .collect()
}

/// Reads an explicit JSON `null` as the type's default.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A condition value as Flagsmith's model reads it: `str(value)` for anything but null.
fn lax_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Bool(true)) => Some("True".to_owned()),
        Some(Value::Bool(false)) => Some("False".to_owned()),
        Some(other) => Some(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(overrides: Value) -> EnvironmentDocument {
        serde_json::from_value(json!({
            "id": 1, "api_key": "key", "name": "env",
            "project": {"id": 2, "name": "p", "organisation": {"id": 3, "name": "o"}, "segments": []},
            "feature_states": [],
            "identity_overrides": overrides,
        }))
        .expect("valid document")
    }

    fn override_of(identifier: &str, value: Value) -> Value {
        json!({
            "identifier": identifier,
            "identity_features": [{
                "feature": {"id": 9, "name": "f", "type": "STANDARD"},
                "enabled": true, "django_id": null, "feature_state_value": value,
                "multivariate_feature_state_values": [], "feature_segment": null
            }]
        })
    }

    #[test]
    fn identities_sharing_overrides_share_one_segment() {
        let doc = document(json!([
            override_of("a", json!(1)),
            override_of("b", json!(true)),
            override_of("c", json!("1")),
            {"identifier": "d", "identity_features": []},
        ]));
        let context = doc.to_evaluation_context();
        let segments: Vec<&SegmentContext> = context.segments.values().collect();
        assert_eq!(
            segments.len(),
            2,
            "1 and true are equal in Python; \"1\" is not"
        );
        assert_eq!(segments[0].rules[0].conditions[0].value, json!(["a", "b"]));
        assert_eq!(segments[0].overrides[0].value, json!(1));
        assert_eq!(segments[1].rules[0].conditions[0].value, json!(["c"]));
    }

    #[test]
    fn variant_priority_falls_back_to_the_uuid_as_an_integer() {
        let value: MultivariateFeatureStateValue = serde_json::from_value(json!({
            "multivariate_feature_option": {"value": "a"},
            "percentage_allocation": 50,
            "mv_fs_value_uuid": "ffffffff-0000-4000-8000-000000000001"
        }))
        .expect("valid value");
        assert_eq!(
            variant_priority(&value),
            Priority::BigInt(0xffffffff_0000_4000_8000_000000000001)
        );
    }

    #[test]
    fn transient_trait_configs_contribute_their_value() {
        let identity = identity_context(
            "alice",
            [
                ("plan", json!("pro")),
                ("age", json!({"value": 30, "transient": true})),
            ],
        );
        assert_eq!(identity.traits["plan"], json!("pro"));
        assert_eq!(identity.traits["age"], json!(30));
        assert_eq!(identity.key, None);
    }
}

//! The value types shared by the aggregates: features, multivariate options, feature states,
//! segments with their rules and conditions, and the validation each of them needs.
//!
//! Field names follow Flagsmith's environment document where one exists (`property_`,
//! `feature_state_value`, `percentage_allocation`), so imported and exported data read the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
pub use crate::evaluation::{ConditionOperator, RuleType};

pub type OrganisationId = u64;
pub type ProjectId = u64;
pub type EnvironmentId = u64;
pub type FeatureId = u64;
pub type SegmentId = u64;
pub type OptionId = u64;
pub type UserId = u64;
pub type TokenId = u64;

/// Longest name of a feature, segment, project or environment.
pub const MAX_NAME_LEN: usize = 2000;
/// Deepest nesting of segment rules accepted: deeper input is refused, not recursed into.
pub const MAX_RULE_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FeatureType {
    #[default]
    Standard,
    Multivariate,
}

/// A flag value: a string, an integer, a float, a boolean, or none.
pub fn validate_value(field: &str, value: &Value) -> Result<()> {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
        _ => Err(Error::invalid(
            field,
            "must be a string, an integer, a float, a boolean or null",
        )),
    }
}

pub fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(())
}

/// One value a multivariate feature can take, with the share it gets by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultivariateOption {
    pub id: OptionId,
    pub value: Value,
    #[serde(default)]
    pub default_percentage_allocation: f64,
    /// The name evaluation reports as the flag's `variant` when this option is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A feature of a project: what every environment's feature state starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    pub id: FeatureId,
    pub name: String,
    #[serde(rename = "type")]
    pub feature_type: FeatureType,
    pub default_enabled: bool,
    pub initial_value: Value,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub multivariate_options: Vec<MultivariateOption>,
}

/// The share of identities one multivariate option gets in a feature state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultivariateAllocation {
    pub multivariate_feature_option: OptionId,
    pub percentage_allocation: f64,
    /// The id evaluation orders and hashes variants by (Flagsmith's `id` of the
    /// multivariate feature state value, kept on import); the option's id when flaglog made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Flagsmith's `mv_fs_value_uuid`, kept on import when the value had no `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// The key evaluation hashes a feature state on: Flagsmith's `django_id`, else its
/// `featurestate_uuid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FeatureStateKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub django_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub featurestate_uuid: Option<String>,
}

impl FeatureStateKey {
    /// The key of a feature state flaglog made itself: a UUID derived from where it lives, so it
    /// is stable without being stored until the state is first changed.
    pub fn derived(scope: &str) -> Self {
        FeatureStateKey {
            django_id: None,
            featurestate_uuid: Some(
                uuid::Uuid::new_v5(&FLAGLOG_NAMESPACE, scope.as_bytes()).to_string(),
            ),
        }
    }
}

/// Namespace of the UUIDs flaglog derives.
pub const FLAGLOG_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1a_91c4_2f7e_4d6b_9a0e_5c3b_8d27_f104);

/// Whether a feature is on, and with which value, in one environment (or for one segment or
/// identity of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureState {
    pub enabled: bool,
    pub feature_state_value: Value,
    #[serde(default)]
    pub multivariate_feature_state_values: Vec<MultivariateAllocation>,
    #[serde(default)]
    pub key: FeatureStateKey,
}

impl FeatureState {
    /// Checks the state against its feature: a scalar value, allocations only on options the
    /// feature has, each in [0, 100], each option at most once, summing to at most 100.
    pub fn validate(&self, feature: &Feature) -> Result<()> {
        validate_value("feature_state_value", &self.feature_state_value)?;
        let mut total = 0.0;
        let mut seen = Vec::new();
        for (i, allocation) in self.multivariate_feature_state_values.iter().enumerate() {
            let field = format!("multivariate_feature_state_values[{i}]");
            if !feature
                .multivariate_options
                .iter()
                .any(|o| o.id == allocation.multivariate_feature_option)
            {
                return Err(Error::invalid(
                    format!("{field}.multivariate_feature_option"),
                    format!(
                        "feature {} has no multivariate option {}",
                        feature.name, allocation.multivariate_feature_option
                    ),
                ));
            }
            if seen.contains(&allocation.multivariate_feature_option) {
                return Err(Error::invalid(
                    format!("{field}.multivariate_feature_option"),
                    "each option may be allocated once",
                ));
            }
            seen.push(allocation.multivariate_feature_option);
            validate_percentage(
                &format!("{field}.percentage_allocation"),
                allocation.percentage_allocation,
            )?;
            total += allocation.percentage_allocation;
        }
        if total > 100.0 + 1e-9 {
            return Err(Error::invalid(
                "multivariate_feature_state_values",
                format!("allocations sum to {total}, more than 100"),
            ));
        }
        Ok(())
    }
}

pub fn validate_percentage(field: &str, value: f64) -> Result<()> {
    if !value.is_finite() || !(0.0..=100.0).contains(&value) {
        return Err(Error::invalid(field, "must be a percentage from 0 to 100"));
    }
    Ok(())
}

/// The operators every condition may use, as Flagsmith's engine names them. The `:semver`
/// variants of the four comparisons are written as a `:semver` suffix on the condition's value.
pub const OPERATORS: [ConditionOperator; 14] = [
    ConditionOperator::Equal,
    ConditionOperator::NotEqual,
    ConditionOperator::GreaterThan,
    ConditionOperator::GreaterThanInclusive,
    ConditionOperator::LessThan,
    ConditionOperator::LessThanInclusive,
    ConditionOperator::Contains,
    ConditionOperator::NotContains,
    ConditionOperator::In,
    ConditionOperator::Regex,
    ConditionOperator::PercentageSplit,
    ConditionOperator::IsSet,
    ConditionOperator::IsNotSet,
    ConditionOperator::Modulo,
];

fn allows_semver(operator: &ConditionOperator) -> bool {
    matches!(
        operator,
        ConditionOperator::Equal
            | ConditionOperator::NotEqual
            | ConditionOperator::GreaterThan
            | ConditionOperator::GreaterThanInclusive
            | ConditionOperator::LessThan
            | ConditionOperator::LessThanInclusive
    )
}

/// One test of a context property (a trait name, or a `$.` JSONPath into the context).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub operator: ConditionOperator,
    #[serde(rename = "property_", alias = "property", default)]
    pub property: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

impl Condition {
    fn validate(&self) -> Result<()> {
        let value = self.value.as_deref().unwrap_or("");
        if let ConditionOperator::Other(name) = &self.operator {
            let known: Vec<&str> = OPERATORS.iter().map(ConditionOperator::as_str).collect();
            return Err(Error::invalid(
                "operator",
                format!(
                    "unknown operator {name:?}; expected one of {}",
                    known.join(", ")
                ),
            ));
        }
        let needs_property = !matches!(self.operator, ConditionOperator::PercentageSplit);
        if needs_property && self.property.as_deref().unwrap_or("").is_empty() {
            return Err(Error::invalid(
                "property_",
                "must name a trait or a $. path",
            ));
        }
        if let Some(version) = value.strip_suffix(":semver") {
            if !allows_semver(&self.operator) {
                return Err(Error::invalid(
                    "value",
                    format!(
                        "{} does not compare semantic versions",
                        self.operator.as_str()
                    ),
                ));
            }
            if !is_semver(version) {
                return Err(Error::invalid(
                    "value",
                    format!("{version:?} is not a semantic version (MAJOR.MINOR.PATCH)"),
                ));
            }
        }
        match self.operator {
            ConditionOperator::PercentageSplit => {
                let ok = value
                    .trim()
                    .parse::<f64>()
                    .map(|p| (0.0..=100.0).contains(&p));
                if ok != Ok(true) {
                    return Err(Error::invalid(
                        "value",
                        "PERCENTAGE_SPLIT needs a percentage from 0 to 100",
                    ));
                }
            }
            ConditionOperator::Modulo => {
                let parsed = value.split_once('|').and_then(|(d, r)| {
                    Some((d.trim().parse::<f64>().ok()?, r.trim().parse::<f64>().ok()?))
                });
                match parsed {
                    Some((divisor, _)) if divisor != 0.0 && divisor.is_finite() => {}
                    _ => {
                        return Err(Error::invalid(
                            "value",
                            "MODULO needs \"divisor|remainder\" with a non-zero numeric divisor",
                        ));
                    }
                }
            }
            ConditionOperator::Regex => {
                if let Err(e) = regex::Regex::new(value) {
                    return Err(Error::invalid(
                        "value",
                        format!("invalid regular expression: {e}"),
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn is_semver(text: &str) -> bool {
    let core = text.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// A rule: its quantifier applies to its conditions and, separately, to its sub-rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRule {
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub rules: Vec<SegmentRule>,
}

/// Validates rules, naming the offending place (`rules[0].rules[1].conditions[2].value`).
pub fn validate_rules(rules: &[SegmentRule]) -> Result<()> {
    validate_rules_at(rules, "rules", 1)
}

fn validate_rules_at(rules: &[SegmentRule], field: &str, depth: usize) -> Result<()> {
    if depth > MAX_RULE_DEPTH {
        return Err(Error::invalid(
            field,
            format!("rules nest deeper than {MAX_RULE_DEPTH} levels"),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let here = format!("{field}[{i}]");
        for (j, condition) in rule.conditions.iter().enumerate() {
            condition
                .validate()
                .map_err(|e| e.within(&format!("{here}.conditions[{j}]")))?;
        }
        validate_rules_at(&rule.rules, &format!("{here}.rules"), depth + 1)?;
    }
    Ok(())
}

/// A named set of identities, defined by rules over their traits and the context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: SegmentId,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub rules: Vec<SegmentRule>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(operator: &str, value: &str) -> Value {
        json!({"operator": operator, "property_": "age", "value": value})
    }

    fn rules_with(condition: Value) -> Vec<SegmentRule> {
        serde_json::from_value(json!([{"type": "ALL", "conditions": [], "rules": [
            {"type": "ANY", "conditions": [condition], "rules": []}
        ]}]))
        .unwrap()
    }

    #[test]
    fn every_flagsmith_operator_is_accepted() {
        for (op, value) in [
            ("EQUAL", "1"),
            ("NOT_EQUAL", "1"),
            ("GREATER_THAN", "1"),
            ("GREATER_THAN_INCLUSIVE", "1.2.3:semver"),
            ("LESS_THAN", "1.0.0-beta:semver"),
            ("LESS_THAN_INCLUSIVE", "1"),
            ("CONTAINS", "a"),
            ("NOT_CONTAINS", "a"),
            ("IN", "a,b"),
            ("REGEX", "^[a-z]+$"),
            ("PERCENTAGE_SPLIT", "12.5"),
            ("IS_SET", ""),
            ("IS_NOT_SET", ""),
            ("MODULO", "3|1"),
        ] {
            validate_rules(&rules_with(condition(op, value)))
                .unwrap_or_else(|e| panic!("{op}: {e}"));
        }
    }

    #[test]
    fn unknown_operators_are_refused_naming_the_field() {
        let err = validate_rules(&rules_with(condition("ROUGHLY", "1"))).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref field, .. }
                if field == "rules[0].rules[0].conditions[0].operator"),
            "{err:?}"
        );
    }

    #[test]
    fn bad_condition_values_name_their_field() {
        for (op, value) in [
            ("MODULO", "3"),
            ("MODULO", "0|1"),
            ("PERCENTAGE_SPLIT", "101"),
            ("REGEX", "(unclosed"),
            ("CONTAINS", "1.2.3:semver"),
            ("GREATER_THAN", "1.2:semver"),
        ] {
            let err = validate_rules(&rules_with(condition(op, value))).unwrap_err();
            match err {
                Error::Invalid { field, .. } => {
                    assert_eq!(
                        field, "rules[0].rules[0].conditions[0].value",
                        "{op} {value}"
                    )
                }
                other => panic!("{op}: {other:?}"),
            }
        }
    }

    #[test]
    fn rules_nested_too_deep_are_refused() {
        let mut rule = json!({"type": "ALL", "conditions": [], "rules": []});
        for _ in 0..MAX_RULE_DEPTH + 2 {
            rule = json!({"type": "ALL", "conditions": [], "rules": [rule]});
        }
        let rules: Vec<SegmentRule> = serde_json::from_value(json!([rule])).unwrap();
        assert!(matches!(validate_rules(&rules), Err(Error::Invalid { .. })));
    }

    fn mv_feature() -> Feature {
        Feature {
            id: 1,
            name: "colour".into(),
            feature_type: FeatureType::Multivariate,
            default_enabled: true,
            initial_value: json!("red"),
            description: None,
            tags: vec![],
            multivariate_options: vec![
                MultivariateOption {
                    id: 10,
                    value: json!("blue"),
                    default_percentage_allocation: 50.0,
                    key: None,
                },
                MultivariateOption {
                    id: 11,
                    value: json!("green"),
                    default_percentage_allocation: 50.0,
                    key: None,
                },
            ],
        }
    }

    fn state(allocations: &[(u64, f64)]) -> FeatureState {
        FeatureState {
            enabled: true,
            feature_state_value: json!("red"),
            multivariate_feature_state_values: allocations
                .iter()
                .map(|&(option, pct)| MultivariateAllocation {
                    multivariate_feature_option: option,
                    percentage_allocation: pct,
                    id: None,
                    uuid: None,
                })
                .collect(),
            key: FeatureStateKey::default(),
        }
    }

    #[test]
    fn allocations_over_one_hundred_are_refused() {
        assert!(
            state(&[(10, 60.0), (11, 40.0)])
                .validate(&mv_feature())
                .is_ok()
        );
        let err = state(&[(10, 60.0), (11, 40.5)])
            .validate(&mv_feature())
            .unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref field, .. } if field == "multivariate_feature_state_values")
        );
    }

    #[test]
    fn allocations_must_name_options_of_the_feature() {
        let err = state(&[(99, 10.0)]).validate(&mv_feature()).unwrap_err();
        assert!(matches!(err, Error::Invalid { ref field, .. }
            if field == "multivariate_feature_state_values[0].multivariate_feature_option"));
    }

    #[test]
    fn values_must_be_scalars() {
        assert!(validate_value("v", &json!({"a": 1})).is_err());
        assert!(validate_value("v", &json!([1])).is_err());
        for ok in [json!(null), json!(1), json!(1.5), json!("s"), json!(true)] {
            assert!(validate_value("v", &ok).is_ok());
        }
    }
}

//! Properties of the evaluation engine that hold for all inputs: hashed percentages stay in
//! [0, 100) and are deterministic, rule quantifiers mean what they say over any trait map, and no
//! input (however malformed) makes evaluation panic.

use domain::evaluation::{EvaluationContext, evaluate, hashed_percentage};
use indexmap::IndexMap;
use proptest::prelude::*;
use serde_json::{Value, json};

const OPERATORS: &[&str] = &[
    "EQUAL",
    "NOT_EQUAL",
    "GREATER_THAN",
    "GREATER_THAN_INCLUSIVE",
    "LESS_THAN",
    "LESS_THAN_INCLUSIVE",
    "CONTAINS",
    "NOT_CONTAINS",
    "IN",
    "REGEX",
    "PERCENTAGE_SPLIT",
    "MODULO",
    "IS_SET",
    "IS_NOT_SET",
    "NOT_AN_OPERATOR",
];

const TRAIT_NAMES: &[&str] = &["age", "plan", "version", "score", "flag", "missing"];

fn trait_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-100i64..100).prop_map(|i| json!(i)),
        (-100.0f64..100.0).prop_map(|f| json!(f)),
        "[0-9]{1,3}".prop_map(Value::String),
        "[0-9]{1,2}\\.[0-9]{1,2}".prop_map(Value::String),
        "[0-9]\\.[0-9]\\.[0-9](-beta)?".prop_map(Value::String),
        "[a-z]{0,6}".prop_map(Value::String),
    ]
}

/// Condition values mixing the well-formed and the malformed for every operator.
fn condition_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[0-9]{1,3}".prop_map(Value::String),
        "-?[0-9]{1,2}\\.[0-9]".prop_map(Value::String),
        "[0-9]\\.[0-9]\\.[0-9](-beta)?:semver".prop_map(Value::String),
        "[a-z]{0,4}".prop_map(Value::String),
        "[0-9]\\|[0-9]".prop_map(Value::String),
        "[a-z0-9,\\[\\]\"|().*+?\\\\:-]{0,8}".prop_map(Value::String),
        prop::collection::vec("[a-z0-9]{0,3}", 0..4).prop_map(|items| json!(items)),
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(7)),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(OPERATORS),
        prop_oneof![
            prop::sample::select(TRAIT_NAMES).prop_map(str::to_owned),
            Just(String::new()),
            Just("$.identity.identifier".to_owned()),
            Just("$.environment.name".to_owned()),
            Just("$.identity.traits.plan".to_owned()),
            Just("$.flags.f.enabled".to_owned()),
            Just("$.[broken".to_owned()),
        ],
        condition_value(),
    )
        .prop_map(|(operator, property, value)| {
            json!({"operator": operator, "property": property, "value": value})
        })
}

fn traits() -> impl Strategy<Value = IndexMap<String, Value>> {
    prop::collection::vec((prop::sample::select(TRAIT_NAMES), trait_value()), 0..6).prop_map(
        |pairs| {
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect()
        },
    )
}

/// A segment named `name`. All of them share one hashing key, so that a percentage split gives
/// the same verdict in every segment it appears in.
fn segment(name: &str, rules: Value) -> Value {
    json!({"key": "segment", "name": name, "rules": rules, "overrides": []})
}

/// A context holding one segment per single condition (`c0`, `c1`, ...) and one per quantifier
/// over all of them, so a single evaluation shows every verdict.
fn context(conditions: &[Value], traits: &IndexMap<String, Value>) -> EvaluationContext {
    let mut segments = serde_json::Map::new();
    for (i, condition) in conditions.iter().enumerate() {
        let key = format!("c{i}");
        let rules = json!([{"type": "ALL", "conditions": [condition]}]);
        segments.insert(key.clone(), segment(&key, rules));
    }
    for quantifier in ["ALL", "ANY", "NONE"] {
        let rules = json!([{"type": quantifier, "conditions": conditions}]);
        segments.insert(quantifier.to_owned(), segment(quantifier, rules));
        // The same quantifier over single-condition sub-rules.
        let sub_rules: Vec<Value> = conditions
            .iter()
            .map(|c| json!({"type": "ALL", "conditions": [c]}))
            .collect();
        let key = format!("{quantifier}-rules");
        let rules = json!([{"type": quantifier, "rules": sub_rules}]);
        segments.insert(key.clone(), segment(&key, rules));
    }
    serde_json::from_value(json!({
        "environment": {"key": "env", "name": "Production"},
        "identity": {"identifier": "user-1", "traits": traits},
        "features": {"f": {"key": "1", "name": "f", "enabled": true, "value": null}},
        "segments": segments,
    }))
    .expect("generated context parses")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn hashed_percentage_is_in_range(ids in prop::collection::vec(".{0,12}", 0..4)) {
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let value = hashed_percentage(&ids);
        prop_assert!((0.0..100.0).contains(&value), "{value}");
    }

    #[test]
    fn hashed_percentage_is_deterministic(a in ".{0,12}", b in ".{0,12}") {
        prop_assert_eq!(hashed_percentage(&[&a, &b]), hashed_percentage(&[&a, &b]));
    }

    #[test]
    fn quantifiers_mean_all_any_and_none(
        conditions in prop::collection::vec(condition(), 1..5),
        traits in traits(),
    ) {
        let result = evaluate(&context(&conditions, &traits));
        let matched = |key: &str| result.segments.iter().any(|s| s.name == key);
        let singles: Vec<bool> = (0..conditions.len()).map(|i| matched(&format!("c{i}"))).collect();

        prop_assert_eq!(matched("ALL"), singles.iter().all(|m| *m));
        prop_assert_eq!(matched("ANY"), singles.iter().any(|m| *m));
        prop_assert_eq!(matched("NONE"), !singles.iter().any(|m| *m));
        prop_assert_eq!(matched("ALL-rules"), singles.iter().all(|m| *m));
        prop_assert_eq!(matched("ANY-rules"), singles.iter().any(|m| *m));
        prop_assert_eq!(matched("NONE-rules"), !singles.iter().any(|m| *m));
    }

    #[test]
    fn is_set_and_is_not_set_are_complementary(name in prop::sample::select(TRAIT_NAMES), traits in traits()) {
        let conditions = [
            json!({"operator": "IS_SET", "property": name, "value": null}),
            json!({"operator": "IS_NOT_SET", "property": name, "value": null}),
        ];
        let result = evaluate(&context(&conditions, &traits));
        let matched = |key: &str| result.segments.iter().any(|s| s.name == key);
        prop_assert_ne!(matched("c0"), matched("c1"));
        let present = traits.get(name).is_some_and(|v| !v.is_null());
        prop_assert_eq!(matched("c0"), present);
    }

    #[test]
    fn a_wider_percentage_split_keeps_everyone_a_narrower_one_had(
        identifier in "[a-z0-9]{1,10}",
        low in 0.0f64..100.0,
        extra in 0.0f64..100.0,
    ) {
        // Both segments hash on the same segment key, so only the threshold differs.
        let split = |name: &str, threshold: f64| json!({
            "key": "split", "name": name, "overrides": [],
            "rules": [{"type": "ALL", "conditions": [{
                "operator": "PERCENTAGE_SPLIT", "property": "", "value": threshold.to_string()
            }]}]
        });
        let ctx: EvaluationContext = serde_json::from_value(json!({
            "environment": {"key": "env", "name": "Production"},
            "identity": {"identifier": identifier},
            "segments": {"c0": split("c0", low), "c1": split("c1", low + extra)},
        }))
        .expect("generated context parses");
        let result = evaluate(&ctx);
        let matched = |key: &str| result.segments.iter().any(|s| s.name == key);
        prop_assert!(!matched("c0") || matched("c1"));
    }
}

//! The evaluation context: everything one evaluation reads, in the JSON shape of Flagsmith's
//! `evaluation-context.json` schema.
//!
//! Keeping Flagsmith's shape (rather than flaglog's own model) lets the engine be proven against
//! Flagsmith's conformance data as is, and lets a context be logged or replayed as plain JSON.
//! Maps are insertion-ordered because order is semantic: segments are evaluated in context order,
//! which decides both the order of matched segments in the result and which of two overrides
//! with equal priority wins.

use std::cmp::Ordering;
use std::fmt;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::python::cmp_int_float;

/// Metadata carried untouched from a feature or segment to its result: any JSON value, kept
/// compactly. A server keeps a context per environment with metadata on every feature, override
/// and segment, and `{"id": 7}` held as a `serde_json::Map` costs ~600 bytes of heap (a B-tree
/// node). The feature shape `{"id": <integer>}` is kept as the integer, anything else as its
/// compact JSON text; results, which are rare next to contexts, get a [`Value`] back.
#[derive(Clone, PartialEq, Eq)]
pub struct Metadata(MetadataRepr);

#[derive(Clone, PartialEq, Eq)]
enum MetadataRepr {
    /// `{"id": <integer>}`, what every feature carries.
    Id(i64),
    /// Any other value, as its compact JSON text.
    Json(Box<str>),
}

impl Metadata {
    pub fn new(value: &Value) -> Self {
        if let Value::Object(map) = value
            && map.len() == 1
            && let Some(id) = map.get("id").and_then(Value::as_i64)
        {
            return Metadata(MetadataRepr::Id(id));
        }
        Metadata(MetadataRepr::Json(value.to_string().into_boxed_str()))
    }

    pub fn to_value(&self) -> Value {
        match &self.0 {
            MetadataRepr::Id(id) => {
                let mut map = serde_json::Map::new();
                map.insert("id".to_owned(), Value::from(*id));
                Value::Object(map)
            }
            // The text was written from a Value, so it parses.
            MetadataRepr::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }
}

impl From<Value> for Metadata {
    fn from(value: Value) -> Self {
        Metadata::new(&value)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| Metadata::new(&value))
    }
}

#[cfg(test)]
mod metadata_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_gives_back_the_value_it_was_made_of() {
        for value in [
            json!({"id": 7}),
            json!({"id": -7}),
            json!({"id": 7.5}),
            json!({"id": "7"}),
            json!({"id": 7, "source": "api"}),
            json!({}),
            json!(null),
            json!([1, {"a": "b"}]),
            json!("text"),
        ] {
            let metadata = Metadata::new(&value);
            assert_eq!(metadata.to_value(), value);
            let through_json: Metadata =
                serde_json::from_str(&serde_json::to_string(&metadata).unwrap()).unwrap();
            assert_eq!(through_json, metadata);
        }
        assert!(matches!(
            Metadata::new(&json!({"id": 7})).0,
            MetadataRepr::Id(7)
        ));
    }
}

/// The maps of a context: insertion-ordered, hashed with foldhash (every evaluation looks up
/// features, segments and traits by name; SipHash made those lookups a tenth of its time).
pub type ContextMap<V> = IndexMap<String, V, foldhash::fast::RandomState>;

/// The input of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationContext {
    pub environment: EnvironmentContext,
    /// Who the flags are for; without one, no segment matches on traits and no multivariate
    /// split applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityContext>,
    /// Segments by key, in evaluation order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub segments: ContextMap<SegmentContext>,
    /// Features by name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub features: ContextMap<FeatureContext>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentContext {
    /// The environment's client-side key; part of the default identity key.
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityContext {
    pub identifier: String,
    /// The key percentage splits and multivariate allocation hash on. When absent (or empty)
    /// the engine uses `"{environment key}_{identifier}"`, as Flagsmith does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Trait values: strings, numbers, booleans or null (null reads as "not set").
    #[serde(default, deserialize_with = "null_as_default")]
    pub traits: ContextMap<Value>,
}

/// A feature's default state, or a segment's override of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureContext {
    /// The id multivariate allocation hashes on (Flagsmith's feature state id).
    pub key: String,
    pub name: String,
    pub enabled: bool,
    #[serde(default)]
    pub value: Value,
    /// Multivariate values; when non-empty and there is an identity, one of them (or the
    /// control value, `value`) is chosen by the identity's hashed percentage.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub variants: Vec<FeatureValue>,
    /// Only meaningful on segment overrides: the lowest priority wins; none is the weakest.
    /// Identity overrides use `f64::NEG_INFINITY`, which JSON cannot carry (it serialises as
    /// `null`, i.e. "none").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<f64>,
    /// Carried to the flag result untouched (Flagsmith's SDKs put `{"id": feature id}` here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// One multivariate value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureValue {
    /// Reported as the flag result's `variant` when this value is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    /// Percentage of identities that get this value. Kept as the JSON number it was, because
    /// the `SPLIT; weight=W` reason prints it as Python does (`30` and `30.0` differ).
    pub weight: serde_json::Number,
    /// Values are walked in ascending priority, accumulating weights.
    pub priority: Priority,
}

/// A multivariate value's priority: any integer (Flagsmith derives it from a database id or,
/// failing that, from a UUID read as a 128-bit integer) or a float, ordered numerically.
#[derive(Debug, Clone, Copy)]
pub enum Priority {
    Int(i128),
    /// Integers above `i128::MAX`, which UUID-derived priorities often are.
    BigInt(u128),
    Float(f64),
}

impl Priority {
    /// Exact numeric ordering across the representations. NaN, which Python leaves unordered,
    /// goes after every number: sorting needs a total order (Rust's sort may panic without one).
    pub fn numeric_cmp(&self, other: &Priority) -> Ordering {
        use Priority::*;
        match (*self, *other) {
            (Float(a), Float(b)) => match (a.is_nan(), b.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            },
            (Float(a), _) if a.is_nan() => Ordering::Greater,
            (_, Float(b)) if b.is_nan() => Ordering::Less,
            (Int(a), Int(b)) => a.cmp(&b),
            (BigInt(a), BigInt(b)) => a.cmp(&b),
            (Int(_), BigInt(_)) => Ordering::Less,
            (BigInt(_), Int(_)) => Ordering::Greater,
            (Int(a), Float(b)) => cmp_int_float(a, b).unwrap_or(Ordering::Equal),
            (Float(a), Int(b)) => cmp_int_float(b, a).map_or(Ordering::Equal, Ordering::reverse),
            (BigInt(a), Float(b)) => cmp_big_float(a, b),
            (Float(a), BigInt(b)) => cmp_big_float(b, a).reverse(),
        }
    }
}

/// Exact ordering of an integer in (i128::MAX, u128::MAX] against a non-NaN float.
fn cmp_big_float(big: u128, float: f64) -> Ordering {
    const TWO_POW_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if float < TWO_POW_127 {
        Ordering::Greater
    } else if float >= 2.0 * TWO_POW_127 {
        Ordering::Less
    } else {
        // Floats in [2^127, 2^128) are integers that u128 holds exactly.
        big.cmp(&(float as u128))
    }
}

impl PartialEq for Priority {
    fn eq(&self, other: &Self) -> bool {
        self.numeric_cmp(other) == Ordering::Equal
    }
}

impl From<i64> for Priority {
    fn from(value: i64) -> Self {
        Priority::Int(i128::from(value))
    }
}

impl From<u128> for Priority {
    fn from(value: u128) -> Self {
        i128::try_from(value).map_or(Priority::BigInt(value), Priority::Int)
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Priority::Int(i) => match i64::try_from(i) {
                Ok(small) => serializer.serialize_i64(small),
                Err(_) => serializer.serialize_i128(i),
            },
            Priority::BigInt(u) => serializer.serialize_u128(u),
            Priority::Float(f) => serializer.serialize_f64(f),
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Priority;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Priority, E> {
                Ok(Priority::from(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Priority, E> {
                Ok(Priority::Int(i128::from(v)))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Priority, E> {
                Ok(Priority::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Priority, E> {
                Ok(Priority::from(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Priority, E> {
                Ok(Priority::Float(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A segment: rules deciding membership, and the overrides members get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentContext {
    /// The id percentage-split conditions hash on (Flagsmith's segment id).
    pub key: String,
    pub name: String,
    /// A segment matches when it has rules and every one of them matches.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<SegmentRule>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub overrides: Vec<FeatureContext>,
    /// Carried to the segment result untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// A rule applies its quantifier to its conditions and, separately, to its sub-rules; both
/// sides must hold, and an empty side holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRule {
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<SegmentCondition>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<SegmentRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RuleType {
    /// Every item holds.
    All,
    /// At least one item holds.
    Any,
    /// No item holds.
    None,
}

/// One test of the context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentCondition {
    /// A trait name, or a JSONPath into the context when it starts with `$.` (a trait named
    /// exactly like the path still wins). Empty for a percentage split on the identity key.
    #[serde(default)]
    pub property: String,
    pub operator: ConditionOperator,
    /// Usually a string (cast to the compared value's type); for IN also an array, a JSON array
    /// in a string, or a comma-separated string. Kept as JSON so that every input Flagsmith
    /// accepts is evaluated as Flagsmith evaluates it.
    #[serde(default)]
    pub value: Value,
}

/// A condition's operator. Unknown operators are kept (and never match) rather than rejected,
/// as in Flagsmith, so that a document from a newer Flagsmith still loads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConditionOperator {
    Equal,
    NotEqual,
    GreaterThan,
    GreaterThanInclusive,
    LessThan,
    LessThanInclusive,
    Contains,
    NotContains,
    In,
    Regex,
    PercentageSplit,
    Modulo,
    IsSet,
    IsNotSet,
    Other(String),
}

impl ConditionOperator {
    pub fn as_str(&self) -> &str {
        match self {
            ConditionOperator::Equal => "EQUAL",
            ConditionOperator::NotEqual => "NOT_EQUAL",
            ConditionOperator::GreaterThan => "GREATER_THAN",
            ConditionOperator::GreaterThanInclusive => "GREATER_THAN_INCLUSIVE",
            ConditionOperator::LessThan => "LESS_THAN",
            ConditionOperator::LessThanInclusive => "LESS_THAN_INCLUSIVE",
            ConditionOperator::Contains => "CONTAINS",
            ConditionOperator::NotContains => "NOT_CONTAINS",
            ConditionOperator::In => "IN",
            ConditionOperator::Regex => "REGEX",
            ConditionOperator::PercentageSplit => "PERCENTAGE_SPLIT",
            ConditionOperator::Modulo => "MODULO",
            ConditionOperator::IsSet => "IS_SET",
            ConditionOperator::IsNotSet => "IS_NOT_SET",
            ConditionOperator::Other(name) => name,
        }
    }

    pub fn parse(name: &str) -> ConditionOperator {
        match name {
            "EQUAL" => ConditionOperator::Equal,
            "NOT_EQUAL" => ConditionOperator::NotEqual,
            "GREATER_THAN" => ConditionOperator::GreaterThan,
            "GREATER_THAN_INCLUSIVE" => ConditionOperator::GreaterThanInclusive,
            "LESS_THAN" => ConditionOperator::LessThan,
            "LESS_THAN_INCLUSIVE" => ConditionOperator::LessThanInclusive,
            "CONTAINS" => ConditionOperator::Contains,
            "NOT_CONTAINS" => ConditionOperator::NotContains,
            "IN" => ConditionOperator::In,
            "REGEX" => ConditionOperator::Regex,
            "PERCENTAGE_SPLIT" => ConditionOperator::PercentageSplit,
            "MODULO" => ConditionOperator::Modulo,
            "IS_SET" => ConditionOperator::IsSet,
            "IS_NOT_SET" => ConditionOperator::IsNotSet,
            other => ConditionOperator::Other(other.to_owned()),
        }
    }
}

impl Serialize for ConditionOperator {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ConditionOperator {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Ok(ConditionOperator::parse(&name))
    }
}

/// Reads an explicit JSON `null` as the type's default (Flagsmith's Python treats a null list or
/// map like an absent one).
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_numerically_across_representations() {
        let big = Priority::from(u128::MAX - 5);
        assert!(matches!(big, Priority::BigInt(_)));
        assert_eq!(Priority::Int(3).numeric_cmp(&big), Ordering::Less);
        assert_eq!(
            Priority::Float(2.5).numeric_cmp(&Priority::Int(3)),
            Ordering::Less
        );
        assert_eq!(Priority::Float(3.0), Priority::Int(3));
        assert_eq!(
            Priority::Float(f64::NAN).numeric_cmp(&big),
            Ordering::Greater
        );
        let just_above = Priority::BigInt((1 << 127) + 1);
        assert_eq!(
            Priority::Float(2f64.powi(127)).numeric_cmp(&just_above),
            Ordering::Less
        );
        let parsed: Priority = serde_json::from_str("340282366920938463463374607431768211450")
            .unwrap_or(Priority::Int(0));
        // serde_json reads integers above u64 as floats unless asked for 128 bits; either way
        // they order above every database id.
        assert_eq!(
            parsed.numeric_cmp(&Priority::from(i64::MAX)),
            Ordering::Greater
        );
    }

    #[test]
    fn unknown_operators_load_and_round_trip() {
        let condition: SegmentCondition =
            serde_json::from_str(r#"{"property":"a","operator":"SOUNDS_LIKE","value":"x"}"#)
                .expect("parses");
        assert_eq!(
            condition.operator,
            ConditionOperator::Other("SOUNDS_LIKE".into())
        );
        let json = serde_json::to_value(&condition).expect("serialises");
        assert_eq!(json["operator"], "SOUNDS_LIKE");
    }
}

//! What each condition operator means, given the value read from the context.
//!
//! The rules are Flagsmith's, including its Python accidents, because a segment must hold for the
//! same identities here as in an SDK evaluating locally: the condition's string is cast to the
//! type of the context value (so `"1"` equals the integer trait 1 and `"true"` the boolean
//! trait), a failed cast makes the condition false rather than an error, and `:semver` values
//! compare as semantic versions. Nothing here can fail: every malformed input is "no match".

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::Value;

use super::context::ConditionOperator;
use super::pyregex::translate;
use super::python::{ContextValue, float_mod, parse_float, parse_int, py_str};
use super::semver::Version;

const SEMVER_SUFFIX: &str = ":semver";

/// A condition's value made ready for its operator once, when a context is prepared, rather
/// than on every evaluation: cast to each type a context value can have, its IN list split, its
/// pattern compiled. [`holds`] then does with it exactly what the operator does with the raw
/// value.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    /// EQUAL, NOT_EQUAL, the ordering operators and CONTAINS: the value as each type of context
    /// value reads it.
    Typed(Box<Typed>),
    /// NOT_CONTAINS: Python's `str` of the value.
    Text(Box<str>),
    /// REGEX: the compiled pattern; `None` if it does not compile (it never matches).
    Regex(Option<Arc<fancy_regex::Regex>>),
    /// MODULO: the divisor and the remainder; `None` if the spec is malformed.
    Modulo(Option<(f64, f64)>),
    /// IN: the members as strings; `None` for a value that is no list (it never matches).
    In(Option<Box<[Box<str>]>>),
    /// PERCENTAGE_SPLIT: the threshold; `None` if it is not a number.
    Threshold(Option<f64>),
    /// IS_SET, IS_NOT_SET and unknown operators read no value.
    Nothing,
}

/// A typed comparison's value, cast for each type of context value.
#[derive(Debug, Clone)]
pub(crate) struct Typed {
    /// Against a string.
    text: TextOperand,
    /// Against a boolean: the value is `True` unless it is the string `False` or `false`.
    truthy: bool,
    /// Against an integer: Python's `int(value)`.
    int: Option<i128>,
    /// Against a float: Python's `float(value)`.
    float: Option<f64>,
}

#[derive(Debug, Clone)]
enum TextOperand {
    /// `"<version>:semver"`: the version, and whether it parses (one that does not matches no
    /// ordering, though CONTAINS still looks for it among the context version's parts).
    Semver { wanted: Box<str>, parses: bool },
    /// Numbers, booleans and objects: Python's suffix check raises, which is no match.
    Never,
    /// Anything else, as Python's `str`.
    Plain(Box<str>),
}

impl Operand {
    pub(crate) fn new(operator: &ConditionOperator, value: &Value) -> Operand {
        use ConditionOperator::*;
        match operator {
            NotContains => Operand::Text(py_str(value).into_boxed_str()),
            Regex => Operand::Regex(compiled_regex(&py_str(value))),
            Modulo => Operand::Modulo(modulo_spec(value)),
            Equal | NotEqual | GreaterThan | GreaterThanInclusive | LessThan
            | LessThanInclusive | Contains => Operand::Typed(Box::new(Typed::new(value))),
            In => Operand::In(members(value)),
            PercentageSplit => Operand::Threshold(cast_float(value)),
            IsSet | IsNotSet | Other(_) => Operand::Nothing,
        }
    }
}

impl Typed {
    fn new(value: &Value) -> Typed {
        let text = match value {
            Value::String(c) if c.ends_with(SEMVER_SUFFIX) => {
                let wanted = &c[..c.len() - SEMVER_SUFFIX.len()];
                TextOperand::Semver {
                    parses: Version::parse(wanted).is_some(),
                    wanted: wanted.into(),
                }
            }
            Value::Number(_) | Value::Bool(_) | Value::Object(_) => TextOperand::Never,
            _ => TextOperand::Plain(py_str(value).into_boxed_str()),
        };
        Typed {
            text,
            truthy: !matches!(value, Value::String(s) if s == "False" || s == "false"),
            int: cast_int(value),
            float: cast_float(value),
        }
    }
}

/// Does `operator operand` hold for the (present) context value? For every operator but
/// PERCENTAGE_SPLIT, IS_SET and IS_NOT_SET, which the evaluator handles itself.
pub(crate) fn holds(
    operator: &ConditionOperator,
    operand: &Operand,
    context: &ContextValue,
) -> bool {
    match operand {
        Operand::Typed(typed) => typed_comparison(operator, typed, context),
        Operand::Text(text) => match context {
            ContextValue::Str(s) => !s.contains(&**text),
            _ => false,
        },
        Operand::Regex(regex) => regex
            .as_ref()
            .is_some_and(|regex| regex.is_match(context.py_str().as_ref()).unwrap_or(false)),
        Operand::Modulo(spec) => spec.is_some_and(|spec| modulo(spec, context)),
        Operand::In(members) => members
            .as_ref()
            .is_some_and(|members| is_in(members, context)),
        Operand::Threshold(_) | Operand::Nothing => false,
    }
}

/// [`holds`] on a raw condition value (prepared on the spot).
#[cfg(test)]
fn matches(operator: &ConditionOperator, condition: &Value, context: &ContextValue) -> bool {
    holds(operator, &Operand::new(operator, condition), context)
}

/// The ordering operators and CONTAINS, with the condition value cast to the context value's
/// type. Failed casts and incomparable values are "no match".
fn typed_comparison(operator: &ConditionOperator, typed: &Typed, context: &ContextValue) -> bool {
    use ConditionOperator::*;
    use std::cmp::Ordering;

    let holds = |ordering: Option<Ordering>| -> bool {
        let Some(ordering) = ordering else {
            return false;
        };
        match operator {
            Equal => ordering == Ordering::Equal,
            NotEqual => ordering != Ordering::Equal,
            GreaterThan => ordering == Ordering::Greater,
            GreaterThanInclusive => ordering != Ordering::Less,
            LessThan => ordering == Ordering::Less,
            LessThanInclusive => ordering != Ordering::Greater,
            _ => false,
        }
    };

    match context {
        ContextValue::Str(text) => match &typed.text {
            TextOperand::Semver { wanted, parses } => {
                let Some(version) = Version::parse(text) else {
                    return false;
                };
                if *operator == Contains {
                    // Python's `in` iterates the version's parts.
                    return version.has_string_part(wanted);
                }
                if !parses {
                    return false;
                }
                let Some(wanted) = Version::parse(wanted) else {
                    return false;
                };
                holds(Some(version.precedence(&wanted)))
            }
            TextOperand::Never => false,
            TextOperand::Plain(wanted) => {
                if *operator == Contains {
                    return text.contains(&**wanted);
                }
                holds(Some(text.as_ref().cmp(&**wanted)))
            }
        },
        ContextValue::Bool(b) => {
            if *operator == Contains {
                return false;
            }
            holds(Some(b.cmp(&typed.truthy)))
        }
        ContextValue::Int(i) => {
            if *operator == Contains {
                return false;
            }
            holds(typed.int.map(|wanted| i.cmp(&wanted)))
        }
        ContextValue::Float(f) => {
            if *operator == Contains {
                return false;
            }
            // Compared with IEEE operators rather than an ordering, so that NaN is unequal to
            // everything (NOT_EQUAL holds), as in Python.
            let Some(wanted) = typed.float else {
                return false;
            };
            match operator {
                Equal => *f == wanted,
                NotEqual => *f != wanted,
                GreaterThan => *f > wanted,
                GreaterThanInclusive => *f >= wanted,
                LessThan => *f < wanted,
                LessThanInclusive => *f <= wanted,
                _ => false,
            }
        }
    }
}

/// Python's `int(value)` for a condition value.
fn cast_int(value: &Value) -> Option<i128> {
    match value {
        Value::String(s) => parse_int(s),
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Some(i128::from(u))
            } else {
                // int() truncates a float toward zero; infinities and NaN raise.
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.trunc() as i128)
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Python's `float(value)` for a condition value.
pub(crate) fn cast_float(value: &Value) -> Option<f64> {
    match value {
        Value::String(s) => parse_float(s),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// MODULO's spec: the condition value is `"divisor|remainder"`.
fn modulo_spec(condition: &Value) -> Option<(f64, f64)> {
    let Value::String(spec) = condition else {
        return None;
    };
    let mut parts = spec.split('|');
    let (Some(divisor), Some(remainder), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    Some((parse_float(divisor)?, parse_float(remainder)?))
}

/// MODULO: holds when the numeric context value modulo the divisor (with Python's sign rule)
/// equals the remainder.
fn modulo((divisor, remainder): (f64, f64), context: &ContextValue) -> bool {
    let x = match context {
        ContextValue::Int(i) => *i as f64,
        ContextValue::Float(f) => *f,
        // Python's bool is an int.
        ContextValue::Bool(b) => f64::from(u8::from(*b)),
        ContextValue::Str(_) => return false,
    };
    float_mod(x, divisor) == Some(remainder)
}

/// IN's members: the list is an array, a string holding a JSON array, or a comma-separated
/// string (also the fallback when a `[`-prefixed string is not valid JSON); members that are not
/// strings count as their Python `str`.
fn members(condition: &Value) -> Option<Box<[Box<str>]>> {
    let of_items = |items: &[Value]| {
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.as_str().into(),
                other => py_str(other).into_boxed_str(),
            })
            .collect()
    };
    match condition {
        Value::Array(items) => Some(of_items(items)),
        Value::String(list) => {
            if list.starts_with('[')
                && let Ok(items) = serde_json::from_str::<Vec<Value>>(list)
            {
                return Some(of_items(&items));
            }
            Some(list.split(',').map(Into::into).collect())
        }
        _ => None,
    }
}

/// IN: is the context value (a string, or an integer as its digits) one of the members?
fn is_in(members: &[Box<str>], context: &ContextValue) -> bool {
    let needle = match context {
        ContextValue::Str(s) => std::borrow::Cow::Borrowed(s.as_ref()),
        ContextValue::Int(i) => std::borrow::Cow::Owned(i.to_string()),
        // Booleans and floats are never members, as in Flagsmith.
        _ => return false,
    };
    members.iter().any(|member| **member == *needle)
}

/// Python's `re.match`: the pattern (Python syntax, see `pyregex`) must match at the start of the
/// value. A pattern that does not compile never matches.
#[cfg(test)]
fn regex_matches(pattern: &str, value: &str) -> bool {
    compiled_regex(pattern).is_some_and(|regex| regex.is_match(value).unwrap_or(false))
}

/// Whether a REGEX condition's pattern compiles the way evaluation compiles it; one that does
/// not would never match, so segment validation refuses it.
pub fn regex_compiles(pattern: &str) -> bool {
    compiled_regex(pattern).is_some()
}

/// Compiled patterns, shared by all evaluations: the same few patterns are evaluated on every
/// request, and compiling one costs far more than matching it. Bounded so that an adversarial
/// stream of patterns cannot grow it without limit.
fn compiled_regex(pattern: &str) -> Option<Arc<fancy_regex::Regex>> {
    const CAPACITY: usize = 1024;
    type Cache = RwLock<HashMap<String, Option<Arc<fancy_regex::Regex>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);

    if let Ok(map) = cache.read()
        && let Some(entry) = map.get(pattern)
    {
        return entry.clone();
    }
    // Compile the pattern alone first, so that wrapping it cannot make a broken pattern (say
    // `a)|(b`) valid; then anchor it at the start, as `re.match` is.
    let compiled = translate(pattern)
        .filter(|translated| fancy_regex::Regex::new(translated).is_ok())
        .and_then(|translated| fancy_regex::Regex::new(&format!(r"\A(?:{translated})")).ok())
        .map(Arc::new);
    if let Ok(mut map) = cache.write() {
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(pattern.to_owned(), compiled.clone());
    }
    compiled
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::borrow::Cow;

    fn s(text: &str) -> ContextValue<'_> {
        ContextValue::Str(Cow::Borrowed(text))
    }

    #[test]
    fn string_conditions_cast_to_the_context_type() {
        use ConditionOperator::*;
        assert!(matches(&Equal, &json!("1"), &ContextValue::Int(1)));
        assert!(!matches(
            &Equal,
            &json!("not_an_int"),
            &ContextValue::Int(1)
        ));
        assert!(!matches(
            &NotEqual,
            &json!("not_an_int"),
            &ContextValue::Int(1)
        ));
        assert!(matches(&Equal, &json!("false"), &ContextValue::Bool(false)));
        assert!(matches(
            &Equal,
            &json!("anything"),
            &ContextValue::Bool(true)
        ));
        assert!(matches(&LessThan, &json!("2.1"), &ContextValue::Float(2.0)));
        assert!(matches(&GreaterThan, &json!("abc"), &s("abd")));
        assert!(matches(&Contains, &json!("oo"), &s("foo")));
        assert!(!matches(&Contains, &json!("1"), &ContextValue::Int(1)));
    }

    #[test]
    fn semver_conditions() {
        use ConditionOperator::*;
        assert!(matches(&GreaterThan, &json!("1.0.0:semver"), &s("1.0.1")));
        assert!(matches(&LessThan, &json!("1.0.0:semver"), &s("1.0.0-beta")));
        assert!(!matches(
            &NotEqual,
            &json!("1.0.0:semver"),
            &s("not.a.version")
        ));
        assert!(matches(&Contains, &json!("beta:semver"), &s("1.0.0-beta")));
        assert!(!matches(
            &Equal,
            &json!("1.0.0:semver"),
            &ContextValue::Int(1)
        ));
    }

    #[test]
    fn modulo_needs_a_number_and_a_well_formed_spec() {
        use ConditionOperator::Modulo;
        assert!(matches(&Modulo, &json!("2|0"), &ContextValue::Int(4)));
        assert!(matches(&Modulo, &json!("2|1"), &ContextValue::Bool(true)));
        assert!(matches(
            &Modulo,
            &json!("1.5|0.5"),
            &ContextValue::Float(2.0)
        ));
        assert!(!matches(
            &Modulo,
            &json!("invalid|value"),
            &ContextValue::Int(1)
        ));
        assert!(!matches(&Modulo, &json!(""), &ContextValue::Int(1)));
        assert!(!matches(&Modulo, &json!("0|0"), &ContextValue::Int(1)));
        assert!(!matches(&Modulo, &json!("2|0"), &s("4")));
    }

    #[test]
    fn in_accepts_arrays_json_strings_and_comma_lists() {
        assert!(matches(&ConditionOperator::In, &json!(["a", "b"]), &s("b")));
        assert!(matches(
            &ConditionOperator::In,
            &json!("[\"a\", 1]"),
            &ContextValue::Int(1)
        ));
        assert!(matches(
            &ConditionOperator::In,
            &json!("[foo,bar"),
            &s("[foo")
        ));
        assert!(!matches(&ConditionOperator::In, &json!("a, b"), &s("b")));
        assert!(!matches(
            &ConditionOperator::In,
            &json!("1,2"),
            &ContextValue::Float(1.0)
        ));
        assert!(!matches(
            &ConditionOperator::In,
            &json!("True"),
            &ContextValue::Bool(true)
        ));
        assert!(!matches(&ConditionOperator::In, &json!(null), &s("x")));
    }

    #[test]
    fn regex_is_anchored_at_the_start_only() {
        assert!(regex_matches("[a-z]+", "abc123"));
        assert!(!regex_matches("[0-9]+", "abc123"));
        assert!(regex_matches(r"\d*[13579]$", "123"));
        assert!(regex_matches(r"^(?!test).*", "prod"));
        assert!(!regex_matches("a)|(b", "b"));
        assert!(!regex_matches("(", "("));
    }
}

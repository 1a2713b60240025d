//! The slice of Python's value semantics that Flagsmith's engine leans on.
//!
//! Flagsmith's reference engine is Python, and its results show Python through: a trait value
//! `"12"` is the integer 12, a condition value is cast with `int()`/`float()`, ids are hashed as
//! `str(id)`, and a `SPLIT; weight=86.0` reason is a Python float repr. Reproducing those rules
//! here, in one place, keeps the evaluator itself readable and the conversions testable.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

/// A value a segment condition compares against: what Python's engine calls a `ContextValue`
/// (`None | int | float | bool | str`), after numeric-looking strings became numbers.
///
/// Integers are `i128`: Python's are unbounded, and `i128` covers every integer that a JSON
/// number or a realistic numeric trait string can hold.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ContextValue<'a> {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
}

impl ContextValue<'_> {
    /// Python's `str(value)`, used where the engine stringifies (hashing, REGEX, IN).
    pub(crate) fn py_str(&self) -> Cow<'_, str> {
        match self {
            ContextValue::Bool(true) => Cow::Borrowed("True"),
            ContextValue::Bool(false) => Cow::Borrowed("False"),
            ContextValue::Int(i) => Cow::Owned(i.to_string()),
            ContextValue::Float(f) => Cow::Owned(float_repr(*f)),
            ContextValue::Str(s) => Cow::Borrowed(s),
        }
    }
}

/// Python's `map_any_value_to_context_value`: JSON scalars become context values, strings that
/// look like integers (`-?[0-9]+`) or decimals (`-?[0-9]+\.[0-9]+`) become numbers, and anything
/// else (objects, arrays) becomes its Python `str()`.
pub(crate) fn to_context_value(value: &Value) -> Option<ContextValue<'_>> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(ContextValue::Bool(*b)),
        Value::Number(n) => Some(number_to_context_value(n)),
        Value::String(s) => Some(string_to_context_value(s)),
        Value::Array(_) | Value::Object(_) => Some(ContextValue::Str(Cow::Owned(py_str(value)))),
    }
}

/// Like [`to_context_value`] for a JSONPath result, where only scalars count: a path that leads
/// to an object or an array reads as "not set".
pub(crate) fn scalar_to_context_value(value: &Value) -> Option<ContextValue<'_>> {
    match value {
        Value::Array(_) | Value::Object(_) => None,
        _ => to_context_value(value),
    }
}

/// Same as [`scalar_to_context_value`] for an owned value (a JSONPath result that was computed
/// rather than borrowed from the context).
pub(crate) fn owned_scalar_to_context_value(value: Value) -> Option<ContextValue<'static>> {
    match value {
        Value::String(s) => Some(match string_to_context_value(&s) {
            ContextValue::Str(_) => ContextValue::Str(Cow::Owned(s)),
            ContextValue::Int(i) => ContextValue::Int(i),
            ContextValue::Float(f) => ContextValue::Float(f),
            ContextValue::Bool(b) => ContextValue::Bool(b),
        }),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
        Value::Bool(b) => Some(ContextValue::Bool(b)),
        Value::Number(n) => Some(number_to_context_value(&n)),
    }
}

fn number_to_context_value(n: &serde_json::Number) -> ContextValue<'static> {
    if let Some(i) = n.as_i64() {
        ContextValue::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        ContextValue::Int(i128::from(u))
    } else {
        ContextValue::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

pub(crate) fn string_to_context_value(s: &str) -> ContextValue<'_> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if all_digits(digits) {
        // An integer too large for i128 stays a string: no realistic trait gets there.
        if let Ok(i) = s.parse::<i128>() {
            return ContextValue::Int(i);
        }
    } else if let Some((whole, fraction)) = digits.split_once('.')
        && all_digits(whole)
        && all_digits(fraction)
        && let Ok(f) = s.parse::<f64>()
    {
        return ContextValue::Float(f);
    }
    ContextValue::Str(Cow::Borrowed(s))
}

/// Python's `repr(float)` (which is also its `str`): the shortest digits that round-trip, in
/// fixed notation between 1e-4 and 1e16 (with a trailing `.0` when integral), scientific with a
/// signed two-digit exponent outside it.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    // Rust's `{:e}` prints the same shortest round-trip digits, as `d.ddde±x`.
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        let zeros = "0".repeat(point.unsigned_abs() as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let point = point as usize;
        if digits.len() <= point {
            let zeros = "0".repeat(point - digits.len());
            format!("{sign}{digits}{zeros}.0")
        } else {
            let (whole, fraction) = digits.split_at(point);
            format!("{sign}{whole}.{fraction}")
        }
    }
}

/// Python's `str()` of a JSON value as `json.loads` would have produced it: strings as is,
/// `True`/`False`/`None`, numbers as Python prints them, containers as Python's repr.
pub(crate) fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        _ => py_repr(value),
    }
}

fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => number_str(n),
        Value::String(s) => str_repr(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", str_repr(k), py_repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// Python's `str()` of a JSON number: integers as digits, floats as [`float_repr`].
pub(crate) fn number_str(n: &serde_json::Number) -> String {
    if n.is_f64() {
        float_repr(n.as_f64().unwrap_or(f64::NAN))
    } else {
        n.to_string()
    }
}

/// Python's `repr(str)`: single quotes unless the text holds a single quote and no double one.
fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `int(text)`: surrounding whitespace, a sign, and single underscores between digits
/// are allowed. `None` where Python raises `ValueError` (or the result would not fit an `i128`).
pub(crate) fn parse_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let cleaned = strip_digit_underscores(digits)?;
    if cleaned.is_empty() || !cleaned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let magnitude: i128 = cleaned.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Python's `float(text)`: like Rust's parser, plus surrounding whitespace and underscores
/// between digits; `inf`, `infinity` and `nan` in any case, with an optional sign.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let cleaned = strip_digit_underscores(t)?;
    let unsigned = cleaned.trim_start_matches(['+', '-']);
    let lower = unsigned.to_ascii_lowercase();
    let named = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    // Rust also accepts forms Python does not; keep to decimal digits, '.', exponent and sign.
    if !named
        && !unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    if cleaned.len() - unsigned.len() > 1 {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// Removes underscores that Python's numeric parsers accept (one, between two digits); `None`
/// when an underscore is anywhere else.
fn strip_digit_underscores(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('_') {
        return Some(Cow::Borrowed(text));
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + 1).copied();
            if !(before.is_some_and(|c| c.is_ascii_digit())
                && after.is_some_and(|c| c.is_ascii_digit()))
            {
                return None;
            }
        } else {
            out.push(b as char);
        }
    }
    Some(Cow::Owned(out))
}

/// Python's float `%`: the result takes the divisor's sign. `None` for a zero divisor, where
/// Python raises `ZeroDivisionError`.
pub(crate) fn float_mod(x: f64, y: f64) -> Option<f64> {
    if y == 0.0 {
        return None;
    }
    let mut m = x % y;
    if m != 0.0 {
        if (y < 0.0) != (m < 0.0) {
            m += y;
        }
    } else {
        m = 0.0_f64.copysign(y);
    }
    Some(m)
}

/// Python's `==` between two JSON values: numbers and booleans compare by numeric value
/// (`1 == 1.0 == True`), containers element-wise.
pub(crate) fn py_eq(a: &Value, b: &Value) -> bool {
    fn numeric(v: &Value) -> Option<f64> {
        match v {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(p), Some(q)) => p == q,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(p), Some(q)) => p == q,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        _ => match (numeric(a), numeric(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Exact ordering of an integer against a float, as Python compares `int` with `float`.
pub(crate) fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    let approx = i as f64;
    match approx.partial_cmp(&f)? {
        Ordering::Equal => {
            // Both are the same integral float; compare exactly where i128 can hold it.
            if f >= i128::MAX as f64 {
                Some(Ordering::Less)
            } else if f < i128::MIN as f64 {
                Some(Ordering::Greater)
            } else {
                Some(i.cmp(&(f as i128)))
            }
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_as_python_prints_them() {
        for (f, s) in [
            (86.0, "86.0"),
            (12.34, "12.34"),
            (0.5, "0.5"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (-2.5e-7, "-2.5e-07"),
            (123456789.125, "123456789.125"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float_repr(f), s, "{f}");
        }
    }

    #[test]
    fn numeric_strings_become_numbers() {
        assert_eq!(to_context_value(&json!("12")), Some(ContextValue::Int(12)));
        assert_eq!(
            to_context_value(&json!("-012")),
            Some(ContextValue::Int(-12))
        );
        assert_eq!(
            to_context_value(&json!("1.50")),
            Some(ContextValue::Float(1.5))
        );
        assert_eq!(
            to_context_value(&json!("1.")),
            Some(ContextValue::Str(Cow::Borrowed("1.")))
        );
        assert_eq!(
            to_context_value(&json!("1e5")),
            Some(ContextValue::Str(Cow::Borrowed("1e5")))
        );
        assert_eq!(
            to_context_value(&json!(1.0)),
            Some(ContextValue::Float(1.0))
        );
        assert_eq!(to_context_value(&json!(null)), None);
    }

    #[test]
    fn python_int_and_float_parsing() {
        assert_eq!(parse_int(" 12 "), Some(12));
        assert_eq!(parse_int("+1_000"), Some(1000));
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("1.0"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_float("2.1"), Some(2.1));
        assert_eq!(parse_float(" -1e3 "), Some(-1000.0));
        assert_eq!(parse_float("Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_float("1_0.5"), Some(10.5));
        assert_eq!(parse_float("abc"), None);
        assert_eq!(parse_float("--1"), None);
        assert_eq!(parse_float("0x10"), None);
    }

    #[test]
    fn modulo_follows_the_divisor_sign() {
        assert_eq!(float_mod(7.0, 3.0), Some(1.0));
        assert_eq!(float_mod(-7.0, 3.0), Some(2.0));
        assert_eq!(float_mod(7.0, -3.0), Some(-2.0));
        assert_eq!(float_mod(1.0, 0.0), None);
    }

    #[test]
    fn python_equality_between_json_values() {
        assert!(py_eq(&json!(1), &json!(true)));
        assert!(py_eq(&json!(1), &json!(1.0)));
        assert!(!py_eq(&json!("1"), &json!(1)));
        assert!(py_eq(&json!(null), &json!(null)));
    }

    #[test]
    fn python_str_of_containers() {
        assert_eq!(
            py_str(&json!([1, "a", null, true, 1.5])),
            "[1, 'a', None, True, 1.5]"
        );
        assert_eq!(py_str(&json!({"k": "it's"})), "{'k': \"it's\"}");
    }
}

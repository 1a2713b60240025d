//! Reading the dashboard's richer forms: fields that repeat (a rule builder's conditions, a
//! feature's multivariate options), and flag values typed by a select beside their text box.
//! Every failure is a 400 page naming the field.

use maud::{Markup, html};
use serde_json::Value;

use super::PageError;
use crate::http::error::Error;

/// A form's fields in the order sent, repeats kept.
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or "".
    pub fn one(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether a checkbox named `name` was ticked.
    pub fn ticked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// `name` as a number, `None` when empty.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, PageError> {
        number(name, self.one(name))
    }
}

/// `text` as a number, `None` when empty; a 400 naming `field` when it is not one.
pub fn number<T: std::str::FromStr>(field: &str, text: &str) -> Result<Option<T>, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| invalid(field, format!("{text:?} is not a number")))
}

pub fn invalid(field: &str, message: impl Into<String>) -> PageError {
    PageError::from(Error::bad_request(field, message))
}

/// The kinds of value a flag may have, as the value forms offer them.
pub const VALUE_KINDS: [(&str, &str); 5] = [
    ("none", "No value"),
    ("string", "Text"),
    ("integer", "Integer"),
    ("float", "Decimal"),
    ("boolean", "Boolean"),
];

/// The kind a value form shows `value` as.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "none",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        _ => "string",
    }
}

/// The text a value form shows `value` as.
pub fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value `text` stands for as a `kind` (from [`VALUE_KINDS`]); 400 naming `field` if it
/// is not one.
pub fn value_of(field: &str, kind: &str, text: &str) -> Result<Value, PageError> {
    let trimmed = text.trim();
    match kind {
        "none" | "" => Ok(Value::Null),
        "string" => Ok(Value::String(text.to_string())),
        "integer" => trimmed
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| invalid(field, format!("{trimmed:?} is not an integer"))),
        "float" => trimmed
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| invalid(field, format!("{trimmed:?} is not a decimal number"))),
        "boolean" => match trimmed {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(invalid(field, format!("{trimmed:?} is not true or false"))),
        },
        other => Err(invalid(field, format!("unknown kind of value {other:?}"))),
    }
}

/// The value of the fields `{prefix}kind` and `{prefix}value`.
pub fn value_field(fields: &Fields, prefix: &str) -> Result<Value, PageError> {
    let kind = fields.one(&format!("{prefix}kind"));
    let text = fields.one(&format!("{prefix}value"));
    value_of(&format!("{prefix}value"), kind, text)
}

/// A value's inputs: a select of its kind and a text box, named `{prefix}kind` and
/// `{prefix}value`, labelled for `id`.
pub fn value_inputs(prefix: &str, id: &str, value: &Value) -> Markup {
    let kind = kind_of(value);
    html! {
        label for={ (id) "-kind" } { "Value type" }
        select id={ (id) "-kind" } name={ (prefix) "kind" } {
            @for (name, label) in VALUE_KINDS {
                option value=(name) selected[name == kind] { (label) }
            }
        }
        label for={ (id) "-value" } { "Value" }
        input id={ (id) "-value" } name={ (prefix) "value" } value=(text_of(value)) maxlength="20000";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_read_as_their_kind_and_show_as_they_were_written() {
        for value in [
            json!(null),
            json!("a b"),
            json!(42),
            json!(1.5),
            json!(true),
        ] {
            let back = value_of("v", kind_of(&value), &text_of(&value)).ok();
            assert_eq!(back, Some(value));
        }
        assert!(value_of("v", "integer", "4.5").is_err());
        assert!(value_of("v", "boolean", "yes").is_err());
        assert!(value_of("v", "float", "NaN").is_err());
        assert!(value_of("v", "object", "{}").is_err());
    }

    #[test]
    fn fields_are_read_by_name() {
        let fields = Fields(vec![
            ("a".into(), "1".into()),
            ("b".into(), "x".into()),
            ("a".into(), "2".into()),
        ]);
        assert_eq!(fields.one("b"), "x");
        assert_eq!(fields.one("c"), "");
        assert!(fields.ticked("b") && !fields.ticked("c"));
        assert_eq!(fields.number::<u32>("a").ok(), Some(Some(1)));
        assert!(fields.number::<u32>("b").is_err());
    }
}

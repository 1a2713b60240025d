//! Flagsmith's result for one flag as OFREP answers it: the value, reason and variant rules of
//! the module documentation of [`super`].

use domain::evaluation::FlagResult;
use serde::Serialize;
use serde_json::{Map, Value};

use super::failure::ErrorCode;

/// One flag's answer: a success, or a failure to evaluate it (an item of the bulk list).
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub(super) enum Evaluation {
    Success {
        key: String,
        /// Absent: the caller's code default applies.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
        reason: &'static str,
        variant: String,
        metadata: Map<String, Value>,
    },
    Failure {
        key: String,
        #[serde(rename = "errorCode")]
        error_code: &'static str,
        #[serde(rename = "errorDetails")]
        error_details: String,
    },
}

/// Translates Flagsmith's result for one flag (see the module's documentation).
pub(super) fn translate(flag: &FlagResult) -> Evaluation {
    if flag.reason.starts_with("ERROR") {
        return Evaluation::Failure {
            key: flag.name.clone(),
            error_code: ErrorCode::General.as_str(),
            error_details: format!("the flag cannot be evaluated ({})", flag.reason),
        };
    }
    let reason = if flag.enabled {
        match flag.reason.split(';').next().unwrap_or_default() {
            "STATIC" => "STATIC",
            "DEFAULT" => "DEFAULT",
            "TARGETING_MATCH" => "TARGETING_MATCH",
            "SPLIT" => "SPLIT",
            _ => "UNKNOWN",
        }
    } else {
        "DISABLED"
    };
    let value = match (&flag.value, flag.enabled) {
        (Value::Null, enabled) => Some(Value::Bool(enabled)),
        (_, false) => None,
        (Value::String(text), true) => {
            Some(json_object(text).unwrap_or_else(|| Value::String(text.clone())))
        }
        (value, true) => Some(value.clone()),
    };
    let variant = match &flag.variant {
        _ if !flag.enabled => "disabled".to_string(),
        Some(variant) => variant.clone(),
        None if reason == "SPLIT" => match &flag.value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        },
        None => "enabled".to_string(),
    };
    let mut metadata = Map::new();
    metadata.insert("enabled".into(), Value::Bool(flag.enabled));
    if let Some(id) = flag
        .metadata
        .as_ref()
        .and_then(|m| m.get("id"))
        .filter(|id| id.is_number())
    {
        metadata.insert("featureId".into(), id.clone());
    }
    Evaluation::Success {
        key: flag.name.clone(),
        value,
        reason,
        variant,
        metadata,
    }
}

/// The object a string value holds, if it holds a JSON object.
fn json_object(text: &str) -> Option<Value> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn flag(enabled: bool, value: Value, reason: &str, variant: Option<&str>) -> FlagResult {
        FlagResult {
            name: "f".into(),
            enabled,
            value,
            reason: reason.into(),
            variant: variant.map(str::to_string),
            metadata: Some(json!({"id": 7})),
        }
    }

    fn success(evaluation: Evaluation) -> (Option<Value>, &'static str, String) {
        match evaluation {
            Evaluation::Success {
                value,
                reason,
                variant,
                ..
            } => (value, reason, variant),
            Evaluation::Failure { .. } => panic!("expected a success: {evaluation:?}"),
        }
    }

    #[test]
    fn a_toggle_resolves_to_its_state() {
        let on = success(translate(&flag(true, Value::Null, "STATIC", None)));
        assert_eq!(on, (Some(json!(true)), "STATIC", "enabled".into()));
        let off = success(translate(&flag(false, Value::Null, "STATIC", None)));
        assert_eq!(off, (Some(json!(false)), "DISABLED", "disabled".into()));
    }

    #[test]
    fn a_disabled_value_defers_to_the_code_default() {
        let off = success(translate(&flag(false, json!("blue"), "DEFAULT", None)));
        assert_eq!(off, (None, "DISABLED", "disabled".into()));
        let json = serde_json::to_value(translate(&flag(false, json!(3), "STATIC", None)))
            .unwrap_or_default();
        assert!(json.get("value").is_none(), "{json}");
        assert_eq!(json["metadata"], json!({"enabled": false, "featureId": 7}));
    }

    #[test]
    fn values_keep_their_type_and_json_objects_become_objects() {
        let cases = [
            (json!("blue"), json!("blue")),
            (json!(""), json!("")),
            (json!("true"), json!("true")),
            (json!("[1, 2]"), json!("[1, 2]")),
            (json!("{not json"), json!("{not json")),
            (json!(" {\"a\": [1]}"), json!({"a": [1]})),
            (json!(42), json!(42)),
            (json!(0.5), json!(0.5)),
            (json!(false), json!(false)),
        ];
        for (stored, served) in cases {
            let (value, _, _) = success(translate(&flag(true, stored.clone(), "STATIC", None)));
            assert_eq!(value, Some(served), "{stored}");
        }
    }

    #[test]
    fn flagsmith_reasons_map_to_openfeature_reasons() {
        let cases = [
            ("STATIC", "STATIC"),
            ("DEFAULT", "DEFAULT"),
            ("TARGETING_MATCH; segment=pro users", "TARGETING_MATCH"),
            ("SPLIT; weight=30", "SPLIT"),
            ("SOMETHING_NEW", "UNKNOWN"),
        ];
        for (flagsmith, openfeature) in cases {
            let (_, reason, _) = success(translate(&flag(true, json!("x"), flagsmith, None)));
            assert_eq!(reason, openfeature, "{flagsmith}");
        }
        let failed = translate(&flag(
            true,
            json!("x"),
            "ERROR; code=CIRCULAR_DEPENDENCY",
            None,
        ));
        assert!(
            matches!(
                failed,
                Evaluation::Failure {
                    error_code: "GENERAL",
                    ..
                }
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn variants_name_the_chosen_value() {
        let keyed = success(translate(&flag(
            true,
            json!("red"),
            "SPLIT; weight=50",
            Some("a"),
        )));
        assert_eq!(keyed.2, "a");
        let unkeyed = success(translate(&flag(
            true,
            json!("red"),
            "SPLIT; weight=50",
            None,
        )));
        assert_eq!(unkeyed.2, "red");
        let number = success(translate(&flag(true, json!(7), "SPLIT; weight=50", None)));
        assert_eq!(number.2, "7");
        let control = success(translate(&flag(
            true,
            json!("grey"),
            "STATIC",
            Some("control"),
        )));
        assert_eq!(control.2, "control");
    }
}

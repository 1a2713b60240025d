//! Who an OFREP request's flags are for, read from its body (`{"context": {"targetingKey",
//! ...attributes}}`): an identifier and traits, or nobody (see the module documentation of
//! [`super`] for what is accepted and why), and the bulk answer's ETag, which hashes it.

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode};
use domain::evaluation::IdentityContext;
use domain::flagsmith::identity_context;
use domain::identity::MAX_IDENTIFIER_LEN;
use serde_json::{Map, Value, json};

use super::failure::{ErrorCode, Failure, Result, invalid_context};
use crate::http::sdk_common;
use crate::sdk_cache::CachedEnvironment;

/// Who the flags are for, from an OFREP context: what evaluation reads, nothing else.
///
/// Traits belong to an identity: a context without `targetingKey` is anonymous, and its other
/// attributes are dropped (an anonymous caller is served the environment's flags, which no
/// trait changes).
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Subject {
    pub(super) identifier: Option<String>,
    /// Sorted, so equal contexts have one canonical form (the ETag hashes it).
    pub(super) traits: BTreeMap<String, Value>,
}

impl Subject {
    /// Reads a request body: `{"context": {"targetingKey": ..., ...attributes}}`.
    pub(super) fn from_body(body: &[u8], content_type: Option<&HeaderValue>) -> Result<Subject> {
        if !sdk_common::is_json(content_type) {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ParseError,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let parsed: Value = serde_json::from_slice(body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ParseError,
                format!("the body is not JSON: {e}"),
            )
        })?;
        let Value::Object(mut request) = parsed else {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ParseError,
                "the body must be a JSON object: {\"context\": {...}}",
            ));
        };
        match request.remove("context") {
            None | Some(Value::Null) => Ok(Subject::default()),
            Some(Value::Object(context)) => Subject::from_context(context),
            Some(_) => Err(invalid_context("context must be an object")),
        }
    }

    fn from_context(context: Map<String, Value>) -> Result<Subject> {
        let mut subject = Subject::default();
        for (name, value) in context {
            if name == "targetingKey" {
                subject.identifier = match value {
                    Value::Null => None,
                    Value::String(key) if key.is_empty() => None,
                    Value::String(key) if key.chars().count() > MAX_IDENTIFIER_LEN => {
                        return Err(invalid_context(format!(
                            "targetingKey must be at most {MAX_IDENTIFIER_LEN} characters"
                        )));
                    }
                    Value::String(key) => Some(key),
                    _ => return Err(invalid_context("targetingKey must be a string")),
                };
            } else if !name.is_empty()
                && matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
            {
                subject.traits.insert(name, value);
            }
        }
        if subject.identifier.is_none() {
            subject.traits.clear();
        }
        Ok(subject)
    }

    /// The identity to evaluate for; `None` for an anonymous caller.
    pub(super) fn identity(&self) -> Option<IdentityContext> {
        let identifier = self.identifier.as_deref()?;
        Some(identity_context(identifier, self.traits.clone()))
    }

    /// The bulk answer's ETag: the environment's version, this context and the server version.
    pub(super) fn etag(&self, env: &CachedEnvironment) -> String {
        let canonical = json!({
            "server": env!("CARGO_PKG_VERSION"),
            "environment": env.etag,
            "targetingKey": self.identifier,
            "traits": self.traits,
        });
        let digest = commands::secrets::sha256_hex(&canonical.to_string());
        format!("\"{}\"", &digest[..32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_keep_scalar_attributes_as_traits() {
        let body = br#"{"context": {"targetingKey": "u1", "plan": "pro", "age": 30,
            "beta": true, "nested": {"a": 1}, "list": [1], "gone": null, "": "x"}}"#;
        let subject = Subject::from_body(body, None).unwrap_or_default();
        assert_eq!(subject.identifier.as_deref(), Some("u1"));
        let traits: Vec<&str> = subject.traits.keys().map(String::as_str).collect();
        assert_eq!(traits, ["age", "beta", "plan"]);
    }

    #[test]
    fn malformed_bodies_and_contexts_are_refused_with_their_codes() {
        let code = |body: &[u8]| Subject::from_body(body, None).map_err(|f| (f.status, f.code));
        let parse = Err((StatusCode::BAD_REQUEST, ErrorCode::ParseError));
        let invalid = Err((StatusCode::BAD_REQUEST, ErrorCode::InvalidContext));
        assert_eq!(code(b""), parse);
        assert_eq!(code(b"{"), parse);
        assert_eq!(code(b"[]"), parse);
        assert_eq!(code(br#"{"context": 1}"#), invalid);
        assert_eq!(code(br#"{"context": {"targetingKey": 1}}"#), invalid);
        let long = format!(
            r#"{{"context": {{"targetingKey": "{}"}}}}"#,
            "x".repeat(2001)
        );
        assert_eq!(code(long.as_bytes()), invalid);
        assert_eq!(code(b"{}"), Ok(Subject::default()));
        assert_eq!(
            code(br#"{"context": {"targetingKey": ""}}"#),
            Ok(Subject::default())
        );
    }
}

//! OpenFeature's Remote Evaluation Protocol (OFREP 0.3.0): `POST /ofrep/v1/evaluate/flags/{key}`
//! evaluates one flag, `POST /ofrep/v1/evaluate/flags` every flag of the environment, so that the
//! generic OFREP providers of every OpenFeature SDK can read flaglog's flags.
//!
//! Both answer from the SDK read path ([`crate::sdk_cache`]) and the same engine as the Flagsmith
//! SDK endpoints ([`domain::evaluation::evaluate_for_identity`]); they only translate.
//!
//! # Requests
//!
//! - **Environment**: the client key or a server-side key (`ser.…`), as `X-Environment-Key` (as
//!   Flagsmith SDKs send it), `Authorization: Bearer <key>` (the spec's bearer scheme; OFREP
//!   providers send whatever headers they are configured with, usually this) or `X-API-Key` (the
//!   spec's API-key scheme). Missing or unknown: 401 (`GENERAL`).
//! - **Context**: `targetingKey` is the identity's identifier; every other attribute whose value is
//!   a string, number or boolean is a trait. The spec lets attributes be anything, so nested
//!   objects, arrays and nulls are not refused: they cannot be Flagsmith traits and are ignored.
//!   A `targetingKey` that is not a string, or longer than an identifier may be, is
//!   `INVALID_CONTEXT`.
//! - **No `targetingKey`** (or an empty one, which the Python provider does not even send):
//!   the environment's flags, without identity, as Flagsmith's SDKs and OpenFeature providers
//!   answer an anonymous caller. The schema marks `targetingKey` required since a docs-only
//!   revision of the spec, but it is optional in OpenFeature, the error codes leave requiring it
//!   to the flag system (`TARGETING_KEY_MISSING`), and anonymous web clients have none; a body
//!   without `context` at all (what the Python provider sends when given no context) is the same.
//! - The context is the whole truth: identity traits stored through `/api/v1/identities/` are
//!   neither read nor written. Evaluation stays read-only and deterministic, which is what lets
//!   the bulk ETag be a function of the environment's version and the request alone.
//! - A body that is not a JSON object is `PARSE_ERROR`; a `context` that is not an object is
//!   `INVALID_CONTEXT`. Errors answer in the spec's shape (`{"key", "errorCode", "errorDetails"}`),
//!   not flaglog's admin `{"error", "message"}`: OFREP clients read these fields.
//!
//! # Values and reasons
//!
//! A Flagsmith flag is a pair (enabled, value), while an OpenFeature flag is one typed value, and
//! OFREP requests carry no type (its ADR 0003): the answer must suit whichever type the client
//! asks for. Flagsmith's own OpenFeature providers (Python, JavaScript) resolve a boolean request
//! to `enabled`, refuse a disabled flag's value to other types (the caller gets its default),
//! and parse a string value as JSON for an object request. Their OFREP counterpart follows them:
//!
//! - an enabled flag with a value answers that value; a string holding a JSON *object* answers
//!   the object (Flagsmith can only store JSON as text, and OFREP's object type is an object; a
//!   client that wants the text of such a value is rarer than one that wants the structure);
//!   a string holding anything else stays a string (`"true"` and `"42"` are strings);
//! - a flag without a value (null) is a plain toggle: its value is `enabled`, a boolean;
//! - a disabled flag answers reason `DISABLED`: a toggle with value `false`, a flag with a value
//!   without `value` (the spec's code-default answer, ADR 0006), so that the caller gets the
//!   default written in its code, as with Flagsmith's providers, and never a value that was
//!   switched off.
//!
//! `metadata` carries `enabled`, the flag's state (for callers of a value flag that need it),
//! and `featureId`.
//!
//! Reasons: Flagsmith's `STATIC`, `TARGETING_MATCH; segment=…` (segment and identity overrides)
//! and `SPLIT; weight=…` become `STATIC`, `TARGETING_MATCH` and `SPLIT` (segment names are not
//! repeated: client keys are public, segment names need not be). Flagsmith's `DEFAULT` (segments
//! override the flag, none matched) stays `DEFAULT`: it is OpenFeature's standard reason for
//! exactly that, every OpenFeature SDK knows it (the Python provider maps the text onto its
//! `Reason` enum by name), though the schema's example list omits it. A disabled flag is
//! `DISABLED` whatever the targeting; an unknown reason `UNKNOWN`; a flag Flagsmith cannot
//! evaluate (`ERROR; code=CIRCULAR_DEPENDENCY`) an evaluation failure with `GENERAL` (400 for one
//! flag, an error item in the bulk list).
//!
//! `variant` is always a string (the Python provider reads it unconditionally): the chosen
//! multivariate option's key, `control` when an identity fell in no option's bucket, the chosen
//! value's text when its option has no key (options made through the admin API have none), and
//! otherwise `enabled` or `disabled`.
//!
//! # Bulk and caching
//!
//! The bulk answer lists every flag in the environment's order, leaving out disabled flags when
//! the project hides them (as `GET /api/v1/flags/` does; one such flag alone is then
//! `FLAG_NOT_FOUND`). Its ETag is a hash of the environment's version (the cache entry's `etag`,
//! which moves with every change of its document), the normalised context and this server's
//! version (so an upgrade that changes the translation invalidates clients' copies). The context
//! is part of it because an answer depends on it and OpenFeature's web provider keeps its ETag
//! across attribute changes. `If-None-Match` with that ETag answers 304 without evaluating.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use domain::environment::SERVER_SIDE_KEY_PREFIX;
use domain::evaluation::{EvaluationResult, FlagResult, evaluate_for_identity};
use domain::flagsmith::identity_context;
use domain::identity::MAX_IDENTIFIER_LEN;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::http::AppState;
use crate::sdk_cache::{CachedEnvironment, Evaluable};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags", post(evaluate_flags))
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_flag))
}

/// OpenFeature's error codes, as OFREP answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorCode {
    ParseError,
    InvalidContext,
    FlagNotFound,
    General,
}

impl ErrorCode {
    fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// A request OFREP answers with an error, in the spec's shape: `{"key"?, "errorCode",
/// "errorDetails"}` (`{"errorDetails"}` alone for a 500, whose detail is only logged).
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    /// The flag, on the single-flag endpoint.
    key: Option<String>,
    code: ErrorCode,
    details: String,
}

impl Failure {
    fn new(status: StatusCode, code: ErrorCode, details: impl Into<String>) -> Self {
        Failure {
            status,
            key: None,
            code,
            details: details.into(),
        }
    }

    fn unauthorized(details: &str) -> Self {
        Failure::new(StatusCode::UNAUTHORIZED, ErrorCode::General, details)
    }

    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::General,
            "internal error; see the server's log",
        )
    }

    fn for_key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = if self.status.is_server_error() {
            json!({"errorDetails": self.details})
        } else {
            let mut body = Map::new();
            if let Some(key) = self.key {
                body.insert("key".into(), Value::String(key));
            }
            body.insert("errorCode".into(), self.code.as_str().into());
            body.insert("errorDetails".into(), Value::String(self.details));
            Value::Object(body)
        };
        (self.status, axum::Json(body)).into_response()
    }
}

type Result<T> = std::result::Result<T, Failure>;

/// The environment key from `X-Environment-Key`, `Authorization: Bearer` or `X-API-Key`.
fn environment_key(headers: &HeaderMap) -> Option<&str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
    };
    let bearer = header(header::AUTHORIZATION.as_str()).and_then(|v| {
        let (scheme, key) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim())
            .filter(|k| !k.is_empty())
    });
    header("x-environment-key")
        .or(bearer)
        .or_else(|| header("x-api-key"))
}

/// The environment the request's key names: a client key or a server-side key.
/// What evaluating the environment needs, from the cache or rebuilt from its read model.
async fn evaluable(state: &AppState, env: &CachedEnvironment) -> Result<Arc<Evaluable>> {
    state
        .sdk
        .evaluable(env)
        .await
        .map_err(Failure::internal)?
        .ok_or_else(|| Failure::internal("the environment's document cannot be evaluated"))
}

async fn environment(state: &AppState, headers: &HeaderMap) -> Result<Arc<CachedEnvironment>> {
    let key = environment_key(headers).ok_or_else(|| {
        Failure::unauthorized(
            "send the environment key as 'Authorization: Bearer <key>', X-Environment-Key or \
             X-API-Key",
        )
    })?;
    let found = if key.starts_with(SERVER_SIDE_KEY_PREFIX) {
        state
            .sdk
            .by_server_key_hash(&commands::secrets::sha256_hex(key))
            .await
    } else {
        state.sdk.by_client_key(key).await
    };
    found
        .map_err(Failure::internal)?
        .ok_or_else(|| Failure::unauthorized("the environment key is not valid"))
}

/// Who the flags are for, from an OFREP context: what evaluation reads, nothing else.
#[derive(Debug, Clone, PartialEq, Default)]
struct Subject {
    identifier: Option<String>,
    /// Sorted, so equal contexts have one canonical form (the ETag hashes it).
    traits: BTreeMap<String, Value>,
}

impl Subject {
    /// Reads a request body: `{"context": {"targetingKey": ..., ...attributes}}`.
    fn from_body(body: &[u8], content_type: Option<&HeaderValue>) -> Result<Subject> {
        let json_type = content_type
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json") || v.contains("+json"));
        if !json_type {
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
        Ok(subject)
    }

    fn evaluate(&self, env: &Evaluable) -> EvaluationResult {
        let identity = self
            .identifier
            .as_deref()
            .map(|identifier| identity_context(identifier, self.traits.clone()));
        evaluate_for_identity(&env.context, identity.as_ref())
    }

    /// The bulk answer's ETag: the environment's version, this context and the server version.
    fn etag(&self, env: &CachedEnvironment) -> String {
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

fn invalid_context(details: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidContext, details)
}

/// One flag's answer: a success, or a failure to evaluate it (an item of the bulk list).
#[derive(Debug, Serialize, PartialEq)]
#[serde(untagged)]
enum Evaluation {
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
fn translate(flag: &FlagResult) -> Evaluation {
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

/// The flags a client may see: all, or only the enabled ones when the project hides the others.
fn visible<'a>(
    env: &Evaluable,
    result: &'a EvaluationResult,
) -> impl Iterator<Item = &'a FlagResult> {
    let hide_disabled = env.listing.hide_disabled;
    result
        .flags
        .values()
        .filter(move |flag| flag.enabled || !hide_disabled)
}

fn read_body(body: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    body.map_err(|e| Failure::new(e.status(), ErrorCode::ParseError, e.body_text()))
}

/// `POST /ofrep/v1/evaluate/flags/{key}`: one flag for the request's context.
async fn evaluate_flag(
    State(state): State<AppState>,
    key: std::result::Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let key = match key {
        Ok(Path(key)) => key,
        Err(e) => {
            return Failure::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ParseError,
                e.body_text(),
            )
            .into_response();
        }
    };
    match evaluate_one(&state, &key, &headers, body).await {
        Ok(evaluation) => axum::Json(evaluation).into_response(),
        Err(failure) => failure.for_key(&key).into_response(),
    }
}

async fn evaluate_one(
    state: &AppState,
    key: &str,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Evaluation> {
    let env = environment(state, headers).await?;
    let subject = Subject::from_body(&read_body(body)?, headers.get(header::CONTENT_TYPE))?;
    let evaluable = evaluable(state, &env).await?;
    let result = subject.evaluate(&evaluable);
    let flag = visible(&evaluable, &result)
        .find(|flag| flag.name == key)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                ErrorCode::FlagNotFound,
                format!("no flag named {key:?} in this environment"),
            )
        })?;
    match translate(flag) {
        Evaluation::Failure { error_details, .. } => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::General,
            error_details,
        )),
        success => Ok(success),
    }
}

/// `POST /ofrep/v1/evaluate/flags`: every flag for the request's context, with an ETag.
async fn evaluate_flags(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    evaluate_all(&state, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn evaluate_all(
    state: &AppState,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Response> {
    let env = environment(state, headers).await?;
    let subject = Subject::from_body(&read_body(body)?, headers.get(header::CONTENT_TYPE))?;
    let etag = subject.etag(&env);
    let etag_header = HeaderValue::from_str(&etag).map_err(Failure::internal)?;
    if not_modified(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response());
    }
    let evaluable = evaluable(state, &env).await?;
    let result = subject.evaluate(&evaluable);
    let flags: Vec<Evaluation> = visible(&evaluable, &result).map(translate).collect();
    let body = serde_json::to_vec(&json!({ "flags": flags })).map_err(Failure::internal)?;
    let mut response = Response::new(Body::from(body));
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response_headers.insert(header::ETAG, etag_header);
    Ok(response)
}

/// Whether `If-None-Match` names `etag` (weakly compared, as RFC 9110 has it) or is `*`.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| {
            let tag = tag.trim();
            tag.strip_prefix("W/").unwrap_or(tag)
        })
        .any(|tag| tag == etag || tag == "*")
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn keys_come_from_any_of_the_three_headers() {
        let with = |name: &str, value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
            environment_key(&headers).map(str::to_string)
        };
        assert_eq!(with("x-environment-key", "k1"), Some("k1".into()));
        assert_eq!(with("authorization", "Bearer k2"), Some("k2".into()));
        assert_eq!(with("authorization", "bearer  k2 "), Some("k2".into()));
        assert_eq!(with("authorization", "Token k2"), None);
        assert_eq!(with("authorization", "Bearer "), None);
        assert_eq!(with("x-api-key", "k3"), Some("k3".into()));
    }

    #[test]
    fn if_none_match_compares_weakly_and_in_lists() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
            not_modified(&headers, "\"abc\"")
        };
        assert!(with("\"abc\""));
        assert!(with("W/\"abc\""));
        assert!(with("\"x\", \"abc\""));
        assert!(with("*"));
        assert!(!with("\"abd\""));
        assert!(!not_modified(&HeaderMap::new(), "\"abc\""));
    }
}

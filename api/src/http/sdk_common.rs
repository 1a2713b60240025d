//! What the Flagsmith SDK endpoints ([`super::sdk`]) and OpenFeature's OFREP endpoints
//! ([`super::ofrep`]) share, so that the two answer the same caller the same way: the key that
//! names the environment, the environment and its evaluable context from the SDK cache, what an
//! anonymous caller is served, the JSON content-type check, and conditional requests (`ETag` /
//! `If-None-Match`).
//!
//! Each endpoint family answers errors in its own shape (flaglog's `{"error", "message"}`,
//! OFREP's `{"errorCode", "errorDetails"}`), so what is refused here is a [`Refusal`], which
//! each maps to its own error type.

use std::sync::Arc;

use axum::http::header::AsHeaderName;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use domain::environment::SERVER_SIDE_KEY_PREFIX;
use domain::evaluation::{Evaluation, environment_evaluation};

use crate::http::AppState;
use crate::sdk_cache::{CachedEnvironment, Evaluable};

/// `X-Environment-Key`: how Flagsmith's SDKs (and OFREP clients, here) name the environment.
/// A constant, so no request parses the name.
pub const ENVIRONMENT_KEY: HeaderName = HeaderName::from_static("x-environment-key");
/// `X-API-Key`: OFREP's header for the key.
pub const API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Which keys an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The client key or a server-side key (`ser.…`).
    ClientOrServer,
    /// Only a server-side key (the environment document, for local evaluation).
    ServerOnly,
}

/// Why a request names no environment it may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No key was sent.
    MissingKey,
    /// The key names no environment.
    UnknownKey,
    /// A client key, where only a server-side key will do.
    ServerKeyRequired,
    /// The read model could not be read (the detail is for the log, not the caller).
    Internal(String),
}

/// A header's value as a key: trimmed, and `None` when absent, empty or not text.
pub fn header_key(headers: &HeaderMap, name: impl AsHeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The key of `Authorization: Bearer <key>` (the scheme in any case).
pub fn bearer_key(headers: &HeaderMap) -> Option<&str> {
    let (scheme, key) = header_key(headers, header::AUTHORIZATION)?.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The environment `key` names: a client key, or a server-side key (looked up by its SHA-256,
/// the only form in which it is stored) when `keys` allows one.
pub async fn environment(
    state: &AppState,
    key: Option<&str>,
    keys: Keys,
) -> Result<Arc<CachedEnvironment>, Refusal> {
    let key = key.ok_or(Refusal::MissingKey)?;
    let found = if key.starts_with(SERVER_SIDE_KEY_PREFIX) {
        state
            .sdk
            .by_server_key_hash(&commands::secrets::sha256_hex(key))
            .await
    } else if keys == Keys::ServerOnly {
        return Err(Refusal::ServerKeyRequired);
    } else {
        state.sdk.by_client_key(key).await
    };
    let env = found
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .ok_or(Refusal::UnknownKey)?;
    // Every SDK endpoint finds its environment here once: one API call (flag analytics).
    state.api_calls.record(env.environment_id);
    Ok(env)
}

/// What evaluating `env` needs (its context and flag listing), from the cache or rebuilt from
/// the read model.
pub async fn evaluable(
    state: &AppState,
    env: &CachedEnvironment,
) -> Result<Arc<Evaluable>, Refusal> {
    state
        .sdk
        .evaluable(env)
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?
        .ok_or_else(|| Refusal::Internal("the environment's document cannot be evaluated".into()))
}

/// What a caller without identity is served, on every endpoint: the environment's flags, each
/// in its environment-wide state, segments not evaluated (as Flagsmith serves
/// `GET /api/v1/flags/`, whose pre-serialised body is this same evaluation).
pub fn anonymous(evaluable: &Evaluable) -> Evaluation<'_> {
    environment_evaluation(evaluable.context())
}

/// Whether a request body labelled `content_type` is JSON: no label, `application/json` or a
/// `+json` type, parameters (`; charset=utf-8`) aside, in any case.
pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let media_type = value.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("application/json")
        || media_type
            .get(media_type.len().saturating_sub(5)..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

/// Whether `If-None-Match` names `etag` or is `*`: weak comparison (`W/"x"` matches `"x"`), as
/// RFC 9110 has it for this header, over every value and every member of a list
/// (`"a", W/"b"`).
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
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

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn if_none_match_compares_weakly_in_lists_and_across_headers() {
        let matches = |value: &str| not_modified(&headers(&[("if-none-match", value)]), "\"abc\"");
        assert!(matches("\"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("\"x\",W/\"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abd\""));
        assert!(!matches("\"x\", \"y\""));
        assert!(!matches("abc"));
        assert!(!not_modified(&HeaderMap::new(), "\"abc\""));
        let two = headers(&[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")]);
        assert!(not_modified(&two, "\"abc\""));
        assert!(not_modified(
            &headers(&[("if-none-match", "\"abc\"")]),
            "W/\"abc\""
        ));
    }

    #[test]
    fn keys_are_trimmed_and_bearer_needs_its_scheme() {
        let h = headers(&[
            ("x-environment-key", " k1 "),
            ("authorization", "bearer  k2 "),
        ]);
        assert_eq!(header_key(&h, "x-environment-key"), Some("k1"));
        assert_eq!(bearer_key(&h), Some("k2"));
        assert_eq!(header_key(&h, "x-api-key"), None);
        assert_eq!(bearer_key(&headers(&[("authorization", "Token k")])), None);
        assert_eq!(bearer_key(&headers(&[("authorization", "Bearer ")])), None);
        assert_eq!(
            header_key(&headers(&[("x-api-key", "  ")]), "x-api-key"),
            None
        );
    }

    #[test]
    fn json_content_types() {
        let is = |value: &str| is_json(Some(&HeaderValue::from_str(value).unwrap()));
        assert!(is_json(None));
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/problem+json",
            "application/vnd.api+JSON ; x=y",
        ] {
            assert!(is(json), "{json}");
        }
        for other in [
            "text/plain",
            "application/jsonx",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!is(other), "{other}");
        }
    }
}

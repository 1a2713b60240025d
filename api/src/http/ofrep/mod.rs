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

mod failure;
mod subject;
mod translate;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use domain::evaluation::{Evaluation, Flag, IdentityContext};
use serde_json::json;

use self::failure::{ErrorCode, Failure, Result};
use self::subject::Subject;
use self::translate::{Evaluation as Answer, translate};
use crate::http::AppState;
use crate::http::sdk_common::{
    self, API_KEY, ENVIRONMENT_KEY, Keys, bearer_key, header_key, not_modified,
};
use crate::sdk_cache::{CachedEnvironment, Evaluable};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ofrep/v1/evaluate/flags", post(evaluate_flags))
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_flag))
}

/// The environment key from `X-Environment-Key`, `Authorization: Bearer` or `X-API-Key`.
fn environment_key(headers: &HeaderMap) -> Option<&str> {
    header_key(headers, ENVIRONMENT_KEY)
        .or_else(|| bearer_key(headers))
        .or_else(|| header_key(headers, API_KEY))
}

/// The environment the request's key names: a client key or a server-side key.
async fn environment(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<CachedEnvironment>> {
    Ok(sdk_common::environment(state, environment_key(headers), Keys::ClientOrServer).await?)
}

/// The request's evaluation: the identity's, or the anonymous one every SDK endpoint serves a
/// caller without identity ([`sdk_common::anonymous`]: environment flags, no segments).
fn evaluate<'a>(env: &'a Evaluable, identity: Option<&'a IdentityContext>) -> Evaluation<'a> {
    match identity {
        Some(identity) => env.prepared.evaluation(Some(identity)),
        None => sdk_common::anonymous(env),
    }
}

/// The flags a client may see: all, or only the enabled ones when the project hides the others.
fn visible<'e, 'a>(
    env: &Evaluable,
    evaluation: &'e Evaluation<'a>,
) -> impl Iterator<Item = &'e Flag<'a>> {
    let hide_disabled = env.listing.hide_disabled;
    evaluation
        .flags
        .iter()
        .filter(move |flag| flag.enabled() || !hide_disabled)
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
        Ok(answer) => axum::Json(answer).into_response(),
        Err(failure) => failure.for_key(&key).into_response(),
    }
}

async fn evaluate_one(
    state: &AppState,
    key: &str,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Answer> {
    let env = environment(state, headers).await?;
    let subject = Subject::from_body(&read_body(body)?, headers.get(header::CONTENT_TYPE))?;
    let evaluable = sdk_common::evaluable(state, &env).await?;
    let identity = subject.identity();
    let evaluation = evaluate(&evaluable, identity.as_ref());
    let flag = visible(&evaluable, &evaluation)
        .find(|flag| flag.name() == key)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                ErrorCode::FlagNotFound,
                format!("no flag named {key:?} in this environment"),
            )
        })?;
    match translate(&flag.to_result()) {
        Answer::Failure { error_details, .. } => Err(Failure::new(
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
    let evaluable = sdk_common::evaluable(state, &env).await?;
    let identity = subject.identity();
    let evaluation = evaluate(&evaluable, identity.as_ref());
    let flags: Vec<Answer> = visible(&evaluable, &evaluation)
        .map(|flag| translate(&flag.to_result()))
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! The Flagsmith-compatible SDK endpoints: flags, identities, the environment document for local
//! evaluation, analytics, and the realtime stream. Real Flagsmith SDKs work against these
//! unchanged.
//!
//! Everything is served from the projected read model through [`crate::sdk_cache`]: the flags
//! body is pre-serialised bytes; identities evaluate the environment's cached evaluation context.
//! SDKs name their environment with `X-Environment-Key`: the client key, or a server-side key
//! (`ser.…`), which alone may download the environment document.
//!
//! Asked about the past (`as_of` / `as_of_position`), the document and identities routes are
//! admin reads instead, answered by [`super::time_travel`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::document::ChangedFlags;
use domain::evaluation::{Evaluation, IdentityContext};
use domain::flagsmith::identity_context;
use domain::identity::MAX_IDENTIFIER_LEN;
use futures_util::Stream;
use projections::integrations::analytics::{ServedContext, ServedIdentity};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::http::AppState;
use crate::http::error::{Error, Result};
use crate::http::extract::{JsonBody, Path};
use crate::http::sdk_common::{self, Keys, Refusal, header_key, not_modified};
use crate::http::time_travel::{self, PastQuery};
use crate::sdk_cache::{CachedEnvironment, Evaluable};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/flags/", get(flags))
        .route("/api/v1/identities/", get(identity).post(identify))
        .route("/api/v1/environment-document/", get(environment_document))
        .route("/api/v1/analytics/flags/", post(analytics))
        .route("/sse/environments/{environment_key}/stream", get(stream))
}

/// The environment the request's `X-Environment-Key` names.
async fn environment(
    state: &AppState,
    headers: &HeaderMap,
    keys: Keys,
) -> Result<Arc<CachedEnvironment>> {
    sdk_common::environment(
        state,
        header_key(headers, sdk_common::ENVIRONMENT_KEY),
        keys,
    )
    .await
    .map_err(refused)
}

/// What evaluating the environment needs (its context and listing), from the cache or rebuilt.
async fn evaluable(state: &AppState, env: &CachedEnvironment) -> Result<Arc<Evaluable>> {
    sdk_common::evaluable(state, env).await.map_err(refused)
}

/// A refusal in flaglog's error shape.
fn refused(refusal: Refusal) -> Error {
    match refusal {
        Refusal::MissingKey => {
            Error::Unauthorized("send the environment key as X-Environment-Key".into())
        }
        Refusal::UnknownKey => Error::Unauthorized("the environment key is not valid".into()),
        Refusal::ServerKeyRequired => Error::Forbidden(
            "this endpoint needs a server-side key (ser.…), not a client key".into(),
        ),
        Refusal::Internal(detail) => Error::Internal(detail),
    }
}

/// Pre-serialised JSON with its ETag, or 304 when the client has it.
fn cached_json(headers: &HeaderMap, env: &CachedEnvironment, body: axum::body::Bytes) -> Response {
    let mut response = if not_modified(headers, &env.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    response
        .headers_mut()
        .insert(header::ETAG, env.etag_header.clone());
    response
}

#[derive(Deserialize)]
pub struct FlagsQuery {
    /// Only this feature's flag (answered as one object).
    pub feature: Option<String>,
}

/// `GET /api/v1/flags/`: the environment's flags, without identity. (The request is taken
/// whole so that its headers are read in place: the busiest endpoint copies none of them.)
pub async fn flags(State(state): State<AppState>, request: Request) -> Result<Response> {
    let headers = request.headers();
    // Most requests have no query string at all: nothing to parse.
    let feature = match request.uri().query() {
        None => None,
        Some(_) => {
            axum::extract::Query::<FlagsQuery>::try_from_uri(request.uri())
                .map_err(|e| Error::bad_request("query", e.body_text()))?
                .0
                .feature
        }
    };
    let env = environment(&state, headers, Keys::ClientOrServer).await?;
    let Some(name) = feature else {
        return Ok(cached_json(headers, &env, env.flags.clone()));
    };
    let flags: Vec<Value> =
        serde_json::from_slice(&env.flags).map_err(|e| Error::Internal(e.to_string()))?;
    flags
        .into_iter()
        .find(|flag| flag["feature"]["name"] == name.as_str())
        .map(|flag| Json(flag).into_response())
        .ok_or_else(|| Error::NotFound(format!("no feature named {name:?} in this environment")))
}

#[derive(Deserialize)]
pub struct TraitBody {
    pub trait_key: String,
    #[serde(default)]
    pub trait_value: Value,
    /// A transient trait is used for this evaluation and not stored.
    #[serde(default)]
    pub transient: bool,
}

#[derive(Deserialize)]
pub struct IdentifyBody {
    pub identifier: String,
    #[serde(default)]
    pub traits: Vec<TraitBody>,
    /// A transient identity's traits are not stored.
    #[serde(default)]
    pub transient: bool,
}

#[derive(Deserialize)]
pub struct IdentityQuery {
    pub identifier: String,
}

pub(crate) fn validate_identifier(identifier: &str) -> Result<()> {
    domain::identity::validate_identifier(identifier).map_err(|_| {
        Error::bad_request(
            "identifier",
            format!("must be 1 to {MAX_IDENTIFIER_LEN} characters"),
        )
    })
}

/// `POST /api/v1/identities/`: the identity's flags, after storing its traits. It does not
/// answer about the past: a caller who asks (`as_of…`) is refused rather than have traits stored
/// and today's flags answered.
pub async fn identify(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<IdentifyBody>,
) -> Result<Response> {
    if query.is_some_and(|q| q.contains("as_of")) {
        return Err(Error::bad_request(
            "as_of",
            "ask about the past with GET /api/v1/identities/?identifier=…&as_of=… (POST stores traits)",
        ));
    }
    validate_identifier(&body.identifier)?;
    for (i, t) in body.traits.iter().enumerate() {
        if t.trait_key.is_empty() {
            return Err(Error::bad_request(
                format!("traits[{i}].trait_key"),
                "must not be empty",
            ));
        }
        if matches!(t.trait_value, Value::Array(_) | Value::Object(_)) {
            return Err(Error::bad_request(
                format!("traits[{i}].trait_value"),
                "must be a string, a number, a boolean or null",
            ));
        }
    }
    let env = environment(&state, &headers, Keys::ClientOrServer).await?;
    let mut traits = state
        .sdk_store
        .traits(env.environment_id, &body.identifier)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    // What is stored afterwards: the stored traits with the request's non-transient ones.
    let mut to_store = (!body.transient).then(|| traits.clone());
    for t in body.traits {
        // A null value removes the trait, as in Flagsmith.
        if t.trait_value.is_null() {
            traits.remove(&t.trait_key);
            if let Some(to_store) = &mut to_store {
                to_store.remove(&t.trait_key);
            }
            continue;
        }
        if let Some(to_store) = &mut to_store
            && !t.transient
        {
            to_store.insert(t.trait_key.clone(), t.trait_value.clone());
        }
        traits.insert(t.trait_key, t.trait_value);
    }
    if let Some(to_store) = to_store {
        state
            .sdk_store
            .store_traits(env.environment_id, &body.identifier, &to_store)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
    }
    identity_response(&state, &env, &body.identifier, traits).await
}

/// `GET /api/v1/identities/?identifier=`: the identity's flags with its stored traits. With
/// `as_of` or `as_of_position`, the flags it got then ([`time_travel::identity`]). (The request
/// is taken whole so that its headers are read in place.)
pub async fn identity(State(state): State<AppState>, request: Request) -> Result<Response> {
    if let Some(past) = PastQuery::of(&request)? {
        return time_travel::identity(state, request, past).await;
    }
    let query = axum::extract::Query::<IdentityQuery>::try_from_uri(request.uri())
        .map_err(|e| Error::bad_request("query", e.body_text()))?
        .0;
    validate_identifier(&query.identifier)?;
    let env = environment(&state, request.headers(), Keys::ClientOrServer).await?;
    let traits = state
        .sdk_store
        .traits(env.environment_id, &query.identifier)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    identity_response(&state, &env, &query.identifier, traits).await
}

#[derive(Serialize)]
struct TraitRef<'a> {
    trait_key: &'a str,
    trait_value: &'a Value,
}

/// The response of both identities endpoints: [`identity_body`] for `env`'s current version.
async fn identity_response(
    state: &AppState,
    env: &CachedEnvironment,
    identifier: &str,
    traits: Map<String, Value>,
) -> Result<Response> {
    let evaluable = evaluable(state, env).await?;
    let who = identity_context(identifier, traits);
    let evaluation = evaluable.prepared.evaluation(Some(&who));
    let wants = state.analytics.admit(env.environment_id);
    // Room for half the flags to differ (overrides, splits) without growing: with a third of
    // the features multivariate and a few overrides per segment, a quarter was too little.
    let mut changed =
        wants.map(|_| ChangedFlags::with_capacity(evaluable.listing.features.len() / 2));
    let bytes = identity_body(&evaluable, &who, &evaluation, changed.as_mut())?;
    if let (Some(wants), Some(changed)) = (wants, changed) {
        // Traits and segments only where an integration sends them: each is memory the
        // analytics worker frees on its thread.
        let segments = wants.traits_and_segments.then(|| segments_of(&evaluation));
        drop(evaluation);
        let context = segments.map(|segments| ServedContext {
            traits: who.traits.into_iter().collect(),
            segments,
        });
        state.analytics.offer(ServedIdentity {
            environment_id: env.environment_id,
            features: evaluable.served_features(),
            hide_disabled: evaluable.listing.hide_disabled,
            changed,
            context,
            identifier: who.identifier,
            served_at: time::OffsetDateTime::now_utc(),
        });
    }
    let mut response = Response::new(Body::from(bytes));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The identity's flags, written straight from the evaluation: the body of both identities
/// endpoints, `{"flags": [...], "identifier": ..., "traits": [...]}` (fields in alphabetical
/// order, as the `Value` tree it replaced wrote them). Flags the identity shares with the
/// environment are copied from the environment's pre-serialised flags body; with `changed`,
/// the others are noted there for identity analytics.
pub(crate) fn identity_body(
    env: &Evaluable,
    who: &IdentityContext,
    result: &Evaluation<'_>,
    changed: Option<&mut ChangedFlags>,
) -> Result<Vec<u8>> {
    let traits: Vec<TraitRef<'_>> = who
        .traits
        .iter()
        .map(|(key, value)| TraitRef {
            trait_key: key,
            trait_value: value,
        })
        .collect();
    let flags_len = env.listing.body().len();
    let identifier = who.identifier.as_str();
    let mut bytes = Vec::with_capacity(flags_len + identifier.len() + 64 * traits.len() + 64);
    let written = (|| {
        bytes.extend_from_slice(b"{\"flags\":");
        env.listing.write_flags(result, &mut bytes, changed)?;
        bytes.extend_from_slice(b",\"identifier\":");
        serde_json::to_writer(&mut bytes, identifier)?;
        bytes.extend_from_slice(b",\"traits\":");
        serde_json::to_writer(&mut bytes, &traits)?;
        bytes.push(b'}');
        serde_json::Result::Ok(())
    })();
    written.map_err(|e| Error::Internal(e.to_string()))?;
    Ok(bytes)
}

/// The project segments an identity is in, for identity analytics: (id, name).
fn segments_of(evaluation: &Evaluation<'_>) -> Vec<(u64, String)> {
    // Identity overrides are kept as segments keyed otherwise: only project segments have
    // numeric keys.
    evaluation
        .segments
        .iter()
        .filter_map(|segment| Some((segment.key.parse().ok()?, segment.name.clone())))
        .collect()
}

/// `GET /api/v1/environment-document/`: the document for local evaluation (server-side keys).
/// With `as_of` or `as_of_position`, the document as it stood then
/// ([`time_travel::environment_document`]); SDKs send no `as_of`, so their path only looks
/// for it in the query string. (The request is taken whole so that its headers are read in
/// place.)
pub async fn environment_document(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response> {
    if let Some(past) = PastQuery::of(&request)? {
        return time_travel::environment_document(state, request, past).await;
    }
    let headers = request.headers();
    let env = environment(&state, headers, Keys::ServerOnly).await?;
    // Entries found through a server-side key carry the document.
    let document = env
        .document_bytes
        .clone()
        .ok_or_else(|| Error::Internal("the cached environment has no document".into()))?;
    Ok(cached_json(headers, &env, document))
}

/// `POST /api/v1/analytics/flags/`: `{"feature name": evaluation count, ...}` from SDKs.
pub async fn analytics(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<StatusCode> {
    let env = environment(&state, &headers, Keys::ClientOrServer).await?;
    let mut counts = Vec::with_capacity(body.len());
    for (name, count) in body {
        let count = count.as_i64().filter(|c| *c >= 0).ok_or_else(|| {
            Error::bad_request(name.clone(), "must be a count (a whole number ≥ 0)")
        })?;
        counts.push((name, count));
    }
    state
        .sdk_store
        .add_counts(env.environment_id, &counts)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(StatusCode::OK)
}

fn seconds(micros: i64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// `GET /sse/environments/{key}/stream`: an event `{"updated_at": <Unix seconds>}` now and each
/// time the environment's document changes, as Flagsmith's realtime service sends. If the
/// stream falls so far behind that announcements were dropped (its receiver lagged), it cannot
/// tell whether one was this environment's, so it sends the environment's current
/// `updated_at`, read afresh: an SDK refetches if that is newer than what it has. The stream
/// ends when the server shuts down.
pub async fn stream(
    State(state): State<AppState>,
    Path(environment_key): Path<String>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    // Subscribe before reading the current version, so no change can fall between the two.
    let changes = state.document_changes.subscribe();
    let env = state
        .sdk
        .by_client_key(&environment_key)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .ok_or_else(|| Error::NotFound("no environment has this key".into()))?;
    let first = updated_event(env.updated_at_micros);
    let realtime = Realtime::new(changes, environment_key, state.sdk.clone());
    let shutdown = state.shutdown.clone();
    let stream =
        futures_util::stream::unfold((Some(first), realtime), move |(first, mut realtime)| {
            let shutdown = shutdown.clone();
            async move {
                if let Some(event) = first {
                    return Some((Ok(event), (None, realtime)));
                }
                let updated_at = tokio::select! {
                    updated_at = realtime.next() => updated_at?,
                    () = shutdown.cancelled() => return None,
                };
                Some((Ok(updated_event(updated_at)), (None, realtime)))
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn updated_event(updated_at_micros: i64) -> Event {
    Event::default().data(json!({"updated_at": seconds(updated_at_micros)}).to_string())
}

/// What one realtime stream announces: the `updated_at` of each change of its environment.
pub struct Realtime {
    changes: broadcast::Receiver<crate::http::DocumentChanged>,
    key: String,
    cache: Arc<crate::sdk_cache::EnvironmentCache>,
}

impl Realtime {
    /// The stream of environment `key`'s changes, heard on `changes`.
    pub fn new(
        changes: broadcast::Receiver<crate::http::DocumentChanged>,
        key: String,
        cache: Arc<crate::sdk_cache::EnvironmentCache>,
    ) -> Self {
        Realtime {
            changes,
            key,
            cache,
        }
    }

    /// The `updated_at` (µs) of the next event to send; `None` when the stream should end.
    pub async fn next(&mut self) -> Option<i64> {
        loop {
            match self.changes.recv().await {
                Ok(change) if change.client_key == self.key => {
                    // The SDK fetches the document as soon as it hears of the change: drop
                    // the cached one first (the invalidation worker may not have run yet).
                    self.cache.changed(&change).await;
                    return Some(change.updated_at_micros);
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(
                        missed,
                        "a realtime stream lagged; sending the current version"
                    );
                    self.cache.forget(&self.key).await;
                    match self.cache.by_client_key(&self.key).await {
                        Ok(Some(env)) => return Some(env.updated_at_micros),
                        // Gone: nothing more to tell.
                        Ok(None) => return None,
                        // Unknown, so "changed": an SDK refetches and sees for itself.
                        Err(_) => return Some(projections::now_micros()),
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

//! Time travel, for auditors: what an environment served at a past moment, asked with
//! `as_of=<RFC 3339 instant>` or `as_of_position=<log position>` on the routes that serve it now.
//!
//! - `GET /api/v1/environment-document/`: the environment document as it stood then;
//! - `GET /api/v1/identities/?identifier=`: the identity's flags as evaluated then;
//! - `GET /api/v1/environments/{api_key}/featurestates/` (in [`super::admin::environments`]):
//!   the feature states then.
//!
//! With either parameter the first two stop being SDK endpoints: they need an admin API token
//! (`Authorization: Token …`) of an organisation admin or of someone with a role on the
//! environment's project, and name the environment either with `environment=<client key>` or,
//! as an SDK does, with `X-Environment-Key` (client or server-side key). Without them nothing
//! here runs: the SDK handlers only look for `as_of` in the query string, which SDKs never
//! send, and serve as they always did.
//!
//! An instant stands for the last event recorded at or before it. The past is folded from the
//! log on request (`projections::as_of`) with the projection's own code, so a document as of a
//! position is byte for byte the one SDKs were served after the last change at or before it.
//! Every answer says which position it reflects in [`AS_OF_POSITION`].
//!
//! Traits SDKs store are not events and their history is not kept: an identity's flags as of
//! then are evaluated with the traits stored *now*, and the answer says so in [`TRAITS_AS_OF`].

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::Response;
use domain::environment::{Environment, SERVER_SIDE_KEY_PREFIX};
use domain::flagsmith::identity_context;
use domain::project::Project;
use projections::as_of::{self, Identities};
use projections::environment_documents::{self, RenderedEnvironment, StoredEnvironment};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::http::AppState;
use crate::http::admin::{environment_by_key, require_reader};
use crate::http::error::{Error, Result};
use crate::http::extract::Admin;
use crate::http::sdk_common::{ENVIRONMENT_KEY, header_key};
use crate::sdk_cache::Evaluable;

/// The log position an answer reflects (the one `as_of` resolved to, or `as_of_position`).
pub const AS_OF_POSITION: HeaderName = HeaderName::from_static("x-flaglog-as-of-position");
/// `now`: the identity's traits are those stored now, not then (their history is not kept).
pub const TRAITS_AS_OF: HeaderName = HeaderName::from_static("x-flaglog-traits-as-of");

/// A past moment, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// An instant, in µs since the Unix epoch: the last event recorded at or before it.
    Instant(i64),
    /// A log position.
    Position(u64),
}

/// The moment the query parameters ask for: `None` without either, 400 if both are given or
/// the one given does not parse.
pub fn requested(as_of: Option<&str>, as_of_position: Option<&str>) -> Result<Option<AsOf>> {
    match (as_of, as_of_position) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(Error::bad_request(
            "as_of_position",
            "give as_of or as_of_position, not both",
        )),
        (Some(instant), None) => {
            let instant = OffsetDateTime::parse(instant.trim(), &Rfc3339).map_err(|e| {
                Error::bad_request(
                    "as_of",
                    format!("must be an RFC 3339 instant (2026-12-01T14:03:00Z): {e}"),
                )
            })?;
            let micros = instant.unix_timestamp_nanos() / 1000;
            Ok(Some(AsOf::Instant(i64::try_from(micros).map_err(
                |_| Error::bad_request("as_of", "out of range"),
            )?)))
        }
        (None, Some(position)) => position
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| Some(AsOf::Position(p)))
            .ok_or_else(|| {
                Error::bad_request("as_of_position", "must be a log position (1, 2, 3, …)")
            }),
    }
}

/// The log position `as_of` stands for: 400 for a position past the log's head or an instant
/// still to come (its answer is not known yet).
pub async fn position(state: &AppState, as_of: AsOf) -> Result<u64> {
    let log = &*state.log;
    let internal = |e: domain::log::LogError| Error::Internal(e.to_string());
    match as_of {
        AsOf::Position(position) => {
            let head = log.head().await.map_err(internal)?;
            if position > head {
                return Err(Error::bad_request(
                    "as_of_position",
                    format!("the log ends at position {head}"),
                ));
            }
            Ok(position)
        }
        AsOf::Instant(micros) => {
            let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
            if i128::from(micros) > now {
                return Err(Error::bad_request("as_of", "must not be in the future"));
            }
            as_of::position_at(log, micros)
                .await
                .map_err(|e| Error::Internal(e.to_string()))
        }
    }
}

/// The project and environment feature states are listed from: `environment` and its project
/// as they are now, or, if `moment` (`as_of`, `as_of_position`) asks for one, as they stood
/// then, with the position (404 if the environment did not exist then).
pub async fn now_or_then(
    state: &AppState,
    environment: Environment,
    moment: (Option<&str>, Option<&str>),
) -> Result<(Project, Environment, Option<u64>)> {
    let Some(as_of) = requested(moment.0, moment.1)? else {
        let project = state.commands.project(environment.project_id).await?.state;
        return Ok((project, environment, None));
    };
    let position = position(state, as_of).await?;
    let (project, past) = as_of::aggregates_at(
        &*state.log,
        environment.id,
        environment.project_id,
        position,
    )
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    if !past.exists {
        return Err(did_not_exist(&environment, position));
    }
    Ok((project, past, Some(position)))
}

/// `response`, saying in [`AS_OF_POSITION`] which past position it reflects, if any.
pub fn at_position(mut response: Response, position: Option<u64>) -> Response {
    if let Some(position) = position {
        response
            .headers_mut()
            .insert(AS_OF_POSITION, HeaderValue::from(position));
    }
    response
}

fn did_not_exist(environment: &Environment, position: u64) -> Error {
    Error::NotFound(format!(
        "environment {} did not exist at position {position}",
        environment.client_key
    ))
}

/// The query of the SDK routes when they are asked about the past.
#[derive(Deserialize)]
pub struct PastQuery {
    pub as_of: Option<String>,
    pub as_of_position: Option<String>,
    /// The environment's client key (or send `X-Environment-Key`).
    pub environment: Option<String>,
    /// The identity (identities route).
    pub identifier: Option<String>,
}

impl PastQuery {
    /// The query of `request`, if it asks about the past (has `as_of` or `as_of_position`):
    /// `None` for an SDK's request, served as always.
    pub fn of(request: &Request) -> Result<Option<PastQuery>> {
        // SDKs send no `as_of`: their requests are let through without parsing anything.
        if !request.uri().query().is_some_and(|q| q.contains("as_of")) {
            return Ok(None);
        }
        let query = axum::extract::Query::<PastQuery>::try_from_uri(request.uri())
            .map_err(|e| Error::bad_request("query", e.body_text()))?
            .0;
        Ok((query.as_of.is_some() || query.as_of_position.is_some()).then_some(query))
    }

    /// The moment asked for (checked after the caller is authenticated: a request without a
    /// token is refused before its parameters are judged).
    fn moment(&self) -> Result<AsOf> {
        requested(self.as_of.as_deref(), self.as_of_position.as_deref())?
            .ok_or_else(|| Error::bad_request("as_of", "must be given"))
    }
}

/// The environment the request names, once its caller is authenticated by admin token and
/// found to be allowed to read it.
async fn readable_environment(
    state: &AppState,
    request: Request,
    query: &PastQuery,
) -> Result<Environment> {
    let (mut parts, _) = request.into_parts();
    let caller =
        <Admin as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, state)
            .await?;
    let environment =
        named_environment(state, &parts.headers, query.environment.as_deref()).await?;
    require_reader(state, &caller, environment.project_id).await?;
    Ok(environment)
}

/// The environment named by `environment=<client key>` or by `X-Environment-Key` (client or
/// server-side key), as it is now (an environment never changes project).
async fn named_environment(
    state: &AppState,
    headers: &HeaderMap,
    client_key: Option<&str>,
) -> Result<Environment> {
    let header = header_key(headers, ENVIRONMENT_KEY);
    let key = match (client_key.map(str::trim), header) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_request(
                "environment",
                "name the environment once: ?environment= or X-Environment-Key",
            ));
        }
        (None, None) => {
            return Err(Error::bad_request(
                "environment",
                "name the environment: ?environment=<client key> or X-Environment-Key",
            ));
        }
        (Some(key), None) | (None, Some(key)) => key,
    };
    if key.starts_with(SERVER_SIDE_KEY_PREFIX) {
        let hash = ::commands::secrets::sha256_hex(key);
        let found = environment_documents::by_server_key_hash(&state.read_models, &hash)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .ok_or_else(|| Error::NotFound("no environment has this server-side key".into()))?;
        return Ok(state
            .commands
            .environment(found.environment_id)
            .await?
            .state);
    }
    Ok(environment_by_key(state, key).await?.state)
}

/// The environment's read model as of `position`, rendered by the projection's code; 404 if it
/// did not exist then.
async fn rendered_at(
    state: &AppState,
    environment: &Environment,
    position: u64,
    identities: Identities<'_>,
) -> Result<RenderedEnvironment> {
    as_of::environment_at(
        &*state.log,
        &state.read_models,
        environment.id,
        environment.project_id,
        position,
        identities,
    )
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
    .ok_or_else(|| did_not_exist(environment, position))
}

fn json_response(body: Vec<u8>, position: u64) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    at_position(response, Some(position))
}

#[utoipa::path(get, path = "/api/v1/environment-document/", tag = "time travel",
    params(
        ("as_of" = Option<String>, Query, description = "An RFC 3339 instant: the document after the last event recorded at or before it"),
        ("as_of_position" = Option<u64>, Query, description = "A log position (instead of as_of)"),
        ("environment" = Option<String>, Query, description = "The environment's client key (or send X-Environment-Key: its client or server-side key)"),
    ),
    responses(
        (status = 200, description = "The environment document as SDKs were served it then, byte for byte; X-Flaglog-As-Of-Position names the position", content_type = "application/json"),
        (status = 400, body = crate::http::error::ErrorBody),
        (status = 403, body = crate::http::error::ErrorBody),
        (status = 404, body = crate::http::error::ErrorBody)))]
/// `GET /api/v1/environment-document/?as_of=…|as_of_position=…`: the environment document as
/// it stood then. (Without either parameter this route is the SDK endpoint, with a server-side
/// key and no token.)
pub async fn environment_document(
    state: AppState,
    request: Request,
    query: PastQuery,
) -> Result<Response> {
    let environment = readable_environment(&state, request, &query).await?;
    let position = position(&state, query.moment()?).await?;
    let rendered = rendered_at(&state, &environment, position, Identities::All).await?;
    Ok(json_response(rendered.document.into_bytes(), position))
}

#[utoipa::path(get, path = "/api/v1/identities/", tag = "time travel",
    params(
        ("identifier" = String, Query),
        ("as_of" = Option<String>, Query, description = "An RFC 3339 instant: the flags after the last event recorded at or before it"),
        ("as_of_position" = Option<u64>, Query, description = "A log position (instead of as_of)"),
        ("environment" = Option<String>, Query, description = "The environment's client key (or send X-Environment-Key: its client or server-side key)"),
    ),
    responses(
        (status = 200, description = "What GET /api/v1/identities/ answered then, evaluated with the traits stored now (X-Flaglog-Traits-As-Of: now: their history is not kept)", content_type = "application/json"),
        (status = 400, body = crate::http::error::ErrorBody),
        (status = 403, body = crate::http::error::ErrorBody),
        (status = 404, body = crate::http::error::ErrorBody)))]
/// `GET /api/v1/identities/?identifier=…&as_of=…|as_of_position=…`: the identity's flags as
/// evaluated then, with the traits stored now.
pub async fn identity(state: AppState, request: Request, query: PastQuery) -> Result<Response> {
    let environment = readable_environment(&state, request, &query).await?;
    let identifier = query
        .identifier
        .clone()
        .ok_or_else(|| Error::bad_request("identifier", "must be given"))?;
    super::sdk::validate_identifier(&identifier)?;
    let position = position(&state, query.moment()?).await?;
    // No reference: the identity never had an override, or was erased.
    let reference = state
        .commands
        .identity_reference(environment.id, &identifier, false)
        .await?;
    let only = Identities::One(reference.as_deref());
    let rendered = rendered_at(&state, &environment, position, only).await?;
    let evaluable = Evaluable::uncached(stored(rendered))
        .ok_or_else(|| Error::Internal("a past document cannot be evaluated".into()))?;
    let traits = state
        .sdk_store
        .traits(environment.id, &identifier)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let who = identity_context(&identifier, traits);
    let evaluation = evaluable.prepared.evaluation(Some(&who));
    let body = super::sdk::identity_body(&evaluable, &who, &evaluation, None)?;
    let mut response = json_response(body, position);
    response
        .headers_mut()
        .insert(TRAITS_AS_OF, HeaderValue::from_static("now"));
    Ok(response)
}

fn stored(rendered: RenderedEnvironment) -> StoredEnvironment {
    StoredEnvironment {
        environment_id: rendered.environment_id,
        client_key: rendered.client_key,
        document: rendered.document,
        flags: rendered.flags,
        updated_at_micros: rendered.updated_at_micros,
        position: rendered.position,
    }
}

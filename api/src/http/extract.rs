//! Request extractors shared by the routes: JSON bodies whose errors name the offending field,
//! the admin caller behind an API token, and the request context that becomes event metadata.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use domain::directory::Principal;
use domain::log::Metadata;
use serde::de::DeserializeOwned;

use crate::http::AppState;
use crate::http::error::{Error, Result};

/// A JSON body. Unlike axum's `Json`, a body that does not fit answers 400 with the path of the
/// offending field (`rules[0].conditions[1].operator`), as JSON.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        if !crate::http::sdk_common::is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(Error::bad_request(
                "content-type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Error::bad_request("body", e.body_text()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON, naming the path of the first field that does not fit.
///
/// Well-formed bodies are parsed once, without tracking paths; only a body that fails is parsed
/// again to find where.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let error = match serde_json::from_slice(bytes) {
        Ok(value) => return Ok(value),
        Err(error) => error,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let (field, message) = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(e) => {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        }
        // Only what follows the value is wrong (e.g. trailing characters).
        Ok(_) => (".".to_string(), error.to_string()),
    };
    Err(Error::BadRequest {
        field: Some(if field == "." {
            "body".to_string()
        } else {
            field
        }),
        message,
    })
}

/// The id of the request being served: from `X-Request-Id` when the caller sent a sane one,
/// else made here (ASCII letters, digits, `-`, `_` and `.` either way). It is logged with the
/// request, answered in the response's `X-Request-Id`, and stored in every event the request
/// appends.
#[derive(Debug, Clone)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

/// An authenticated admin-API caller (`Authorization: Token <token>`: a user's token or a
/// service token), with what their events record.
#[derive(Clone)]
pub struct Admin {
    pub principal: Principal,
    pub metadata: Metadata,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Token ")
                    .or_else(|| v.strip_prefix("token "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("send an API token as 'Authorization: Token <token>'".into())
            })?;
        let principal = state
            .commands
            .principal_for_token(token)
            .await?
            .ok_or_else(|| Error::Unauthorized("the API token is not valid".into()))?;
        let metadata = RequestInfo::from_parts(parts).metadata(&principal.actor());
        Ok(Admin {
            principal,
            metadata,
        })
    }
}

/// What a request carries into the metadata of the events it appends: its id, and the optional
/// correlation id (`X-Correlation-Id`) and reason (`X-Change-Reason`) the caller sent. An admin
/// applying a change despite four-eyes sends its reason as `X-Break-Glass-Reason` instead: the
/// change is then recorded as applied without review.
pub struct RequestInfo {
    request_id: Option<String>,
    correlation_id: Option<String>,
    reason: Option<String>,
    break_glass: bool,
}

impl RequestInfo {
    fn from_parts(parts: &Parts) -> Self {
        let header_text = |name: &str, max: usize| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().chars().take(max).collect::<String>())
                .filter(|v| !v.is_empty())
        };
        let break_glass_reason = header_text("x-break-glass-reason", 2000);
        RequestInfo {
            request_id: parts
                .extensions
                .get::<RequestId>()
                .map(|r| r.as_str().to_owned()),
            correlation_id: header_text("x-correlation-id", 200),
            break_glass: break_glass_reason.is_some(),
            reason: break_glass_reason.or_else(|| header_text("x-change-reason", 2000)),
        }
    }

    pub fn metadata(&self, actor: &str) -> Metadata {
        Metadata {
            actor: actor.to_string(),
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            causation_id: None,
            reason: self.reason.clone(),
            break_glass: self.break_glass,
            approvers: vec![],
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        Ok(RequestInfo::from_parts(parts))
    }
}

/// Path parameters; a parameter that does not parse answers 400 as JSON, naming the path.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Error::bad_request("path", e.body_text()))
    }
}

/// Query parameters; a parameter that does not parse answers 400 as JSON.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| Error::bad_request("query", e.body_text()))
    }
}

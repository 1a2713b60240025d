//! How OFREP refuses a request: OpenFeature's error codes and the spec's error body
//! (`{"key"?, "errorCode", "errorDetails"}`), which OFREP clients read instead of flaglog's
//! admin `{"error", "message"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::http::sdk_common::Refusal;

/// OpenFeature's error codes, as OFREP answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorCode {
    ParseError,
    InvalidContext,
    FlagNotFound,
    General,
}

impl ErrorCode {
    pub(super) fn as_str(self) -> &'static str {
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
pub(super) struct Failure {
    pub(super) status: StatusCode,
    /// The flag, on the single-flag endpoint.
    key: Option<String>,
    pub(super) code: ErrorCode,
    details: String,
}

impl Failure {
    pub(super) fn new(status: StatusCode, code: ErrorCode, details: impl Into<String>) -> Self {
        Failure {
            status,
            key: None,
            code,
            details: details.into(),
        }
    }

    pub(super) fn unauthorized(details: &str) -> Self {
        Failure::new(StatusCode::UNAUTHORIZED, ErrorCode::General, details)
    }

    pub(super) fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::General,
            "internal error; see the server's log",
        )
    }

    pub(super) fn for_key(mut self, key: &str) -> Self {
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

pub(super) type Result<T> = std::result::Result<T, Failure>;
/// A refusal of the shared SDK read path, as OFREP answers it.
impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::MissingKey | Refusal::ServerKeyRequired => Failure::unauthorized(
                "send the environment key as 'Authorization: Bearer <key>', X-Environment-Key \
                 or X-API-Key",
            ),
            Refusal::UnknownKey => Failure::unauthorized("the environment key is not valid"),
            Refusal::Internal(detail) => Failure::internal(detail),
        }
    }
}

pub(super) fn invalid_context(details: impl Into<String>) -> Failure {
    Failure::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidContext, details)
}

//! The HTTP layer's error and its mapping to status codes, in one place.
//!
//! Every error answers with `{"error": code, "message": ..., "field": ...}`. Storage and other
//! internal faults are logged and answered with a generic 500: their details never reach clients.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this route does not take this method")]
    MethodNotAllowed,
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `internal`.
    pub error: &'static str,
    pub message: String,
    /// Where in the request the problem is, e.g. `rules[0].conditions[1].operator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Error {
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Error::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<domain::Error> for Error {
    fn from(e: domain::Error) -> Self {
        match e {
            domain::Error::Invalid { field, message } => Error::BadRequest {
                field: Some(field),
                message,
            },
            domain::Error::NotFound { .. } => Error::NotFound(e.to_string()),
            domain::Error::Forbidden(message) => Error::Forbidden(message),
            domain::Error::Conflict { field, message } => Error::Conflict {
                field: Some(field),
                message,
            },
        }
    }
}

impl From<commands::Error> for Error {
    fn from(e: commands::Error) -> Self {
        match e {
            commands::Error::Domain(e) => e.into(),
            commands::Error::Conflict(message) => Error::Conflict {
                field: None,
                message: format!("a concurrent change won; reload and try again ({message})"),
            },
            commands::Error::Storage(message) => Error::Internal(message),
        }
    }
}

impl From<projections::Error> for Error {
    fn from(e: projections::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let (field, message) = match self {
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (None, "internal error; see the server's log".to_string())
            }
            Error::BadRequest { field, message } | Error::Conflict { field, message } => {
                (field, message)
            }
            Error::Unauthorized(m) | Error::Forbidden(m) | Error::NotFound(m) => (None, m),
            Error::MethodNotAllowed => (None, "this route does not take this method".into()),
        };
        let body = ErrorBody {
            error: code,
            message,
            field,
        };
        (status, Json(body)).into_response()
    }
}

pub type Result<T> = std::result::Result<T, Error>;

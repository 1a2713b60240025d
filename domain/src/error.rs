//! What the domain's rules refuse. One error type for the whole model; the HTTP layer maps each
//! variant to a status code in one place.

/// A refused command: the input is wrong, names something that does not exist, or collides with
/// what already exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is malformed or breaks a rule. `field` names where (e.g. `rules[0].conditions[1].operator`).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The command names an entity that does not exist.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// The command collides with existing state (a duplicate name or key).
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// The actor may not do this (says which role or relation it needs).
    #[error("{0}")]
    Forbidden(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Conflict {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden(message.into())
    }

    /// The same error with `prefix.` put before its field, for nested validation.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Error::Invalid { field, message } => Error::Invalid {
                field: join_field(prefix, &field),
                message,
            },
            Error::Conflict { field, message } => Error::Conflict {
                field: join_field(prefix, &field),
                message,
            },
            other => other,
        }
    }
}

fn join_field(prefix: &str, field: &str) -> String {
    if field.is_empty() {
        prefix.to_string()
    } else if field.starts_with('[') {
        format!("{prefix}{field}")
    } else {
        format!("{prefix}.{field}")
    }
}

pub type Result<T> = std::result::Result<T, Error>;

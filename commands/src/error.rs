//! The write side's error: what the domain refuses, plus concurrency conflicts and storage faults.

use domain::aggregate::CodecError;
use domain::log::LogError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Domain(#[from] domain::Error),
    /// Concurrent writers kept changing what this command depends on; nothing was written.
    #[error("conflicting concurrent change: {0}")]
    Conflict(String),
    #[error("event log: {0}")]
    Storage(String),
}

impl From<LogError> for Error {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Conflict { .. } => Error::Conflict(e.to_string()),
            LogError::Invalid(message) | LogError::Storage(message) => Error::Storage(message),
        }
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::Storage(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

//! flaglog's write side.
//!
//! Command handlers ([`handlers::Commands`]) load an aggregate's state from the event log through
//! the [`store::Store`], let `domain` decide which events follow, and append them with optimistic
//! concurrency. The log adapters (PostgreSQL, SQLite) that implement `domain::log::EventLog` live
//! in [`log`].

pub mod change_requests;
pub mod error;
pub mod handlers;
mod identities;
pub mod import;
pub mod log;
pub mod preview;
pub mod revert;
pub mod scheduler;
pub mod secrets;
pub mod store;
pub mod verify;
mod workspace;

pub use error::{Error, Result};
pub use handlers::Commands;

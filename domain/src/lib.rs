//! flaglog's pure model.
//!
//! Everything here is plain, synchronous code without IO: the events that make up the log, the
//! aggregates that decide which events a command produces and evolve their state from events, the
//! flag evaluation engine, and the ports (traits) that storage adapters in other crates implement.
//! What a decision needs is looked up by the caller and passed in, so every rule is testable
//! without a database or a runtime.

pub mod access;
pub mod aggregate;
pub mod audit;
pub mod change_request;
pub mod checkpoint;
pub mod command;
pub mod directory;
pub mod document;
pub mod environment;
pub mod error;
pub mod evaluation;
pub mod feature_version;
pub mod flagsmith;
pub mod identity;
pub mod impact;
pub mod import;
pub mod integration;
pub mod log;
pub mod model;
pub mod project;

pub use error::{Error, Result};

//! flaglog's write side.
//!
//! Command handlers load an aggregate's state from the event log, let `domain` decide which events
//! follow, and append them with optimistic concurrency. The log adapters (PostgreSQL, SQLite) that
//! implement `domain::log::EventLog` live in [`log`].

pub mod log;

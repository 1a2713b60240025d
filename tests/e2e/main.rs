//! End-to-end tests of the admin API: a real flaglog server on loopback over a real database,
//! every behaviour on both backends (SQLite and PostgreSQL). One test binary, one module per
//! area; the server and client helpers live in `support/lib.rs`.

mod audit_history;
mod audit_verify;
mod auth;
mod change_requests;
mod commands;
mod concurrency;
mod dashboard;
mod discovery;
mod flow;
mod four_eyes;
mod inbox;
mod integrations;
mod projection_writes;
mod references;
mod roles;
mod schedules;
mod tokens;
mod validation;
mod versions;

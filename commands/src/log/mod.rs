//! Event log adapters: PostgreSQL and the embedded SQLite default.

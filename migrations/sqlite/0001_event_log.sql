-- The append-only event log (domain::log): one row per event, totally ordered by `position`.
--
-- * `position` is assigned by the log's single writer inside a `BEGIN IMMEDIATE` transaction (see
--   commands/src/log/writer.rs); it is the rowid but never AUTOINCREMENT-ed or reused.
-- * `payload` and `metadata` hold canonical JSON (domain::log::canonical_json) as TEXT: the hash
--   chain covers the exact bytes.
-- * `recorded_at_micros` is microseconds since the Unix epoch (UTC), the unit the hash covers.
-- * `hash = SHA-256(prev_hash ‖ canonical bytes)`; the first event's `prev_hash` is 32 zero bytes.
CREATE TABLE events (
    position           INTEGER PRIMARY KEY CHECK (position > 0),
    stream_id          TEXT    NOT NULL CHECK (stream_id <> ''),
    version            INTEGER NOT NULL CHECK (version > 0),
    event_type         TEXT    NOT NULL CHECK (event_type <> ''),
    schema_version     INTEGER NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
    payload            TEXT    NOT NULL,
    metadata           TEXT    NOT NULL,
    recorded_at_micros INTEGER NOT NULL,
    prev_hash          BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash               BLOB    NOT NULL CHECK (length(hash) = 32),
    -- Also the index that reading a stream (and finding its current version) uses.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
) STRICT;

-- Append-only, enforced by the database itself. SQLite has no TRUNCATE: `DELETE FROM events`
-- is its truncate, and the trigger also turns off that optimisation, so it fails too.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE on events is not allowed');
END;

CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE on events is not allowed');
END;

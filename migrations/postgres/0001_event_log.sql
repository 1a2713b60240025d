-- The append-only event log (domain::log): one row per event, totally ordered by `position`.
--
-- * `position` is assigned by the log's single writer under an advisory lock (see
--   commands/src/log/writer.rs), not by a sequence: sequences leave gaps when a transaction rolls
--   back, and the log promises positions 1, 2, 3, ... without gaps.
-- * `payload` and `metadata` are TEXT holding canonical JSON (domain::log::canonical_json), not
--   JSONB: JSONB renormalises numbers and keys, and the hash chain covers the exact bytes.
-- * `recorded_at_micros` is microseconds since the Unix epoch (UTC), the unit the hash covers.
-- * `hash = SHA-256(prev_hash ‖ canonical bytes)`; the first event's `prev_hash` is 32 zero bytes.
CREATE TABLE events (
    position           BIGINT  PRIMARY KEY CHECK (position > 0),
    stream_id          TEXT    NOT NULL CHECK (stream_id <> ''),
    version            BIGINT  NOT NULL CHECK (version > 0),
    event_type         TEXT    NOT NULL CHECK (event_type <> ''),
    schema_version     BIGINT  NOT NULL CHECK (schema_version BETWEEN 0 AND 4294967295),
    payload            TEXT    NOT NULL,
    metadata           TEXT    NOT NULL,
    recorded_at_micros BIGINT  NOT NULL,
    prev_hash          BYTEA   NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash               BYTEA   NOT NULL CHECK (octet_length(hash) = 32),
    -- Also the index that reading a stream (and finding its current version) uses.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

-- Append-only, enforced by the database itself: any UPDATE, DELETE or TRUNCATE statement fails,
-- even one that matches no row. (A superuser or the table owner can still disable the trigger;
-- the hash chain is what makes such tampering evident.)
CREATE FUNCTION events_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();

-- The first step of every append batch (see commands/src/log/postgres.rs): take the log's append
-- lock, a session-level advisory lock with a fixed key, and read, with the lock held, the head
-- (the row whose out_stream_id is NULL: position, hash, recorded_at_micros) and the current
-- version of each stream in `stream_ids` (0 for a stream without events). With `relock`, first
-- release the lock this session holds from its previous batch, so writers of other sessions
-- waiting for it get their turn before this session's next batch. VOLATILE (the default), so each
-- statement takes a fresh snapshot: the reads see every batch committed before the lock was got.
CREATE FUNCTION events_lock_and_read(relock boolean, stream_ids text[])
RETURNS TABLE (out_stream_id text, out_number bigint, out_hash bytea, out_recorded_at_micros bigint)
LANGUAGE plpgsql AS $$
BEGIN
    IF relock THEN
        PERFORM pg_advisory_unlock(7380380986182166273);
    END IF;
    PERFORM pg_advisory_lock(7380380986182166273);
    RETURN QUERY
        SELECT NULL::text, e.position, e.hash, e.recorded_at_micros
          FROM events e ORDER BY e.position DESC LIMIT 1;
    RETURN QUERY
        SELECT s.id,
               COALESCE((SELECT max(e.version) FROM events e WHERE e.stream_id = s.id), 0),
               NULL::bytea, NULL::bigint
          FROM unnest(stream_ids) AS s(id);
END;
$$;

-- Read models: tables the projections (crate `projections`) build from the event log. Unlike
-- `events`, they are derived data: they can be dropped and rebuilt from position 0.

-- How far each projection has applied the log. Written in the same transaction as the projection's
-- read-model rows, so a crash never applies an event twice or loses one.
CREATE TABLE projection_checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);

-- One Flagsmith environment document per environment, and the precomputed body of
-- GET /api/v1/flags/ (the environment's flags without identity or segments).
CREATE TABLE environment_documents (
    environment_id    BIGINT PRIMARY KEY,
    client_key        TEXT   NOT NULL UNIQUE,
    document          TEXT   NOT NULL,
    flags             TEXT   NOT NULL,
    updated_at_micros BIGINT NOT NULL,
    position          BIGINT NOT NULL
);

-- Server-side keys (their SHA-256), for GET /api/v1/environment-document/.
CREATE TABLE environment_server_keys (
    key_hash       TEXT   PRIMARY KEY,
    environment_id BIGINT NOT NULL
);

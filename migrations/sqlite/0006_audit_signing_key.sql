-- The server's Ed25519 key that signs audit checkpoints (domain::checkpoint), made on the first
-- start and shared by every node of the database (unless FLAGLOG_AUDIT_SIGNING_KEY names one):
-- its 32-byte seed as hex. A secret: no response or log line holds it.
CREATE TABLE audit_signing_key (
    id                BIGINT PRIMARY KEY CHECK (id = 1),
    seed              TEXT   NOT NULL,
    created_at_micros BIGINT NOT NULL
);

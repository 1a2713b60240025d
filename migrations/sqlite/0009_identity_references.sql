-- Identifiers are personal data and the log cannot forget, so events name an identity by a
-- random reference, and its identifier lives only here (domain::identity). Erasing an identity
-- deletes its row: nothing then links the reference to a person. identifier_sha256 (hex) is what
-- the uniqueness of an identifier is enforced on: identifiers run to 2,000 characters, more than
-- an index entry holds.
CREATE TABLE identity_references (
    environment_id    BIGINT NOT NULL,
    reference         TEXT   NOT NULL,
    identifier_sha256 TEXT   NOT NULL,
    identifier        TEXT   NOT NULL,
    PRIMARY KEY (environment_id, reference),
    UNIQUE (environment_id, identifier_sha256)
);

-- Identity events of schema version 1 carried the identifier itself, in a stream named by its
-- SHA-256: that hash is their reference (they are read so, see domain::identity::upcast_v1).
INSERT INTO identity_references (environment_id, reference, identifier_sha256, identifier)
SELECT DISTINCT json_extract(payload, '$.environment_id'), substr(stream_id, -64), substr(stream_id, -64), json_extract(payload, '$.identifier')
FROM events
WHERE stream_id LIKE 'identity-%' AND schema_version = 1
ON CONFLICT DO NOTHING;

-- Snapshots held identities by identifier; they now hold references. Derived: dropping them
-- changes no answer, only its cost.
DELETE FROM environment_snapshots;

-- The audit history stored identifiers; it now stores references (and names identities when
-- read). Rebuilt from the log by its worker.
DELETE FROM audit_log_features;
DELETE FROM audit_log;
DELETE FROM projection_checkpoints WHERE name = 'audit_history';

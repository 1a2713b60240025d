-- The dashboard's sign-in sessions (issue 13). A session is who signed in, not a change to
-- flags, so it lives beside the log like the SDK's traits. The cookie holds a random secret;
-- only its SHA-256 is stored, so this table gives no one a working session. Signing out deletes
-- the row; expired rows are deleted when found and when anyone signs in.
CREATE TABLE dashboard_sessions (
    secret_hash        TEXT PRIMARY KEY,
    user_id            BIGINT NOT NULL,
    created_at_micros  BIGINT NOT NULL,
    expires_at_micros  BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at_micros);

-- Identity analytics (issue 12): what each node's `identity_analytics` worker sent, dropped
-- (its queue was full) and failed to send, per integration. Each node adds its own counts to
-- its own row; the status API sums the rows. Nothing here is a cursor: analytics are sent
-- from memory, best effort, as the identities endpoints serve them.
CREATE TABLE integration_analytics (
    integration_id       BIGINT NOT NULL,
    node                 TEXT NOT NULL,
    sent                 BIGINT NOT NULL DEFAULT 0,
    dropped              BIGINT NOT NULL DEFAULT 0,
    failed               BIGINT NOT NULL DEFAULT 0,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_error           TEXT,
    last_sent_at_micros  BIGINT,
    updated_at_micros    BIGINT NOT NULL,
    PRIMARY KEY (integration_id, node)
);

-- Integrations (issue 12). Their configuration is in the log (directory events); what is here
-- is what the log must not hold, and where delivery stands.

-- Secret field values (API keys, signing secrets): write-only. A configuration names a value
-- by its random reference; a new value gets a new reference, so a configuration's history
-- shows when a secret was replaced without ever holding it. `scope` (`environment:3`,
-- `project:2`, `organisation:1`) is where it was stored: a configuration elsewhere that names
-- the reference does not get the value.
CREATE TABLE integration_secrets (
    reference TEXT NOT NULL PRIMARY KEY,
    scope     TEXT NOT NULL,
    value     TEXT NOT NULL
);

-- Each change integration's cursor: every message of every audit row up to `position` was
-- delivered (or dead-lettered). Written by the one node that delivers.
CREATE TABLE integration_deliveries (
    integration_id       BIGINT NOT NULL PRIMARY KEY,
    position             BIGINT NOT NULL,
    delivered            BIGINT NOT NULL DEFAULT 0,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    last_error           TEXT,
    last_delivered_at_micros BIGINT,
    updated_at_micros    BIGINT NOT NULL
);

-- Messages that failed every attempt (or for too long). `replay` asks the delivering node to
-- send one again; `replayed` says it then went through.
CREATE TABLE integration_dead_letters (
    integration_id   BIGINT NOT NULL,
    position         BIGINT NOT NULL,
    message          TEXT   NOT NULL,
    attempts         BIGINT NOT NULL,
    last_error       TEXT   NOT NULL,
    failed_at_micros BIGINT NOT NULL,
    status           TEXT   NOT NULL,
    PRIMARY KEY (integration_id, position, message)
);

-- Replays from a position asked for through any node, taken by the delivering one.
CREATE TABLE integration_replays (
    integration_id BIGINT NOT NULL PRIMARY KEY,
    from_position  BIGINT NOT NULL
);

-- Audit rows now carry the flag changes integrations are told about (detail.flags): rebuilt
-- from the log by the audit history's worker.
DELETE FROM audit_log_features;
DELETE FROM audit_log;
DELETE FROM projection_checkpoints WHERE name = 'audit_history';

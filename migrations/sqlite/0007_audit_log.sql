-- The audit history (projections::audit_history): one row per event of the log, with what it
-- touched, who did it, a one-line summary, and the change as before/after with the JSON Patch
-- between them (domain::audit). Derived, like every read model: it can be emptied and rebuilt
-- from position 0; its row count equals the log's event count.
CREATE TABLE audit_log (
    position           BIGINT PRIMARY KEY,
    recorded_at_micros BIGINT NOT NULL,
    stream_id          TEXT   NOT NULL,
    event_type         TEXT   NOT NULL,
    -- user:<id>, service-token:<id>, import, scheduler, system.
    actor              TEXT   NOT NULL,
    actor_name         TEXT   NOT NULL,
    organisation_id    BIGINT,
    project_id         BIGINT,
    environment_id     BIGINT,
    feature_id         BIGINT,
    segment_id         BIGINT,
    identity           TEXT,
    change_request_id  BIGINT,
    summary            TEXT   NOT NULL,
    -- JSON: approvers, reason, break_glass, changes, before, after, patch.
    detail             TEXT   NOT NULL
);
-- Every filter is an equality (or a range on time) read newest first: each index ends in the
-- position the keyset cursor pages on.
CREATE INDEX audit_log_by_project ON audit_log (project_id, position);
CREATE INDEX audit_log_by_environment ON audit_log (environment_id, position);
CREATE INDEX audit_log_by_segment ON audit_log (segment_id, position);
CREATE INDEX audit_log_by_actor ON audit_log (actor, position);
CREATE INDEX audit_log_by_event_type ON audit_log (event_type, position);
CREATE INDEX audit_log_by_change_request ON audit_log (change_request_id, position);
CREATE INDEX audit_log_by_time ON audit_log (recorded_at_micros, position);

-- Every feature a row concerns: the feature it changes, or the features a change request's
-- commands touch (so searching a feature finds the requests too).
CREATE TABLE audit_log_features (
    feature_id BIGINT NOT NULL,
    position   BIGINT NOT NULL,
    PRIMARY KEY (feature_id, position)
);

-- Periodic snapshots of what rendering one environment needs (projections::snapshots): the
-- directory, its project, itself and its identities' overrides folded up to `position`, as JSON.
-- Time travel starts from the latest one at or before the position it is asked for. Derived:
-- deleting them changes no answer, only its cost.
CREATE TABLE environment_snapshots (
    environment_id BIGINT NOT NULL,
    position       BIGINT NOT NULL,
    state          TEXT   NOT NULL,
    PRIMARY KEY (environment_id, position)
);

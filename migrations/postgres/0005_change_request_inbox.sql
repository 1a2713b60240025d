-- The change-request inbox (projections::change_request_inbox): one row per change request with
-- what an inbox filters and sorts by, and the reviewers assigned to it and the features its
-- commands touch, so "open requests assigned to me across every environment" is an index
-- lookup rather than a fold of every request. Derived, like every read model: it can be emptied
-- and rebuilt from position 0.
CREATE TABLE change_request_inbox (
    change_request_id BIGINT PRIMARY KEY,
    project_id        BIGINT NOT NULL,
    -- environment or project: what the request changes.
    scope_kind        TEXT   NOT NULL,
    scope_id          BIGINT NOT NULL,
    title             TEXT   NOT NULL,
    author            BIGINT NOT NULL,
    -- open, scheduled, committed, rejected, closed or failed.
    status            TEXT   NOT NULL,
    live_from_micros  BIGINT,
    opened_at_micros  BIGINT NOT NULL,
    updated_at_micros BIGINT NOT NULL,
    -- The position of the last event of the request's stream it reflects.
    position          BIGINT NOT NULL
);
CREATE INDEX change_request_inbox_by_scope ON change_request_inbox (scope_kind, scope_id, status);
CREATE INDEX change_request_inbox_by_author ON change_request_inbox (author, status);

CREATE TABLE change_request_inbox_reviewers (
    change_request_id BIGINT NOT NULL,
    user_id           BIGINT NOT NULL,
    PRIMARY KEY (user_id, change_request_id)
);

CREATE TABLE change_request_inbox_features (
    change_request_id BIGINT NOT NULL,
    feature_id        BIGINT NOT NULL,
    PRIMARY KEY (feature_id, change_request_id)
);

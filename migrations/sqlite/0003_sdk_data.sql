-- What SDKs send that is not a flag mutation, so not an event: identities' traits and flag
-- evaluation counts. Written by the SDK endpoints (api::sdk_store), never by projections.

-- Each identity's stored traits, as a JSON object of trait key to value.
CREATE TABLE identity_traits (
    environment_id    BIGINT NOT NULL,
    identifier        TEXT   NOT NULL,
    traits            TEXT   NOT NULL,
    updated_at_micros BIGINT NOT NULL,
    PRIMARY KEY (environment_id, identifier)
);

-- Flag evaluation counts reported by SDKs, per feature, environment and hour.
CREATE TABLE flag_analytics (
    environment_id BIGINT NOT NULL,
    feature_name   TEXT   NOT NULL,
    hour_start     BIGINT NOT NULL,
    count          BIGINT NOT NULL,
    PRIMARY KEY (environment_id, feature_name, hour_start)
);

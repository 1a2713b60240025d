-- Flag analytics (issue 13): SDK evaluation counts kept raw as they arrive, rolled up by the
-- flag_analytics worker into 15-minute and 1-hour buckets (raw rows are deleted as they are
-- rolled up; buckets older than their retention are deleted), and SDK API calls per
-- environment and day, which each node counts in memory and adds to its own row.
CREATE TABLE flag_evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    environment_id     BIGINT NOT NULL,
    feature_name       TEXT   NOT NULL,
    recorded_at_micros BIGINT NOT NULL,
    count              BIGINT NOT NULL
);

CREATE TABLE flag_evaluation_buckets (
    environment_id     BIGINT NOT NULL,
    feature_name       TEXT   NOT NULL,
    resolution_seconds BIGINT NOT NULL,
    bucket_start       BIGINT NOT NULL,
    count              BIGINT NOT NULL,
    PRIMARY KEY (environment_id, feature_name, resolution_seconds, bucket_start)
);

-- The hourly counts kept so far become hourly buckets.
INSERT INTO flag_evaluation_buckets (environment_id, feature_name, resolution_seconds, bucket_start, count)
    SELECT environment_id, feature_name, 3600, hour_start, count FROM flag_analytics;
DROP TABLE flag_analytics;

CREATE TABLE sdk_api_calls (
    environment_id BIGINT NOT NULL,
    day_start      BIGINT NOT NULL,
    node           TEXT   NOT NULL,
    count          BIGINT NOT NULL,
    PRIMARY KEY (environment_id, day_start, node)
);

-- audit_log_features keeps one index instead of two (see migrations/postgres, same number):
-- a feature's rows in position order, the environment beside each. SQLite cannot drop a
-- primary key, so the table is made again.
CREATE TABLE audit_log_features_one_index (
    feature_id     BIGINT NOT NULL,
    position       BIGINT NOT NULL,
    environment_id BIGINT
);
INSERT INTO audit_log_features_one_index (feature_id, position, environment_id)
    SELECT feature_id, position, environment_id FROM audit_log_features;
DROP TABLE audit_log_features;
ALTER TABLE audit_log_features_one_index RENAME TO audit_log_features;
CREATE INDEX audit_log_features_by_feature
    ON audit_log_features (feature_id, position, environment_id);

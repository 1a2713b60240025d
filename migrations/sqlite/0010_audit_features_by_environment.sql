-- A search by feature and environment reads both from audit_log_features' index, instead of
-- walking every row of the feature to find the environment's (a feature's rows grow with the
-- log). Rebuilt from the log by the audit history's worker.
DELETE FROM audit_log_features;
DELETE FROM audit_log;
DELETE FROM projection_checkpoints WHERE name = 'audit_history';
ALTER TABLE audit_log_features ADD COLUMN environment_id BIGINT;
CREATE INDEX audit_log_features_by_environment
    ON audit_log_features (feature_id, environment_id, position);

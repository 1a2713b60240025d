-- audit_log_features keeps one index instead of two: a feature's rows in position order, the
-- environment beside each (an index condition, checked without reading the row). A search by
-- feature walks it newest first; by feature and environment too, skipping the other
-- environments' entries in the index. The primary key on (feature_id, position) is gone: no
-- two rows repeat, since a batch whose audit_log rows exist fails on audit_log's key first.
-- Each index entry costs the catch-up a leaf page kept hot per key prefix: one per feature
-- here, where the two indexes kept one per feature and one per feature and environment.
ALTER TABLE audit_log_features DROP CONSTRAINT audit_log_features_pkey;
DROP INDEX audit_log_features_by_environment;
CREATE INDEX audit_log_features_by_feature
    ON audit_log_features (feature_id, position, environment_id);

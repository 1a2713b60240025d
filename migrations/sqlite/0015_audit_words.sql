-- The words of the audit history's summaries (projections::audit_history's vocabulary): a
-- free-text search for text no summary holds answers from here instead of reading every row.
-- Derived like the rest of the audit history, which is rebuilt from the log so that every word
-- already projected is in it.
CREATE TABLE audit_words (
    word TEXT PRIMARY KEY
);
DELETE FROM audit_log_features;
DELETE FROM audit_log;
DELETE FROM projection_checkpoints WHERE name = 'audit_history';

-- The background workers' status (projections::workers), one row per worker and node, written
-- by the node it describes: its state, whether it leads a worker only one node may run, how far
-- it got, its last error, and when it last wrote (a heartbeat). /health on a follower and
-- `flaglog workers status` on any node read it. Derived, like the read models: it can be
-- emptied at any time (running nodes write their rows again within a heartbeat).
CREATE TABLE worker_status (
    name              TEXT   NOT NULL,
    node              TEXT   NOT NULL,
    -- 1 for a worker every node runs (no leader to elect), 0 for one only one node may run.
    every_node        BIGINT NOT NULL,
    -- starting, running, following, restarting or stopped.
    state             TEXT   NOT NULL,
    -- 1 while this node leads a one-node worker.
    is_leader         BIGINT NOT NULL,
    position          BIGINT,
    lag_events        BIGINT,
    lag_millis        BIGINT,
    last_error        TEXT,
    updated_at_micros BIGINT NOT NULL,
    PRIMARY KEY (name, node)
);

//! What a worker reports about itself ([`WorkerStatus`]), and its shared copy in the database
//! (`worker_status`, one row per worker and node), which `/health` on a follower and
//! `flaglog workers status` on any node read to learn who leads and how far it got.
//!
//! The row is written by the node it describes: on every change of state and at least every
//! [`super::STATUS_INTERVAL`] while the worker runs (its heartbeat, `updated_at_micros`). A node
//! that takes the lead of a one-node worker clears the others' leader flag for it, so a leader
//! killed without a goodbye does not stay "leader" in the table.

use serde::Serialize;
use sqlx::AnyPool;

/// Where a worker stands on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Started, not yet running (or waiting for its first leadership attempt).
    Starting,
    /// Running on this node.
    Running,
    /// A one-node worker that another node leads; this node keeps trying to take over.
    Following,
    /// Failed; waiting out its backoff before it starts again (`last_error` says why).
    Restarting,
    /// Stopped for good (shutdown).
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Following => "following",
            State::Restarting => "restarting",
            State::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> State {
        match text {
            "running" => State::Running,
            "following" => State::Following,
            "restarting" => State::Restarting,
            "stopped" => State::Stopped,
            _ => State::Starting,
        }
    }
}

/// One worker on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    /// The node this status is of.
    pub node: String,
    pub state: State,
    /// The node that runs the worker: this one for an every-node worker or a one-node worker it
    /// leads; for a follower, the leader the table names (`None` if none is known).
    pub leader: Option<String>,
    /// The log position the worker has applied (for a follower: what its leader reported);
    /// `None` for workers that do not follow the log.
    pub position: Option<u64>,
    /// Events in the log past `position`.
    pub lag_events: Option<u64>,
    /// How long ago the oldest event not yet applied was recorded (0 when caught up).
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
    /// When the node last wrote this status (µs since the epoch).
    pub updated_at_micros: i64,
}

impl WorkerStatus {
    pub fn new(name: &str, node: &str) -> Self {
        WorkerStatus {
            name: name.to_string(),
            node: node.to_string(),
            state: State::Starting,
            leader: None,
            position: None,
            lag_events: None,
            lag_seconds: None,
            last_error: None,
            updated_at_micros: crate::now_micros(),
        }
    }

    /// Whether this node runs the worker.
    pub fn leads(&self) -> bool {
        self.leader.as_deref() == Some(self.node.as_str())
    }
}

fn millis(seconds: Option<f64>) -> Option<i64> {
    seconds.map(|s| (s * 1000.0).round() as i64)
}

/// Writes `status` as its node's row.
/// `every_node`: the worker runs on every node (no leader to elect).
pub(crate) async fn persist(
    pool: &AnyPool,
    status: &WorkerStatus,
    every_node: bool,
) -> sqlx::Result<()> {
    let is_leader = i64::from(!every_node && status.leads() && status.state == State::Running);
    sqlx::query(
        "INSERT INTO worker_status (name, node, every_node, state, is_leader, position, \
         lag_events, lag_millis, last_error, updated_at_micros) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (name, node) DO UPDATE SET every_node = excluded.every_node, \
         state = excluded.state, is_leader = excluded.is_leader, position = excluded.position, \
         lag_events = excluded.lag_events, lag_millis = excluded.lag_millis, \
         last_error = excluded.last_error, updated_at_micros = excluded.updated_at_micros",
    )
    .bind(&status.name)
    .bind(&status.node)
    .bind(i64::from(every_node))
    .bind(status.state.as_str())
    .bind(is_leader)
    .bind(status.position.map(|p| p as i64))
    .bind(status.lag_events.map(|l| l as i64))
    .bind(millis(status.lag_seconds))
    .bind(status.last_error.as_deref())
    .bind(status.updated_at_micros)
    .execute(pool)
    .await?;
    Ok(())
}

/// Called by a node that just took the lead of `name`: no other node's row says it leads.
pub(crate) async fn claim(pool: &AnyPool, name: &str, node: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE worker_status SET is_leader = 0 WHERE name = $1 AND node <> $2")
        .bind(name)
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

type Row = (
    String,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
);

const COLUMNS: &str = "name, node, every_node, state, is_leader, position, lag_events, lag_millis, \
                       last_error, updated_at_micros";

fn from_row(row: Row, leader: Option<String>) -> WorkerStatus {
    WorkerStatus {
        name: row.0,
        node: row.1,
        state: State::parse(&row.3),
        leader,
        position: row.5.map(|p| p as u64),
        lag_events: row.6.map(|l| l as u64),
        lag_seconds: row.7.map(|ms| ms as f64 / 1000.0),
        last_error: row.8,
        updated_at_micros: row.9,
    }
}

/// The row of the node that leads `name`, if one says so.
pub(crate) async fn leader_of(pool: &AnyPool, name: &str) -> sqlx::Result<Option<WorkerStatus>> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM worker_status WHERE name = $1 AND is_leader = 1 \
         ORDER BY updated_at_micros DESC LIMIT 1"
    )))
    .bind(name)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| {
        let leader = Some(row.1.clone());
        from_row(row, leader)
    }))
}

/// Every worker on every node that ever ran one on this database, by name then node; each
/// names its worker's leader (the node whose row says it leads; for a worker every node runs,
/// the row's own node while it runs).
pub async fn read_all(pool: &AnyPool) -> sqlx::Result<Vec<WorkerStatus>> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM worker_status ORDER BY name, node"
    )))
    .fetch_all(pool)
    .await?;
    let leaders: std::collections::HashMap<String, String> = rows
        .iter()
        .filter(|row| row.4 == 1)
        .map(|row| (row.0.clone(), row.1.clone()))
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let leader = if row.2 == 1 {
                (row.3 == State::Running.as_str()).then(|| row.1.clone())
            } else {
                leaders.get(&row.0).cloned()
            };
            from_row(row, leader)
        })
        .collect())
}

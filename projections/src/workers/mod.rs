//! The background-worker runtime: every piece of background work a node does (the
//! environment-documents projection, cache invalidation, database notifications) is a named
//! [`Worker`] the runtime ([`Workers`]) starts, watches, restarts and stops, instead of a detached
//! task nobody can stop or see.
//!
//! For each worker the runtime keeps:
//!
//! - a [`CancellationToken`] (a child of the runtime's): [`Workers::shutdown`] cancels them all
//!   and waits for each worker to return, which a worker does at a safe point (the projection:
//!   between batches, never inside one);
//! - a restart loop: a worker that fails is started again after a backoff that doubles from
//!   [`BACKOFF_INITIAL`] up to [`BACKOFF_MAX`] (and starts over once a run lasted
//!   [`BACKOFF_RESET`]). The worker object survives, so it resumes where it stands (the projection
//!   from its checkpoint);
//! - a [`WorkerStatus`] (running / following / restarting with the last error / stopped, the
//!   position, the lag in events and seconds, the leader), readable in memory
//!   ([`Workers::statuses`]) and written to the `worker_status` table for other nodes and
//!   `flaglog workers status` ([`status::read_all`]).
//!
//! A worker that writes shared state is placed on [`Placement::OneNode`]: it runs only on the
//! node that holds its lock ([`leader`]); the others follow, trying again every
//! [`LEADER_RETRY`], and take over when the leader's session ends. Leadership alone cannot stop a
//! former leader that has not noticed yet from finishing a write it started, so whatever such a
//! worker writes must also be guarded by log position (see `environment_documents`).

pub mod leader;
pub mod status;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::AnyPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Error;
use leader::LeaderLock;
pub use leader::Leadership;
pub use status::{State, WorkerStatus};

/// The first wait after a failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// The longest wait after repeated failures.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A run this long counts as healthy: the next failure waits [`BACKOFF_INITIAL`] again.
pub const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// How often a follower tries to take the lead. With the time a new leader needs to warm up,
/// this bounds how long a one-node worker is without a leader after its leader died.
pub const LEADER_RETRY: Duration = Duration::from_millis(500);
/// How often a running worker's status is written to the database and its leader's lock
/// checked.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Where a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On every node (it keeps only this node's state: caches, listeners).
    EveryNode,
    /// On one node at a time (it writes state the nodes share).
    OneNode,
}

/// A unit of background work.
#[async_trait]
pub trait Worker: Send + 'static {
    /// Runs until `context.cancelled()` (then returns `Ok`, at a safe point) or until it fails
    /// (then the runtime starts it again after a backoff, on the same object).
    async fn run(&mut self, context: &Context) -> Result<(), Error>;
}

/// What a running worker gets: its cancellation and where to report its progress.
pub struct Context {
    cancel: CancellationToken,
    status: Arc<Mutex<WorkerStatus>>,
}

impl Context {
    /// Resolves when the worker should stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The worker's cancellation, for code that takes a token.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Reports the position applied, the events past it and the age of the oldest of them.
    pub fn progress(&self, position: u64, lag_events: u64, lag_seconds: f64) {
        let mut status = lock(&self.status);
        status.position = Some(position);
        status.lag_events = Some(lag_events);
        status.lag_seconds = Some(lag_seconds.max(0.0));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a status that is still a valid value.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One worker as the runtime holds it.
struct Unit {
    name: String,
    placement: Placement,
    status: Arc<Mutex<WorkerStatus>>,
}

/// The workers of one node.
pub struct Workers {
    node: String,
    pool: AnyPool,
    leadership: Leadership,
    cancel: CancellationToken,
    units: Mutex<Vec<Unit>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// A runtime for node `node`, writing statuses into `pool`'s database.
    pub fn new(node: &str, pool: AnyPool, leadership: Leadership) -> Self {
        Workers {
            node: node.to_string(),
            pool,
            leadership,
            cancel: CancellationToken::new(),
            units: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Starts `worker` under `name`.
    pub fn spawn(&self, name: &str, placement: Placement, worker: impl Worker) {
        let mut first = WorkerStatus::new(name, &self.node);
        if placement == Placement::EveryNode || matches!(self.leadership, Leadership::Always) {
            // Nothing to elect: this node runs it.
            first.leader = Some(self.node.clone());
        }
        let status = Arc::new(Mutex::new(first));
        let supervisor = Supervisor {
            pool: self.pool.clone(),
            cancel: self.cancel.child_token(),
            status: status.clone(),
            lock: match placement {
                Placement::OneNode => Some(self.leadership.lock(name)),
                Placement::EveryNode => None,
            },
        };
        lock(&self.units).push(Unit {
            name: name.to_string(),
            placement,
            status,
        });
        // The one spawn per worker: its handle is kept, and `shutdown` awaits it.
        let task = tokio::spawn(supervisor.run(Box::new(worker)));
        lock(&self.tasks).push(task);
    }

    /// Every worker's status on this node, in the order they were started. A follower's
    /// names the leader and its progress as the leader last wrote them.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        lock(&self.units)
            .iter()
            .map(|unit| lock(&unit.status).clone())
            .collect()
    }

    /// Whether the worker runs on one node at a time.
    pub fn placement(&self, name: &str) -> Option<Placement> {
        lock(&self.units)
            .iter()
            .find(|unit| unit.name == name)
            .map(|unit| unit.placement)
    }

    /// Stops every worker (each at its next safe point) and waits until all have.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a worker's task ended abnormally");
            }
        }
    }
}

impl Drop for Workers {
    /// Workers outlive no runtime: dropping it stops them (without waiting).
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Runs one worker: leadership, restarts, status.
struct Supervisor {
    pool: AnyPool,
    cancel: CancellationToken,
    status: Arc<Mutex<WorkerStatus>>,
    lock: Option<LeaderLock>,
}

impl Supervisor {
    fn name(&self) -> String {
        lock(&self.status).name.clone()
    }

    fn update(&self, change: impl FnOnce(&mut WorkerStatus)) {
        let mut status = lock(&self.status);
        change(&mut status);
        status.updated_at_micros = crate::now_micros();
    }

    /// Writes the status (a failure to is only logged: the database may be what is down).
    async fn persist(&self) {
        let snapshot = {
            let mut status = lock(&self.status);
            status.updated_at_micros = crate::now_micros();
            status.clone()
        };
        if let Err(e) = status::persist(&self.pool, &snapshot, self.lock.is_none()).await {
            tracing::debug!(worker = %snapshot.name, error = %e, "cannot write the worker's status");
        }
    }

    async fn run(mut self, mut worker: Box<dyn Worker>) {
        let name = self.name();
        let mut backoff = BACKOFF_INITIAL;
        while !self.cancel.is_cancelled() {
            if !self.lead().await {
                break;
            }
            let node = lock(&self.status).node.clone();
            if self.lock.is_some()
                && let Err(e) = status::claim(&self.pool, &name, &node).await
            {
                tracing::debug!(worker = %name, error = %e, "cannot clear former leaders");
            }
            self.update(|s| {
                s.state = State::Running;
                s.leader = Some(node.clone());
            });
            tracing::info!(worker = %name, "worker running");
            self.persist().await;

            let started = Instant::now();
            let outcome = self.run_once(&mut *worker).await;
            if let Some(lock) = self.lock.as_mut() {
                lock.release().await;
            }
            match outcome {
                Ok(()) if self.cancel.is_cancelled() => break,
                Ok(()) => {
                    // Returned by itself: its work is done.
                    tracing::info!(worker = %name, "worker finished");
                    break;
                }
                Err(e) => {
                    if started.elapsed() >= BACKOFF_RESET {
                        backoff = BACKOFF_INITIAL;
                    }
                    let message = e.to_string();
                    tracing::error!(worker = %name, error = %message, retry_in = ?backoff,
                        "worker failed; restarting");
                    self.update(|s| {
                        s.state = State::Restarting;
                        s.last_error = Some(message);
                    });
                    self.persist().await;
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.cancel.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.update(|s| {
            s.state = State::Stopped;
            s.leader = None;
        });
        self.persist().await;
        tracing::info!(worker = %name, "worker stopped");
    }

    /// Waits until this node may run the worker; false if cancelled first.
    async fn lead(&mut self) -> bool {
        let name = self.name();
        loop {
            let Some(lock) = self.lock.as_mut() else {
                return true;
            };
            match lock.try_acquire().await {
                Ok(true) => return true,
                Ok(false) => {
                    let leader = status::leader_of(&self.pool, &name).await.ok().flatten();
                    self.update(|s| {
                        s.state = State::Following;
                        s.leader = leader.as_ref().map(|l| l.node.clone());
                        s.position = leader.as_ref().and_then(|l| l.position);
                        s.lag_events = leader.as_ref().and_then(|l| l.lag_events);
                        s.lag_seconds = leader.as_ref().and_then(|l| l.lag_seconds);
                    });
                    self.persist().await;
                }
                Err(e) => {
                    tracing::warn!(worker = %name, error = %e, "cannot try the leader lock");
                    self.update(|s| {
                        s.state = State::Restarting;
                        s.last_error = Some(format!("leader lock: {e}"));
                    });
                    self.persist().await;
                }
            }
            tokio::select! {
                () = tokio::time::sleep(LEADER_RETRY) => {}
                () = self.cancel.cancelled() => return false,
            }
        }
    }

    /// One run of the worker, with the status written and the lock checked on the side; the
    /// lock lost fails the run (once the worker has stopped at its safe point).
    ///
    /// The heartbeat is polled beside the run, never instead of it: a status write that waits
    /// (on SQLite, for the write lock a batch of the worker itself holds) must not stall the
    /// worker.
    async fn run_once(&mut self, worker: &mut dyn Worker) -> Result<(), Error> {
        let run_cancel = self.cancel.child_token();
        let context = Context {
            cancel: run_cancel.clone(),
            status: self.status.clone(),
        };
        let run = worker.run(&context);
        tokio::pin!(run);
        let lost = {
            let heartbeat = Self::heartbeat(&self.pool, &self.status, self.lock.as_mut());
            tokio::pin!(heartbeat);
            tokio::select! {
                outcome = &mut run => return outcome,
                lost = &mut heartbeat => lost,
            }
        };
        tracing::warn!(error = %lost, "lost the leader lock's session; stopping");
        run_cancel.cancel();
        let _ = run.await;
        Err(lost)
    }

    /// Writes the status every [`STATUS_INTERVAL`] and checks the lock; returns when the lock's
    /// session is gone.
    async fn heartbeat(
        pool: &AnyPool,
        status: &Mutex<WorkerStatus>,
        mut lock: Option<&mut LeaderLock>,
    ) -> Error {
        let every_node = lock.is_none();
        let mut tick = tokio::time::interval(STATUS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let snapshot = {
                let mut status = self::lock(status);
                status.updated_at_micros = crate::now_micros();
                status.clone()
            };
            if let Err(e) = status::persist(pool, &snapshot, every_node).await {
                tracing::debug!(worker = %snapshot.name, error = %e, "cannot write the worker's status");
            }
            if let Some(lock) = lock.as_mut()
                && let Err(e) = lock.check().await
            {
                return Error::LostLeadership(e.to_string());
            }
        }
    }
}

//! The background-worker runtime on real databases: a failing worker is restarted with backoff
//! on the same object and reports its last error; shutdown stops every worker and records it;
//! on PostgreSQL a one-node worker runs on one runtime (node) at a time, and another takes over
//! when the leader stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use commands::log::testing::TestDatabase;
use projections::Error;
use projections::workers::{Context, Leadership, Placement, State, Worker, Workers, status};

/// How long a test waits for a state it expects.
const DEADLINE: Duration = Duration::from_secs(20);

/// Fails its first `failures` runs, then runs until cancelled; counts runs and how many run at
/// once (across every runtime sharing the counters).
struct Flaky {
    failures: usize,
    runs: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

#[async_trait]
impl Worker for Flaky {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        if run <= self.failures {
            return Err(Error::Other(format!("failure {run}")));
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        context.progress(run as u64, 0, 0.0);
        context.cancelled().await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

fn flaky(failures: usize, counters: &[Arc<AtomicUsize>; 3]) -> Flaky {
    Flaky {
        failures,
        runs: counters[0].clone(),
        running: counters[1].clone(),
        most_at_once: counters[2].clone(),
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn runtime(db: &TestDatabase, node: &str) -> Workers {
    let pool = projections::connect(db.url()).await.unwrap();
    Workers::new(node, pool, Leadership::for_url(db.url()).unwrap())
}

async fn a_failing_worker_restarts_with_backoff_and_reports_its_last_error(db: TestDatabase) {
    let workers = runtime(&db, "node-a").await;
    let counters = Default::default();
    workers.spawn("flaky", Placement::OneNode, flaky(2, &counters));
    until("the third run is running", async || {
        let status = &workers.statuses()[0];
        status.state == State::Running && counters[0].load(Ordering::SeqCst) == 3
    })
    .await;
    let status = workers.statuses()[0].clone();
    assert_eq!(status.last_error.as_deref(), Some("failure 2"));
    assert_eq!(status.leader.as_deref(), Some("node-a"));
    assert_eq!(status.position, Some(3));

    let pool = projections::connect(db.url()).await.unwrap();
    until("the running state is in the table", async || {
        let rows = status::read_all(&pool).await.unwrap();
        rows.len() == 1 && rows[0].state == State::Running
    })
    .await;
    workers.shutdown().await;
    assert_eq!(workers.statuses()[0].state, State::Stopped);
    assert_eq!(counters[1].load(Ordering::SeqCst), 0, "the run returned");
    let rows = status::read_all(&pool).await.unwrap();
    assert_eq!(rows[0].state, State::Stopped);
    assert_eq!(rows[0].node, "node-a");
    assert_eq!(rows[0].leader, None, "a stopped worker has no leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failing_worker_restarts_with_backoff_and_reports_its_last_error() {
    a_failing_worker_restarts_with_backoff_and_reports_its_last_error(TestDatabase::sqlite().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failing_worker_restarts_with_backoff_and_reports_its_last_error() {
    a_failing_worker_restarts_with_backoff_and_reports_its_last_error(
        TestDatabase::postgres().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_one_node_worker_runs_on_one_node_and_another_takes_over() {
    let db = TestDatabase::postgres().await;
    let counters: [Arc<AtomicUsize>; 3] = Default::default();
    let a = runtime(&db, "node-a").await;
    a.spawn("single", Placement::OneNode, flaky(0, &counters));
    until("node-a leads", async || {
        a.statuses()[0].state == State::Running
    })
    .await;
    let b = runtime(&db, "node-b").await;
    let c = runtime(&db, "node-c").await;
    b.spawn("single", Placement::OneNode, flaky(0, &counters));
    c.spawn("single", Placement::OneNode, flaky(0, &counters));
    for follower in [&b, &c] {
        until("the others follow node-a", async || {
            let status = &follower.statuses()[0];
            status.state == State::Following && status.leader.as_deref() == Some("node-a")
        })
        .await;
    }
    assert_eq!(counters[1].load(Ordering::SeqCst), 1, "one runs");

    a.shutdown().await;
    let stopped = Instant::now();
    until("another node takes over", async || {
        [&b, &c]
            .iter()
            .any(|n| n.statuses()[0].state == State::Running)
    })
    .await;
    let took = stopped.elapsed();
    eprintln!("takeover after the leader stopped: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let pool = projections::connect(db.url()).await.unwrap();
    until("the table names the new leader", async || {
        let rows = status::read_all(&pool).await.unwrap();
        let leaders: Vec<_> = rows.iter().filter_map(|r| r.leader.clone()).collect();
        leaders.len() == 3 && leaders.iter().all(|l| l != "node-a" && *l == leaders[0])
    })
    .await;
    b.shutdown().await;
    c.shutdown().await;
    assert_eq!(counters[2].load(Ordering::SeqCst), 1, "never two at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_worker_leads_without_a_lock() {
    let db = TestDatabase::sqlite().await;
    let counters: [Arc<AtomicUsize>; 3] = Default::default();
    let workers = runtime(&db, "only").await;
    workers.spawn("one", Placement::OneNode, flaky(0, &counters));
    workers.spawn("every", Placement::EveryNode, flaky(0, &counters));
    until("both run", async || {
        workers
            .statuses()
            .iter()
            .all(|s| s.state == State::Running && s.leads())
    })
    .await;
    workers.shutdown().await;
}

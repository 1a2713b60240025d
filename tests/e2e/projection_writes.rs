//! The projection runner's writes in flight (`projections::runner`): a projection that decides
//! and writes in two halves has several batches written at once, yet they commit in log order,
//! and none commits after an earlier one failed (the read model would skip events). Driven over
//! a real log, on both backends, by a projection that records what it commits and whose earlier
//! batches take longest to write, so that without turns the later ones would commit first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use domain::log::{EventLog, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamAppend};
use flaglog_tests::{Backend, on_both_backends};
use projections::Error;
use projections::runner::{self, Projection, Turn, Write};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Enough events for several of the runner's batches.
const EVENTS: usize = 2500;
const WRITES_IN_FLIGHT: usize = 3;

#[derive(Clone, Default)]
struct Recorded {
    /// The last position of each batch committed, in the order they committed.
    committed: Arc<Mutex<Vec<u64>>>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
}

impl Recorded {
    fn committed(&self) -> Vec<u64> {
        self.committed.lock().expect("not poisoned").clone()
    }
}

struct Batches {
    recorded: Recorded,
    decided: usize,
    /// The batch (counted from 0) whose write fails.
    failing: Option<usize>,
}

#[async_trait]
impl Projection for Batches {
    async fn checkpoint(&mut self) -> Result<u64, Error> {
        Ok(self.recorded.committed().last().copied().unwrap_or(0))
    }

    fn warm(&mut self, _: &[RecordedEvent]) -> Result<(), Error> {
        Ok(())
    }

    async fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        runner::write_now(self, events).await
    }

    fn decide(&mut self, events: &[RecordedEvent]) -> Result<Option<Write>, Error> {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(None);
        };
        let batch = self.decided;
        self.decided += 1;
        let fails = self.failing == Some(batch);
        // Earlier batches write longest: 90, 60, 30 ms, then again.
        let work = Duration::from_millis(90 - 30 * (batch as u64 % 3));
        let recorded = self.recorded.clone();
        Ok(Some(Box::new(move |turn: Turn| {
            Box::pin(async move {
                let now = recorded.running.fetch_add(1, Ordering::SeqCst) + 1;
                recorded.most_running.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(work).await;
                recorded.running.fetch_sub(1, Ordering::SeqCst);
                if fails {
                    return Err(Error::Other(format!("batch {batch}'s write fails")));
                }
                turn.wait().await?;
                recorded.committed.lock().expect("not poisoned").push(last);
                Ok(())
            }) as projections::runner::WriteFuture
        })))
    }

    fn writes_in_flight(&self) -> usize {
        WRITES_IN_FLIGHT
    }
}

/// A log of [`EVENTS`] events, and its head.
async fn filled_log(db: &commands::log::testing::TestDatabase) -> (Arc<dyn EventLog>, u64) {
    let log = commands::log::connect(db.url()).await.expect("log opens");
    let events = (0..EVENTS)
        .map(|n| NewEvent {
            event_type: "Counted".into(),
            schema_version: 1,
            payload: json!({ "n": n }),
        })
        .collect();
    log.append(
        vec![StreamAppend {
            stream_id: "runner-test".into(),
            expected: ExpectedVersion::Any,
            events,
        }],
        Metadata::actor("test"),
    )
    .await
    .expect("appended");
    let head = log.head().await.expect("head");
    (log, head)
}

async fn writes_overlap_and_commit_in_log_order(backend: Backend) {
    let db = flaglog_tests::database(backend).await;
    let (log, head) = filled_log(&db).await;
    let recorded = Recorded::default();
    let (progress, mut applied) = tokio::sync::watch::channel(0);
    let cancel = CancellationToken::new();
    let runner = tokio::spawn(projections::runner::run(
        log,
        Batches {
            recorded: recorded.clone(),
            decided: 0,
            failing: None,
        },
        progress,
        cancel.clone(),
    ));
    applied
        .wait_for(|position| *position >= head)
        .await
        .expect("the runner reports progress");
    cancel.cancel();
    runner.await.expect("joins").expect("runs without error");

    let committed = recorded.committed();
    assert!(
        committed.len() >= 3,
        "{EVENTS} events are several batches: {committed:?}"
    );
    assert!(
        committed.windows(2).all(|w| w[0] < w[1]),
        "batches commit in log order although later ones finished writing first: {committed:?}"
    );
    assert_eq!(committed.last(), Some(&head));
    assert!(
        recorded.most_running.load(Ordering::SeqCst) >= 2,
        "batches were written at once"
    );
}

async fn no_batch_commits_after_one_that_failed(backend: Backend) {
    let db = flaglog_tests::database(backend).await;
    let (log, head) = filled_log(&db).await;
    let recorded = Recorded::default();
    let (progress, applied) = tokio::sync::watch::channel(0);
    let outcome = projections::runner::run(
        log,
        Batches {
            recorded: recorded.clone(),
            decided: 0,
            failing: Some(1),
        },
        progress,
        CancellationToken::new(),
    )
    .await;

    let error = outcome.expect_err("the failed write stops the runner");
    assert!(
        error.to_string().contains("batch 1's write fails"),
        "{error}"
    );
    // The batch after the failed one finished writing first, and waited for its turn in vain.
    let committed = recorded.committed();
    assert_eq!(committed.len(), 1, "only the first batch: {committed:?}");
    assert!(committed[0] < head);
    assert_eq!(
        *applied.borrow(),
        committed[0],
        "progress is what committed"
    );
}

on_both_backends!(
    writes_overlap_and_commit_in_log_order,
    no_batch_commits_after_one_that_failed,
);

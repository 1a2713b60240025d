//! The subscription runner: feeds a projection every event of the log, in order, exactly once.
//!
//! On start it asks the projection for its checkpoint (the position its read model reflects).
//! If the projection it still holds from an earlier run reflects exactly that position (a
//! restart after an error outside a batch, on the same node), it goes on from there; otherwise a
//! new projection warms its in-memory state with the events up to the checkpoint (no writes).
//! Then it applies every later event in batches. Each batch's read-model rows and the new
//! checkpoint are written in one transaction, so a crash between batches neither loses an event
//! nor applies one twice. Between batches it sleeps in `EventLog::wait_for_events`, which the
//! backend wakes on commit, with polling as the fallback, and it stops (when cancelled) only
//! between batches.
//!
//! Catching up, it works on several batches at once: the next is read (and decoded) on a task of
//! its own; the current is decided; and, for a projection that splits `apply` in two
//! ([`Projection::decide`]), earlier ones are written on tasks of their own, up to
//! [`Projection::writes_in_flight`] at once. Each write's transaction may do its work while the
//! one before is still open, but commits only in its [`Turn`]: after every earlier batch
//! committed, never after one failed. Progress is reported in log order, always a committed
//! position.
//!
//! [`ProjectionWorker`] is a runner as a [`crate::workers::Worker`]: what the server runs.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::log::{EventLog, LogError, RecordedEvent};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::Error;
use crate::workers::{Context, Worker};

/// Events read per batch.
const BATCH: usize = 1000;
/// Longest sleep between polls when no wake-up comes.
const POLL: Duration = Duration::from_secs(1);

/// A projection the runner can feed.
#[async_trait]
pub trait Projection: Send + 'static {
    /// The position the projection's read model reflects (0 if it has none).
    async fn checkpoint(&mut self) -> Result<u64, Error>;

    /// Folds events the read model already reflects into memory, without writing.
    fn warm(&mut self, events: &[RecordedEvent]) -> Result<(), Error>;

    /// Applies events past the checkpoint: writes the read model and the checkpoint of the last
    /// event in one transaction.
    async fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), Error>;

    /// [`Projection::apply`] in two halves, for a projection whose deciding and writing are both
    /// heavy: folds the events in memory now, and returns the write (the same transaction) to
    /// run on a task of its own while the runner decides the next batch. `None` (the default):
    /// the runner calls `apply`.
    fn decide(&mut self, _events: &[RecordedEvent]) -> Result<Option<Write>, Error> {
        Ok(None)
    }

    /// How many of [`Projection::decide`]'s writes may run at once (each commits in its
    /// [`Turn`]): 1 (the default) where transactions cannot overlap, as on SQLite.
    fn writes_in_flight(&self) -> usize {
        1
    }
}

/// [`Projection::apply`] of a projection that [`Projection::decide`]s: the batch's write, run
/// at once.
pub async fn write_now<P: Projection + ?Sized>(
    projection: &mut P,
    events: &[RecordedEvent],
) -> Result<(), Error> {
    match projection.decide(events)? {
        Some(write) => write(Turn::now()).await,
        None => Ok(()),
    }
}

/// A batch's write, owning what it writes (see [`Projection::decide`]): started with its
/// [`Turn`], which it must wait for before it commits.
pub type Write = Box<dyn FnOnce(Turn) -> WriteFuture + Send>;

/// A write, started.
pub type WriteFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// When a write may commit: once every earlier batch's write has committed.
pub struct Turn(Option<oneshot::Receiver<()>>);

impl Turn {
    /// A turn that has come: nothing is written before it.
    pub fn now() -> Turn {
        Turn(None)
    }

    /// Waits until the batch before is committed; an error if its write failed (this batch
    /// must then not commit either, or the read model would skip events).
    pub async fn wait(self) -> Result<(), Error> {
        match self.0 {
            None => Ok(()),
            Some(before) => before.await.map_err(|_| {
                Error::Other("the write of the batch before this one did not commit".into())
            }),
        }
    }
}

/// The write of a decided batch, running, and the position it brings the read model to.
/// Aborted if dropped unfinished: never left running on its own.
struct Writing {
    task: AbortOnDropHandle<Result<(), Error>>,
    position: u64,
}

/// The writes in flight, oldest first, and the signal the newest gives when it commits (the
/// next write's [`Turn`]).
#[derive(Default)]
struct InFlight {
    running: VecDeque<Writing>,
    newest_committed: Option<oneshot::Receiver<()>>,
}

impl InFlight {
    /// Starts `write` on a task of its own, after waiting for the oldest writes while `limit`
    /// are running.
    async fn start(
        &mut self,
        write: Write,
        position: u64,
        limit: usize,
        progress: &watch::Sender<u64>,
    ) -> Result<(), Error> {
        while self.running.len() >= limit.max(1) {
            self.settle_oldest(progress).await?;
        }
        let turn = Turn(self.newest_committed.take());
        let (committed, signal) = oneshot::channel();
        self.newest_committed = Some(signal);
        let started = write(turn);
        self.running.push_back(Writing {
            task: AbortOnDropHandle::new(tokio::spawn(async move {
                started.await?;
                let _ = committed.send(());
                Ok(())
            })),
            position,
        });
        Ok(())
    }

    async fn settle_oldest(&mut self, progress: &watch::Sender<u64>) -> Result<(), Error> {
        match self.running.pop_front() {
            Some(write) => write.finish(progress).await,
            None => Ok(()),
        }
    }

    /// Waits for every write in flight, in order: the projection is kept (its memory reflects
    /// the position) only if they all committed.
    async fn settle(&mut self, progress: &watch::Sender<u64>) -> Result<(), Error> {
        while !self.running.is_empty() {
            self.settle_oldest(progress).await?;
        }
        Ok(())
    }
}

impl Writing {
    /// Waits for the write; tells `progress` its position once it is committed.
    async fn finish(self, progress: &watch::Sender<u64>) -> Result<(), Error> {
        self.task
            .await
            .map_err(|e| Error::Other(format!("writing a batch: {e}")))??;
        progress.send_replace(self.position);
        Ok(())
    }
}

/// How far a run got and how it ended.
struct Stopped<P> {
    /// The projection, if its memory reflects `position` exactly (`None` after a failed batch:
    /// it may have folded events whose rows were not written).
    kept: Option<(P, u64)>,
    outcome: Result<(), Error>,
}

/// Where a run reports progress.
trait Report: Sync {
    fn progress(&self, position: u64, lag_events: u64, lag_seconds: f64);
}

struct NoReport;

impl Report for NoReport {
    fn progress(&self, _: u64, _: u64, _: f64) {}
}

impl Report for Context {
    fn progress(&self, position: u64, lag_events: u64, lag_seconds: f64) {
        Context::progress(self, position, lag_events, lag_seconds);
    }
}

/// Brings a projection to its checkpoint: `kept` if it is there already (true), else a new
/// one from `fresh`, warmed up to it (false).
async fn resume<P: Projection>(
    log: &dyn EventLog,
    kept: Option<(P, u64)>,
    fresh: impl FnOnce() -> P,
) -> Result<(P, u64, bool), Error> {
    if let Some((mut projection, position)) = kept
        && projection.checkpoint().await? == position
    {
        return Ok((projection, position, true));
    }
    let mut projection = fresh();
    let checkpoint = projection.checkpoint().await?;
    let mut position = 0;
    while position < checkpoint {
        let events = log.read_all(position, BATCH).await?;
        let events: Vec<_> = events
            .into_iter()
            .take_while(|e| e.position <= checkpoint)
            .collect();
        let Some(last) = events.last() else { break };
        position = last.position;
        projection.warm(&events)?;
    }
    Ok((projection, checkpoint, false))
}

/// The next batch, being read while the current one is applied (catching up: the current
/// batch was full). Aborted if dropped unread: never left running on its own.
type Prefetch = AbortOnDropHandle<Result<Vec<RecordedEvent>, LogError>>;

/// Reads the batch after `position`: the one prefetched if there is one.
async fn next_batch(
    log: &Arc<dyn EventLog>,
    position: u64,
    prefetched: Option<Prefetch>,
) -> Result<Vec<RecordedEvent>, Error> {
    match prefetched {
        Some(reading) => reading
            .await
            .map_err(|e| Error::Other(format!("reading the next batch: {e}")))?
            .map_err(Error::from),
        None => Ok(log.read_all(position, BATCH).await?),
    }
}

/// Applies batches from `position` on until cancelled or an error. While it catches up, the
/// next batch is read (and decoded) on another task as the current one is applied; and a
/// projection that decides and writes in two halves ([`Projection::decide`]) writes each batch
/// on a task of its own while the next is decided, committing in log order.
async fn follow<P: Projection>(
    log: &Arc<dyn EventLog>,
    mut projection: P,
    mut position: u64,
    progress: &watch::Sender<u64>,
    cancel: &CancellationToken,
    report: &dyn Report,
) -> Stopped<P> {
    progress.send_replace(position);
    let mut prefetched: Option<Prefetch> = None;
    let mut writing = InFlight::default();
    let writes_in_flight = projection.writes_in_flight();
    loop {
        if cancel.is_cancelled() {
            return match writing.settle(progress).await {
                Ok(()) => Stopped {
                    kept: Some((projection, position)),
                    outcome: Ok(()),
                },
                Err(e) => Stopped {
                    kept: None,
                    outcome: Err(e),
                },
            };
        }
        let events = match next_batch(log, position, prefetched.take()).await {
            Ok(events) => events,
            Err(e) => {
                let written = writing.settle(progress).await;
                return Stopped {
                    kept: written.is_ok().then_some((projection, position)),
                    outcome: Err(e),
                };
            }
        };
        if let (Some(first), Some(last)) = (events.first(), events.last()) {
            let head = log.head().await.unwrap_or(last.position).max(last.position);
            let age = (crate::now_micros() - first.recorded_at_micros) as f64 / 1e6;
            report.progress(position, head - position, age);
            let last = last.position;
            if events.len() == BATCH {
                let reader = log.clone();
                prefetched = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                    reader.read_all(last, BATCH).await
                })));
            }
            let applied = match projection.decide(&events) {
                Ok(Some(write)) => writing.start(write, last, writes_in_flight, progress).await,
                Ok(None) => match writing.settle(progress).await {
                    Ok(()) => projection.apply(&events).await.map(|()| {
                        progress.send_replace(last);
                    }),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                // Whatever was still being written is abandoned with the projection's memory.
                return Stopped {
                    kept: None,
                    outcome: Err(e),
                };
            }
            position = last;
            continue;
        }
        if let Err(e) = writing.settle(progress).await {
            return Stopped {
                kept: None,
                outcome: Err(e),
            };
        }
        report.progress(position, 0, 0.0);
        tokio::select! {
            waited = log.wait_for_events(position, POLL) => {
                if let Err(e) = waited {
                    return Stopped { kept: Some((projection, position)), outcome: Err(e.into()) };
                }
            }
            () = cancel.cancelled() => {}
        }
    }
}

/// Runs `projection` until `cancel` is cancelled (then returns at a batch boundary). `progress`
/// is told the position applied after each batch, so readers can wait for the projection to
/// catch up.
pub async fn run<P: Projection>(
    log: Arc<dyn EventLog>,
    projection: P,
    progress: watch::Sender<u64>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let (projection, position, _) = resume(&*log, None, || projection).await?;
    follow(&log, projection, position, &progress, &cancel, &NoReport)
        .await
        .outcome
}

/// A projection as a worker: resumes from its checkpoint on every (re)start, keeping its
/// in-memory state across a restart when that state is still exactly the checkpoint's.
pub struct ProjectionWorker<P> {
    name: &'static str,
    log: Arc<dyn EventLog>,
    make: Box<dyn Fn() -> P + Send + Sync>,
    kept: Option<(P, u64)>,
    progress: watch::Sender<u64>,
}

impl<P: Projection> ProjectionWorker<P> {
    /// A worker that makes its projection with `make` (again whenever its memory cannot be
    /// trusted) and tells `progress` the position applied after each batch.
    pub fn new(
        name: &'static str,
        log: Arc<dyn EventLog>,
        make: impl Fn() -> P + Send + Sync + 'static,
        progress: watch::Sender<u64>,
    ) -> Self {
        ProjectionWorker {
            name,
            log,
            make: Box::new(make),
            kept: None,
            progress,
        }
    }
}

#[async_trait]
impl<P: Projection> Worker for ProjectionWorker<P> {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let kept = self.kept.take();
        let (projection, checkpoint, kept) = resume(&*self.log, kept, &self.make).await?;
        tracing::info!(
            worker = self.name,
            checkpoint,
            memory_kept = kept,
            "projection resuming from its checkpoint"
        );
        // Where it stands, before the first batch.
        let head = self.log.head().await?;
        context.progress(checkpoint, head.saturating_sub(checkpoint), 0.0);
        let cancel = context.token();
        let stopped = follow(
            &self.log,
            projection,
            checkpoint,
            &self.progress,
            &cancel,
            context,
        )
        .await;
        self.kept = stopped.kept;
        stopped.outcome
    }
}

//! The subscription runner: feeds a projection every event of the log, in order, exactly once.
//!
//! On start it asks the projection for its checkpoint (the position its read model reflects),
//! lets it warm its in-memory state with the events up to there (no writes), then applies every
//! later event in batches. Each batch's read-model rows and the new checkpoint are written in one
//! transaction, so a crash between batches neither loses an event nor applies one twice. Between
//! batches it sleeps in `EventLog::wait_for_events`, which the backend wakes on commit, with
//! polling as the fallback.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::log::{EventLog, RecordedEvent};
use tokio::sync::watch;

use crate::Error;

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
}

/// Runs `projection` until `stop` turns true. `progress` is told the position applied after
/// each batch, so readers can wait for the projection to catch up.
pub async fn run<P: Projection>(
    log: Arc<dyn EventLog>,
    mut projection: P,
    progress: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
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
    position = checkpoint;
    progress.send_replace(position);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let events = log.read_all(position, BATCH).await?;
        if let Some(last) = events.last() {
            let last = last.position;
            projection.apply(&events).await?;
            position = last;
            progress.send_replace(position);
            continue;
        }
        tokio::select! {
            waited = log.wait_for_events(position, POLL) => waited?,
            _ = stop.changed() => {}
        }
    }
}

/// Runs `projection` for ever in the background, restarting it after an error (storage can come
/// back), and returns the receiver of its progress.
pub fn spawn<P, F>(log: Arc<dyn EventLog>, make: F) -> watch::Receiver<u64>
where
    P: Projection,
    F: Fn() -> P + Send + 'static,
{
    let (progress, receiver) = watch::channel(0);
    let (_stop_sender, stop) = watch::channel(false);
    tokio::spawn(async move {
        let _keep_open = _stop_sender;
        loop {
            match run(log.clone(), make(), progress.clone(), stop.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(error = %e, "projection failed; restarting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    receiver
}

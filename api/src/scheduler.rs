//! The `scheduler` worker (one node at a time): applies each scheduled change request at its
//! `live_from`. It keeps the scheduled requests in memory, read once when it starts and then
//! kept current by following the log from the head it started at (every event on a change
//! request's stream re-reads that request), and sleeps until the next change is due or the log
//! moves. Whether a change goes live is decided by `commands::scheduler`, exactly once even if a
//! former leader tries too; a restart re-reads the schedule, so nothing due is missed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use commands::Commands;
use commands::change_requests::now_micros;
use commands::scheduler::{Applied, change_request_of_stream};
use domain::change_request::ChangeRequestId;
use domain::log::EventLog;
use projections::Error;
use projections::workers::{Context, Worker};

/// The worker's name in `/health`.
pub const NAME: &str = "scheduler";

/// The longest the scheduler sleeps without looking at the log (it is woken sooner by new
/// events, and by the next change falling due).
pub const POLL: Duration = Duration::from_secs(1);

/// How many events one read of the log takes.
const BATCH: usize = 512;

pub struct Scheduler {
    commands: Commands,
    log: Arc<dyn EventLog>,
}

impl Scheduler {
    pub fn new(commands: Commands, log: Arc<dyn EventLog>) -> Self {
        Scheduler { commands, log }
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("scheduler: {e}"))
}

#[async_trait]
impl Worker for Scheduler {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        // The head first, then the schedule: whatever changes after the head is followed.
        let mut position = self.log.head().await.map_err(failed)?;
        let mut due: BTreeMap<ChangeRequestId, i64> = self
            .commands
            .scheduled_changes()
            .await
            .map_err(failed)?
            .into_iter()
            .collect();
        loop {
            let now = now_micros();
            let ready: Vec<ChangeRequestId> = due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in ready {
                let outcome = self
                    .commands
                    .apply_scheduled_change(id)
                    .await
                    .map_err(failed)?;
                if outcome != Applied::NotScheduled {
                    tracing::info!(change_request = id, ?outcome, "scheduled change applied");
                }
                due.remove(&id);
            }
            context.progress(position, 0, 0.0);

            let next = due
                .values()
                .min()
                .map(|at| Duration::from_micros(u64::try_from(at - now_micros()).unwrap_or(0)));
            let wait = next.map_or(POLL, |next| next.min(POLL));
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                waited = self.log.wait_for_events(position, wait) => waited.map_err(failed)?,
            }
            loop {
                let events = self.log.read_all(position, BATCH).await.map_err(failed)?;
                let Some(last) = events.last() else { break };
                position = last.position;
                let touched: std::collections::BTreeSet<ChangeRequestId> = events
                    .iter()
                    .filter_map(|e| change_request_of_stream(&e.stream_id))
                    .collect();
                for id in touched {
                    match self.commands.scheduled_at(id).await.map_err(failed)? {
                        Some(at) => due.insert(id, at),
                        None => due.remove(&id),
                    };
                }
                if events.len() < BATCH {
                    break;
                }
            }
        }
    }
}

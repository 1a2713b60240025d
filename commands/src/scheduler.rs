//! The scheduler's decisions: which change requests are scheduled and when each goes live, and
//! applying one that is due, as the `scheduler` actor. Going live is an ordinary decision on the
//! request's stream (`apply_scheduled_change`), appended with the stream's expected version, so
//! a change goes live exactly once however many schedulers try: a second attempt finds the
//! request committed (or failed) and is refused. The loop that calls these is the `scheduler`
//! worker of the runtime (in `api`).

use domain::change_request::{self, ChangeRequestId, Status};
use domain::command::change_request::{Actor, ChangeRequestCommand};
use domain::log::Metadata;

use crate::Commands;
use crate::error::{Error, Result};

/// The actor the scheduler's events are recorded under.
pub const SCHEDULER_ACTOR: &str = "scheduler";

/// What became of an attempt to apply a due change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It went live now.
    Committed,
    /// It could not be applied (its base moved, or a command was refused); the request failed
    /// with the reason, and nothing was applied.
    Failed,
    /// It is no longer scheduled (applied by another scheduler, cancelled or edited) or not due:
    /// nothing to do.
    NotScheduled,
}

/// The id of the change request a stream belongs to, if it is one.
pub fn change_request_of_stream(stream_id: &str) -> Option<ChangeRequestId> {
    let id = stream_id.strip_prefix("change-request-")?.parse().ok()?;
    (change_request::stream(id) == stream_id).then_some(id)
}

impl Commands {
    /// When request `id` goes live, if it is scheduled.
    pub async fn scheduled_at(&self, id: ChangeRequestId) -> Result<Option<i64>> {
        let request = match self.change_request(id).await {
            Ok(loaded) => loaded.state,
            Err(Error::Domain(domain::Error::NotFound { .. })) => return Ok(None),
            Err(other) => return Err(other),
        };
        Ok(match request.status {
            Status::Scheduled => Some(request.content.live_from_micros.unwrap_or(i64::MIN)),
            _ => None,
        })
    }

    /// Every scheduled request and when it goes live (µs since the epoch).
    pub async fn scheduled_changes(&self) -> Result<Vec<(ChangeRequestId, i64)>> {
        let directory = self.directory().await?.state;
        let mut scheduled = Vec::new();
        for id in directory.change_requests.keys() {
            if let Some(at) = self.scheduled_at(*id).await? {
                scheduled.push((*id, at));
            }
        }
        Ok(scheduled)
    }

    /// Applies request `id` if it is scheduled and due.
    pub async fn apply_scheduled_change(&self, id: ChangeRequestId) -> Result<Applied> {
        let command = ChangeRequestCommand::ApplyScheduledChange {
            change_request_id: id,
        };
        let metadata = Metadata::actor(SCHEDULER_ACTOR);
        match self
            .execute_change_request(&metadata, Actor::Scheduler, &command)
            .await
        {
            Ok(_) => {}
            Err(Error::Domain(domain::Error::Conflict { .. } | domain::Error::NotFound { .. })) => {
                return Ok(Applied::NotScheduled);
            }
            Err(other) => return Err(other),
        }
        let request = self.change_request(id).await?.state;
        Ok(match request.status {
            Status::Committed => Applied::Committed,
            _ => Applied::Failed,
        })
    }
}

//! Integrations' read side: the feed of changes every consumer reads (the audit history's rows,
//! in log order, woken when the projection moves: [`wait_for_audit`]), the delivery of change
//! integrations from it ([`delivery`]: the worker; [`render`]: each receiver's format; [`wire`]:
//! Flagsmith's body bytes and both webhook signatures), the identity analytics the identities
//! endpoints feed ([`analytics`]), and what both share: the directory they follow
//! ([`directory`]), sending a request ([`send`]) only where it may go ([`network`]), and their
//! tables ([`store`]: secret values,
//! cursors, dead letters, replays, analytics counts).

pub mod analytics;
pub mod delivery;
pub mod directory;
pub mod network;
pub mod render;
pub mod send;
pub mod store;
pub mod wire;

use std::time::Duration;

use domain::log::EventLog;
use sqlx::AnyPool;

use crate::Error;
use crate::audit_history;

/// How often a waiter looks at the audit history's checkpoint while the projection is behind
/// the log's head.
const CATCH_UP_POLL: Duration = Duration::from_millis(5);

/// Waits until the audit history's checkpoint passes `after` (the projection applied a newer
/// event), or `max_wait` passed; returns the checkpoint. Woken by the log's own notification
/// of a commit (on any node), then following the projection until it caught up.
pub async fn wait_for_audit(
    pool: &AnyPool,
    log: &dyn EventLog,
    after: u64,
    max_wait: Duration,
) -> Result<u64, Error> {
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let checkpoint = crate::checkpoint(pool, audit_history::NAME).await?;
        let now = tokio::time::Instant::now();
        if checkpoint > after || now >= deadline {
            return Ok(checkpoint);
        }
        let head = log.head().await?;
        if head > checkpoint {
            tokio::time::sleep(CATCH_UP_POLL.min(deadline - now)).await;
        } else {
            log.wait_for_events(head, deadline - now).await?;
        }
    }
}

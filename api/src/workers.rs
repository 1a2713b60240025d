//! The node's background workers, as units of `projections::workers` (nothing runs detached):
//!
//! - `environment_documents` (one node at a time): the projection the SDK endpoints read.
//! - `change_request_inbox` (one node at a time): the projection approvers' inboxes read.
//! - `audit_history` (one node at a time): the projection the audit log's list and exports read.
//! - `sdk_cache` (every node): drops this node's cached environments when their documents
//!   change, as announced on the node's in-process channel.
//! - `notifications` (every node, PostgreSQL only): LISTENs for what other nodes' writes mean for
//!   this one, and feeds it in: documents another node projected onto the in-process channel
//!   (so this node's caches and realtime streams hear of them), and identities that now
//!   have stored traits into [`crate::sdk_store::KnownIdentities`]. After (re)connecting it
//!   catches up on what it may have missed: documents newer than the newest it announced, and
//!   the whole set of identities.

use std::sync::Arc;

use async_trait::async_trait;
use projections::Error;
use projections::document_notifications as documents;
use projections::environment_documents::DocumentChanged;
use projections::workers::{Context, Worker};
use sqlx::AnyPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::broadcast;

use crate::sdk_cache::EnvironmentCache;
use crate::sdk_store::{self, KnownIdentities};

/// The worker names `/health` and `flaglog workers status` show.
pub const ENVIRONMENT_DOCUMENTS: &str = projections::environment_documents::NAME;
pub const CHANGE_REQUEST_INBOX: &str = projections::change_request_inbox::NAME;
pub const AUDIT_HISTORY: &str = projections::audit_history::NAME;
pub const SDK_CACHE: &str = "sdk_cache";
pub const NOTIFICATIONS: &str = "notifications";

/// Drops cached environments whose documents changed.
pub struct CacheInvalidation {
    pub changes: broadcast::Receiver<DocumentChanged>,
    pub cache: Arc<EnvironmentCache>,
}

#[async_trait]
impl Worker for CacheInvalidation {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        loop {
            tokio::select! {
                received = self.changes.recv() => match received {
                    Ok(change) => {
                        self.cache.changed(&change).await;
                        context.progress(change.position, 0, 0.0);
                    }
                    // Announcements were missed: whatever is cached may be stale.
                    Err(broadcast::error::RecvError::Lagged(_)) => self.cache.clear(),
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                () = context.cancelled() => return Ok(()),
            }
        }
    }
}

/// Listens for other nodes' changes (PostgreSQL).
pub struct Notifications {
    options: PgConnectOptions,
    pool: AnyPool,
    changes: broadcast::Sender<DocumentChanged>,
    known: Arc<KnownIdentities>,
    /// This node: its projection announces its own changes in-process.
    node: String,
    /// The newest document position announced (or, before the first, stored when the node
    /// started, before it cached anything).
    newest: u64,
}

impl Notifications {
    /// `newest`: the newest document position stored before this node cached anything
    /// (`document_notifications::newest_position`); the first catch-up announces what is newer.
    pub fn new(
        node: &str,
        options: PgConnectOptions,
        pool: AnyPool,
        changes: broadcast::Sender<DocumentChanged>,
        known: Arc<KnownIdentities>,
        newest: u64,
    ) -> Self {
        Notifications {
            options: options.application_name("flaglog-notifications"),
            pool,
            changes,
            known,
            node: node.to_string(),
            newest,
        }
    }

    fn announce(&mut self, change: DocumentChanged) {
        self.newest = self.newest.max(change.position);
        // Nobody listening is fine.
        let _ = self.changes.send(change);
    }

    /// What may have been missed while not listening.
    async fn catch_up(&mut self) -> Result<(), Error> {
        for change in documents::changed_since(&self.pool, self.newest).await? {
            self.announce(change);
        }
        self.known.load(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Worker for Notifications {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener
            .listen_all([documents::CHANNEL, sdk_store::IDENTITIES_CHANNEL])
            .await?;
        // Listening from here on: catch up on the rest.
        self.catch_up().await?;
        loop {
            let notification = tokio::select! {
                received = listener.try_recv() => received?,
                () = context.cancelled() => return Ok(()),
            };
            match notification {
                Some(notification) if notification.channel() == documents::CHANNEL => {
                    let Some((node, changes)) = documents::parse(notification.payload()) else {
                        tracing::warn!(
                            payload = notification.payload(),
                            "ignoring a malformed document notification"
                        );
                        continue;
                    };
                    for change in changes {
                        if node == self.node {
                            // Announced in-process by this node's projection already.
                            self.newest = self.newest.max(change.position);
                        } else {
                            self.announce(change);
                        }
                    }
                    context.progress(self.newest, 0, 0.0);
                }
                Some(notification) => match notification.payload().parse::<u64>() {
                    Ok(hash) => {
                        self.known.add_hash(hash);
                    }
                    Err(_) => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a malformed identity notification"
                    ),
                },
                // Reconnected (and listening again): notifications in between are lost.
                None => self.catch_up().await?,
            }
        }
    }
}

/// `statuses` as the table `flaglog workers status` prints: one line per worker and node, with
/// how long ago the node last wrote it.
pub fn status_table(statuses: &[projections::workers::WorkerStatus]) -> String {
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
    let dash = || "-".to_string();
    let mut rows = vec![
        [
            "WORKER",
            "NODE",
            "STATE",
            "LEADER",
            "POSITION",
            "LAG_EVENTS",
            "LAG_SECONDS",
            "SEEN",
            "LAST_ERROR",
        ]
        .map(String::from),
    ];
    for s in statuses {
        rows.push([
            s.name.clone(),
            s.node.clone(),
            s.state.as_str().to_string(),
            s.leader.clone().unwrap_or_else(dash),
            s.position.map_or_else(dash, |p| p.to_string()),
            s.lag_events.map_or_else(dash, |l| l.to_string()),
            s.lag_seconds.map_or_else(dash, |l| format!("{l:.1}")),
            format!(
                "{:.0}s ago",
                ((now - s.updated_at_micros) as f64 / 1e6).max(0.0)
            ),
            s.last_error.clone().unwrap_or_else(dash).replace('\n', " "),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        table.push_str(cells.join("  ").trim_end());
        table.push('\n');
    }
    if statuses.is_empty() {
        table.push_str("(no worker has reported on this database yet)\n");
    }
    table
}

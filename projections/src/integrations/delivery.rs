//! The `integration_delivery` worker (one node at a time): sends every change integration what
//! the log says, in log order, at least once.
//!
//! It follows the directory's stream for the integrations configured, and runs one sender per
//! enabled change integration, inside itself (a slow or failing receiver holds up only its own
//! sender; they stop with the worker). A sender reads the audit history after its cursor,
//! renders each row's messages ([`super::render`]) and sends them one after another; a failure
//! that may pass (a connection error, a timeout, 429, 5xx) is retried after an exponential
//! backoff with jitter (or the receiver's `Retry-After`) until the integration's
//! `max_attempts` or `max_age_seconds`, then the message becomes a dead letter and delivery goes
//! on. The cursor (`integration_deliveries`) moves only past what was delivered or
//! dead-lettered, so a node killed mid-delivery, or a new leader, sends the unfinished row again:
//! a receiver sees a message at least once, each with one idempotency key. A new integration
//! hears of what happens after its configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::integration::catalogue::Family;
use domain::integration::{Integration, IntegrationId, IntegrationScope};
use domain::log::EventLog;
use sqlx::AnyPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::directory::FollowedDirectory;
use super::network::PrivateNetworks;
use super::render::{self, Message, Secrets};
use super::send::{self, Outbound, backoff};
use super::store::{self, DeadLetter, DeliveryState};
use crate::Error;
use crate::audit_history::{self, AuditQuery, AuditRow, Order};
use crate::now_micros;
use crate::workers::{Context, Worker};

pub const NAME: &str = "integration_delivery";

/// Audit rows a sender reads at a time.
const BATCH: u32 = 100;
/// How often the worker looks for changed integrations when the log is quiet.
const REFRESH: Duration = Duration::from_millis(500);

pub struct Delivery {
    log: Arc<dyn EventLog>,
    pool: AnyPool,
    outbound: Outbound,
    followed: FollowedDirectory,
}

impl Delivery {
    pub fn new(
        log: Arc<dyn EventLog>,
        pool: AnyPool,
        networks: PrivateNetworks,
    ) -> Result<Self, Error> {
        let outbound = Outbound::new(networks)?;
        Ok(Delivery {
            pool,
            outbound,
            followed: FollowedDirectory::new(log.clone()),
            log,
        })
    }

    /// The audit query that finds the rows `integration` may hear of.
    fn scope_query(&self, integration: &Integration) -> AuditQuery {
        let mut query = AuditQuery {
            order: Order::LogOrder,
            limit: BATCH,
            ..AuditQuery::default()
        };
        match integration.scope {
            IntegrationScope::Organisation(id) => query.organisation = Some(id),
            IntegrationScope::Project(id) => query.project = Some(id),
            // A webhook hears of its flags' creation and deletion, which are the project's rows.
            IntegrationScope::Environment(id) if integration.kind == "webhook" => {
                query.project = Some(
                    self.followed
                        .directory
                        .environments
                        .get(&id)
                        .map_or(0, |e| e.0),
                );
            }
            IntegrationScope::Environment(id) => query.environment = Some(id),
        }
        query
    }
}

struct Running {
    integration: Integration,
    cancel: CancellationToken,
    handle: AbortOnDropHandle<Result<(), Error>>,
    position: Arc<AtomicU64>,
}

#[async_trait]
impl Worker for Delivery {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let mut running: BTreeMap<IntegrationId, Running> = BTreeMap::new();
        let outcome = loop {
            if let Err(e) = self.followed.refresh().await {
                break Err(e);
            }
            let wanted = self.followed.enabled(Family::Changes);
            // Stop what is gone or changed (a changed one starts again with its new config).
            let stale: Vec<IntegrationId> = running
                .iter()
                .filter(|(id, r)| !wanted.iter().any(|w| w.id == **id && *w == r.integration))
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                if let Some(r) = running.remove(&id) {
                    r.cancel.cancel();
                    let _ = r.handle.await;
                }
            }
            for integration in wanted {
                if running.contains_key(&integration.id) {
                    continue;
                }
                let sender = Sender {
                    start: self.followed.configured_at(integration.id),
                    query: self.scope_query(&integration),
                    integration: integration.clone(),
                    pool: self.pool.clone(),
                    log: self.log.clone(),
                    outbound: self.outbound.clone(),
                    cancel: context.token().child_token(),
                    position: Arc::new(AtomicU64::new(0)),
                };
                running.insert(
                    integration.id,
                    Running {
                        integration,
                        cancel: sender.cancel.clone(),
                        position: sender.position.clone(),
                        handle: AbortOnDropHandle::new(tokio::spawn(sender.run())),
                    },
                );
            }
            // A sender that failed (its database) fails the worker: the runtime restarts it.
            if let Some(id) = running
                .iter()
                .find(|(_, r)| r.handle.is_finished())
                .map(|(id, _)| *id)
                && let Some(r) = running.remove(&id)
            {
                match r.handle.await {
                    Ok(Err(e)) => break Err(e),
                    Err(e) => break Err(Error::Other(format!("integration {id}'s sender: {e}"))),
                    Ok(Ok(())) => {}
                }
            }
            if let Some(slowest) = running
                .values()
                .map(|r| r.position.load(Ordering::Relaxed))
                .min()
            {
                let head = self.log.head().await.unwrap_or(slowest);
                context.progress(slowest, head.saturating_sub(slowest), 0.0);
            }
            tokio::select! {
                () = tokio::time::sleep(REFRESH) => {}
                () = context.cancelled() => break Ok(()),
            }
        };
        for r in running.into_values() {
            r.cancel.cancel();
            let _ = r.handle.await;
        }
        outcome
    }
}

/// Delivers one integration.
struct Sender {
    integration: Integration,
    query: AuditQuery,
    start: u64,
    pool: AnyPool,
    log: Arc<dyn EventLog>,
    outbound: Outbound,
    cancel: CancellationToken,
    position: Arc<AtomicU64>,
}

/// How one message ended.
enum Outcome {
    Delivered,
    Dead { attempts: u64, error: String },
    Cancelled,
}

impl Sender {
    async fn run(self) -> Result<(), Error> {
        let id = self.integration.id;
        let secrets: Secrets = store::secrets(
            &self.pool,
            self.integration.scope,
            &self.integration.secrets,
        )
        .await?
        .into_iter()
        .collect();
        let mut state = match store::delivery_state(&self.pool, id).await? {
            Some(state) => state,
            None => {
                let state = DeliveryState {
                    position: self.start,
                    ..DeliveryState::default()
                };
                store::save_delivery_state(&self.pool, id, &state, now_micros()).await?;
                state
            }
        };
        loop {
            self.position.store(state.position, Ordering::Relaxed);
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            if let Some(from) = store::take_replay(&self.pool, id).await? {
                state.position = from.saturating_sub(1);
                store::save_delivery_state(&self.pool, id, &state, now_micros()).await?;
            }
            if !self.replay_dead_letters(&secrets, &mut state).await? {
                return Ok(());
            }
            let checkpoint = crate::checkpoint(&self.pool, audit_history::NAME).await?;
            let rows = self.rows(state.position, checkpoint).await?;
            let complete = rows.len() < BATCH as usize;
            for row in &rows {
                for message in render::messages(&self.integration, row, &secrets) {
                    match self.deliver(row, &message, &secrets, &mut state).await? {
                        Outcome::Delivered => {}
                        Outcome::Dead { attempts, error } => {
                            let letter = DeadLetter {
                                position: row.position,
                                message: message.key.clone(),
                                attempts,
                                last_error: error,
                                failed_at_micros: now_micros(),
                                status: store::DEAD.to_string(),
                            };
                            // The failure first: whoever sees the dead letter sees its error.
                            store::save_delivery_state(&self.pool, id, &state, now_micros())
                                .await?;
                            store::add_dead_letter(&self.pool, id, &letter).await?;
                        }
                        Outcome::Cancelled => {
                            store::save_delivery_state(&self.pool, id, &state, now_micros())
                                .await?;
                            return Ok(());
                        }
                    }
                }
                state.position = row.position;
            }
            // Rows and the projection's checkpoint commit together: with fewer rows than asked
            // for, every row up to the checkpoint has been seen.
            if complete {
                state.position = state.position.max(checkpoint);
            }
            if !rows.is_empty() || complete {
                store::save_delivery_state(&self.pool, id, &state, now_micros()).await?;
            }
            if complete {
                tokio::select! {
                    waited = super::wait_for_audit(&self.pool, &*self.log, checkpoint, REFRESH) => { waited?; }
                    () = self.cancel.cancelled() => return Ok(()),
                }
            }
        }
    }

    /// The rows after `after` up to `until`, identities named.
    async fn rows(&self, after: u64, until: u64) -> Result<Vec<AuditRow>, Error> {
        let query = AuditQuery {
            after_position: Some(after),
            until_position: Some(until),
            ..self.query.clone()
        };
        let mut rows = audit_history::query(&self.pool, &query).await?;
        crate::identity_names::name_identities(&*self.log, &mut rows).await?;
        Ok(rows)
    }

    /// Sends the dead letters asked to be replayed; `false` when cancelled meanwhile.
    async fn replay_dead_letters(
        &self,
        secrets: &Secrets,
        state: &mut DeliveryState,
    ) -> Result<bool, Error> {
        let id = self.integration.id;
        for letter in store::dead_letters(&self.pool, id, Some(store::REPLAY)).await? {
            let rows = self.rows(letter.position - 1, letter.position).await?;
            let Some(row) = rows.first() else {
                continue;
            };
            // Rendered from its row again: nothing secret was kept with the letter.
            let Some(message) = render::messages(&self.integration, row, secrets)
                .into_iter()
                .find(|m| m.key == letter.message)
            else {
                continue;
            };
            match self.deliver(row, &message, secrets, state).await? {
                Outcome::Delivered => {
                    store::set_dead_letter_status(
                        &self.pool,
                        id,
                        letter.position,
                        &letter.message,
                        store::REPLAYED,
                    )
                    .await?;
                }
                Outcome::Dead { attempts, error } => {
                    let again = DeadLetter {
                        attempts: letter.attempts + attempts,
                        last_error: error,
                        failed_at_micros: now_micros(),
                        status: store::DEAD.to_string(),
                        ..letter
                    };
                    store::save_delivery_state(&self.pool, id, state, now_micros()).await?;
                    store::add_dead_letter(&self.pool, id, &again).await?;
                }
                Outcome::Cancelled => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Sends the row's message `key` until it is delivered or dead, keeping `state`'s failure
    /// count and last error current (saved, so the status API shows a receiver that fails).
    async fn deliver(
        &self,
        row: &AuditRow,
        message: &Message,
        secrets: &Secrets,
        state: &mut DeliveryState,
    ) -> Result<Outcome, Error> {
        let key = &message.key;
        let integration = &self.integration;
        let max_attempts = integration.number("max_attempts").unwrap_or(10).max(1);
        let max_age = Duration::from_secs(integration.number("max_age_seconds").unwrap_or(86_400));
        let initial = Duration::from_millis(integration.number("retry_initial_ms").unwrap_or(1000));
        let longest = Duration::from_millis(integration.number("retry_max_ms").unwrap_or(300_000));
        let began = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Signed again for each attempt: a fresh `webhook-timestamp`, the same body.
            let message = render::sign(
                integration,
                row,
                secrets,
                message,
                OffsetDateTime::now_utc(),
            );
            let sent = tokio::select! {
                sent = self.outbound.post(&message) => sent,
                () = self.cancel.cancelled() => return Ok(Outcome::Cancelled),
            };
            let failure = match sent {
                Ok(()) => {
                    state.delivered += 1;
                    state.last_delivered_at_micros = Some(now_micros());
                    if state.consecutive_failures > 0 {
                        // The receiver is back: say so now, not at the end of the batch.
                        state.consecutive_failures = 0;
                        store::save_delivery_state(&self.pool, integration.id, state, now_micros())
                            .await?;
                    }
                    return Ok(Outcome::Delivered);
                }
                Err(failure) => send::Failure {
                    error: send::redact(failure.error, secrets),
                    ..failure
                },
            };
            state.consecutive_failures += 1;
            state.last_error = Some(format!(
                "position {} ({key}): {}",
                row.position, failure.error
            ));
            store::save_delivery_state(&self.pool, integration.id, state, now_micros()).await?;
            tracing::warn!(integration = integration.id, kind = %integration.kind, position = row.position,
                attempt = attempts, error = %failure.error, "an integration's delivery failed");
            if !failure.retry || attempts >= max_attempts || began.elapsed() >= max_age {
                return Ok(Outcome::Dead {
                    attempts,
                    error: failure.error,
                });
            }
            let wait = failure
                .retry_after
                .unwrap_or_else(|| backoff(initial, longest, attempts))
                .min(longest.max(initial));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.cancel.cancelled() => return Ok(Outcome::Cancelled),
            }
        }
    }
}

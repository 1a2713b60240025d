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

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::aggregate::{Aggregate, DomainEvent};
use domain::directory::{self, Directory, DirectoryEvent};
use domain::integration::catalogue::{self, Family};
use domain::integration::{Integration, IntegrationId, IntegrationScope};
use domain::log::EventLog;
use sqlx::AnyPool;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::render::{self, Message, Secrets};
use super::store::{self, DeadLetter, DeliveryState};
use crate::Error;
use crate::audit_history::{self, AuditQuery, AuditRow, Order};
use crate::workers::{Context, Worker};

pub const NAME: &str = "integration_delivery";

/// Audit rows a sender reads at a time.
const BATCH: u32 = 100;
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the worker looks for changed integrations when the log is quiet.
const REFRESH: Duration = Duration::from_millis(500);

pub struct Delivery {
    log: Arc<dyn EventLog>,
    pool: AnyPool,
    client: reqwest::Client,
    directory: Directory,
    directory_version: u64,
    /// The log position each integration was first configured at: it hears of what follows.
    configured_at: HashMap<IntegrationId, u64>,
}

impl Delivery {
    pub fn new(log: Arc<dyn EventLog>, pool: AnyPool) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("flaglog/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Other(format!("the delivery's HTTP client: {e}")))?;
        Ok(Delivery {
            log,
            pool,
            client,
            directory: Directory::default(),
            directory_version: 0,
            configured_at: HashMap::new(),
        })
    }

    async fn refresh_directory(&mut self) -> Result<(), Error> {
        let events = self
            .log
            .read_stream(directory::STREAM, self.directory_version)
            .await?;
        for record in &events {
            let event = DirectoryEvent::from_recorded(record)?;
            if let DirectoryEvent::IntegrationConfigured { integration } = &event {
                self.configured_at
                    .entry(integration.id)
                    .or_insert(record.position);
            }
            self.directory.apply(&event);
            self.directory_version = record.version;
        }
        Ok(())
    }

    /// The integrations that should be delivering now.
    fn wanted(&self) -> Vec<Integration> {
        self.directory
            .integrations
            .values()
            .filter(|i| i.enabled)
            .filter(|i| catalogue::kind(&i.kind).is_some_and(|k| k.family == Family::Changes))
            .cloned()
            .collect()
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
                query.project = Some(self.directory.environments.get(&id).map_or(0, |e| e.0));
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
            if let Err(e) = self.refresh_directory().await {
                break Err(e);
            }
            let wanted = self.wanted();
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
                    start: self
                        .configured_at
                        .get(&integration.id)
                        .copied()
                        .unwrap_or(0),
                    query: self.scope_query(&integration),
                    integration: integration.clone(),
                    pool: self.pool.clone(),
                    log: self.log.clone(),
                    client: self.client.clone(),
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
    client: reqwest::Client,
    cancel: CancellationToken,
    position: Arc<AtomicU64>,
}

/// How one message ended.
enum Outcome {
    Delivered,
    Dead { attempts: u64, error: String },
    Cancelled,
}

/// Why an attempt failed, and whether another may succeed.
struct Failure {
    error: String,
    retry: bool,
    retry_after: Option<Duration>,
}

fn now_micros() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
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
                sent = self.send(&message) => sent,
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
                Err(failure) => failure,
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

    async fn send(&self, message: &Message) -> Result<(), Failure> {
        let mut request = self.client.post(&message.url).body(message.body.clone());
        for (name, value) in &message.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|e| Failure {
            error: if e.is_timeout() {
                "timed out".to_string()
            } else {
                format!("cannot reach the receiver: {}", e.without_url())
            },
            retry: true,
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            if message.ok_in_body {
                let ok = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool))
                    .unwrap_or(false);
                if !ok {
                    return Err(Failure {
                        error: format!("answered {status} without \"ok\": {}", excerpt(&body)),
                        retry: false,
                        retry_after: None,
                    });
                }
            }
            return Ok(());
        }
        Err(Failure {
            error: format!("answered {status}: {}", excerpt(&body)),
            retry: status.as_u16() == 429 || status.is_server_error(),
            retry_after,
        })
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(200).collect()
}

/// The wait before attempt `attempts + 1`: `initial` doubled per attempt up to `longest`, a
/// random half of it added or not ("equal jitter"), so receivers coming back are not hit by
/// every sender at once.
fn backoff(initial: Duration, longest: Duration, attempts: u64) -> Duration {
    let doubled = initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(longest);
    let half = doubled / 2;
    let random = std::collections::hash_map::RandomState::new().hash_one(attempts);
    let jitter = half.mul_f64((random % 1000) as f64 / 1000.0);
    half + jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_longest_with_jitter_below_it() {
        let initial = Duration::from_millis(100);
        let longest = Duration::from_secs(1);
        for attempts in 1..=10 {
            let wait = backoff(initial, longest, attempts);
            let full = (initial * 2u32.pow(attempts as u32 - 1)).min(longest);
            assert!(
                wait >= full / 2 && wait <= full,
                "{attempts}: {wait:?} of {full:?}"
            );
        }
    }
}

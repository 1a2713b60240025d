//! The `identity_analytics` worker (on every node): every [`TAKE_EVERY`] it reads how busy the
//! serving runtime was ([`BusyMeter`]: the queue admits nothing while it is saturated), takes
//! what this node's identities endpoints served from the [`AnalyticsQueue`] and hands each
//! identity to a sender per identity integration of its environment (the senders run on the
//! idle-priority thread of [`IdleRuntime`]); it saves the counts. A sender batches
//! what it was handed (up to the vendor's limit) and sends each request with up to
//! [`ATTEMPTS`] attempts; a sender that falls behind holds at most the queue's capacity, and
//! what does not fit is dropped and counted, so no vendor slows another or the endpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use domain::integration::catalogue::Family;
use domain::integration::{Integration, IntegrationId, IntegrationScope};
use domain::log::EventLog;
use sqlx::AnyPool;
use std::time::Instant;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::idle::IdleRuntime;
use super::load::BusyMeter;
use super::vendors::{self, Queued, Request};
use super::{AnalyticsQueue, Counts, ServedIdentity, Wanted, Wants};
use crate::Error;
use crate::integrations::directory::FollowedDirectory;
use crate::integrations::network::PrivateNetworks;
use crate::integrations::render::Secrets;
use crate::integrations::send::{self, Outbound, backoff};
use crate::integrations::store::{self, AnalyticsCounts};
use crate::now_micros;
use crate::workers::{Context, Worker};

pub const NAME: &str = "identity_analytics";

/// How often the worker looks for changed integrations and saves the counts.
const REFRESH: Duration = Duration::from_millis(500);
/// How often the worker takes what was served and hands it to the senders: what a sender
/// batches is what arrived meanwhile.
pub const TAKE_EVERY: Duration = Duration::from_millis(50);
/// Attempts per request before its identities count as failed.
pub const ATTEMPTS: u64 = 3;
const RETRY_INITIAL: Duration = Duration::from_millis(200);
const RETRY_LONGEST: Duration = Duration::from_secs(5);

pub struct IdentityAnalytics {
    queue: AnalyticsQueue,
    followed: FollowedDirectory,
    pool: AnyPool,
    outbound: Outbound,
    node: String,
}

impl IdentityAnalytics {
    pub fn new(
        queue: AnalyticsQueue,
        log: Arc<dyn EventLog>,
        pool: AnyPool,
        node: &str,
        networks: PrivateNetworks,
    ) -> Result<Self, Error> {
        Ok(IdentityAnalytics {
            queue,
            followed: FollowedDirectory::new(log),
            pool,
            outbound: Outbound::new(networks)?,
            node: node.to_string(),
        })
    }

    /// Adds this node's counts since the last save to its rows.
    async fn save_counts(&self) -> Result<(), Error> {
        for (id, counts) in self.queue.all_counts() {
            let taken = AnalyticsCounts {
                sent: counts.sent.swap(0, Ordering::Relaxed),
                dropped: counts.dropped.swap(0, Ordering::Relaxed),
                failed: counts.failed.swap(0, Ordering::Relaxed),
                consecutive_failures: counts.consecutive_failures.load(Ordering::Relaxed),
                last_error: counts
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(),
                last_sent_at_micros: Some(counts.last_sent_at_micros.load(Ordering::Relaxed))
                    .filter(|&at| at > 0)
                    .map(|at| at as i64),
            };
            let saved =
                store::add_analytics_counts(&self.pool, id, &self.node, &taken, now_micros()).await;
            if let Err(e) = saved {
                // Kept for the next save.
                counts.sent.fetch_add(taken.sent, Ordering::Relaxed);
                counts.dropped.fetch_add(taken.dropped, Ordering::Relaxed);
                counts.failed.fetch_add(taken.failed, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }
}

struct RunningSender {
    integration: Integration,
    identities: mpsc::UnboundedSender<Vec<Arc<Queued>>>,
    counts: Arc<Counts>,
    cancel: CancellationToken,
    handle: AbortOnDropHandle<Result<(), Error>>,
}

#[async_trait]
impl Worker for IdentityAnalytics {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let sending = IdleRuntime::start("flaglog-analytics").await?;
        if !sending.idle {
            tracing::info!("identity analytics send at normal priority (idle priority refused)");
        }
        let mut meter = BusyMeter::of_current_runtime();
        let mut shedding = Shedding::default();
        let mut senders: BTreeMap<IntegrationId, RunningSender> = BTreeMap::new();
        let mut by_environment: HashMap<u64, Wanted> = HashMap::new();
        let mut taken = Vec::new();
        let mut take = tokio::time::interval(TAKE_EVERY);
        take.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refreshed: Option<Instant> = None;
        // Each identity's id: random for this run, then counted (no system call per identity).
        let (prefix, _) = Uuid::new_v4().as_u64_pair();
        let mut sequence = 0u64;
        let outcome = loop {
            tokio::select! {
                biased;
                () = context.cancelled() => break Ok(()),
                _ = take.tick() => {}
            }
            if refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
                refreshed = Some(Instant::now());
                if let Err(e) = self.reconcile(context, &sending, &mut senders).await {
                    break Err(e);
                }
                by_environment = environments_of(senders.values().map(|s| &s.integration));
                self.queue.set_wanted(&by_environment);
                if let Err(e) = self.save_counts().await {
                    break Err(e);
                }
            }
            shedding.note(self.queue.note_busy(meter.read()));
            self.queue.take(&mut taken);
            let handed = hand_out(taken.drain(..), &by_environment, || {
                sequence += 1;
                Uuid::from_u64_pair(prefix, sequence)
            });
            for (id, mut identities) in handed {
                let Some(sender) = senders.get(&id) else {
                    continue;
                };
                let room = self
                    .queue
                    .capacity()
                    .saturating_sub(sender.counts.pending.load(Ordering::Relaxed));
                if identities.len() > room {
                    let dropped = identities.len() - room;
                    identities.truncate(room);
                    sender
                        .counts
                        .dropped
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                }
                if !identities.is_empty() {
                    sender
                        .counts
                        .pending
                        .fetch_add(identities.len(), Ordering::Relaxed);
                    // A sender that stopped is replaced at the next refresh.
                    let _ = sender.identities.send(identities);
                }
            }
        };
        for sender in senders.into_values() {
            sender.cancel.cancel();
            let _ = sender.handle.await;
        }
        sending.stop().await;
        let saved = self.save_counts().await;
        outcome.and(saved)
    }
}

/// How often windows in which identity analytics yielded to load are reported in the log.
const SHEDDING_REPORT_EVERY: Duration = Duration::from_secs(60);

/// The windows in which the node was saturated (identities served then are dropped), reported
/// in the log at most every [`SHEDDING_REPORT_EVERY`].
#[derive(Default)]
struct Shedding {
    windows: u32,
    shed: u32,
    since: Option<Instant>,
}

impl Shedding {
    fn note(&mut self, shed: bool) {
        let since = *self.since.get_or_insert_with(Instant::now);
        self.windows += 1;
        self.shed += u32::from(shed);
        if since.elapsed() >= SHEDDING_REPORT_EVERY {
            if self.shed > 0 {
                tracing::warn!(
                    saturated = self.shed,
                    windows = self.windows,
                    "identity analytics yielded to load: identities served while the node was \
                     saturated were dropped (counted in each integration's status)"
                );
            }
            *self = Shedding::default();
        }
    }
}

/// Each identity served, with its id from `next_id`, by integration of its environment in
/// `by_environment`; one that sends traits and segments gets only the identities served with
/// them (those served before it was seen have none).
fn hand_out(
    served: impl Iterator<Item = ServedIdentity>,
    by_environment: &HashMap<u64, Wanted>,
    mut next_id: impl FnMut() -> Uuid,
) -> HashMap<IntegrationId, Vec<Arc<Queued>>> {
    let mut handed: HashMap<IntegrationId, Vec<Arc<Queued>>> = HashMap::new();
    for served in served {
        let Some(wanted) = by_environment.get(&served.environment_id) else {
            continue;
        };
        let queued = Arc::new(Queued {
            id: next_id(),
            served,
        });
        for (id, wants) in &wanted.integrations {
            if wants.traits_and_segments && queued.served.context.is_none() {
                continue;
            }
            handed.entry(*id).or_default().push(queued.clone());
        }
    }
    handed
}

/// Environment → its integrations among `integrations`, and what they take.
fn environments_of<'a>(
    integrations: impl Iterator<Item = &'a Integration>,
) -> HashMap<u64, Wanted> {
    let mut by_environment: HashMap<u64, Wanted> = HashMap::new();
    for integration in integrations {
        if let IntegrationScope::Environment(environment) = integration.scope {
            let wants = Wants {
                traits_and_segments: vendors::sends_traits_and_segments(&integration.kind),
            };
            let wanted = by_environment.entry(environment).or_default();
            wanted.integrations.push((integration.id, wants));
            wanted.wants.traits_and_segments |= wants.traits_and_segments;
        }
    }
    by_environment
}

impl IdentityAnalytics {
    /// Starts a sender for each enabled identity integration, stops those gone or changed,
    /// and fails when a sender failed (the runtime starts the worker again).
    async fn reconcile(
        &mut self,
        context: &Context,
        sending: &IdleRuntime,
        senders: &mut BTreeMap<IntegrationId, RunningSender>,
    ) -> Result<(), Error> {
        self.followed.refresh().await?;
        let wanted = self.followed.enabled(Family::Identities);
        let stale: Vec<IntegrationId> = senders
            .iter()
            .filter(|(id, s)| {
                s.handle.is_finished()
                    || !wanted.iter().any(|w| w.id == **id && *w == s.integration)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(sender) = senders.remove(&id) {
                sender.cancel.cancel();
                if let Ok(Err(e)) = sender.handle.await {
                    return Err(e);
                }
            }
        }
        for integration in wanted {
            if senders.contains_key(&integration.id) {
                continue;
            }
            // Read here: the database's connections belong to this runtime.
            let secrets: Secrets =
                store::secrets(&self.pool, integration.scope, &integration.secrets)
                    .await?
                    .into_iter()
                    .collect();
            let (identities, receiver) = mpsc::unbounded_channel();
            let counts = self.queue.counts(integration.id);
            // What a sender stopped before sending is gone with it.
            counts.pending.store(0, Ordering::Relaxed);
            let sender = Sender {
                counts: counts.clone(),
                integration: integration.clone(),
                receiver,
                secrets,
                outbound: self.outbound.clone(),
                cancel: context.token().child_token(),
            };
            senders.insert(
                integration.id,
                RunningSender {
                    integration,
                    identities,
                    counts,
                    cancel: sender.cancel.clone(),
                    handle: AbortOnDropHandle::new(sending.spawn(sender.run())),
                },
            );
        }
        Ok(())
    }
}

/// Sends one identity integration what it is handed.
struct Sender {
    integration: Integration,
    receiver: mpsc::UnboundedReceiver<Vec<Arc<Queued>>>,
    counts: Arc<Counts>,
    secrets: Secrets,
    outbound: Outbound,
    cancel: CancellationToken,
}

impl Sender {
    async fn run(mut self) -> Result<(), Error> {
        let secrets = std::mem::take(&mut self.secrets);
        let limit = vendors::batch_limit(&self.integration.kind);
        loop {
            let handed = tokio::select! {
                handed = self.receiver.recv() => handed,
                () = self.cancel.cancelled() => None,
            };
            let Some(mut identities) = handed else {
                return Ok(());
            };
            while let Ok(more) = self.receiver.try_recv() {
                identities.extend(more);
            }
            for batch in identities.chunks(limit) {
                let requests = vendors::requests(
                    &self.integration,
                    &secrets,
                    batch,
                    OffsetDateTime::now_utc(),
                );
                for request in requests {
                    if !self.send(&request, &secrets).await {
                        return Ok(());
                    }
                }
                self.counts
                    .pending
                    .fetch_sub(batch.len(), Ordering::Relaxed);
            }
        }
    }

    /// Sends `request` until it goes through or [`ATTEMPTS`] failed, counting either way;
    /// `false` when cancelled meanwhile.
    async fn send(&self, request: &Request, secrets: &Secrets) -> bool {
        let integration = &self.integration;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = tokio::select! {
                sent = self.outbound.post(&request.message) => sent,
                () = self.cancel.cancelled() => return false,
            };
            let failure = match sent {
                Ok(()) => {
                    self.counts
                        .sent
                        .fetch_add(request.identities, Ordering::Relaxed);
                    self.counts.consecutive_failures.store(0, Ordering::Relaxed);
                    self.counts
                        .last_sent_at_micros
                        .store(now_micros() as u64, Ordering::Relaxed);
                    return true;
                }
                Err(failure) => send::Failure {
                    error: send::redact(failure.error, secrets),
                    ..failure
                },
            };
            self.counts
                .consecutive_failures
                .fetch_add(1, Ordering::Relaxed);
            *self
                .counts
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(failure.error.clone());
            tracing::warn!(integration = integration.id, kind = %integration.kind,
                attempt = attempts, error = %failure.error, "an identity integration's request failed");
            if !failure.retry || attempts >= ATTEMPTS {
                self.counts
                    .failed
                    .fetch_add(request.identities, Ordering::Relaxed);
                return true;
            }
            let wait = failure
                .retry_after
                .unwrap_or_else(|| backoff(RETRY_INITIAL, RETRY_LONGEST, attempts))
                .min(RETRY_LONGEST);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.cancel.cancelled() => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integrations::analytics::ServedContext;

    fn integration(id: IntegrationId, scope: IntegrationScope, kind: &str) -> Integration {
        Integration {
            id,
            scope,
            kind: kind.to_string(),
            config: Default::default(),
            secrets: Default::default(),
            enabled: true,
        }
    }

    /// Each environment gets its integrations; traits and segments are wanted only where one
    /// of them is the identity webhook; other scopes want nothing of the endpoints.
    #[test]
    fn environments_want_traits_and_segments_only_for_the_identity_webhook() {
        let integrations = [
            integration(1, IntegrationScope::Environment(10), "segment"),
            integration(2, IntegrationScope::Environment(10), "amplitude"),
            integration(3, IntegrationScope::Environment(20), "segment"),
            integration(4, IntegrationScope::Environment(20), "identity-webhook"),
            integration(5, IntegrationScope::Project(1), "segment"),
        ];
        let by_environment = environments_of(integrations.iter());
        assert_eq!(by_environment.len(), 2);
        let (without, with) = (
            Wants {
                traits_and_segments: false,
            },
            Wants {
                traits_and_segments: true,
            },
        );
        assert_eq!(
            by_environment[&10].integrations,
            vec![(1, without), (2, without)]
        );
        assert!(!by_environment[&10].wants.traits_and_segments);
        assert_eq!(
            by_environment[&20].integrations,
            vec![(3, without), (4, with)]
        );
        assert!(by_environment[&20].wants.traits_and_segments);
    }

    fn served(environment_id: u64, identifier: &str, context: bool) -> ServedIdentity {
        ServedIdentity {
            environment_id,
            identifier: identifier.to_string(),
            context: context.then(ServedContext::default),
            features: Default::default(),
            hide_disabled: false,
            changed: Default::default(),
            served_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// Every integration of an identity's environment gets it, in the order served, under one
    /// id each; the identity webhook only those served with their traits and segments (an
    /// identity served before the webhook was seen has none); other environments get nothing.
    #[test]
    fn identities_are_handed_to_their_environments_integrations() {
        let integrations = [
            integration(1, IntegrationScope::Environment(10), "segment"),
            integration(2, IntegrationScope::Environment(10), "identity-webhook"),
            integration(3, IntegrationScope::Environment(20), "heap"),
        ];
        let by_environment = environments_of(integrations.iter());
        let taken = vec![
            served(10, "before-the-webhook", false),
            served(10, "after", true),
            served(30, "elsewhere", false),
            served(20, "heap-user", false),
        ];
        let mut ids = 0;
        let handed = hand_out(taken.into_iter(), &by_environment, || {
            ids += 1;
            Uuid::from_u64_pair(0, ids)
        });
        let names = |id: IntegrationId| -> Vec<(String, u64)> {
            handed[&id]
                .iter()
                .map(|q| (q.served.identifier.clone(), q.id.as_u64_pair().1))
                .collect()
        };
        assert_eq!(
            names(1),
            vec![("before-the-webhook".into(), 1), ("after".into(), 2)]
        );
        assert_eq!(names(2), vec![("after".into(), 2)]);
        assert_eq!(names(3), vec![("heap-user".into(), 3)]);
        assert_eq!(handed.len(), 3);
    }
}

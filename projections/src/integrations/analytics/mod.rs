//! Identity analytics: what flags each identity was served, sent to Amplitude, Segment,
//! Mixpanel, Heap, Rudderstack or the identity webhook.
//!
//! The identities endpoints [`AnalyticsQueue::offer`] what they served, when the environment
//! has an identity integration ([`AnalyticsQueue::wants`], a read of a map the worker keeps);
//! the offer never waits: the queue is bounded, and when it is full the identity is dropped and
//! counted against each of the environment's integrations. The `identity_analytics` worker
//! ([`worker`], on every node: each node sends what it served) hands each identity to a sender
//! per integration, which batches them ([`vendors`]: each vendor's request, its batch limits,
//! its de-duplication id) and sends with a few retries. Counts (sent, dropped, failed) and the
//! last error go to `integration_analytics` per node, which the status API sums.
//!
//! What is queued lives in memory only: analytics are best effort by design (a node that stops
//! loses what it had not sent), where change integrations ([`super::delivery`]) are driven by
//! the log.

pub mod vendors;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use domain::integration::IntegrationId;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// Identities the queue holds when none is given ([`AnalyticsQueue::new`]); each integration's
/// sender holds up to as many again.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// An identity's flags as an identities endpoint served them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedIdentity {
    pub environment_id: u64,
    pub identifier: String,
    pub traits: Vec<(String, Value)>,
    /// The flags in the order served.
    pub flags: Vec<ServedFlag>,
    /// The project segments the identity is in: (id, name).
    pub segments: Vec<(u64, String)>,
    pub served_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServedFlag {
    pub feature_id: i64,
    pub name: String,
    pub feature_type: String,
    pub enabled: bool,
    pub value: Value,
}

/// Counts of one integration on this node since they were last saved.
#[derive(Debug, Default)]
pub struct Counts {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    /// Requests that failed every attempt since the last one that went through (absolute).
    pub consecutive_failures: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub last_sent_at_micros: AtomicU64,
}

impl Counts {
    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

struct Shared {
    sender: mpsc::Sender<ServedIdentity>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<ServedIdentity>>,
    capacity: usize,
    /// Environment → its enabled identity integrations, as the worker last saw them.
    wanted: RwLock<HashMap<u64, Vec<IntegrationId>>>,
    counts: Mutex<HashMap<IntegrationId, Arc<Counts>>>,
}

/// The node's analytics queue: cheap to clone, shared by the identities endpoints (which offer)
/// and the worker (which takes).
#[derive(Clone)]
pub struct AnalyticsQueue {
    shared: Arc<Shared>,
}

impl Default for AnalyticsQueue {
    fn default() -> Self {
        AnalyticsQueue::new(DEFAULT_CAPACITY)
    }
}

impl AnalyticsQueue {
    /// A queue holding up to `capacity` identities (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (sender, receiver) = mpsc::channel(capacity);
        AnalyticsQueue {
            shared: Arc::new(Shared {
                sender,
                receiver: tokio::sync::Mutex::new(receiver),
                capacity,
                wanted: RwLock::new(HashMap::new()),
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether `environment_id` has an identity integration: when not, the endpoints build
    /// nothing to offer.
    pub fn wants(&self, environment_id: u64) -> bool {
        self.shared
            .wanted
            .read()
            .is_ok_and(|wanted| wanted.contains_key(&environment_id))
    }

    /// Queues `served` for the environment's integrations without waiting; when the queue is
    /// full it is dropped and counted.
    pub fn offer(&self, served: ServedIdentity) {
        if let Err(mpsc::error::TrySendError::Full(served)) = self.shared.sender.try_send(served) {
            for id in self.integrations_of(served.environment_id) {
                self.counts(id).drop_one();
            }
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.shared.capacity
    }

    fn integrations_of(&self, environment_id: u64) -> Vec<IntegrationId> {
        self.shared
            .wanted
            .read()
            .ok()
            .and_then(|wanted| wanted.get(&environment_id).cloned())
            .unwrap_or_default()
    }

    /// `id`'s counts on this node.
    pub(crate) fn counts(&self, id: IntegrationId) -> Arc<Counts> {
        let mut counts = self
            .shared
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.entry(id).or_default().clone()
    }

    /// Every integration's counts on this node.
    pub(crate) fn all_counts(&self) -> Vec<(IntegrationId, Arc<Counts>)> {
        let counts = self
            .shared
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(id, c)| (*id, c.clone())).collect()
    }

    pub(crate) fn set_wanted(&self, wanted: HashMap<u64, Vec<IntegrationId>>) {
        if let Ok(mut current) = self.shared.wanted.write() {
            *current = wanted;
        }
    }

    pub(crate) fn receiver(&self) -> &tokio::sync::Mutex<mpsc::Receiver<ServedIdentity>> {
        &self.shared.receiver
    }
}

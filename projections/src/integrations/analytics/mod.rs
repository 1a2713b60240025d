//! Identity analytics: what flags each identity was served, sent to Amplitude, Segment,
//! Mixpanel, Heap, Rudderstack or the identity webhook.
//!
//! The identities endpoints [`AnalyticsQueue::offer`] what they served, when the environment
//! has an identity integration and the identity is admitted ([`AnalyticsQueue::admit`], a read
//! of a map the worker keeps; it also says whether one sends traits and segments, which are
//! left out otherwise); the offer never waits nor wakes anyone (a push onto a buffer the worker
//! takes from). Analytics yield to serving: an identity is dropped and counted against each of
//! the environment's integrations, before anything is noted for it, while the node is
//! saturated ([`load`]) or every integration's sender is full; a full buffer drops too. The
//! `identity_analytics` worker ([`worker`], on every node: each node sends what it served)
//! hands each identity to a sender per integration, on a thread the OS runs only when a CPU
//! would otherwise idle ([`idle`]), which batches them ([`vendors`]: each vendor's request, its batch limits,
//! its de-duplication id) and sends with a few retries. Counts (sent, dropped, failed) and the
//! last error go to `integration_analytics` per node, which the status API sums.
//!
//! What is queued lives in memory only: analytics are best effort by design (a node that stops
//! loses what it had not sent), where change integrations ([`super::delivery`]) are driven by
//! the log.

mod idle;
pub mod load;
mod properties;
pub mod vendors;
pub mod worker;

pub use properties::ServedFeatures;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use std::borrow::Cow;

use domain::document::ChangedFlags;
use domain::evaluation::is_truthy;
use domain::integration::IntegrationId;
use serde_json::Value;
use time::OffsetDateTime;

/// Identities the queue holds when none is given ([`AnalyticsQueue::new`]); each integration's
/// sender holds up to as many again.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// An identity's flags as an identities endpoint served them: the environment's own states
/// (shared by every identity served from one version of it) and the flags in which the
/// identity differs, as SDK endpoints list them.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedIdentity {
    pub environment_id: u64,
    pub identifier: String,
    /// Its traits and segments, when an integration of the environment sent them as it was
    /// served ([`Wants`]): an identity without them is not handed to such an integration.
    pub context: Option<ServedContext>,
    /// The environment's features in the order served.
    pub features: Arc<ServedFeatures>,
    /// Whether disabled flags were left out of the answer.
    pub hide_disabled: bool,
    /// The flags not in their feature's own state, in the order of `features`, as the
    /// listing noted them while writing the answer.
    pub changed: ChangedFlags,
    pub served_at: OffsetDateTime,
}

/// What the identity webhook sends of an identity besides its flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServedContext {
    pub traits: Vec<(String, Value)>,
    /// The project segments the identity is in: (id, name).
    pub segments: Vec<(u64, String)>,
}

/// A feature as identity analytics name it, with its own state; its name and value are
/// written as JSON once here and copied into every identity's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedFeature {
    pub id: i64,
    pub name: String,
    pub feature_type: String,
    /// Whether it is enabled and its value unless an override or a split applies; `None` for
    /// a feature never listed.
    pub own: Option<(bool, Value)>,
    /// The name as a JSON string followed by `:`, a properties object's key.
    key_json: String,
    value_json: String,
}

impl ServedFeature {
    pub fn new(id: i64, name: String, feature_type: String, own: Option<(bool, Value)>) -> Self {
        ServedFeature {
            key_json: format!("{}:", Value::from(name.as_str())),
            value_json: own.as_ref().map_or(String::new(), |(_, v)| v.to_string()),
            id,
            name,
            feature_type,
            own,
        }
    }
}

/// A flag with its feature, as the vendors' formats read it.
pub struct Served<'a> {
    pub feature: &'a ServedFeature,
    pub enabled: bool,
    /// The value as JSON when it is not the feature's own.
    changed_json: Option<&'a [u8]>,
}

impl<'a> Served<'a> {
    pub fn value(&self) -> Cow<'a, Value> {
        match (self.changed_json, &self.feature.own) {
            (Some(json), _) => Cow::Owned(serde_json::from_slice(json).unwrap_or(Value::Null)),
            (None, Some((_, value))) => Cow::Borrowed(value),
            (None, None) => Cow::Owned(Value::Null),
        }
    }

    /// The value as JSON: the feature's own, written once, or the one the answer held.
    pub fn value_json(&self) -> &'a [u8] {
        match (self.changed_json, &self.feature.own) {
            (Some(json), _) => json,
            (None, Some(_)) => self.feature.value_json.as_bytes(),
            (None, None) => b"null",
        }
    }

    /// Whether the value is not null.
    pub fn has_value(&self) -> bool {
        match (self.changed_json, &self.feature.own) {
            (Some(json), _) => json != b"null",
            (None, Some((_, value))) => !value.is_null(),
            (None, None) => false,
        }
    }

    /// Whether the value is one Python calls true ([`is_truthy`]).
    pub fn has_truthy_value(&self) -> bool {
        match (self.changed_json, &self.feature.own) {
            (Some(json), _) => json_is_truthy(json),
            (None, Some((_, value))) => is_truthy(value),
            (None, None) => false,
        }
    }
}

impl ServedIdentity {
    /// The flags as served: each listed feature in its own state or as changed, disabled ones
    /// left out where the environment hides them.
    pub fn flags(&self) -> impl Iterator<Item = Served<'_>> {
        let mut changed = self.changed.iter().peekable();
        self.features
            .features()
            .iter()
            .enumerate()
            .filter_map(move |(i, feature)| {
                while changed.next_if(|c| c.index < i).is_some() {}
                let flag = match changed.next_if(|c| c.index == i) {
                    Some(flag) => Served {
                        feature,
                        enabled: flag.enabled,
                        changed_json: Some(flag.value_json),
                    },
                    None => Served {
                        feature,
                        enabled: feature.own.as_ref()?.0,
                        changed_json: None,
                    },
                };
                (!self.hide_disabled || flag.enabled).then_some(flag)
            })
    }
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
    /// Identities handed to the integration's sender and not yet sent (or failed): at most the
    /// queue's capacity. Not saved: what this node holds now.
    pub pending: AtomicUsize,
}

/// What the identity integrations of an environment take of each identity served, besides its
/// flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wants {
    /// Its traits and segments (the identity webhook sends them; the vendors do not).
    pub traits_and_segments: bool,
}

/// An environment's enabled identity integrations (each with whether it sends traits and
/// segments), and what they take together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) integrations: Vec<(IntegrationId, Wants)>,
    pub(crate) wants: Wants,
}

/// An environment's identity integrations as the endpoints see them.
struct Admitting {
    wants: Wants,
    /// Each integration's counts (its pending identities among them).
    counts: Vec<Arc<Counts>>,
}

struct Shared {
    /// What was served since the worker last took it: a plain buffer, so that an offer never
    /// wakes another thread (the worker swaps it for its emptied one every
    /// [`worker::TAKE_EVERY`], so that neither grows again).
    served: Mutex<Vec<ServedIdentity>>,
    capacity: usize,
    /// Environment → its enabled identity integrations, as the worker last saw them.
    wanted: RwLock<HashMap<u64, Admitting>>,
    counts: Mutex<HashMap<IntegrationId, Arc<Counts>>>,
    /// Whether the runtime serving the endpoints was busy at least `shed_above` of the
    /// worker's last window: nothing is admitted meanwhile.
    saturated: AtomicBool,
    shed_above: f64,
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
        AnalyticsQueue {
            shared: Arc::new(Shared {
                served: Mutex::new(Vec::new()),
                capacity,
                wanted: RwLock::new(HashMap::new()),
                counts: Mutex::new(HashMap::new()),
                saturated: AtomicBool::new(false),
                shed_above: load::SATURATED,
            }),
        }
    }

    /// The queue, admitting nothing while the serving runtime is busy at least `share` of the
    /// time (0: never admits; 1: never sheds). Before it is cloned.
    pub fn shedding_above(mut self, share: f64) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.shed_above = share;
        }
        self
    }

    /// What `environment_id`'s identity integrations take of an identity about to be served,
    /// `None` when it has none. Also `None` while the node is saturated ([`Self::note_busy`]),
    /// or when each of its integrations already holds as many identities as the queue's
    /// capacity (their senders run at idle priority, so they fall behind when the CPUs are
    /// busy): then the identity is counted as dropped for each, and the endpoints note
    /// nothing to offer; a dropped identity costs them a read of a map.
    pub fn admit(&self, environment_id: u64) -> Option<Wants> {
        let wanted = self.shared.wanted.read().ok()?;
        let environment = wanted.get(&environment_id)?;
        let capacity = self.shared.capacity;
        let full = |counts: &Arc<Counts>| counts.pending.load(Ordering::Relaxed) >= capacity;
        if self.shared.saturated.load(Ordering::Relaxed) || environment.counts.iter().all(full) {
            for counts in &environment.counts {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        Some(environment.wants)
    }

    /// Queues `served` for the environment's integrations without waiting; when the queue is
    /// full it is dropped and counted.
    pub fn offer(&self, served: ServedIdentity) {
        let environment_id = served.environment_id;
        {
            let mut buffer = lock(&self.shared.served);
            if buffer.len() < self.shared.capacity {
                buffer.push(served);
                return;
            }
        }
        let wanted = self.shared.wanted.read();
        if let Some(environment) = wanted.as_ref().ok().and_then(|w| w.get(&environment_id)) {
            for counts in &environment.counts {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Swaps everything offered since the last call into `taken`, which must be empty: its
    /// room is what the next offers fill.
    pub(crate) fn take(&self, taken: &mut Vec<ServedIdentity>) {
        debug_assert!(taken.is_empty());
        std::mem::swap(&mut *lock(&self.shared.served), taken);
    }

    pub(crate) fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// `id`'s counts on this node.
    pub(crate) fn counts(&self, id: IntegrationId) -> Arc<Counts> {
        lock(&self.shared.counts).entry(id).or_default().clone()
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

    /// Takes the serving runtime's busy share over the last window ([`load::BusyMeter`]):
    /// whether nothing is admitted until the next.
    pub(crate) fn note_busy(&self, busy: f64) -> bool {
        let share = self.shared.shed_above;
        let saturated = share < 1.0 && busy >= share;
        self.shared.saturated.store(saturated, Ordering::Relaxed);
        saturated
    }

    pub(crate) fn set_wanted(&self, wanted: &HashMap<u64, Wanted>) {
        let admitting = wanted
            .iter()
            .map(|(environment, wanted)| {
                let counts = wanted.integrations.iter();
                let counts = counts.map(|(id, _)| self.counts(*id)).collect();
                let wants = wanted.wants;
                (*environment, Admitting { wants, counts })
            })
            .collect();
        if let Ok(mut current) = self.shared.wanted.write() {
            *current = admitting;
        }
    }
}

/// [`is_truthy`] of the value `json` writes (as serde_json writes values: compact).
fn json_is_truthy(json: &[u8]) -> bool {
    match json.first() {
        Some(b'-' | b'0'..=b'9') => std::str::from_utf8(json)
            .ok()
            .and_then(|number| number.parse::<f64>().ok())
            .is_some_and(|n| n != 0.0),
        _ => !matches!(json, b"null" | b"false" | b"\"\"" | b"[]" | b"{}" | b""),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An identity is admitted while one of its environment's integrations has room; when
    /// each holds the queue's capacity, it is dropped and counted against each; another
    /// environment, or one without integrations, is not affected.
    #[test]
    fn identities_are_admitted_while_an_integration_has_room() {
        let queue = AnalyticsQueue::new(2);
        let webhook = Wants {
            traits_and_segments: true,
        };
        let wanted = HashMap::from([
            (
                10,
                Wanted {
                    integrations: vec![(1, Wants::default()), (2, webhook)],
                    wants: webhook,
                },
            ),
            (
                20,
                Wanted {
                    integrations: vec![(3, Wants::default())],
                    wants: Wants::default(),
                },
            ),
        ]);
        queue.set_wanted(&wanted);
        let (first, second) = (queue.counts(1), queue.counts(2));
        assert_eq!(queue.admit(10), Some(webhook));
        assert_eq!(queue.admit(30), None);

        first.pending.store(2, Ordering::Relaxed);
        assert_eq!(queue.admit(10), Some(webhook), "the second has room");
        second.pending.store(5, Ordering::Relaxed);
        assert_eq!(queue.admit(10), None);
        assert_eq!(queue.admit(10), None);
        assert_eq!(first.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(second.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(queue.admit(20), Some(Wants::default()));
        assert_eq!(queue.counts(3).dropped.load(Ordering::Relaxed), 0);

        second.pending.store(1, Ordering::Relaxed);
        assert_eq!(queue.admit(10), Some(webhook));
    }

    /// While the serving runtime is busy at least the queue's share of the time, nothing is
    /// admitted and each identity is counted as dropped; once it is not, identities are
    /// admitted again. A share of 1 never sheds, one of 0 always does.
    #[test]
    fn a_saturated_node_admits_nothing() {
        let queue = AnalyticsQueue::new(10).shedding_above(0.8);
        queue.set_wanted(&HashMap::from([(
            10,
            Wanted {
                integrations: vec![(1, Wants::default())],
                wants: Wants::default(),
            },
        )]));
        assert!(!queue.note_busy(0.79));
        assert_eq!(queue.admit(10), Some(Wants::default()));
        assert!(queue.note_busy(0.8));
        assert_eq!(queue.admit(10), None);
        assert_eq!(queue.admit(10), None);
        assert_eq!(queue.counts(1).dropped.load(Ordering::Relaxed), 2);
        assert!(!queue.note_busy(0.2));
        assert_eq!(queue.admit(10), Some(Wants::default()));

        let never = AnalyticsQueue::new(10).shedding_above(1.0);
        assert!(!never.note_busy(1.0));
        let always = AnalyticsQueue::new(10).shedding_above(0.0);
        assert!(always.note_busy(0.0));
    }

    /// Truthiness read off a value's JSON is the value's own.
    #[test]
    fn truthiness_of_json_text_is_the_values() {
        for value in [
            json!(null),
            json!(false),
            json!(true),
            json!(0),
            json!(-0.0),
            json!(0.0),
            json!(1),
            json!(-2.5),
            json!(1e-9),
            json!(""),
            json!("0"),
            json!("false"),
            json!([]),
            json!([0]),
            json!({}),
            json!({"a": null}),
        ] {
            let text = value.to_string();
            assert_eq!(json_is_truthy(text.as_bytes()), is_truthy(&value), "{text}");
        }
    }
}

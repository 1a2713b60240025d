//! The single writer both log adapters append through, and the batch planning they share.
//!
//! Why one writer: a subscriber tails the log with `read_all(position > checkpoint)`. That is only
//! safe if events become visible in position order. If two transactions could take positions 7
//! and 8 and commit as 8-then-7, a reader polling in between would see 8, move its checkpoint to 8
//! and skip 7 for ever. Sequences and `MAX(position) + 1` in concurrent transactions both allow
//! that. So appends are serialised: positions are assigned only by whoever holds the log's write
//! lock (on PostgreSQL a fixed advisory lock, on SQLite the database's own write lock, taken by
//! `BEGIN IMMEDIATE`), and the lock is released only once those positions are committed, so the
//! next batch cannot take positions until the previous one is visible. Commit order therefore
//! equals position order, on one node or many.
//!
//! Why batches: serialising appends one per transaction would cost one lock hand-over, several
//! round trips and one fsync per command. Instead each process runs one writer task that takes
//! every request waiting in its queue (up to [`MAX_BATCH`]) and writes them all with ONE commit:
//! under the lock, read the head (last position and hash) and the current versions of the
//! streams involved, check each request's expectations in order (a request that fails gets its
//! `Conflict` and writes nothing; the others go on, seeing the versions earlier requests in the
//! same batch produced), assign positions and hashes in order, insert every row with one
//! statement, announce the new head, commit, and only then answer each request. One commit and
//! one fsync carry many writers' commands, which is what lets the log keep up with, and under
//! load outrun, one-INSERT-per-transaction. If the batch fails as a whole, every request in it
//! gets `LogError::Storage`: none of them was written.
//!
//! The writer runs on a thread of its own (see [`Writer::spawn`]), and after a batch it waits a
//! moment for the callers it has just answered (see [`next_batch`]), so that many concurrent
//! writers keep landing in the same batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::log::{
    Appended, ExpectedVersion, LogError, Metadata, StreamAppend, canonical_json, chain_hash,
    stored_bytes,
};
use tokio::sync::{mpsc, oneshot, watch};

/// The most append requests one transaction carries.
pub(crate) const MAX_BATCH: usize = 512;

/// How long the writer waits for the first request after a batch before it idles (see
/// [`next_batch`]). Tokio's timer rounds it up to the next millisecond; an arrival ends it.
const LINGER_FIRST: Duration = Duration::from_millis(1);
/// How long the writer waits for more of the callers it has just answered to come back, and how
/// often it looks (see [`next_batch`]).
const LINGER_MORE: Duration = Duration::from_micros(200);
const LINGER_STEP: Duration = Duration::from_micros(20);

/// How many requests may wait for the writer before `append` callers wait to enqueue.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// One caller's `append`, waiting for the writer.
pub(crate) struct Request {
    pub appends: Vec<StreamAppend>,
    /// The metadata as canonical JSON, computed by the caller so the writer does less.
    pub metadata_json: String,
    /// Each event's payload as canonical JSON, in the order of `appends` and their events.
    pub payload_json: Vec<String>,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// The last event of the log, as the writer found it under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub position: u64,
    pub hash: [u8; 32],
    pub recorded_at_micros: i64,
}

impl Head {
    /// The head of an empty log.
    pub const GENESIS: Head = Head {
        position: 0,
        hash: domain::log::GENESIS_HASH,
        recorded_at_micros: i64::MIN,
    };
}

/// A row to insert, fields as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub schema_version: i64,
    pub payload: String,
    pub metadata: String,
    pub recorded_at_micros: i64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// What one batch writes and what each of its requests is answered.
#[derive(Debug)]
pub(crate) struct Plan {
    pub rows: Vec<Row>,
    /// One per request, in the order of the batch.
    pub outcomes: Vec<Result<Appended, LogError>>,
    /// The log's head once the rows are committed.
    pub head: Head,
}

/// Storage for the writer: runs one batch with one commit (see the module comment).
#[async_trait]
pub(crate) trait BatchStore: Send + 'static {
    /// Locks the log, reads its head and the current versions of the batch's streams, lets
    /// [`plan`] decide, inserts the rows, announces the new head and commits. An error means
    /// nothing was committed, as far as the store can tell.
    async fn write_batch(&mut self, batch: &[Request]) -> Result<Plan, LogError>;

    /// Called when the writer has nothing to do, before it waits for the next request: the
    /// place to release anything held across batches.
    async fn idle(&mut self) {}
}

/// Refuses appends the log can never accept, before they reach the writer.
pub(crate) fn validate(appends: &[StreamAppend]) -> Result<(), LogError> {
    if appends.iter().all(StreamAppend::is_expectation) {
        return Err(LogError::Invalid(
            "an append needs at least one stream with events".into(),
        ));
    }
    for (i, append) in appends.iter().enumerate() {
        if append.stream_id.is_empty() {
            return Err(LogError::Invalid("stream id must not be empty".into()));
        }
        if append.is_expectation() && append.expected == ExpectedVersion::Any {
            return Err(LogError::Invalid(format!(
                "stream {} has no events and expects any version: that expects nothing",
                append.stream_id
            )));
        }
        if appends[..i].iter().any(|a| a.stream_id == append.stream_id) {
            return Err(LogError::Invalid(format!(
                "stream {} appears more than once in one append",
                append.stream_id
            )));
        }
        if append.events.iter().any(|e| e.event_type.is_empty()) {
            return Err(LogError::Invalid(format!(
                "an event for stream {} has an empty event type",
                append.stream_id
            )));
        }
    }
    Ok(())
}

/// Every stream the batch touches, once each, in first-seen order.
pub(crate) fn streams_of(batch: &[Request]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    batch
        .iter()
        .flat_map(|r| r.appends.iter())
        .filter(|a| seen.insert(a.stream_id.as_str()))
        .map(|a| a.stream_id.clone())
        .collect()
}

/// Decides a batch: checks each request against the versions before it (the stored ones, then
/// those earlier requests in the batch produced), and lays out the accepted events' positions,
/// versions and hashes after `head`. `versions` holds each stream's current version (absent = 0).
/// `now_micros` is clamped so `recorded_at` never goes backwards along the log.
pub(crate) fn plan(
    head: Head,
    versions: &HashMap<String, u64>,
    batch: &[Request],
    now_micros: i64,
) -> Plan {
    let recorded_at_micros = now_micros.max(head.recorded_at_micros);
    // Versions as this batch leaves them, for the streams it has written so far.
    let mut written: HashMap<&str, u64> = HashMap::new();
    let mut position = head.position;
    let mut prev_hash = head.hash;
    let mut rows = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());

    for request in batch {
        let conflict = request.appends.iter().find_map(|a| {
            let actual = written
                .get(a.stream_id.as_str())
                .or_else(|| versions.get(&a.stream_id))
                .copied()
                .unwrap_or(0);
            (!a.expected.admits(actual)).then(|| LogError::Conflict {
                stream_id: a.stream_id.clone(),
                expected: a.expected,
                actual,
            })
        });
        if let Some(conflict) = conflict {
            outcomes.push(Err(conflict));
            continue;
        }

        let mut payloads = request.payload_json.iter();
        let mut stream_versions = Vec::with_capacity(request.appends.len());
        for append in request.appends.iter().filter(|a| !a.is_expectation()) {
            let stored = versions.get(&append.stream_id).copied().unwrap_or(0);
            let version = written.entry(append.stream_id.as_str()).or_insert(stored);
            for event in &append.events {
                position += 1;
                *version += 1;
                // The hash covers exactly the text stored.
                let payload = payloads
                    .next()
                    .cloned()
                    .unwrap_or_else(|| canonical_json(&event.payload));
                let hash = chain_hash(
                    &prev_hash,
                    &stored_bytes(
                        position,
                        &append.stream_id,
                        *version,
                        &event.event_type,
                        event.schema_version,
                        &payload,
                        &request.metadata_json,
                        recorded_at_micros,
                    ),
                );
                rows.push(Row {
                    position: to_i64(position),
                    stream_id: append.stream_id.clone(),
                    version: to_i64(*version),
                    event_type: event.event_type.clone(),
                    schema_version: i64::from(event.schema_version),
                    payload,
                    metadata: request.metadata_json.clone(),
                    recorded_at_micros,
                    prev_hash,
                    hash,
                });
                prev_hash = hash;
            }
            stream_versions.push((append.stream_id.clone(), *version));
        }
        outcomes.push(Ok(Appended {
            last_position: position,
            stream_versions,
        }));
    }

    let head = match rows.last() {
        Some(last) => Head {
            position,
            hash: last.hash,
            recorded_at_micros,
        },
        None => head,
    };
    Plan {
        rows,
        outcomes,
        head,
    }
}

/// Positions and versions are stored as BIGINT; a log will not reach 2^63 events.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_micros() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1000).unwrap_or(i64::MAX)
}

/// The latest head a process knows of, shared by the writer, the PostgreSQL listener and every
/// `wait_for_events` caller. It only moves forward.
#[derive(Clone)]
pub(crate) struct HeadWatch(Arc<watch::Sender<u64>>);

impl HeadWatch {
    pub fn new(head: u64) -> Self {
        Self(Arc::new(watch::Sender::new(head)))
    }

    /// Records that the log has reached `head`; wakes waiters if that is news.
    pub fn observe(&self, head: u64) {
        self.0.send_if_modified(|known| {
            let newer = head > *known;
            if newer {
                *known = head;
            }
            newer
        });
    }

    /// Waits until the known head is past `after`, for at most `max_wait`. Returns whether it is.
    pub async fn wait_past(&self, after: u64, max_wait: std::time::Duration) -> bool {
        let mut rx = self.0.subscribe();
        if *rx.borrow_and_update() > after {
            return true;
        }
        // The sender lives as long as `self`, so `wait_for` only ends when the head moves past.
        matches!(
            tokio::time::timeout(max_wait, rx.wait_for(|head| *head > after)).await,
            Ok(Ok(_))
        )
    }
}

/// The handle adapters send appends through. Dropping it stops the writer task once its queue is
/// empty.
pub(crate) struct Writer {
    queue: mpsc::Sender<Request>,
}

impl Writer {
    /// Starts the writer for `store` on a thread of its own, with a single-threaded runtime.
    ///
    /// Why a thread: a batch is a chain of round trips to the database, one after another, and on
    /// a busy multi-threaded runtime each wake-up can wait behind other tasks or hop threads.
    /// Alone on its thread the writer's latency is the database's, which is what a lone writer's
    /// throughput is made of. The thread ends when the `Writer` is dropped and the queue drains.
    pub fn spawn<S: BatchStore>(store: S, head: HeadWatch) -> Result<Self, LogError> {
        let (queue, requests) = mpsc::channel(QUEUE_CAPACITY);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| LogError::Storage(format!("starting the event log writer: {e}")))?;
        std::thread::Builder::new()
            .name("flaglog-log-writer".into())
            .spawn(move || runtime.block_on(run(store, requests, head)))
            .map_err(|e| LogError::Storage(format!("starting the event log writer: {e}")))?;
        Ok(Self { queue })
    }

    /// Validates, queues and waits for one append.
    pub async fn append(
        &self,
        appends: Vec<StreamAppend>,
        metadata: Metadata,
    ) -> Result<Appended, LogError> {
        validate(&appends)?;
        let metadata_json = serde_json::to_value(&metadata)
            .map(|m| canonical_json(&m))
            .map_err(|e| LogError::Invalid(format!("metadata is not serialisable: {e}")))?;
        let payload_json = appends
            .iter()
            .flat_map(|a| a.events.iter())
            .map(|e| canonical_json(&e.payload))
            .collect();
        let (reply, answer) = oneshot::channel();
        let request = Request {
            appends,
            metadata_json,
            payload_json,
            reply,
        };
        self.queue.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> LogError {
    LogError::Storage("the event log writer has stopped".into())
}

/// Collects the next batch. After a batch of `previous` requests, the callers just answered
/// usually append again at once, so the writer waits a little for them:
///
/// * for the first request, up to [`LINGER_FIRST`] (woken the moment it comes). Only if none
///   comes does it tell the store it is idle (on PostgreSQL that releases the lock, so a lone
///   writer's next append would otherwise pay an extra round trip) and wait as long as it takes;
/// * then for as many requests as the previous batch had, polling for up to [`LINGER_MORE`].
///   Without this, many concurrent writers split into two cohorts taking turns, each batch
///   carrying half of them.
///
/// Returns false once every `Writer` handle is gone.
async fn next_batch<S: BatchStore>(
    store: &mut S,
    requests: &mut mpsc::Receiver<Request>,
    batch: &mut Vec<Request>,
    previous: usize,
) -> bool {
    drain(requests, batch);
    if batch.is_empty() && previous > 0 {
        let first = requests.recv_many(batch, MAX_BATCH);
        if let Ok(0) = tokio::time::timeout(LINGER_FIRST, first).await {
            return false;
        }
    }
    if batch.is_empty() {
        store.idle().await;
        return requests.recv_many(batch, MAX_BATCH).await > 0;
    }
    let deadline = Instant::now() + LINGER_MORE;
    while batch.len() < previous.min(MAX_BATCH) && Instant::now() < deadline {
        // A blocking sleep: Tokio's timer is too coarse for this, and the thread is the
        // writer's own, with nothing else to run meanwhile.
        std::thread::sleep(LINGER_STEP);
        drain(requests, batch);
    }
    true
}

/// Moves whatever is queued into `batch`, up to [`MAX_BATCH`], without waiting.
fn drain(requests: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>) {
    while batch.len() < MAX_BATCH {
        match requests.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
}

async fn run<S: BatchStore>(mut store: S, mut requests: mpsc::Receiver<Request>, head: HeadWatch) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut previous = 0;
    while next_batch(&mut store, &mut requests, &mut batch, previous).await {
        previous = batch.len();
        // A caller that gave up before its batch started has seen no answer: leave it unwritten.
        batch.retain(|r| !r.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        match store.write_batch(&batch).await {
            Ok(plan) => {
                head.observe(plan.head.position);
                metrics::counter!("flaglog_events_appended_total")
                    .increment(plan.rows.len() as u64);
                for (request, outcome) in batch.drain(..).zip(plan.outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = batch.len(), "event log batch failed");
                let message = error.to_string();
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(LogError::Storage(message.clone())));
                }
            }
        }
        // `drain` above leaves it empty; clear in case the plan answered fewer requests.
        batch.clear();
    }
}

#[cfg(test)]
mod tests;

//! Verifying the log's hash chain (`flaglog verify`, `GET /api/v1/audit-log/verify`): every
//! event of a range recomputed from its stored bytes (`EventLog::read_stored`: no JSON is
//! parsed) and its predecessor's hash, in batches, so that
//! an event changed, removed or reordered behind the database's back is named by position. Given
//! a checkpoint saved earlier (a position and its hash), it also tells whether the log still
//! extends it: a log cut back behind the checkpoint, or rewritten before it, does not.

use domain::log::{ChainBreak, ChainCheck, EventLog, GENESIS_HASH, LogError, StoredRecord};
use serde::Serialize;

/// Events read per batch.
const BATCH: usize = 10_000;

/// A position and the hash stored there, as an auditor saved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: u64,
    pub hash: [u8; 32],
}

/// What verifying found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Whether every event checked verifies (and the log extends the checkpoint, if given).
    pub intact: bool,
    /// The range checked.
    pub first: u64,
    pub last: u64,
    /// The log's head when the check started.
    pub head: u64,
    /// The hash of `last`, when intact (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_hash: Option<String>,
    /// The first position that does not verify, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the hash at `first_bad_position` should be, and what is stored (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_hash: Option<String>,
}

impl Verification {
    /// One line for a terminal: "intact: positions 1..N, head hash H" or what broke.
    pub fn summary(&self) -> String {
        if self.intact {
            return format!(
                "intact: positions {}..{}, head hash {}",
                self.first,
                self.last,
                self.head_hash.as_deref().unwrap_or("-")
            );
        }
        let mut line = format!(
            "NOT intact at position {}: {}",
            self.first_bad_position.unwrap_or_default(),
            self.reason.as_deref().unwrap_or("")
        );
        if let (Some(expected), Some(stored)) = (&self.expected_hash, &self.stored_hash) {
            line.push_str(&format!(" (expected hash {expected}, stored {stored})"));
        }
        line
    }

    fn broken(
        &mut self,
        position: u64,
        reason: String,
        hashes: Option<([u8; 32], [u8; 32])>,
    ) -> &Self {
        self.intact = false;
        self.head_hash = None;
        self.first_bad_position = Some(position);
        self.reason = Some(reason);
        if let Some((expected, stored)) = hashes {
            self.expected_hash = Some(hex::encode(expected));
            self.stored_hash = Some(hex::encode(stored));
        }
        self
    }
}

/// Verifies positions `from..=to` (`to`: the head when `None`; both clamped to the log), and
/// that the log extends `checkpoint` when one is given.
pub async fn verify(
    log: &dyn EventLog,
    from: u64,
    to: Option<u64>,
    checkpoint: Option<Checkpoint>,
) -> Result<Verification, LogError> {
    let head = log.head().await?;
    let from = from.max(1);
    let last = to.unwrap_or(head).min(head);
    let mut verification = Verification {
        intact: true,
        first: from,
        last,
        head,
        head_hash: None,
        first_bad_position: None,
        reason: None,
        expected_hash: None,
        stored_hash: None,
    };
    if let Some(checkpoint) = checkpoint
        && checkpoint.position > head
    {
        verification.broken(
            head + 1,
            format!(
                "the log's head ({head}) is behind the checkpoint at position {}: events were \
                 removed",
                checkpoint.position
            ),
            None,
        );
        return Ok(verification);
    }
    // The chain goes on from the event before the range.
    let prev = if from == 1 {
        GENESIS_HASH
    } else {
        match log.read_stored(from - 2, 1).await?.first() {
            Some(event) if event.position == from - 1 => event.hash,
            _ => {
                verification.broken(from - 1, format!("event {} is missing", from - 1), None);
                return Ok(verification);
            }
        }
    };
    let mut check = ChainCheck::after(from - 1, prev);
    let mut position = from - 1;
    let mut batch = log.read_stored(position, BATCH).await?;
    while position < last {
        if batch.is_empty() {
            break;
        }
        let read_to = batch.last().map_or(last, |e| e.position);
        let events = std::mem::take(&mut batch);
        // The next batch is read while this one is hashed, on the blocking pool's threads.
        let following = async {
            if read_to < last {
                log.read_stored(read_to, BATCH).await
            } else {
                Ok(Vec::new())
            }
        };
        let hashing = tokio::task::spawn_blocking(move || {
            let computed = computed_hashes(&events);
            (events, computed)
        });
        let (following, hashed) = tokio::join!(following, hashing);
        let (events, computed) =
            hashed.map_err(|e| LogError::Storage(format!("hashing a batch failed: {e}")))?;
        for (event, computed) in events
            .iter()
            .zip(computed)
            .take_while(|(e, _)| e.position <= last)
        {
            if let Err(broken) = check.check_computed(event, computed) {
                let (reason, hashes) = match broken {
                    ChainBreak::Gap { expected, found } => (
                        format!("event {expected} is missing (the next stored is {found})"),
                        None,
                    ),
                    ChainBreak::PrevHash {
                        expected, stored, ..
                    } => (
                        "it does not name its predecessor's hash".to_string(),
                        Some((expected, stored)),
                    ),
                    ChainBreak::Hash {
                        expected, stored, ..
                    } => (
                        "its content does not give its stored hash: it was changed".to_string(),
                        Some((expected, stored)),
                    ),
                };
                verification.broken(broken.position(), reason, hashes);
                return Ok(verification);
            }
            if let Some(checkpoint) = checkpoint
                && checkpoint.position == event.position
                && checkpoint.hash != event.hash
            {
                verification.broken(
                    event.position,
                    "the hash stored here differs from the checkpoint's: the log was rewritten"
                        .to_string(),
                    Some((checkpoint.hash, event.hash)),
                );
                return Ok(verification);
            }
        }
        position = read_to;
        batch = following?;
    }
    let (verified, hash) = check.head();
    if verified < last {
        verification.broken(
            verified + 1,
            format!("event {} is missing", verified + 1),
            None,
        );
        return Ok(verification);
    }
    verification.head_hash = Some(hex::encode(hash));
    Ok(verification)
}

/// Each event's [`StoredRecord::computed_hash`], in order, worked out on every core: the
/// SHA-256 of each depends only on that event's stored bytes.
fn computed_hashes(events: &[StoredRecord]) -> Vec<[u8; 32]> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = events.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = events
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|e| e.computed_hash()).collect::<Vec<_>>())
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The recorded event of an export's line: its `event` (a line of the audit export), or the
/// line itself (a bare recorded event).
fn exported_event(mut line: serde_json::Value) -> serde_json::Result<domain::log::RecordedEvent> {
    match line.get_mut("event").map(serde_json::Value::take) {
        Some(event) => serde_json::from_value(event),
        None => serde_json::from_value(line),
    }
}

/// Verifies an NDJSON export of the log (one line per event, with the recorded event as
/// `GET /api/v1/audit-log/export` writes it) offline, without a database: every hash, from the
/// export's first event on, and that the export extends `checkpoint` (signed by `public_key`,
/// the key the auditor trusts): it holds the checkpoint's position with the checkpoint's hash.
pub fn verify_export(
    export: impl std::io::BufRead,
    checkpoint: &domain::checkpoint::SignedCheckpoint,
    public_key: &str,
) -> Verification {
    let mut verification = Verification {
        intact: true,
        first: 0,
        last: 0,
        head: 0,
        head_hash: None,
        first_bad_position: None,
        reason: None,
        expected_hash: None,
        stored_hash: None,
    };
    if let Err(reason) = checkpoint.verify(public_key) {
        verification.broken(
            checkpoint.position,
            format!("the checkpoint: {reason}"),
            None,
        );
        return verification;
    }
    let mut check: Option<ChainCheck> = None;
    let mut pinned = false;
    for (index, line) in export.lines().enumerate() {
        let event: domain::log::RecordedEvent = match line
            .map_err(|e| e.to_string())
            .and_then(|l| serde_json::from_str(&l).map_err(|e| e.to_string()))
            .and_then(|line: serde_json::Value| exported_event(line).map_err(|e| e.to_string()))
        {
            Ok(event) => event,
            Err(e) => {
                let at = verification.last + 1;
                verification.broken(at, format!("line {} is not an event: {e}", index + 1), None);
                return verification;
            }
        };
        let check = check.get_or_insert_with(|| {
            verification.first = event.position;
            ChainCheck::after(event.position.saturating_sub(1), event.prev_hash)
        });
        if let Err(broken) = check.check(&event) {
            let hashes = match broken {
                ChainBreak::Hash {
                    expected, stored, ..
                }
                | ChainBreak::PrevHash {
                    expected, stored, ..
                } => Some((expected, stored)),
                ChainBreak::Gap { .. } => None,
            };
            verification.broken(broken.position(), format!("{broken:?}"), hashes);
            return verification;
        }
        if event.position == checkpoint.position {
            if checkpoint.hash() != Some(event.hash) {
                verification.broken(
                    event.position,
                    "the export holds another hash at the checkpoint's position".to_string(),
                    checkpoint.hash().map(|h| (h, event.hash)),
                );
                return verification;
            }
            pinned = true;
        }
        verification.last = event.position;
        verification.head = event.position;
    }
    if !pinned {
        let at = verification.last + 1;
        verification.broken(
            at,
            format!(
                "the export (positions {}..{}) does not reach the checkpoint at position {}",
                verification.first, verification.last, checkpoint.position
            ),
            None,
        );
        return verification;
    }
    verification.head_hash = check.map(|c| hex::encode(c.head().1));
    verification
}

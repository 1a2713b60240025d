//! The `audit_checkpoints` worker (one node at a time): every interval, if the log holds an
//! event the last checkpoint it published does not cover (appended since, or between the head
//! that checkpoint read and its own append), signs a checkpoint of the head with the server's
//! key and appends it to the log (`domain::checkpoint::STREAM`). Whoever reads the log's events
//! (an export, an event feed, a replica) then holds checkpoints signed when they were taken, and
//! can later prove that nothing before them changed, without having asked the server.
//!
//! The append expects the stream's version as this worker last read it, so a former leader that
//! has not yet noticed it lost the lock publishes nothing twice: its append conflicts, and it
//! re-reads the stream.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::aggregate::{Aggregate, DomainEvent};
use domain::checkpoint::{self, CheckpointEvent, LastPublished, PublishedCheckpoints, SigningKey};
use domain::log::{EventLog, ExpectedVersion, LogError, Metadata, StreamAppend};
use projections::Error;
use projections::workers::{Context, Worker};

/// The worker's name in `/health`.
pub const NAME: &str = "audit_checkpoints";

/// How often a checkpoint is published by default (`--audit-checkpoint-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);

/// Who the published checkpoints' events name.
const ACTOR: &str = "system";

pub struct CheckpointPublisher {
    log: Arc<dyn EventLog>,
    key: Arc<SigningKey>,
    interval: Duration,
}

impl CheckpointPublisher {
    pub fn new(log: Arc<dyn EventLog>, key: Arc<SigningKey>, interval: Duration) -> Self {
        CheckpointPublisher { log, key, interval }
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Other(format!("audit checkpoints: {e}"))
}

/// The stream as read: its version, and its last checkpoint (where it is, what it covers).
#[derive(Default)]
struct Published {
    version: u64,
    last: Option<LastPublished>,
}

impl CheckpointPublisher {
    async fn read(&self) -> Result<Published, Error> {
        let events = self
            .log
            .read_stream(checkpoint::STREAM, 0)
            .await
            .map_err(failed)?;
        // Folded so that an event this build cannot read fails here, not in a reader.
        let mut state = PublishedCheckpoints::default();
        let mut last = None;
        for record in &events {
            let event = CheckpointEvent::from_recorded(record)?;
            state.apply(&event);
            let CheckpointEvent::CheckpointPublished { checkpoint } = &event;
            last = Some(LastPublished {
                at: record.position,
                covers: checkpoint.position,
            });
        }
        Ok(Published {
            version: events.last().map_or(0, |e| e.version),
            last,
        })
    }

    /// Publishes a checkpoint of the head if one is due; the stream as it is afterwards.
    async fn publish_if_due(&self, published: Published) -> Result<Published, Error> {
        let head = self.log.head().await.map_err(failed)?;
        if !checkpoint::due(published.last, head) {
            return Ok(published);
        }
        let hash = self
            .log
            .read_all(head - 1, 1)
            .await
            .map_err(failed)?
            .first()
            .map(|e| e.hash)
            .ok_or_else(|| failed(format!("event {head} cannot be read")))?;
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(failed)?;
        let event = CheckpointEvent::CheckpointPublished {
            checkpoint: checkpoint::sign(&self.key, head, hash, &time),
        };
        let append = StreamAppend {
            stream_id: checkpoint::STREAM.to_string(),
            expected: ExpectedVersion::from_loaded(published.version),
            events: vec![event.to_new_event()?],
        };
        match self.log.append(vec![append], Metadata::actor(ACTOR)).await {
            Ok(appended) => Ok(Published {
                version: published.version + 1,
                last: Some(LastPublished {
                    at: appended.last_position,
                    covers: head,
                }),
            }),
            // Another node published meanwhile: read what it did, and try at the next tick.
            Err(LogError::Conflict { .. }) => self.read().await,
            Err(e) => Err(failed(e)),
        }
    }
}

#[async_trait]
impl Worker for CheckpointPublisher {
    async fn run(&mut self, context: &Context) -> Result<(), Error> {
        let mut published = self.read().await?;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = context.cancelled() => return Ok(()),
            }
            published = self.publish_if_due(published).await?;
            if let Some(last) = published.last {
                context.progress(last.at, 0, 0.0);
            }
        }
    }
}

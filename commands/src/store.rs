//! Loading aggregates from the log, with a cache of their folded states.
//!
//! A command loads its aggregate, decides, and appends with the version it loaded as the
//! expectation. Folding a long stream on every command would cost O(stream length), so the
//! state of each stream is cached with the version it reflects; a load reads only the events after
//! that version. The cache is a pure optimisation: a stale entry is caught up from the log, and an
//! append whose expectation no longer holds is refused by the log.

use std::any::Any;
use std::sync::Arc;

use domain::aggregate::{Aggregate, DomainEvent};
use domain::log::{EventLog, ExpectedVersion, NewEvent, StreamAppend};

use crate::error::Result;

/// An aggregate's state and the stream version it reflects.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    pub stream_id: String,
    pub state: A,
    pub version: u64,
}

impl<A: Aggregate> Loaded<A> {
    /// An append of `events` expecting the stream to be still at the loaded version.
    pub fn append(&self, events: &[A::Event]) -> Result<StreamAppend> {
        Ok(StreamAppend {
            stream_id: self.stream_id.clone(),
            expected: ExpectedVersion::from_loaded(self.version),
            events: encode(events)?,
        })
    }

    /// An expectation that the stream is still at the loaded version, for a decision that read
    /// this aggregate and writes another.
    pub fn expectation(&self) -> StreamAppend {
        StreamAppend::expect(
            self.stream_id.clone(),
            ExpectedVersion::from_loaded(self.version),
        )
    }
}

pub fn encode<E: DomainEvent>(events: &[E]) -> Result<Vec<NewEvent>> {
    Ok(events
        .iter()
        .map(DomainEvent::to_new_event)
        .collect::<std::result::Result<_, _>>()?)
}

type CachedState = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
pub struct Store {
    log: Arc<dyn EventLog>,
    states: moka::sync::Cache<String, CachedState>,
}

impl Store {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Store {
            log,
            states: moka::sync::Cache::builder().max_capacity(10_000).build(),
        }
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The current state of `stream_id`'s aggregate.
    /// The aggregate as it stood with only the events of `stream_id` that `keep` admits (read
    /// uncached: history, for reverts and versions).
    pub async fn load_with<A: Aggregate>(
        &self,
        stream_id: &str,
        keep: impl Fn(&domain::log::RecordedEvent) -> bool,
    ) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            stream_id: stream_id.to_string(),
            state: A::default(),
            version: 0,
        };
        for record in self.log.read_stream(stream_id, 0).await? {
            if keep(&record) {
                loaded.state.apply(&A::Event::from_recorded(&record)?);
                loaded.version = record.version;
            }
        }
        Ok(loaded)
    }

    pub async fn load<A: Aggregate>(&self, stream_id: &str) -> Result<Loaded<A>> {
        let cached = self
            .states
            .get(stream_id)
            .and_then(|entry| entry.downcast_ref::<Loaded<A>>().cloned());
        let mut loaded = cached.unwrap_or_else(|| Loaded {
            stream_id: stream_id.to_string(),
            state: A::default(),
            version: 0,
        });
        let records = self.log.read_stream(stream_id, loaded.version).await?;
        if records.is_empty() {
            return Ok(loaded);
        }
        for record in &records {
            loaded.state.apply(&A::Event::from_recorded(record)?);
            loaded.version = record.version;
        }
        self.states
            .insert(stream_id.to_string(), Arc::new(loaded.clone()));
        Ok(loaded)
    }
}

//! One `Streams.Read` call: what it asks for ([`Request::parse`]) and the responses that answer
//! it ([`Reader::next`]), read from the log a page at a time.
//!
//! flaglog's log as EventStoreDB's: `$all` positions are flaglog's global positions (commit and
//! prepare alike; 1, 2, 3, … without gaps), a stream's revisions are its versions minus one, an
//! event's id is derived from its position ([`event_id`]), its data is the payload's JSON and
//! its custom metadata the JSON of flaglog's metadata (actor, reason, correlation). Reads start
//! at the position or revision they name; subscriptions right after it, answer a confirmation,
//! the events up to the head, `caught_up`, then live events as they commit. A subscription
//! never ends by itself: when the server stops it ends with UNAVAILABLE, and the client
//! resubscribes elsewhere.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use domain::log::{EventLog, RecordedEvent};
use regex::Regex;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::pb::event_store::client as c;
use super::pb::event_store::client::streams::read_req::options::{
    self as o, CountOption, FilterOption, StreamOption, all_options, filter_options, stream_options,
};
use super::pb::event_store::client::streams::read_resp::{self as r, Content};
use super::pb::event_store::client::streams::{ReadReq, ReadResp};

/// Events read from the log at a time.
const PAGE: usize = 500;
/// How long a live subscription waits for a commit before looking again (and at shutdown).
const LIVE_WAIT: Duration = Duration::from_secs(5);
/// Events scanned between two checkpoints of a filtered subscription, unless it says.
const CHECKPOINT_WINDOW: u64 = 32;
/// The first half of every event id: `flaglog\0`.
const ID_PREFIX: u64 = u64::from_be_bytes(*b"flaglog\0");

/// Which events a call reads.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    All,
    Stream(String),
}

/// Where a call starts, as it says it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    Beginning,
    End,
    /// A `$all` position or a stream revision.
    At(u64),
}

/// Events kept by a filter.
struct Filter {
    on_stream: bool,
    prefixes: Vec<String>,
    regex: Option<Regex>,
    /// Events scanned between checkpoints.
    window: u64,
}

impl Filter {
    fn keeps(&self, event: &RecordedEvent) -> bool {
        let text = if self.on_stream {
            &event.stream_id
        } else {
            &event.event_type
        };
        self.prefixes.iter().any(|p| text.starts_with(p.as_str()))
            || self.regex.as_ref().is_some_and(|r| r.is_match(text))
    }
}

/// A `ReadReq`, understood.
pub struct Request {
    target: Target,
    start: Origin,
    backwards: bool,
    /// `None`: a subscription.
    count: Option<u64>,
    filter: Option<Filter>,
    uuid_as_string: bool,
}

impl Request {
    pub fn parse(request: ReadReq) -> Result<Self, Status> {
        let options = request
            .options
            .ok_or_else(|| Status::invalid_argument("options are required"))?;
        let (target, start) = match options.stream_option {
            Some(StreamOption::Stream(stream)) => {
                let name = stream
                    .stream_identifier
                    .map(|s| s.stream_name)
                    .unwrap_or_default();
                let name = String::from_utf8(name)
                    .map_err(|_| Status::invalid_argument("the stream name is not UTF-8"))?;
                let start = match stream.revision_option {
                    Some(stream_options::RevisionOption::Revision(revision)) => {
                        Origin::At(revision)
                    }
                    Some(stream_options::RevisionOption::End(_)) => Origin::End,
                    Some(stream_options::RevisionOption::Start(_)) | None => Origin::Beginning,
                };
                (Target::Stream(name), start)
            }
            Some(StreamOption::All(all)) => {
                let start = match all.all_option {
                    Some(all_options::AllOption::Position(p)) => Origin::At(p.commit_position),
                    Some(all_options::AllOption::End(_)) => Origin::End,
                    Some(all_options::AllOption::Start(_)) | None => Origin::Beginning,
                };
                (Target::All, start)
            }
            None => return Err(Status::invalid_argument("a stream or $all is required")),
        };
        let count = match options.count_option {
            Some(CountOption::Count(count)) => Some(count),
            Some(CountOption::Subscription(_)) => None,
            None => {
                return Err(Status::invalid_argument(
                    "a count or a subscription is required",
                ));
            }
        };
        let filter = match options.filter_option {
            Some(FilterOption::Filter(filter)) => Some(filter_of(filter)?),
            Some(FilterOption::NoFilter(_)) | None => None,
        };
        if filter.is_some() && target != Target::All {
            return Err(Status::invalid_argument("filters apply to $all only"));
        }
        Ok(Request {
            target,
            start,
            backwards: options.read_direction == o::ReadDirection::Backwards as i32,
            count,
            filter,
            uuid_as_string: matches!(
                options.uuid_option.and_then(|u| u.content),
                Some(o::uuid_option::Content::String(_))
            ),
        })
    }
}

fn filter_of(filter: o::FilterOptions) -> Result<Filter, Status> {
    let (on_stream, expression) = match filter.filter {
        Some(filter_options::Filter::StreamIdentifier(e)) => (true, e),
        Some(filter_options::Filter::EventType(e)) => (false, e),
        None => return Err(Status::invalid_argument("a filter needs an expression")),
    };
    let regex = if expression.regex.is_empty() {
        None
    } else {
        Some(Regex::new(&expression.regex).map_err(|e| {
            Status::invalid_argument(format!("the filter's regex is not valid: {e}"))
        })?)
    };
    let window = match filter.window {
        Some(filter_options::Window::Max(max)) if max > 0 => u64::from(max),
        _ => CHECKPOINT_WINDOW,
    };
    Ok(Filter {
        on_stream,
        prefixes: expression.prefix,
        regex,
        window: window * u64::from(filter.checkpoint_interval_multiplier.max(1)),
    })
}

/// Where a reader stands.
enum Phase {
    /// A subscription's confirmation is next.
    Confirm,
    /// Reading what the log holds.
    Reading,
    /// A subscription, caught up: waiting for commits.
    Live,
    Done,
}

/// The responses to one call, produced as they are asked for.
pub struct Reader {
    log: Arc<dyn EventLog>,
    request: Request,
    cancel: CancellationToken,
    phase: Phase,
    /// `$all`: the last position read (forwards) or the next to read (backwards). A stream:
    /// the last version read (forwards) or the first not to read (backwards).
    cursor: u64,
    /// Events still to answer (counted reads).
    remaining: u64,
    /// A stream: the log's head when it was last read (a live subscription waits past it).
    seen_head: u64,
    scanned: u64,
    pending: VecDeque<ReadResp>,
}

impl Reader {
    pub async fn new(
        log: Arc<dyn EventLog>,
        request: Request,
        cancel: CancellationToken,
    ) -> Result<Self, Status> {
        let head = log.head().await.map_err(internal)?;
        let subscription = request.count.is_none();
        let cursor = match (&request.target, request.start, request.backwards) {
            (_, Origin::Beginning, false) => 0,
            (Target::All, Origin::End, false) => head,
            (Target::All, Origin::At(p), false) if subscription => p,
            (Target::All, Origin::At(p), false) => p.saturating_sub(1),
            (Target::All, Origin::Beginning, true) => 0,
            (Target::All, Origin::End, true) => head,
            (Target::All, Origin::At(p), true) => p.min(head),
            (Target::Stream(stream), Origin::End, _) => stream_version(&*log, stream).await?,
            (Target::Stream(_), Origin::At(revision), false) if subscription => revision + 1,
            (Target::Stream(_), Origin::At(revision), false) => revision,
            (Target::Stream(_), Origin::Beginning, true) => 0,
            (Target::Stream(_), Origin::At(revision), true) => revision + 1,
        };
        Ok(Reader {
            log,
            cancel,
            phase: if subscription {
                Phase::Confirm
            } else {
                Phase::Reading
            },
            cursor,
            remaining: request.count.unwrap_or(u64::MAX),
            seen_head: head,
            scanned: 0,
            request,
            pending: VecDeque::new(),
        })
    }

    /// The next response; `None` when a counted read is done.
    pub async fn next(&mut self) -> Option<Result<ReadResp, Status>> {
        loop {
            if let Some(response) = self.pending.pop_front() {
                return Some(Ok(response));
            }
            let step = match self.phase {
                Phase::Done => return None,
                Phase::Confirm => {
                    self.pending.push_back(content(Content::Confirmation(
                        r::SubscriptionConfirmation {
                            subscription_id: uuid::Uuid::new_v4().to_string(),
                        },
                    )));
                    self.phase = Phase::Reading;
                    Ok(())
                }
                Phase::Reading => self.read().await,
                Phase::Live => self.wait().await,
            };
            if let Err(status) = step {
                self.phase = Phase::Done;
                return Some(Err(status));
            }
        }
    }

    /// Reads the next page; at the end, a counted read is done and a subscription caught up.
    async fn read(&mut self) -> Result<(), Status> {
        let events = self.page().await?;
        if events.is_empty() {
            if self.request.count.is_some() {
                self.phase = Phase::Done;
            } else {
                if self.request.filter.is_some() {
                    self.checkpoint_at(self.cursor);
                }
                self.pending
                    .push_back(content(Content::CaughtUp(r::CaughtUp {})));
                self.phase = Phase::Live;
            }
            return Ok(());
        }
        self.answer(events);
        Ok(())
    }

    /// Waits for a commit (or the server to stop), then reads what came.
    async fn wait(&mut self) -> Result<(), Status> {
        let head = match self.request.target {
            Target::All => self.cursor,
            Target::Stream(_) => self.seen_head,
        };
        tokio::select! {
            waited = self.log.wait_for_events(head, LIVE_WAIT) => waited.map_err(internal)?,
            () = self.cancel.cancelled() => {
                return Err(Status::unavailable("flaglog is shutting down; subscribe again"));
            }
        }
        let events = self.page().await?;
        self.answer(events);
        Ok(())
    }

    /// The next events in the call's order, unfiltered, moving the cursor past them.
    async fn page(&mut self) -> Result<Vec<RecordedEvent>, Status> {
        if self.remaining == 0 {
            return Ok(Vec::new());
        }
        let log = &*self.log;
        let events = match (&self.request.target, self.request.backwards) {
            (Target::All, false) => {
                let events = log.read_all(self.cursor, PAGE).await.map_err(internal)?;
                if let Some(last) = events.last() {
                    self.cursor = last.position;
                }
                events
            }
            (Target::All, true) => {
                let from = self.cursor;
                let to = from.saturating_sub(PAGE as u64);
                let positions: Vec<u64> = ((to + 1)..=from).rev().collect();
                let mut events = log.read_positions(&positions).await.map_err(internal)?;
                events.sort_by_key(|e| std::cmp::Reverse(e.position));
                self.cursor = to;
                events
            }
            (Target::Stream(stream), false) => {
                // Before reading: what commits after this, a live subscription waits for.
                self.seen_head = log.head().await.map_err(internal)?;
                let events = log
                    .read_stream(stream, self.cursor)
                    .await
                    .map_err(internal)?;
                if events.is_empty() && self.cursor == 0 && self.request.count.is_some() {
                    self.not_found(stream.clone());
                }
                if let Some(last) = events.last() {
                    self.cursor = last.version;
                }
                events
            }
            (Target::Stream(stream), true) => {
                if self.cursor == 0 {
                    return Ok(Vec::new());
                }
                let mut events = log.read_stream(stream, 0).await.map_err(internal)?;
                if events.is_empty() {
                    self.not_found(stream.clone());
                }
                events.retain(|e| e.version <= self.cursor);
                events.reverse();
                self.cursor = 0;
                events
            }
        };
        Ok(events)
    }

    fn not_found(&mut self, stream: String) {
        self.pending
            .push_back(content(Content::StreamNotFound(r::StreamNotFound {
                stream_identifier: Some(c::StreamIdentifier {
                    stream_name: stream.into_bytes(),
                }),
            })));
        self.phase = Phase::Done;
    }

    /// Queues the events the call keeps, and checkpoints where its filter's window says.
    fn answer(&mut self, events: Vec<RecordedEvent>) {
        for event in events {
            if self.remaining == 0 {
                self.phase = Phase::Done;
                return;
            }
            self.scanned += 1;
            let kept = self.request.filter.as_ref().is_none_or(|f| f.keeps(&event));
            if kept {
                self.pending
                    .push_back(content(Content::Event(self.event(&event))));
                self.remaining -= 1;
            }
            if let Some(filter) = &self.request.filter
                && self.request.count.is_none()
                && self.scanned.is_multiple_of(filter.window)
            {
                self.checkpoint_at(event.position);
            }
        }
    }

    fn checkpoint_at(&mut self, position: u64) {
        self.pending
            .push_back(content(Content::Checkpoint(r::Checkpoint {
                commit_position: position,
                prepare_position: position,
            })));
    }

    fn event(&self, event: &RecordedEvent) -> r::ReadEvent {
        let id = event_id(event.position);
        let id = if self.request.uuid_as_string {
            c::uuid::Value::String(id.to_string())
        } else {
            let (most, least) = id.as_u64_pair();
            c::uuid::Value::Structured(c::uuid::Structured {
                most_significant_bits: most as i64,
                least_significant_bits: least as i64,
            })
        };
        let metadata = [
            ("type", event.event_type.clone()),
            ("content-type", "application/json".to_string()),
            // .NET ticks (100 ns) since the Unix epoch.
            ("created", (event.recorded_at_micros * 10).to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        r::ReadEvent {
            event: Some(r::read_event::RecordedEvent {
                id: Some(c::Uuid { value: Some(id) }),
                stream_identifier: Some(c::StreamIdentifier {
                    stream_name: event.stream_id.clone().into_bytes(),
                }),
                stream_revision: event.version.saturating_sub(1),
                prepare_position: event.position,
                commit_position: event.position,
                metadata,
                custom_metadata: serde_json::to_vec(&event.metadata).unwrap_or_default(),
                data: serde_json::to_vec(&event.payload).unwrap_or_default(),
            }),
            link: None,
            position: Some(r::read_event::Position::CommitPosition(event.position)),
        }
    }
}

/// The id an event has in this API: `flaglog\0` and its position, so the same event always has
/// the same id.
pub fn event_id(position: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(ID_PREFIX, position)
}

async fn stream_version(log: &dyn EventLog, stream: &str) -> Result<u64, Status> {
    let events = log.read_stream(stream, 0).await.map_err(internal)?;
    Ok(events.last().map_or(0, |e| e.version))
}

fn content(content: Content) -> ReadResp {
    ReadResp {
        content: Some(content),
    }
}

fn internal(error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "the EventStoreDB API could not read the log");
    Status::internal("flaglog could not read its log")
}

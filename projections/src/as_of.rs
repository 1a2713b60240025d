//! Time travel: an environment as it stood at a past position of the log, for auditors ("what
//! did the SDKs get at 14:03 on Tuesday?").
//!
//! The past is folded from the log on request, with the very code the environment-documents
//! projection uses ([`Folded::apply`] and [`Folded::render`]), so the document as of a position
//! is, byte for byte, the one the projection rendered for the last change at or before it, and
//! "as of the head" is what SDKs are served now.
//!
//! It starts from the environment's latest snapshot at or before the position
//! ([`crate::snapshots`], taken periodically by the projection), else from nothing, and reads
//! only what the streams the document depends on gained since, each with
//! `EventLog::read_stream_between`: the directory, the environment's project, the environment,
//! and its identities' override streams. Those last cannot be named without the identifiers (a
//! stream's name holds the identifier's hash), so a whole document finds their events in the
//! audit history (`projections::audit_history`, which indexes every event by environment) and
//! reads them by position, and, past the position the history has reached, with a pass over
//! the rest of the log ([`identity_events`]); one identity's flags read only that identity's
//! stream. A request costs what those streams gained since the snapshot.

use domain::directory;
use domain::environment::{self, Environment};
use domain::identity;
use domain::log::{EventLog, RecordedEvent};
use domain::model::{EnvironmentId, ProjectId};
use domain::project::{self, Project};

use sqlx::AnyPool;

use crate::Error;
use crate::audit_history;
use crate::environment_documents::{Folded, RenderedEnvironment};
use crate::snapshots;

/// How many events one read of the log fetches (by position, or in the pass over its tail).
const READ_BATCH: usize = 1_000;

/// Which identities' overrides a past document holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identities<'a> {
    /// Every identity's, as the document SDKs download.
    All,
    /// Only the identity with this reference (none: an identity without overrides): enough to
    /// evaluate it, without a pass over the log.
    One(Option<&'a str>),
}

/// The position of the last event recorded at or before `micros` (µs since the Unix epoch), 0
/// if none was. The writer never lets `recorded_at` go backwards along the log, so the log is
/// sorted by it and a binary search over positions finds it in O(log n) single-event reads.
pub async fn position_at(log: &dyn EventLog, micros: i64) -> Result<u64, Error> {
    // Invariant: recorded_at(lo) <= micros (lo = 0 stands for "before the log"), and every
    // position above hi was recorded after `micros`.
    let (mut lo, mut hi) = (0, log.head().await?);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let recorded = log.read_all(mid - 1, 1).await?;
        let at = recorded.first().map(|event| event.recorded_at_micros);
        if at.is_some_and(|at| at <= micros) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(lo)
}

/// An environment and its project as they stood at `position` (defaults where they did not
/// exist yet): what its feature states then were.
pub async fn aggregates_at(
    log: &dyn EventLog,
    environment_id: EnvironmentId,
    project_id: ProjectId,
    position: u64,
) -> Result<(Project, Environment), Error> {
    use crate::environment_documents::load;
    let project = load(log, &project::stream(project_id), position).await?;
    let environment = load(log, &environment::stream(environment_id), position).await?;
    Ok((project, environment))
}

/// The read model of environment `environment_id` (of project `project_id`) as the projection
/// rendered it for the last change at or before `position`; `None` if the environment or its
/// project did not exist then.
pub async fn environment_at(
    log: &dyn EventLog,
    read_models: &AnyPool,
    environment_id: EnvironmentId,
    project_id: ProjectId,
    position: u64,
    identities: Identities<'_>,
) -> Result<Option<RenderedEnvironment>, Error> {
    // From the latest snapshot at or before the position, if any: only what the streams gained
    // since is read and folded.
    let (mut folded, after) = match snapshots::latest(read_models, environment_id, position).await?
    {
        Some(mut snapshot) => {
            if let Identities::One(reference) = identities {
                snapshot
                    .identities
                    .retain(|kept, _| Some(kept.as_str()) == reference);
            }
            let after = snapshot.position;
            (Folded::from_snapshot(environment_id, snapshot), after)
        }
        None => {
            // Only this environment and its project are loaded, so only their events are
            // folded and nothing is ever evicted (`render` is called right after).
            let mut folded = Folded::default();
            folded.insert_environment(environment_id, Environment::default());
            folded.insert_project(project_id, Project::default());
            (folded, 0)
        }
    };
    let mut events = log
        .read_stream_between(directory::STREAM, after, position)
        .await?;
    for stream in [
        project::stream(project_id),
        environment::stream(environment_id),
    ] {
        events.extend(log.read_stream_between(&stream, after, position).await?);
    }
    match identities {
        Identities::All => {
            events.extend(identity_events(log, read_models, environment_id, after, position).await?)
        }
        Identities::One(None) => {}
        Identities::One(Some(reference)) => events.extend(
            log.read_stream_between(
                &identity::stream(environment_id, reference),
                after,
                position,
            )
            .await?,
        ),
    }
    // In the log's order, as the projection applied them: which event touched the environment
    // last (its `updated_at` and position) depends on it.
    events.sort_unstable_by_key(|event| event.position);
    for event in &events {
        folded.apply(event)?;
    }
    folded.name_identities(log, environment_id).await?;
    Ok(folded.render(environment_id))
}

/// Every event of environment `environment_id`'s identity override streams between `after`
/// and `position`: found in the audit history (indexed by environment) as far as it has
/// projected and read by position, and past that by a pass over the log's remaining events
/// (all of them when the history is empty or rebuilding).
async fn identity_events(
    log: &dyn EventLog,
    read_models: &AnyPool,
    environment_id: EnvironmentId,
    after: u64,
    position: u64,
) -> Result<Vec<RecordedEvent>, Error> {
    let indexed_to = crate::checkpoint(read_models, audit_history::NAME)
        .await?
        .min(position)
        .max(after);
    let indexed =
        audit_history::identity_event_positions(read_models, environment_id, after, indexed_to)
            .await?;
    let mut found = Vec::with_capacity(indexed.len());
    for chunk in indexed.chunks(READ_BATCH) {
        found.extend(log.read_positions(chunk).await?);
    }
    let prefix = format!("identity-{environment_id}-");
    let mut scanned = indexed_to;
    while scanned < position {
        let batch = log.read_all(scanned, READ_BATCH).await?;
        let Some(last) = batch.last() else {
            break;
        };
        scanned = last.position;
        found.extend(
            batch
                .into_iter()
                .filter(|event| event.position <= position && event.stream_id.starts_with(&prefix)),
        );
    }
    Ok(found)
}

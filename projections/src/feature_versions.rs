//! Feature versions, projected from the log on request: every published state of one feature in
//! one environment, folded from the environment's stream (so history starts at its first event,
//! whether versioning is on or not). A version is the state after one append that changed the
//! feature (its state or a segment override of it), with who made it, when, and the change
//! request it came from. An append that left what is served unchanged makes no version.

use domain::aggregate::{Aggregate, DomainEvent};
use domain::environment::{self, Environment, EnvironmentEvent};
use domain::feature_version::PublishedState;
use domain::log::{EventLog, RecordedEvent};
use domain::model::{EnvironmentId, Feature};
use serde::Serialize;

use crate::Error;

/// One published state of a feature in an environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureVersion {
    /// 1 for the first, counting up.
    pub number: u64,
    /// The log position of the last event that made it.
    pub position: u64,
    /// When it went live, in µs since the Unix epoch.
    pub published_at_micros: i64,
    pub published_by: String,
    /// `change-request-N`, when it was published by a change request.
    pub change_request: Option<String>,
    pub approvers: Vec<String>,
    /// The break-glass or change reason given, if any.
    pub reason: Option<String>,
    pub break_glass: bool,
    pub state: PublishedState,
}

fn feature_of(event: &EnvironmentEvent) -> Option<u64> {
    match event {
        EnvironmentEvent::FeatureStateSet { feature_id, .. }
        | EnvironmentEvent::SegmentOverrideSet { feature_id, .. }
        | EnvironmentEvent::SegmentOverrideRemoved { feature_id, .. } => Some(*feature_id),
        _ => None,
    }
}

/// Whether two records were written by one append (one request's decision).
fn same_append(a: &RecordedEvent, b: &RecordedEvent) -> bool {
    a.recorded_at_micros == b.recorded_at_micros && a.metadata == b.metadata
}

/// Every version of `feature` in environment `environment_id`, oldest first. `feature` is the
/// feature as it is now (its defaults stand for a state never set).
pub async fn versions(
    log: &dyn EventLog,
    environment_id: EnvironmentId,
    feature: &Feature,
) -> Result<Vec<FeatureVersion>, Error> {
    let records = log
        .read_stream(&environment::stream(environment_id), 0)
        .await?;
    let mut state = Environment::default();
    let mut versions: Vec<FeatureVersion> = Vec::new();
    let mut pending: Option<&RecordedEvent> = None;
    let mut published = |state: &Environment, record: &RecordedEvent| {
        let now = PublishedState::of(state, feature);
        if versions.last().is_some_and(|last| last.state == now) {
            return;
        }
        let metadata = &record.metadata;
        versions.push(FeatureVersion {
            number: versions.len() as u64 + 1,
            position: record.position,
            published_at_micros: record.recorded_at_micros,
            published_by: metadata.actor.clone(),
            change_request: metadata
                .causation_id
                .clone()
                .filter(|c| c.starts_with("change-request-")),
            approvers: metadata.approvers.clone(),
            reason: metadata.reason.clone(),
            break_glass: metadata.break_glass,
            state: now,
        });
    };
    for (i, record) in records.iter().enumerate() {
        let event = EnvironmentEvent::from_recorded(record)?;
        state.apply(&event);
        if feature_of(&event) == Some(feature.id) {
            pending = Some(record);
        }
        let append_ends = records
            .get(i + 1)
            .is_none_or(|next| !same_append(record, next));
        if append_ends && let Some(last) = pending.take() {
            published(&state, last);
        }
    }
    Ok(versions)
}

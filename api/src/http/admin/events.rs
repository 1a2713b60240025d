//! The event feed: every change in log order, as CloudEvents 1.0 JSON, for any consumer.
//! `GET /api/v1/events/?after=POSITION&limit=N[&wait=SECONDS]` pages forward (long-polling with
//! `wait` when nothing is new); `GET /api/v1/events/stream` is the same as Server-Sent Events
//! whose `id` is the position, resumed after `Last-Event-ID`. Both filter by project,
//! environment, feature and event type, read the audit history's rows (so an event carries its
//! summary, before/after, change request and approvers), and show a caller only the projects
//! they hold a role on, as the audit log does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use projections::audit_history::{AuditQuery, AuditRow, Order};
use projections::integrations::wait_for_audit;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::history::{AuditParams, AuditRowView, audit_query, rows};
use crate::http::AppState;
use crate::http::admin::wait_until_projected;
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Query};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;
/// The longest `wait` a long poll may ask for.
const MAX_WAIT_SECONDS: u64 = 60;
/// How long the stream waits for an event before it looks again (a keep-alive goes out
/// meanwhile).
const STREAM_WAIT: Duration = Duration::from_secs(15);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/events/", get(list))
        .route("/api/v1/events/stream", get(stream))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct EventParams {
    /// Only events after this position (default 0: from the start).
    pub after: Option<u64>,
    /// Events per answer (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Seconds to wait for an event when none is there yet (at most 60; default 0).
    pub wait: Option<u64>,
    pub project: Option<u64>,
    /// An environment's client key or id.
    pub environment: Option<String>,
    /// A feature id (with the change requests that touch it).
    pub feature: Option<u64>,
    /// An event type, e.g. `FeatureStateSet`.
    pub event_type: Option<String>,
}

/// One event, a CloudEvents 1.0 JSON object.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CloudEvent {
    pub specversion: &'static str,
    /// The event's position in the log.
    pub id: String,
    pub source: &'static str,
    /// `io.flaglog.` and the event type, e.g. `io.flaglog.FeatureStateSet`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it was recorded (RFC 3339).
    pub time: String,
    /// Its stream, e.g. `environment-3`.
    pub subject: String,
    pub datacontenttype: &'static str,
    /// The position again, as a number (a CloudEvents extension attribute).
    pub position: u64,
    /// As an audit row: who, where, summary, before/after and patch, the change request and
    /// its approvers, and `flags`: the flag states it changed per environment.
    #[schema(value_type = Object)]
    pub data: Value,
}

impl CloudEvent {
    fn of(row: &AuditRow) -> Self {
        let view = AuditRowView::of(row);
        let mut data = serde_json::to_value(&view).unwrap_or(Value::Null);
        data["flags"] = row
            .detail
            .get("flags")
            .cloned()
            .unwrap_or(Value::Array(vec![]));
        CloudEvent {
            specversion: "1.0",
            id: row.position.to_string(),
            source: "/api/v1/events/",
            event_type: format!("io.flaglog.{}", row.event_type),
            time: view.recorded_at.clone(),
            subject: row.stream_id.clone(),
            datacontenttype: "application/json",
            position: row.position,
            data,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub events: Vec<CloudEvent>,
    /// Pass as `after` for what follows (past events the filters left out, too).
    pub next: u64,
}

async fn feed_query(state: &AppState, caller: &Admin, params: &EventParams) -> Result<AuditQuery> {
    let audit = AuditParams {
        project: params.project,
        environment: params.environment.clone(),
        feature: params.feature,
        event_type: params.event_type.clone(),
        ..AuditParams::default()
    };
    let mut query = audit_query(state, caller, &audit).await?;
    query.order = Order::LogOrder;
    query.limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    Ok(query)
}

/// The events after `after` that `query` selects, up to what the audit history holds; and the
/// position read up to.
async fn page(state: &AppState, query: &AuditQuery, after: u64) -> Result<(Vec<AuditRow>, u64)> {
    let checkpoint =
        projections::checkpoint(&state.read_models, projections::audit_history::NAME).await?;
    let query = AuditQuery {
        after_position: Some(after),
        until_position: Some(checkpoint),
        ..query.clone()
    };
    let found = rows(state, &query).await?;
    let next = if found.len() == query.limit as usize {
        found.last().map_or(after, |r| r.position)
    } else {
        checkpoint.max(after)
    };
    Ok((found, next))
}

/// Events in log order after `after`, each a CloudEvents object; `next` is the cursor for the
/// following call. With `wait`, an answer with no event waits up to that many seconds for one.
#[utoipa::path(get, path = "/api/v1/events/", tag = "events", params(EventParams),
    responses((status = 200, body = EventPage), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    Query(params): Query<EventParams>,
) -> Result<Json<EventPage>> {
    let query = feed_query(&state, &caller, &params).await?;
    wait_until_projected(&state, projections::audit_history::NAME).await?;
    let wait = Duration::from_secs(params.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    let mut after = params.after.unwrap_or(0);
    loop {
        let (found, next) = page(&state, &query, after).await?;
        let now = tokio::time::Instant::now();
        if !found.is_empty() || now >= deadline {
            return Ok(Json(EventPage {
                events: found.iter().map(CloudEvent::of).collect(),
                next,
            }));
        }
        after = next;
        tokio::select! {
            waited = wait_for_audit(&state.read_models, &*state.log, next, deadline - now) => { waited?; }
            () = state.shutdown.cancelled() => {}
        }
    }
}

/// The same events as Server-Sent Events, each `id` its position: a client reconnecting with
/// `Last-Event-ID` (or `?after=`) resumes right after it. Ends when the server shuts down.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(EventParams),
    responses((status = 200, description = "text/event-stream of CloudEvents")))]
pub async fn stream(
    State(state): State<AppState>,
    caller: Admin,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let query = feed_query(&state, &caller, &params).await?;
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Error::bad_request("Last-Event-ID", "must be a position this stream sent")
            })?,
        None => params.after.unwrap_or(0),
    };
    let shutdown = state.shutdown.clone();
    let pending: VecDeque<AuditRow> = VecDeque::new();
    let events = futures_util::stream::unfold(
        (state, query, after, pending),
        move |(state, query, mut after, mut pending)| {
            let shutdown = shutdown.clone();
            async move {
                loop {
                    if let Some(row) = pending.pop_front() {
                        let data = serde_json::to_string(&CloudEvent::of(&row)).unwrap_or_default();
                        let event = Event::default().id(row.position.to_string()).data(data);
                        return Some((Ok(event), (state, query, after, pending)));
                    }
                    if shutdown.is_cancelled() {
                        return None;
                    }
                    let (found, next) = match page(&state, &query, after).await {
                        Ok(found) => found,
                        Err(e) => {
                            tracing::warn!(error = %e, "the event stream cannot read the audit history");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            (vec![], after)
                        }
                    };
                    after = next;
                    if found.is_empty() {
                        tokio::select! {
                            _ = wait_for_audit(&state.read_models, &*state.log, next, STREAM_WAIT) => {}
                            () = shutdown.cancelled() => return None,
                        }
                    }
                    pending.extend(found);
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

//! `GET /api/v1/audit-log/export`: the audit history's query ([`super::history`]) in log order as
//! NDJSON or CSV, streamed in batches, so memory stays flat however many rows.
//!
//! An NDJSON line is the row as the list shows it plus `event`, the recorded event with its
//! hashes: an export of the whole log (or a range of positions) is what `flaglog verify
//! --export` checks offline against a signed checkpoint. A CSV record holds the same row, its
//! before, after and patch as JSON text.

use axum::body::Bytes;
use axum::extract::State;
use domain::log::{EventLog, RecordedEvent};
use projections::audit_history::{self, AuditQuery, Order};
use serde::Serialize;

use super::history::{AuditParams, AuditRowView, audit_query, rows};
use crate::http::AppState;
use crate::http::admin::wait_until_projected;
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Query};

/// Rows per batch of an export: what it holds in memory at a time.
const EXPORT_BATCH: u32 = 1000;

/// A line of the NDJSON export: the row, and the recorded event with its hashes.
#[derive(Serialize)]
struct ExportLine<'a> {
    #[serde(flatten)]
    row: AuditRowView,
    event: &'a RecordedEvent,
}

/// The recorded events at `positions` (ascending), read in runs of nearby positions.
async fn events_at(log: &dyn EventLog, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
    /// Positions closer than this are read in one run (reading a few events too many is
    /// cheaper than another round trip).
    const MERGE_GAP: u64 = 64;
    let mut events = Vec::with_capacity(positions.len());
    let mut at = 0;
    while at < positions.len() {
        let first = positions[at];
        let mut last = first;
        while at + 1 < positions.len() && positions[at + 1] - last <= MERGE_GAP {
            at += 1;
            last = positions[at];
        }
        at += 1;
        let run = log
            .read_all(first - 1, (last - first + 1) as usize)
            .await
            .map_err(::commands::Error::from)?;
        events.extend(
            run.into_iter()
                .filter(|e| positions.binary_search(&e.position).is_ok()),
        );
    }
    Ok(events)
}

const CSV_HEADER: [&str; 18] = [
    "position",
    "recorded_at",
    "actor",
    "actor_name",
    "event_type",
    "organisation",
    "project",
    "environment",
    "feature",
    "segment",
    "identity",
    "change_request",
    "approvers",
    "reason",
    "summary",
    "before",
    "after",
    "patch",
];

/// A text cell as a spreadsheet will not run it: one that starts like a formula (`=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'` (OWASP's advice for CSV exports),
/// since names, titles and reasons are whatever users typed.
fn inert(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn csv_record(row: AuditRowView) -> [String; 18] {
    let number = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    [
        row.position.to_string(),
        row.recorded_at,
        inert(&row.actor),
        inert(&row.actor_name),
        row.event_type,
        number(row.organisation),
        number(row.project),
        number(row.environment),
        number(row.feature),
        number(row.segment),
        inert(row.identity.as_deref().unwrap_or_default()),
        number(row.change_request),
        inert(&row.approvers.join(";")),
        inert(row.reason.as_deref().unwrap_or_default()),
        inert(&row.summary),
        row.before.to_string(),
        row.after.to_string(),
        row.patch.to_string(),
    ]
}

fn csv_bytes(
    records: impl IntoIterator<Item = [String; 18]>,
    header: bool,
) -> std::io::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if header {
        writer.write_record(CSV_HEADER)?;
    }
    for record in records {
        writer.write_record(&record)?;
    }
    writer
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Ndjson,
    Csv,
}

/// One batch of an export: its bytes and the last position it covered (`None`: done).
async fn export_batch(
    state: &AppState,
    query: &AuditQuery,
    format: Format,
    first: bool,
) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    let batch = rows(state, query)
        .await
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    let Some(last) = batch.last().map(|r| r.position) else {
        // An empty CSV export still has its header.
        if first && format == Format::Csv {
            return Ok(Some((
                csv_bytes([], true)?,
                query.after_position.unwrap_or(0),
            )));
        }
        return Ok(None);
    };
    let bytes = match format {
        Format::Csv => csv_bytes(batch.iter().map(AuditRowView::of).map(csv_record), first)?,
        Format::Ndjson => {
            let positions: Vec<u64> = batch.iter().map(|r| r.position).collect();
            let events = events_at(&*state.log, &positions)
                .await
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            let mut events: std::collections::HashMap<u64, RecordedEvent> =
                events.into_iter().map(|e| (e.position, e)).collect();
            let mut text = Vec::new();
            for row in &batch {
                let event = events.remove(&row.position).ok_or_else(|| {
                    std::io::Error::other(format!("event {} cannot be read", row.position))
                })?;
                let line = ExportLine {
                    row: AuditRowView::of(row),
                    event: &event,
                };
                serde_json::to_writer(&mut text, &line)?;
                text.push(b'\n');
            }
            text
        }
    };
    Ok(Some((bytes, last)))
}

/// The rows of the same query as the list, in log order, streamed: `format=ndjson` (default;
/// each line the row plus `event`, the recorded event with its hashes, which `flaglog verify
/// --export` checks offline) or `format=csv` (a header, then one record per row, before, after
/// and patch as JSON text). `from_position` / `to_position` bound the positions (default: the
/// whole log as of the start of the export).
#[utoipa::path(get, path = "/api/v1/audit-log/export", tag = "audit", params(AuditParams),
    responses((status = 200, content_type = "application/x-ndjson", body = String),
              (status = 200, content_type = "text/csv", body = String),
              (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Admin,
    Query(params): Query<AuditParams>,
) -> Result<axum::response::Response> {
    let format = match params.format.as_deref().unwrap_or("ndjson") {
        "ndjson" => Format::Ndjson,
        "csv" => Format::Csv,
        other => {
            return Err(Error::bad_request(
                "format",
                format!("unknown format {other:?}: ndjson or csv"),
            ));
        }
    };
    if params.cursor.is_some() {
        return Err(Error::bad_request(
            "cursor",
            "an export is not paged: bound it with from_position and to_position",
        ));
    }
    let mut query = audit_query(&state, &caller, &params).await?;
    let head = state.log.head().await.map_err(::commands::Error::from)?;
    let last = params.to_position.unwrap_or(head).min(head);
    wait_until_projected(&state, audit_history::NAME).await?;
    query.order = Order::LogOrder;
    query.limit = EXPORT_BATCH;
    query.after_position = Some(params.from_position.unwrap_or(1).max(1) - 1);
    query.until_position = Some(last);
    let batches = futures_util::stream::unfold(Some((query, true)), move |next| {
        let state = state.clone();
        async move {
            let (mut query, first) = next?;
            match export_batch(&state, &query, format, first).await {
                Ok(Some((bytes, reached))) => {
                    query.after_position = Some(reached);
                    Some((Ok(Bytes::from(bytes)), Some((query, false))))
                }
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    let content_type = match format {
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(batches));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(content_type),
    );
    Ok(response)
}

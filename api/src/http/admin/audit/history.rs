//! The audit history for people and scripts: `GET /api/v1/audit-log/` (filters, newest first,
//! keyset pages behind an opaque cursor) and `GET /api/v1/audit-log/export` (the same query in
//! log order as NDJSON or CSV, streamed in batches, so memory stays flat however many rows).
//! Both read the `projections::audit_history` read model, after waiting (bounded) for it to reach
//! the log's head as it was on arrival. Organisation administrators see every row; anyone else
//! only the rows of projects they hold a role on.
//!
//! An NDJSON line is the row as the list shows it plus `event`, the recorded event with its
//! hashes: an export of the whole log (or a range of positions) is what `flaglog verify
//! --export` checks offline against a signed checkpoint.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use domain::log::{EventLog, RecordedEvent, rfc3339};
use projections::audit_history::{self, AuditQuery, AuditRow, Order};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::admin::{may_read, wait_until_projected};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Query};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;
/// Rows per batch of an export: what it holds in memory at a time.
const EXPORT_BATCH: u32 = 1000;

/// The filters of the list and of the export; every one is optional and they all apply.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct AuditParams {
    /// A project id.
    pub project: Option<u64>,
    /// An environment: its client key, or its id.
    pub environment: Option<String>,
    /// A feature id: rows that change it, and the change-request rows whose commands touch it.
    pub feature: Option<u64>,
    pub segment: Option<u64>,
    /// `user:<id>`, a user's e-mail, `service-token:<id>`, `import`, `scheduler` or `system`.
    pub actor: Option<String>,
    /// An event type, e.g. `FeatureStateSet`.
    pub event_type: Option<String>,
    pub change_request: Option<u64>,
    /// Recorded at or after this instant (RFC 3339).
    pub from: Option<String>,
    /// Recorded at or before this instant (RFC 3339).
    pub to: Option<String>,
    /// Text the summary contains (case-insensitive).
    pub q: Option<String>,
    /// The list's next page: the `next` of the previous answer.
    pub cursor: Option<String>,
    /// Rows per page (default 50, at most 500).
    pub limit: Option<u32>,
    /// Export only: `ndjson` (default) or `csv`.
    pub format: Option<String>,
    /// Export only: the first position (default 1).
    pub from_position: Option<u64>,
    /// Export only: the last position (default: the head when the export starts).
    pub to_position: Option<u64>,
}

fn instant(field: &'static str, text: Option<&str>) -> Result<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            Error::bad_request(
                field,
                format!("not an RFC 3339 instant (e.g. 2026-12-06T14:03:00Z): {e}"),
            )
        })?;
    Ok(Some((at.unix_timestamp_nanos() / 1000) as i64))
}

/// The cursor of the page after `position`: opaque to clients.
fn cursor_after(position: u64) -> String {
    hex::encode(format!("audit:{position}"))
}

fn position_of_cursor(cursor: &str) -> Result<u64> {
    hex::decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("audit:")?.parse().ok())
        .ok_or_else(|| Error::bad_request("cursor", "not a cursor this list gave"))
}

/// The query `params` ask for, within what `caller` may read.
async fn audit_query(state: &AppState, caller: &Admin, params: &AuditParams) -> Result<AuditQuery> {
    let directory = state.commands.directory().await?.state;
    let projects = if caller.principal.is_organisation_admin() {
        None
    } else {
        Some(
            directory
                .projects
                .keys()
                .copied()
                .filter(|p| may_read(&directory, caller, *p))
                .collect(),
        )
    };
    let environment = match params.environment.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(key) => Some(
            directory
                .environment_by_client_key(key)
                .or_else(|| {
                    key.parse()
                        .ok()
                        .filter(|id| directory.environments.contains_key(id))
                })
                .ok_or_else(|| {
                    Error::bad_request("environment", format!("no environment {key:?}"))
                })?,
        ),
    };
    let actor = match params.actor.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(actor) if actor.contains('@') => {
            let user = directory
                .users
                .values()
                .find(|u| u.email.eq_ignore_ascii_case(actor))
                .ok_or_else(|| Error::bad_request("actor", format!("no user {actor:?}")))?;
            Some(format!("user:{}", user.id))
        }
        Some(actor) => Some(actor.to_string()),
    };
    let (from_micros, to_micros) = (
        instant("from", params.from.as_deref())?,
        instant("to", params.to.as_deref())?,
    );
    if let (Some(from), Some(to)) = (from_micros, to_micros)
        && from > to
    {
        return Err(Error::bad_request("from", "from is after to"));
    }
    Ok(AuditQuery {
        projects,
        project: params.project,
        environment,
        feature: params.feature,
        segment: params.segment,
        actor,
        event_type: params.event_type.clone().filter(|t| !t.is_empty()),
        change_request: params.change_request,
        from_micros,
        to_micros,
        text: params.q.clone(),
        after_position: params
            .cursor
            .as_deref()
            .map(position_of_cursor)
            .transpose()?,
        until_position: None,
        order: Order::NewestFirst,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    })
}

/// A row as the list and the NDJSON export show it.
fn row_json(row: &AuditRow) -> Value {
    let detail = |field: &str| row.detail.get(field).cloned().unwrap_or(Value::Null);
    json!({
        "position": row.position,
        "recorded_at": rfc3339(row.recorded_at_micros).unwrap_or_default(),
        "actor": row.actor,
        "actor_name": row.actor_name,
        "event_type": row.event_type,
        "stream_id": row.stream_id,
        "organisation": row.organisation_id,
        "project": row.project_id,
        "environment": row.environment_id,
        "feature": row.feature_id,
        "segment": row.segment_id,
        "identity": row.identity,
        "change_request": row.change_request_id,
        "approvers": detail("approvers"),
        "reason": detail("reason"),
        "break_glass": detail("break_glass"),
        "summary": row.summary,
        "changes": detail("changes"),
        "before": detail("before"),
        "after": detail("after"),
        "patch": detail("patch"),
    })
}

async fn rows(state: &AppState, query: &AuditQuery) -> Result<Vec<AuditRow>> {
    audit_history::query(&state.read_models, query)
        .await
        .map_err(|e| Error::Internal(e.to_string()))
}

/// The audit history, newest first: one row per event with who, when, what, where, the change
/// request and its approvers, a summary, and the change as before/after and a JSON Patch.
/// `{"results": [...], "next": cursor or null}`; pass `next` as `cursor` for the following page
/// (stable while events arrive). Administrators see every row; others the rows of the projects
/// they hold a role on.
#[utoipa::path(get, path = "/api/v1/audit-log/", tag = "audit", params(AuditParams),
    responses((status = 200, body = Object), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    Query(params): Query<AuditParams>,
) -> Result<Json<Value>> {
    let query = audit_query(&state, &caller, &params).await?;
    wait_until_projected(&state, audit_history::NAME).await?;
    let page = rows(&state, &query).await?;
    let next = (page.len() == query.limit as usize)
        .then(|| page.last().map(|r| cursor_after(r.position)))
        .flatten();
    Ok(Json(json!({
        "results": page.iter().map(row_json).collect::<Vec<_>>(),
        "next": next,
    })))
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

fn csv_record(row: &AuditRow) -> [String; 18] {
    let number = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let detail = |field: &str| row.detail.get(field).cloned().unwrap_or(Value::Null);
    let approvers = detail("approvers")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(";")
        })
        .unwrap_or_default();
    [
        row.position.to_string(),
        rfc3339(row.recorded_at_micros).unwrap_or_default(),
        inert(&row.actor),
        inert(&row.actor_name),
        row.event_type.clone(),
        number(row.organisation_id),
        number(row.project_id),
        number(row.environment_id),
        number(row.feature_id),
        number(row.segment_id),
        inert(row.identity.as_deref().unwrap_or_default()),
        number(row.change_request_id),
        inert(&approvers),
        inert(detail("reason").as_str().unwrap_or_default()),
        inert(&row.summary),
        detail("before").to_string(),
        detail("after").to_string(),
        detail("patch").to_string(),
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
        Format::Csv => csv_bytes(batch.iter().map(csv_record), first)?,
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
                let mut line = row_json(row);
                line["event"] = serde_json::to_value(event)?;
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

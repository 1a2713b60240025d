//! The audit history for people and scripts: `GET /api/v1/audit-log/` (filters, newest first,
//! keyset pages behind an opaque cursor), and the query and row shape its export
//! ([`super::export`]) shares. Both read the `projections::audit_history` read model, after
//! waiting (bounded) for it to reach the log's head as it was on arrival. Organisation
//! administrators see every row; anyone else only the rows of projects they hold a role on.

use axum::Json;
use axum::extract::State;
use domain::log::rfc3339;
use projections::audit_history::{self, AuditQuery, AuditRow, Order};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::AppState;
use crate::http::admin::{may_read, wait_until_projected};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Query};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

/// The filters of the list and of the export; every one is optional and they all apply.
#[derive(Deserialize, Default, utoipa::IntoParams)]
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
pub(crate) async fn audit_query(
    state: &AppState,
    caller: &Admin,
    params: &AuditParams,
) -> Result<AuditQuery> {
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
        organisation: None,
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

/// One row of the audit history, as the list and the NDJSON export show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditRowView {
    /// The event's position in the log.
    pub position: u64,
    /// When it was recorded (RFC 3339, UTC).
    pub recorded_at: String,
    /// `user:<id>`, `service-token:<id>`, `import`, `scheduler` or `system`.
    pub actor: String,
    /// The actor as a person reads it (a user's e-mail, a service token's name).
    pub actor_name: String,
    pub event_type: String,
    pub stream_id: String,
    pub organisation: Option<u64>,
    pub project: Option<u64>,
    pub environment: Option<u64>,
    pub feature: Option<u64>,
    pub segment: Option<u64>,
    /// The identity an identity override is for.
    pub identity: Option<String>,
    /// The change request the event belongs to, or whose commit applied it.
    pub change_request: Option<u64>,
    /// Who approved the change request whose commit applied the event.
    pub approvers: Vec<String>,
    /// Why (`X-Change-Reason`, or a break-glass reason).
    pub reason: Option<String>,
    /// Applied by an administrator despite four-eyes.
    pub break_glass: bool,
    /// One line: who did what to which thing where.
    pub summary: String,
    /// For segments: each rule and condition added, removed or changed.
    pub changes: Vec<String>,
    /// What the event changed, as it was before (`null`: it did not exist).
    #[schema(value_type = Object)]
    pub before: Value,
    /// ... and after (`null`: it no longer exists).
    #[schema(value_type = Object)]
    pub after: Value,
    /// RFC 6902 JSON Patch from `before` to `after`.
    #[schema(value_type = Vec<Object>)]
    pub patch: Value,
}

impl AuditRowView {
    pub(crate) fn of(row: &AuditRow) -> Self {
        let detail = |field: &str| row.detail.get(field).cloned().unwrap_or(Value::Null);
        let strings = |field: &str| serde_json::from_value(detail(field)).unwrap_or_default();
        AuditRowView {
            position: row.position,
            recorded_at: rfc3339(row.recorded_at_micros).unwrap_or_default(),
            actor: row.actor.clone(),
            actor_name: row.actor_name.clone(),
            event_type: row.event_type.clone(),
            stream_id: row.stream_id.clone(),
            organisation: row.organisation_id,
            project: row.project_id,
            environment: row.environment_id,
            feature: row.feature_id,
            segment: row.segment_id,
            identity: row.identity.clone(),
            change_request: row.change_request_id,
            approvers: strings("approvers"),
            reason: detail("reason").as_str().map(String::from),
            break_glass: detail("break_glass").as_bool().unwrap_or(false),
            summary: row.summary.clone(),
            changes: strings("changes"),
            before: detail("before"),
            after: detail("after"),
            patch: detail("patch"),
        }
    }
}

/// A page of the audit history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub results: Vec<AuditRowView>,
    /// The cursor of the next page, `null` on the last.
    pub next: Option<String>,
}

/// The rows `query` selects, each identity named (see [`super::identities`]).
pub(crate) async fn rows(state: &AppState, query: &AuditQuery) -> Result<Vec<AuditRow>> {
    let mut rows = audit_history::query(&state.read_models, query)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    projections::identity_names::name_identities(&*state.log, &mut rows)
        .await
        .map_err(::commands::Error::from)?;
    Ok(rows)
}

/// The audit history, newest first: one row per event with who, when, what, where, the change
/// request and its approvers, a summary, and the change as before/after and a JSON Patch.
/// `{"results": [...], "next": cursor or null}`; pass `next` as `cursor` for the following page
/// (stable while events arrive). Administrators see every row; others the rows of the projects
/// they hold a role on.
#[utoipa::path(get, path = "/api/v1/audit-log/", tag = "audit", params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Admin,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditPage>> {
    Ok(Json(page(&state, &caller, &params).await?))
}

/// The page of the audit history `params` ask for, as `caller` may see it (the list's answer;
/// the dashboard's audit page shows the same).
pub async fn page(state: &AppState, caller: &Admin, params: &AuditParams) -> Result<AuditPage> {
    let query = audit_query(state, caller, params).await?;
    wait_until_projected(state, audit_history::NAME).await?;
    let page = rows(state, &query).await?;
    let next = (page.len() == query.limit as usize)
        .then(|| page.last().map(|r| cursor_after(r.position)))
        .flatten();
    Ok(AuditPage {
        results: page.iter().map(AuditRowView::of).collect(),
        next,
    })
}

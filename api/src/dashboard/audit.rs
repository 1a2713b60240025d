//! The audit log's page: the API's filters as a form, its rows newest first with who, when,
//! what (the summary, and before/after on demand), the change request and its approvers,
//! keyset pages (the API's cursor), export links (the API's export, as the signed-in person)
//! and, for administrators, the chain's verification.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::session::Visitor;
use super::{PageError, live_page, page};
use crate::http::AppState;
use crate::http::admin::audit::history::{self, AuditParams, AuditRowView};
use crate::http::error::Error;
use crate::http::extract::Query;

/// The filters the form offers: (query parameter, label, input type, hint).
const FILTERS: &[(&str, &str, &str, &str)] = &[
    ("q", "Summary contains", "search", "e.g. checkout_v2"),
    ("project", "Project id", "text", ""),
    ("environment", "Environment (key or id)", "text", ""),
    ("feature", "Feature id", "text", ""),
    ("segment", "Segment id", "text", ""),
    ("actor", "Who (e-mail, user:<id>, scheduler…)", "text", ""),
    ("event_type", "Event type", "text", "e.g. FeatureStateSet"),
    ("change_request", "Change request id", "text", ""),
    ("from", "From (RFC 3339)", "text", "2026-12-06T14:00:00Z"),
    ("to", "To (RFC 3339)", "text", ""),
];

/// The query's parameters without the empty ones a GET form sends for blank fields, and
/// without `cursor` (pages add their own).
fn filters_of(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(key, value)| !value.trim().is_empty() && key != "cursor")
        .map(|(key, value)| (key.into_owned(), value.trim().to_string()))
        .collect()
}

fn params_of(filters: &[(String, String)], cursor: Option<&str>) -> Result<AuditParams, Error> {
    let mut pairs = filters.to_vec();
    if let Some(cursor) = cursor {
        pairs.push(("cursor".into(), cursor.into()));
    }
    let text = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    serde_urlencoded::from_str(&text).map_err(|e| Error::bad_request("query", e.to_string()))
}

fn query_string(filters: &[(String, String)], extra: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(filters)
        .extend_pairs(extra)
        .finish()
}

pub async fn audit(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let caller = visitor.require()?;
    let filters = filters_of(raw.as_deref());
    let cursor = form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "cursor")
        .map(|(_, value)| value.into_owned());
    let params = params_of(&filters, cursor.as_deref())?;
    let audit = history::page(&state, caller, &params).await?;
    let value_of = |key: &str| {
        filters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let body = html! {
        p.crumbs { a href="/" { "Organisations" } " / Audit log" }
        h1 { "Audit log" }
        details.filters open[!filters.is_empty()] {
            summary { "Filters" @if !filters.is_empty() { " (" (filters.len()) " set)" } }
            form.filters method="get" action="/audit" {
                @for (name, label, kind, hint) in FILTERS {
                    div {
                        label for={ "filter-" (name) } { (label) }
                        input id={ "filter-" (name) } type=(kind) name=(name) value=(value_of(name)) placeholder=(hint);
                    }
                }
                button type="submit" { "Filter" }
            }
        }
        p.actions {
            a href={ "/audit/export?" (query_string(&filters, &[("format", "csv")])) } { "Export CSV" }
            " · "
            a href={ "/audit/export?" (query_string(&filters, &[("format", "ndjson")])) } { "Export NDJSON" }
            @if caller.principal.is_organisation_admin() {
                " · " a href="/audit/verify" { "Verify the hash chain" }
            }
        }
        @if audit.results.is_empty() {
            p { "No change matches." }
        } @else {
            div.scroll {
                table.audit {
                    caption { "Changes, newest first" }
                    thead { tr {
                        th scope="col" { "When (UTC)" }
                        th scope="col" { "Who" }
                        th scope="col" { "What" }
                        th scope="col" { "Change request" }
                        th scope="col" { "Position" }
                    } }
                    tbody {
                        @for row in &audit.results { (audit_row(row)) }
                    }
                }
            }
        }
        @if let Some(next) = &audit.next {
            p { a rel="next" href={ "/audit?" (query_string(&filters, &[("cursor", next)])) } { "Older changes →" } }
        }
    };
    let email = super::who(&state, caller);
    let csrf = visitor.csrf_token();
    Ok(visitor.finish(live_page("Audit log", Some((&email, &csrf)), body).into_response()))
}

fn audit_row(row: &AuditRowView) -> Markup {
    html! {
        tr id={ "position-" (row.position) } {
            td { time datetime=(row.recorded_at) { (row.recorded_at.replace('T', " ")) } }
            td { (row.actor_name) }
            td {
                (row.summary)
                @if row.break_glass { " " strong { "(applied without review)" } }
                @if let Some(reason) = &row.reason { br; small { "Why: " (reason) } }
                @for change in &row.changes { br; small { (change) } }
                @if row.before != Value::Null || row.after != Value::Null {
                    details {
                        summary { "Before and after" }
                        div.diff {
                            div { h4 { "Before" } pre { (pretty(&row.before)) } }
                            div { h4 { "After" } pre { (pretty(&row.after)) } }
                        }
                    }
                }
            }
            td {
                @if let Some(id) = row.change_request {
                    "#" (id)
                    @if !row.approvers.is_empty() { br; small { "approved by " (row.approvers.join(", ")) } }
                }
            }
            td { (row.position) }
        }
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The API's export of the same filters, as the signed-in person.
pub async fn export(
    State(state): State<AppState>,
    mut visitor: Visitor,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let caller = visitor.take_caller()?;
    let filters = filters_of(raw.as_deref());
    let params = params_of(&filters, None)?;
    let response =
        crate::http::admin::audit::export::export(State(state), caller, Query(params)).await?;
    Ok(response)
}

/// The chain's verification over the whole log (administrators).
pub async fn verify(
    State(state): State<AppState>,
    mut visitor: Visitor,
) -> Result<Response, PageError> {
    let caller = visitor.take_caller()?;
    let email = super::who(&state, &caller);
    let axum::Json(answer) = crate::http::admin::audit::verify_log(
        State(state),
        caller,
        Query(crate::http::admin::audit::VerifyQuery::default()),
    )
    .await?;
    let intact = answer["intact"].as_bool().unwrap_or(false);
    let body = html! {
        p.crumbs { a href="/audit" { "Audit log" } " / Verification" }
        h1 { "Hash chain" }
        @if intact {
            p.ok role="status" {
                "Intact: positions " (answer["first"]) " to " (answer["last"])
                ", head hash " code { (answer["head_hash"].as_str().unwrap_or_default()) }
            }
        } @else {
            p.error role="alert" {
                "Not intact: the first bad position is " (answer["first_bad_position"]) ". "
                (answer["reason"].as_str().unwrap_or_default())
            }
        }
        p { "Audit rows: " (answer["audit_history"]["rows"]) " for " (answer["audit_history"]["log_events"]) " events in the log." }
    };
    let csrf = visitor.csrf_token();
    Ok(visitor.finish(page("Hash chain", Some((&email, &csrf)), body).into_response()))
}

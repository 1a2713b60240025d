//! Reading the audit history: the filtered, keyset-paged query the audit API, its exports and
//! the integrations' deliveries share, and what `verify` and time travel ask of the table.

use serde_json::Value;
use sqlx::AnyPool;

use super::vocabulary;
use super::{COLUMNS, NAME};
use crate::Error;

/// Which way a query reads the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Newest first (what a person pages through).
    #[default]
    NewestFirst,
    /// In log order (exports).
    LogOrder,
}

/// What an audit query asks for; every filter is optional and they all apply together.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only rows of these projects (the ones a viewer may read); `None`: every row, including
    /// those of no project (organisations, users, tokens), which only administrators see.
    pub projects: Option<Vec<u64>>,
    pub organisation: Option<u64>,
    pub project: Option<u64>,
    pub environment: Option<u64>,
    /// Rows that change the feature, and change-request rows whose commands touch it.
    pub feature: Option<u64>,
    pub segment: Option<u64>,
    pub actor: Option<String>,
    pub event_type: Option<String>,
    pub change_request: Option<u64>,
    /// Recorded at or after (µs since the epoch).
    pub from_micros: Option<i64>,
    /// Recorded at or before (µs since the epoch).
    pub to_micros: Option<i64>,
    /// Free text the summary contains (case-insensitive).
    pub text: Option<String>,
    /// Keyset: only rows past this position in the query's order.
    pub after_position: Option<u64>,
    /// Only rows at or before this position (an export stops at the head it started with).
    pub until_position: Option<u64>,
    pub order: Order,
    pub limit: u32,
}

/// One row, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub position: u64,
    pub recorded_at_micros: i64,
    pub stream_id: String,
    pub event_type: String,
    pub actor: String,
    pub actor_name: String,
    pub organisation_id: Option<u64>,
    pub project_id: Option<u64>,
    pub environment_id: Option<u64>,
    pub feature_id: Option<u64>,
    pub segment_id: Option<u64>,
    pub identity: Option<String>,
    pub change_request_id: Option<u64>,
    pub summary: String,
    /// `approvers`, `reason`, `break_glass`, `changes`, `before`, `after`, `patch`, and
    /// `flags` where the event changed flag states (`domain::audit::FlagChange`).
    pub detail: Value,
}

type StoredRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    String,
    String,
);

enum Bind {
    Int(i64),
    Text(String),
}

/// `LIKE` pattern matching `text` anywhere, its own `%`, `_` and `\` taken literally.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Positions a free-text search reads per statement.
const TEXT_WINDOW: u64 = 20_000;

/// The rows matching `query`, in its order, at most `limit`.
///
/// Free text is read window by window of positions ([`TEXT_WINDOW`]) in the query's order, until
/// the page is full: PostgreSQL cannot estimate how many summaries contain a text, and guessing
/// few it read the whole table and sorted it rather than walk the newest rows and stop (a
/// text in 1 row of 350 took 140 ms of 200,000 rows; in windows, a common one stops in the
/// first). Text no summary holds is answered by the vocabulary alone.
pub async fn query(pool: &AnyPool, query: &AuditQuery) -> Result<Vec<AuditRow>, Error> {
    query_in_windows(pool, query, TEXT_WINDOW).await
}

/// [`query`], reading free text `window` positions at a time.
pub async fn query_in_windows(
    pool: &AnyPool,
    query: &AuditQuery,
    window: u64,
) -> Result<Vec<AuditRow>, Error> {
    let window = window.max(1);
    let Some(text) = query.text.as_deref().filter(|t| !t.is_empty()) else {
        return query_window(pool, query, None).await;
    };
    if !vocabulary::may_hold(pool, text).await? {
        return Ok(vec![]);
    }
    // A feature's rows and a time range have their own index to walk.
    if query.feature.is_some() || query.from_micros.is_some() || query.to_micros.is_some() {
        return query_window(pool, query, None).await;
    }
    let head: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM audit_log")
        .fetch_one(pool)
        .await?;
    let head = (head.unwrap_or(0) as u64).min(query.until_position.unwrap_or(u64::MAX));
    let limit = query.limit as usize;
    let mut rows = Vec::new();
    match query.order {
        Order::NewestFirst => {
            let mut high = query
                .after_position
                .map_or(head, |after| after.saturating_sub(1).min(head));
            while high > 0 && rows.len() < limit {
                let low = high.saturating_sub(window);
                let rest = AuditQuery {
                    limit: (limit - rows.len()) as u32,
                    ..query.clone()
                };
                rows.extend(query_window(pool, &rest, Some((low, high))).await?);
                high = low;
            }
        }
        Order::LogOrder => {
            let mut low = query.after_position.unwrap_or(0);
            while low < head && rows.len() < limit {
                let high = low.saturating_add(window).min(head);
                let rest = AuditQuery {
                    limit: (limit - rows.len()) as u32,
                    ..query.clone()
                };
                rows.extend(query_window(pool, &rest, Some((low, high))).await?);
                low = high;
            }
        }
    }
    Ok(rows)
}

/// The rows matching `query` (within positions `(low, high]` when a window is given), in its
/// order, at most `limit`.
async fn query_window(
    pool: &AnyPool,
    query: &AuditQuery,
    window: Option<(u64, u64)>,
) -> Result<Vec<AuditRow>, Error> {
    // Every value is bound; only placeholders and fixed clauses are formatted in.
    let mut clauses = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    let mut next = |value: Bind| {
        binds.push(value);
        format!("${}", binds.len())
    };
    if let Some(projects) = &query.projects {
        if projects.is_empty() {
            return Ok(vec![]);
        }
        let list: Vec<String> = projects
            .iter()
            .map(|p| next(Bind::Int(*p as i64)))
            .collect();
        clauses.push(format!("a.project_id IN ({})", list.join(", ")));
    }
    // A feature's rows are read from its index in `audit_log_features` (with the environment,
    // when one is asked for), newest first, each joined to its row by position: a feature has
    // few rows, where walking an environment's rows for the feature's would not stop early.
    let by_feature = query.feature.is_some();
    let position = if by_feature {
        "f.position"
    } else {
        "a.position"
    };
    let environment = if by_feature {
        "f.environment_id"
    } else {
        "a.environment_id"
    };
    let equal = [
        ("a.organisation_id", query.organisation),
        ("a.project_id", query.project),
        (environment, query.environment),
        ("a.segment_id", query.segment),
        ("a.change_request_id", query.change_request),
    ];
    for (column, value) in equal {
        if let Some(value) = value {
            let p = next(Bind::Int(value as i64));
            clauses.push(format!("{column} = {p}"));
        }
    }
    for (column, value) in [
        ("a.actor", &query.actor),
        ("a.event_type", &query.event_type),
    ] {
        if let Some(value) = value {
            let p = next(Bind::Text(value.clone()));
            clauses.push(format!("{column} = {p}"));
        }
    }
    if let Some(feature) = query.feature {
        let p = next(Bind::Int(feature as i64));
        clauses.push(format!("f.feature_id = {p}"));
    }
    if let Some(from) = query.from_micros {
        let p = next(Bind::Int(from));
        clauses.push(format!("a.recorded_at_micros >= {p}"));
    }
    if let Some(to) = query.to_micros {
        let p = next(Bind::Int(to));
        clauses.push(format!("a.recorded_at_micros <= {p}"));
    }
    if let Some(text) = query.text.as_deref().filter(|t| !t.is_empty()) {
        let p = next(Bind::Text(contains_pattern(text)));
        clauses.push(format!("LOWER(a.summary) LIKE {p} ESCAPE '\\'"));
    }
    let (compare, direction) = match query.order {
        Order::NewestFirst => ("<", "DESC"),
        Order::LogOrder => (">", "ASC"),
    };
    if let Some(after) = query.after_position {
        let p = next(Bind::Int(after as i64));
        clauses.push(format!("{position} {compare} {p}"));
    }
    if let Some(until) = query.until_position {
        let p = next(Bind::Int(until as i64));
        clauses.push(format!("{position} <= {p}"));
    }
    if let Some((low, high)) = window {
        let (low, high) = (next(Bind::Int(low as i64)), next(Bind::Int(high as i64)));
        clauses.push(format!("{position} > {low} AND {position} <= {high}"));
    }
    let limit = next(Bind::Int(i64::from(query.limit)));
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("a.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    // `recorded_at` never goes backwards along the log (the writer clamps it), so with a time
    // range the same order is also (time, position): PostgreSQL then reads the range from the
    // time index's end and stops at the limit, where in position order it walked the primary
    // key from the head and filtered every row after the range away.
    let order = if query.from_micros.is_some() || query.to_micros.is_some() {
        format!("a.recorded_at_micros {direction}, a.position {direction}")
    } else {
        format!("{position} {direction}")
    };
    let from = if by_feature {
        "audit_log_features f JOIN audit_log a ON a.position = f.position"
    } else {
        "audit_log a"
    };
    let sql = format!("SELECT {columns} FROM {from} {filter} ORDER BY {order} LIMIT {limit}");
    let mut statement = sqlx::query_as::<_, StoredRow>(sqlx::AssertSqlSafe(sql));
    for value in binds {
        statement = match value {
            Bind::Int(v) => statement.bind(v),
            Bind::Text(v) => statement.bind(v),
        };
    }
    let rows = statement.fetch_all(pool).await?;
    Ok(rows.into_iter().map(audit_row).collect())
}

fn audit_row(row: StoredRow) -> AuditRow {
    let unsigned = |v: Option<i64>| v.map(|v| v as u64);
    AuditRow {
        position: row.0 as u64,
        recorded_at_micros: row.1,
        stream_id: row.2,
        event_type: row.3,
        actor: row.4,
        actor_name: row.5,
        organisation_id: unsigned(row.6),
        project_id: unsigned(row.7),
        environment_id: unsigned(row.8),
        feature_id: unsigned(row.9),
        segment_id: unsigned(row.10),
        identity: row.11,
        change_request_id: unsigned(row.12),
        summary: row.13,
        detail: serde_json::from_str(&row.14).unwrap_or(Value::Null),
    }
}

/// The positions of environment `environment_id`'s identity override events after `after` and
/// at or before `position` (what time travel needs to render a past document without a pass
/// over the log).
pub async fn identity_event_positions(
    pool: &AnyPool,
    environment_id: u64,
    after: u64,
    position: u64,
) -> Result<Vec<u64>, Error> {
    let positions: Vec<i64> = sqlx::query_scalar(
        "SELECT position FROM audit_log WHERE environment_id = $1 \
         AND position > $2 AND position <= $3 AND stream_id LIKE 'identity-%' ORDER BY position",
    )
    .bind(environment_id as i64)
    .bind(after as i64)
    .bind(position as i64)
    .fetch_all(pool)
    .await?;
    Ok(positions.into_iter().map(|p| p as u64).collect())
}

/// How complete the history is, for `verify`: its rows, the position it reflects, and the
/// log's event count it was compared with (positions have no gaps, so every event up to the
/// head has its row exactly when `rows == log_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Completeness {
    pub rows: u64,
    pub projected_position: u64,
    pub log_events: u64,
    pub complete: bool,
}

pub async fn completeness(pool: &AnyPool, log_events: u64) -> Result<Completeness, Error> {
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(pool)
        .await?;
    let rows = rows as u64;
    Ok(Completeness {
        rows,
        projected_position: crate::checkpoint(pool, NAME).await?,
        log_events,
        complete: rows == log_events,
    })
}

impl std::fmt::Display for Completeness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "audit history: {} rows for {} events in the log (projected to position {})",
            self.rows, self.log_events, self.projected_position
        )
    }
}

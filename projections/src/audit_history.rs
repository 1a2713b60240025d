//! The audit history: one row per event of the log, as `domain::audit` describes it (who, what,
//! where, the change request and its approvers, a one-line summary, before/after and the JSON
//! Patch between them), with the columns auditors filter on indexed, and a side table of every
//! feature a row concerns (a change request's events name the features its commands touch, so a
//! search by feature finds them).
//!
//! It keeps the folded aggregates in memory (`domain::audit::AuditFold`): "before" is the state
//! the event was decided against. Rows and checkpoint are written in one transaction, the
//! checkpoint first and only forwards, so a former leader's late batch writes nothing; rows go in
//! with multi-row INSERTs, so catching up on a long log costs a few statements per batch.
//!
//! Queries page by keyset on the position (no OFFSET): a cursor names the last position seen,
//! so pages stay stable while events arrive.

use async_trait::async_trait;
use domain::audit::{AuditEntry, AuditFold};
use domain::log::RecordedEvent;
use serde_json::Value;
use sqlx::AnyPool;

use crate::Error;
use crate::runner::{Projection, Write};

pub const NAME: &str = "audit_history";

const TABLES: [&str; 2] = ["audit_log", "audit_log_features"];

/// Columns of `audit_log`, in the order [`write`] binds them.
const COLUMNS: &str = "position, recorded_at_micros, stream_id, event_type, actor, actor_name, \
     organisation_id, project_id, environment_id, feature_id, segment_id, identity, \
     change_request_id, summary, detail";
const COLUMN_COUNT: usize = 15;

/// Rows per INSERT statement: well under SQLite's limit of bound parameters.
const ROWS_PER_STATEMENT: usize = 200;

pub struct AuditHistory {
    pool: AnyPool,
    fold: AuditFold,
}

impl AuditHistory {
    pub fn new(pool: AnyPool) -> Self {
        AuditHistory {
            pool,
            fold: AuditFold::default(),
        }
    }

    /// Forgets the read model, so the next run rebuilds it from position 0.
    pub async fn reset(pool: &AnyPool) -> Result<(), Error> {
        crate::reset_read_model(pool, NAME, &TABLES).await
    }
}

/// What a row stores as JSON beside its columns, written straight from the entry's values (a
/// `json!` object would first copy before, after and patch). Its fields are in the order of
/// their names, as such an object writes them, so the text is the same.
#[derive(serde::Serialize)]
struct Detail<'a> {
    after: &'a Value,
    approvers: &'a [String],
    before: &'a Value,
    break_glass: bool,
    changes: &'a [String],
    patch: &'a Value,
    reason: Option<&'a str>,
}

fn detail(entry: &AuditEntry) -> Result<String, Error> {
    serde_json::to_string(&Detail {
        after: &entry.after,
        approvers: &entry.approvers,
        before: &entry.before,
        break_glass: entry.break_glass,
        changes: &entry.changes,
        patch: &entry.patch,
        reason: entry.reason.as_deref(),
    })
    .map_err(|e| Error::Other(format!("an audit entry's detail: {e}")))
}

fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let cells: Vec<String> = (1..=columns)
                .map(|c| format!("${}", row * columns + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn id(value: Option<u64>) -> Option<i64> {
    value.map(|v| v as i64)
}

/// An entry as written: its detail already serialised (the entry's before, after and patch
/// dropped), so the write binds and sends, nothing more.
struct Row {
    entry: AuditEntry,
    detail: String,
}

impl Row {
    fn of(mut entry: AuditEntry) -> Result<Row, Error> {
        let detail = detail(&entry)?;
        entry.before = Value::Null;
        entry.after = Value::Null;
        entry.patch = Value::Null;
        Ok(Row { entry, detail })
    }
}

async fn write(tx: &mut sqlx::AnyConnection, rows: &[Row]) -> Result<(), Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO audit_log ({COLUMNS}) VALUES {} ON CONFLICT (position) DO NOTHING",
            placeholders(chunk.len(), COLUMN_COUNT)
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for Row { entry: e, detail } in chunk {
            statement = statement
                .bind(e.position as i64)
                .bind(e.recorded_at_micros)
                .bind(e.stream_id.clone())
                .bind(e.event_type.clone())
                .bind(e.actor.clone())
                .bind(e.actor_name.clone())
                .bind(id(e.organisation_id))
                .bind(id(e.project_id))
                .bind(id(e.environment_id))
                .bind(id(e.feature_id))
                .bind(id(e.segment_id))
                .bind(e.identity.clone())
                .bind(id(e.change_request_id))
                .bind(e.summary.clone())
                .bind(detail.clone());
        }
        statement.execute(&mut *tx).await?;
    }
    let features: Vec<(u64, Option<u64>, u64)> = rows
        .iter()
        .map(|row| &row.entry)
        .flat_map(|e| {
            e.features
                .iter()
                .map(|f| (*f, e.environment_id, e.position))
        })
        .collect();
    for chunk in features.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO audit_log_features (feature_id, environment_id, position) VALUES {} \
             ON CONFLICT (feature_id, position) DO NOTHING",
            placeholders(chunk.len(), 3)
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (feature, environment, position) in chunk {
            statement = statement
                .bind(*feature as i64)
                .bind(id(*environment))
                .bind(*position as i64);
        }
        statement.execute(&mut *tx).await?;
    }
    Ok(())
}

#[async_trait]
impl Projection for AuditHistory {
    async fn checkpoint(&mut self) -> Result<u64, Error> {
        crate::checkpoint(&self.pool, NAME).await
    }

    fn warm(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        events
            .iter()
            .try_for_each(|e| self.fold.warm(e).map_err(Error::from))
    }

    async fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        match self.decide(events)? {
            Some(write) => write.await,
            None => Ok(()),
        }
    }

    /// Folds the batch into rows now; their write (with the checkpoint, in one transaction)
    /// runs while the next batch is folded.
    fn decide(&mut self, events: &[RecordedEvent]) -> Result<Option<Write>, Error> {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(None);
        };
        let rows = events
            .iter()
            .map(|e| Row::of(self.fold.entry(e)?))
            .collect::<Result<Vec<_>, Error>>()?;
        let pool = self.pool.clone();
        Ok(Some(Box::pin(async move {
            let mut tx = pool.begin().await?;
            // The checkpoint first: a former leader behind it writes nothing at all.
            if !crate::advance_checkpoint(&mut tx, NAME, last).await? {
                return Err(Error::Superseded(last));
            }
            write(&mut tx, &rows).await?;
            tx.commit().await?;
            Ok(())
        })))
    }
}

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
    /// `approvers`, `reason`, `break_glass`, `changes`, `before`, `after`, `patch`.
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

/// The rows matching `query`, in its order, at most `limit`.
pub async fn query(pool: &AnyPool, query: &AuditQuery) -> Result<Vec<AuditRow>, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The detail is written without copying the entry's values, and its text is the text the
    /// `json!` object it replaced wrote: rows projected before and after read the same.
    #[test]
    fn detail_is_the_text_of_the_json_object() {
        let entry = AuditEntry {
            position: 7,
            recorded_at_micros: 1,
            stream_id: "environment-1".into(),
            event_type: "FeatureStateSet".into(),
            actor: "user:1".into(),
            actor_name: "a@example.com".into(),
            organisation_id: Some(1),
            project_id: Some(1),
            environment_id: Some(1),
            feature_id: Some(3),
            features: [3].into(),
            segment_id: None,
            identity: None,
            change_request_id: Some(2),
            approvers: vec!["b@example.com".into()],
            reason: Some("a \"reason\"\n".into()),
            break_glass: true,
            summary: "s".into(),
            changes: vec!["changed x".into()],
            before: json!({"enabled": false, "value": {"z": 1, "a": [1, "é"]}}),
            after: json!({"enabled": true, "value": null}),
            patch: json!([{"op": "replace", "path": "/enabled", "value": true}]),
        };
        let object = json!({
            "approvers": entry.approvers,
            "reason": entry.reason,
            "break_glass": entry.break_glass,
            "changes": entry.changes,
            "before": entry.before,
            "after": entry.after,
            "patch": entry.patch,
        })
        .to_string();
        assert_eq!(detail(&entry).expect("serialises"), object);
        let without_reason = AuditEntry {
            reason: None,
            ..entry
        };
        assert!(
            detail(&without_reason)
                .expect("serialises")
                .contains("\"reason\":null")
        );
    }
}

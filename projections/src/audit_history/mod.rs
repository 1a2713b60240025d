//! The audit history: one row per event of the log, as `domain::audit` describes it (who, what,
//! where, the change request and its approvers, a one-line summary, before/after and the JSON
//! Patch between them), with the columns auditors filter on indexed, and a side table of every
//! feature a row concerns (a change request's events name the features its commands touch, so a
//! search by feature finds them).
//!
//! It keeps the folded aggregates in memory (`domain::audit::AuditFold`): "before" is the state
//! the event was decided against. A batch's rows and checkpoint are written in one transaction,
//! the checkpoint only forwards, so a former leader's late batch commits nothing; rows go in
//! with multi-row INSERTs, so catching up on a long log costs a few statements per batch. On
//! PostgreSQL [`WRITES_IN_FLIGHT`] batches' transactions insert their rows at once, each
//! advancing the checkpoint and committing in its turn (`runner::Turn`): inserting is most of
//! the catch-up's time, and one transaction at a time left the machine idle between round trips.
//!
//! Queries page by keyset on the position (no OFFSET): a cursor names the last position seen,
//! so pages stay stable while events arrive.

use async_trait::async_trait;
use domain::audit::{AuditEntry, AuditFold, FlagChange, FlagState};
use domain::log::RecordedEvent;
use serde_json::Value;
use sqlx::AnyPool;

use crate::Error;
use crate::runner::{Projection, Turn, Write};

mod query;
mod vocabulary;
pub use query::{
    AuditQuery, AuditRow, Completeness, Order, completeness, identity_event_positions, query,
    query_in_windows,
};

pub const NAME: &str = "audit_history";

const TABLES: [&str; 3] = ["audit_log", "audit_log_features", "audit_words"];

/// Columns of `audit_log`, in the order [`write`] binds them.
const COLUMNS: &str = "position, recorded_at_micros, stream_id, event_type, actor, actor_name, \
     organisation_id, project_id, environment_id, feature_id, segment_id, identity, \
     change_request_id, summary, detail";
const COLUMN_COUNT: usize = 15;

/// Rows per INSERT statement: well under SQLite's limit of bound parameters.
const ROWS_PER_STATEMENT: usize = 200;

/// Batches written at once on PostgreSQL (SQLite has one writer: 1).
const WRITES_IN_FLIGHT: usize = 3;

pub struct AuditHistory {
    pool: AnyPool,
    fold: AuditFold,
    /// The summaries' words already stored ([`vocabulary`]).
    words: vocabulary::Known,
    writes_in_flight: usize,
}

impl AuditHistory {
    pub fn new(pool: AnyPool) -> Self {
        let sqlite = pool.connect_options().database_url.scheme() == "sqlite";
        AuditHistory {
            pool,
            fold: AuditFold::default(),
            words: vocabulary::Known::default(),
            writes_in_flight: if sqlite { 1 } else { WRITES_IN_FLIGHT },
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
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    flags: &'a [FlagChange<FlagState>],
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
        flags: &entry.flags,
        patch: &entry.patch,
        reason: entry.reason.as_deref(),
    })
    .map_err(|e| Error::Other(format!("an audit entry's detail: {e}")))
}

/// `INSERT INTO {table} ({columns}) VALUES ($1, ..), .. {conflict}` for `rows` rows: made
/// once for a full statement ([`ROWS_PER_STATEMENT`]), the shape nearly every statement has
/// while catching up.
fn insert_sql(
    full: &'static std::sync::LazyLock<String>,
    rows: usize,
    make: fn(usize) -> String,
) -> std::borrow::Cow<'static, str> {
    if rows == ROWS_PER_STATEMENT {
        std::borrow::Cow::Borrowed(full.as_str())
    } else {
        std::borrow::Cow::Owned(make(rows))
    }
}

fn insert_rows_sql(rows: usize) -> String {
    format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES {}",
        placeholders(rows, COLUMN_COUNT)
    )
}

fn insert_features_sql(rows: usize) -> String {
    format!(
        "INSERT INTO audit_log_features (feature_id, environment_id, position) VALUES {}",
        placeholders(rows, 3)
    )
}

static FULL_ROWS_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| insert_rows_sql(ROWS_PER_STATEMENT));
static FULL_FEATURES_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| insert_features_sql(ROWS_PER_STATEMENT));

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
        entry.flags = Vec::new();
        Ok(Row { entry, detail })
    }
}

/// A write whose rows are there already: another node projected these positions first (a
/// plain INSERT: `ON CONFLICT DO NOTHING` made every row a speculative insertion, checked
/// against the unique indexes first, a fifth of the catch-up's CPU).
fn taken_by_another(error: Error, last: u64) -> Error {
    match &error {
        Error::ReadModel(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Error::Superseded(last)
        }
        _ => error,
    }
}

/// Inserts the rows (moving their text into the statements: nothing is copied twice).
async fn write(tx: &mut sqlx::AnyConnection, rows: Vec<Row>) -> Result<(), Error> {
    let features: Vec<(u64, Option<u64>, u64)> = rows
        .iter()
        .map(|row| &row.entry)
        .flat_map(|e| {
            e.features
                .iter()
                .map(|f| (*f, e.environment_id, e.position))
        })
        .collect();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Row> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        let sql = insert_sql(&FULL_ROWS_SQL, chunk.len(), insert_rows_sql);
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for Row { entry: e, detail } in chunk {
            statement = statement
                .bind(e.position as i64)
                .bind(e.recorded_at_micros)
                .bind(e.stream_id)
                .bind(e.event_type)
                .bind(e.actor)
                .bind(e.actor_name)
                .bind(id(e.organisation_id))
                .bind(id(e.project_id))
                .bind(id(e.environment_id))
                .bind(id(e.feature_id))
                .bind(id(e.segment_id))
                .bind(e.identity)
                .bind(id(e.change_request_id))
                .bind(e.summary)
                .bind(detail);
        }
        statement.execute(&mut *tx).await?;
    }
    for chunk in features.chunks(ROWS_PER_STATEMENT) {
        let sql = insert_sql(&FULL_FEATURES_SQL, chunk.len(), insert_features_sql);
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
        crate::runner::write_now(self, events).await
    }

    /// Folds the batch into rows now; their write (with the checkpoint, in one transaction)
    /// runs while the next batch is folded, and commits in its turn.
    fn decide(&mut self, events: &[RecordedEvent]) -> Result<Option<Write>, Error> {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(None);
        };
        let rows = events
            .iter()
            .map(|e| Row::of(self.fold.entry(e)?))
            .collect::<Result<Vec<_>, Error>>()?;
        let known = self.words.clone();
        let pool = self.pool.clone();
        Ok(Some(Box::new(move |turn: Turn| {
            Box::pin(async move {
                // Read here, while the next batch is folded.
                let words = known.new_words(rows.iter().map(|row| row.entry.summary.as_str()));
                let mut tx = pool.begin().await?;
                write(&mut tx, rows)
                    .await
                    .map_err(|e| taken_by_another(e, last))?;
                turn.wait().await?;
                // A former leader behind the checkpoint commits nothing at all. The words go
                // in after it, so two transactions never wait on each other's new words.
                if !crate::advance_checkpoint(&mut tx, NAME, last).await? {
                    return Err(Error::Superseded(last));
                }
                vocabulary::write(&mut tx, &words).await?;
                tx.commit().await?;
                known.stored(words.into_iter());
                Ok(())
            }) as crate::runner::WriteFuture
        })))
    }

    fn writes_in_flight(&self) -> usize {
        self.writes_in_flight
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
            flags: vec![],
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

//! The change-request inbox: one row per change request with what an approver's inbox filters
//! and sorts by (scope, project, status, author, title, schedule, when opened and last changed),
//! plus the reviewers assigned and the features its commands touch, so "open requests assigned
//! to me, across every environment" or "requests touching this feature" is an index lookup, not
//! a fold of every request.
//!
//! It keeps only the directory in memory (to know each environment's project). After each batch
//! it reloads the requests the batch touched from their own streams, as they stood at the
//! batch's last position, and rewrites their rows. What depends on other aggregates *now*
//! (approvals that still count under the current roles and policy, conflicts with what moved
//! since) is not stored: readers compute it for the rows they show.
//!
//! Rows and checkpoint are written in one transaction, the checkpoint first and only forwards, so
//! a former leader's late batch writes nothing.

use std::collections::BTreeSet;

use async_trait::async_trait;
use domain::aggregate::{Aggregate, DomainEvent};
use domain::change_request::{self, ChangeRequest, ChangeRequestId, Scope};
use domain::directory::{self, Directory, DirectoryEvent};
use domain::log::{EventLog, RecordedEvent};
use domain::model::{FeatureId, ProjectId, UserId};
use serde_json::Value;
use sqlx::AnyPool;
use std::sync::Arc;

use crate::Error;
use crate::runner::Projection;

pub const NAME: &str = "change_request_inbox";

/// One request's row, as written.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: ChangeRequestId,
    project_id: ProjectId,
    scope: Scope,
    title: String,
    author: UserId,
    status: String,
    live_from_micros: Option<i64>,
    opened_at_micros: i64,
    updated_at_micros: i64,
    position: u64,
    reviewers: BTreeSet<UserId>,
    features: BTreeSet<FeatureId>,
}

fn change_request_id(stream: &str) -> Option<ChangeRequestId> {
    stream.strip_prefix("change-request-")?.parse().ok()
}

fn status_text(request: &ChangeRequest) -> String {
    match serde_json::to_value(request.status) {
        Ok(Value::String(status)) => status,
        _ => "open".to_string(),
    }
}

/// The features a request's commands name.
fn features_of(request: &ChangeRequest) -> BTreeSet<FeatureId> {
    request
        .content
        .commands
        .iter()
        .filter_map(|c| c.command.get("feature_id").and_then(Value::as_u64))
        .collect()
}

pub struct ChangeRequestInbox {
    pool: AnyPool,
    log: Arc<dyn EventLog>,
    directory: Directory,
}

impl ChangeRequestInbox {
    pub fn new(pool: AnyPool, log: Arc<dyn EventLog>) -> Self {
        ChangeRequestInbox {
            pool,
            log,
            directory: Directory::default(),
        }
    }

    fn fold_directory(&mut self, record: &RecordedEvent) -> Result<(), Error> {
        if record.stream_id == directory::STREAM {
            self.directory
                .apply(&DirectoryEvent::from_recorded(record)?);
        }
        Ok(())
    }

    /// Request `id`'s row as its stream stood at `position`.
    async fn row(&self, id: ChangeRequestId, position: u64) -> Result<Option<Row>, Error> {
        let mut request = ChangeRequest::default();
        let (mut opened, mut updated, mut last) = (None, 0, 0);
        for record in self.log.read_stream(&change_request::stream(id), 0).await? {
            if record.position > position {
                break;
            }
            request.apply(&DomainEvent::from_recorded(&record)?);
            opened.get_or_insert(record.recorded_at_micros);
            updated = record.recorded_at_micros;
            last = record.position;
        }
        let Some(scope) = request.scope.filter(|_| request.exists) else {
            return Ok(None);
        };
        let Some(project_id) = self.directory.project_of_scope(scope) else {
            return Ok(None);
        };
        Ok(Some(Row {
            id,
            project_id,
            scope,
            title: request.title.clone(),
            author: request.author,
            status: status_text(&request),
            live_from_micros: request.content.live_from_micros,
            opened_at_micros: opened.unwrap_or(updated),
            updated_at_micros: updated,
            position: last,
            reviewers: request.reviewers.clone(),
            features: features_of(&request),
        }))
    }

    /// Forgets the read model, so the next run rebuilds it from position 0.
    pub async fn reset(pool: &AnyPool) -> Result<(), Error> {
        let tables = [
            "change_request_inbox",
            "change_request_inbox_reviewers",
            "change_request_inbox_features",
        ];
        crate::reset_read_model(pool, NAME, &tables).await
    }
}

fn scope_columns(scope: Scope) -> (&'static str, i64) {
    match scope {
        Scope::Environment(id) => ("environment", id as i64),
        Scope::Project(id) => ("project", id as i64),
    }
}

async fn write_row(tx: &mut sqlx::AnyConnection, row: &Row) -> Result<(), Error> {
    let id = row.id as i64;
    let (scope_kind, scope_id) = scope_columns(row.scope);
    sqlx::query(
        "INSERT INTO change_request_inbox (change_request_id, project_id, scope_kind, scope_id, \
         title, author, status, live_from_micros, opened_at_micros, updated_at_micros, position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (change_request_id) DO UPDATE SET project_id = excluded.project_id, \
         scope_kind = excluded.scope_kind, scope_id = excluded.scope_id, title = excluded.title, \
         author = excluded.author, status = excluded.status, \
         live_from_micros = excluded.live_from_micros, updated_at_micros = excluded.updated_at_micros, \
         position = excluded.position",
    )
    .bind(id)
    .bind(row.project_id as i64)
    .bind(scope_kind)
    .bind(scope_id)
    .bind(&row.title)
    .bind(row.author as i64)
    .bind(&row.status)
    .bind(row.live_from_micros)
    .bind(row.opened_at_micros)
    .bind(row.updated_at_micros)
    .bind(row.position as i64)
    .execute(&mut *tx)
    .await?;
    for (table, column, values) in [
        ("change_request_inbox_reviewers", "user_id", &row.reviewers),
        ("change_request_inbox_features", "feature_id", &row.features),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE change_request_id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for value in values {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} (change_request_id, {column}) VALUES ($1, $2)"
            )))
            .bind(id)
            .bind(*value as i64)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Projection for ChangeRequestInbox {
    async fn checkpoint(&mut self) -> Result<u64, Error> {
        crate::checkpoint(&self.pool, NAME).await
    }

    fn warm(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        events.iter().try_for_each(|e| self.fold_directory(e))
    }

    async fn apply(&mut self, events: &[RecordedEvent]) -> Result<(), Error> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let mut touched = BTreeSet::new();
        for event in events {
            self.fold_directory(event)?;
            touched.extend(change_request_id(&event.stream_id));
        }
        let mut rows = Vec::new();
        for id in touched {
            rows.extend(self.row(id, last.position).await?);
        }
        let mut tx = self.pool.begin().await?;
        // The checkpoint first: a former leader behind it writes nothing at all.
        if !crate::advance_checkpoint(&mut tx, NAME, last.position).await? {
            return Err(Error::Superseded(last.position));
        }
        for row in &rows {
            write_row(&mut tx, row).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// What an inbox query asks for; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    /// Only requests of these projects (the ones the reader may read); `None`: every project.
    pub projects: Option<Vec<ProjectId>>,
    pub scope: Option<Scope>,
    pub statuses: Vec<String>,
    pub author: Option<UserId>,
    pub reviewer: Option<UserId>,
    pub feature: Option<FeatureId>,
    /// Keyset paging: only requests with a smaller id (newest first).
    pub before: Option<ChangeRequestId>,
    pub limit: u32,
}

/// One row of the inbox as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxRow {
    pub id: ChangeRequestId,
    pub project_id: ProjectId,
    pub scope: Scope,
    pub title: String,
    pub author: UserId,
    pub status: String,
    pub live_from_micros: Option<i64>,
    pub opened_at_micros: i64,
    pub updated_at_micros: i64,
}

type StoredRow = (
    i64,
    i64,
    String,
    i64,
    String,
    i64,
    String,
    Option<i64>,
    i64,
    i64,
);

/// The requests matching `query`, newest first.
pub async fn query(pool: &AnyPool, query: &InboxQuery) -> Result<Vec<InboxRow>, Error> {
    // Every value is bound; only placeholders and fixed clauses are formatted in.
    let mut clauses = Vec::new();
    let mut binds: Vec<BindValue> = Vec::new();
    let next = |value: BindValue, binds: &mut Vec<BindValue>| {
        binds.push(value);
        format!("${}", binds.len())
    };
    if let Some(projects) = &query.projects {
        if projects.is_empty() {
            return Ok(vec![]);
        }
        let placeholders: Vec<String> = projects
            .iter()
            .map(|p| next(BindValue::Int(*p as i64), &mut binds))
            .collect();
        clauses.push(format!("i.project_id IN ({})", placeholders.join(", ")));
    }
    if let Some(scope) = query.scope {
        let (kind, id) = scope_columns(scope);
        let kind = next(BindValue::Text(kind.to_string()), &mut binds);
        let id = next(BindValue::Int(id), &mut binds);
        clauses.push(format!("i.scope_kind = {kind} AND i.scope_id = {id}"));
    }
    if !query.statuses.is_empty() {
        let placeholders: Vec<String> = query
            .statuses
            .iter()
            .map(|s| next(BindValue::Text(s.clone()), &mut binds))
            .collect();
        clauses.push(format!("i.status IN ({})", placeholders.join(", ")));
    }
    if let Some(author) = query.author {
        let p = next(BindValue::Int(author as i64), &mut binds);
        clauses.push(format!("i.author = {p}"));
    }
    if let Some(reviewer) = query.reviewer {
        let p = next(BindValue::Int(reviewer as i64), &mut binds);
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM change_request_inbox_reviewers r \
             WHERE r.user_id = {p} AND r.change_request_id = i.change_request_id)"
        ));
    }
    if let Some(feature) = query.feature {
        let p = next(BindValue::Int(feature as i64), &mut binds);
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM change_request_inbox_features f \
             WHERE f.feature_id = {p} AND f.change_request_id = i.change_request_id)"
        ));
    }
    if let Some(before) = query.before {
        let p = next(BindValue::Int(before as i64), &mut binds);
        clauses.push(format!("i.change_request_id < {p}"));
    }
    let limit = next(BindValue::Int(i64::from(query.limit)), &mut binds);
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT i.change_request_id, i.project_id, i.scope_kind, i.scope_id, i.title, i.author, \
         i.status, i.live_from_micros, i.opened_at_micros, i.updated_at_micros \
         FROM change_request_inbox i {filter} ORDER BY i.change_request_id DESC LIMIT {limit}"
    );
    let mut statement = sqlx::query_as::<_, StoredRow>(sqlx::AssertSqlSafe(sql));
    for value in binds {
        statement = match value {
            BindValue::Int(v) => statement.bind(v),
            BindValue::Text(v) => statement.bind(v),
        };
    }
    let rows = statement.fetch_all(pool).await?;
    Ok(rows.into_iter().filter_map(inbox_row).collect())
}

enum BindValue {
    Int(i64),
    Text(String),
}

fn inbox_row(row: StoredRow) -> Option<InboxRow> {
    let scope = match row.2.as_str() {
        "environment" => Scope::Environment(row.3 as u64),
        "project" => Scope::Project(row.3 as u64),
        _ => return None,
    };
    Some(InboxRow {
        id: row.0 as u64,
        project_id: row.1 as u64,
        scope,
        title: row.4,
        author: row.5 as u64,
        status: row.6,
        live_from_micros: row.7,
        opened_at_micros: row.8,
        updated_at_micros: row.9,
    })
}

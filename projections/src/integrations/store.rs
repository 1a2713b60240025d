//! The integrations' tables beside the log (migrations 0011 and 0012): secret values by
//! reference, each change integration's delivery cursor and status, its dead letters, replays
//! asked for, and each identity integration's counts per node. One SQL for both databases.

use std::collections::BTreeMap;

use domain::integration::{IntegrationId, IntegrationScope};
use serde::Serialize;
use sqlx::AnyPool;

use crate::Error;

/// How a secret's row names the scope it was stored for.
pub fn scope_key(scope: IntegrationScope) -> String {
    match scope {
        IntegrationScope::Organisation(id) => format!("organisation:{id}"),
        IntegrationScope::Project(id) => format!("project:{id}"),
        IntegrationScope::Environment(id) => format!("environment:{id}"),
    }
}

/// Stores a secret value for `scope` under a new `reference` (random, made by the caller).
pub async fn store_secret(
    pool: &AnyPool,
    scope: IntegrationScope,
    reference: &str,
    value: &str,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO integration_secrets (reference, scope, value) VALUES ($1, $2, $3)")
        .bind(reference)
        .bind(scope_key(scope))
        .bind(value)
        .execute(pool)
        .await?;
    Ok(())
}

/// The values of `references` (field → reference) stored for `scope`, by field; a reference
/// stored for another scope, or not at all, is left out.
pub async fn secrets(
    pool: &AnyPool,
    scope: IntegrationScope,
    references: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut values = BTreeMap::new();
    for (field, reference) in references {
        let value: Option<String> = sqlx::query_scalar(
            "SELECT value FROM integration_secrets WHERE reference = $1 AND scope = $2",
        )
        .bind(reference)
        .bind(scope_key(scope))
        .fetch_optional(pool)
        .await?;
        if let Some(value) = value {
            values.insert(field.clone(), value);
        }
    }
    Ok(values)
}

/// Where an integration's delivery stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryState {
    /// Every message of every audit row up to here was delivered or dead-lettered.
    pub position: u64,
    /// Messages delivered since the integration was configured.
    pub delivered: u64,
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    pub last_delivered_at_micros: Option<i64>,
}

type StateRow = (i64, i64, i64, Option<String>, Option<i64>);

pub async fn delivery_state(
    pool: &AnyPool,
    integration: IntegrationId,
) -> Result<Option<DeliveryState>, Error> {
    let row: Option<StateRow> = sqlx::query_as(
        "SELECT position, delivered, consecutive_failures, last_error, last_delivered_at_micros \
         FROM integration_deliveries WHERE integration_id = $1",
    )
    .bind(integration as i64)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| DeliveryState {
        position: r.0 as u64,
        delivered: r.1 as u64,
        consecutive_failures: r.2 as u64,
        last_error: r.3,
        last_delivered_at_micros: r.4,
    }))
}

pub async fn save_delivery_state(
    pool: &AnyPool,
    integration: IntegrationId,
    state: &DeliveryState,
    now_micros: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO integration_deliveries (integration_id, position, delivered, \
         consecutive_failures, last_error, last_delivered_at_micros, updated_at_micros) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (integration_id) DO UPDATE SET position = excluded.position, \
         delivered = excluded.delivered, consecutive_failures = excluded.consecutive_failures, \
         last_error = excluded.last_error, \
         last_delivered_at_micros = excluded.last_delivered_at_micros, \
         updated_at_micros = excluded.updated_at_micros",
    )
    .bind(integration as i64)
    .bind(state.position as i64)
    .bind(state.delivered as i64)
    .bind(state.consecutive_failures as i64)
    .bind(state.last_error.clone())
    .bind(state.last_delivered_at_micros)
    .bind(now_micros)
    .execute(pool)
    .await?;
    Ok(())
}

/// A message that failed every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub position: u64,
    pub message: String,
    pub attempts: u64,
    pub last_error: String,
    pub failed_at_micros: i64,
    /// `dead`, `replay` (asked for, not yet sent) or `replayed`.
    pub status: String,
}

pub const DEAD: &str = "dead";
pub const REPLAY: &str = "replay";
pub const REPLAYED: &str = "replayed";

pub async fn add_dead_letter(
    pool: &AnyPool,
    integration: IntegrationId,
    letter: &DeadLetter,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO integration_dead_letters (integration_id, position, message, attempts, \
         last_error, failed_at_micros, status) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (integration_id, position, message) DO UPDATE SET \
         attempts = excluded.attempts, last_error = excluded.last_error, \
         failed_at_micros = excluded.failed_at_micros, status = excluded.status",
    )
    .bind(integration as i64)
    .bind(letter.position as i64)
    .bind(letter.message.clone())
    .bind(letter.attempts as i64)
    .bind(letter.last_error.clone())
    .bind(letter.failed_at_micros)
    .bind(letter.status.clone())
    .execute(pool)
    .await?;
    Ok(())
}

type LetterRow = (i64, String, i64, String, i64, String);

/// The integration's dead letters in log order; only those with `status` when given.
pub async fn dead_letters(
    pool: &AnyPool,
    integration: IntegrationId,
    status: Option<&str>,
) -> Result<Vec<DeadLetter>, Error> {
    let rows: Vec<LetterRow> = sqlx::query_as(
        "SELECT position, message, attempts, last_error, failed_at_micros, status \
         FROM integration_dead_letters WHERE integration_id = $1 \
         AND ($2 IS NULL OR status = $2) ORDER BY position, message",
    )
    .bind(integration as i64)
    .bind(status)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DeadLetter {
            position: r.0 as u64,
            message: r.1,
            attempts: r.2 as u64,
            last_error: r.3,
            failed_at_micros: r.4,
            status: r.5,
        })
        .collect())
}

pub async fn set_dead_letter_status(
    pool: &AnyPool,
    integration: IntegrationId,
    position: u64,
    message: &str,
    status: &str,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE integration_dead_letters SET status = $4 \
         WHERE integration_id = $1 AND position = $2 AND message = $3",
    )
    .bind(integration as i64)
    .bind(position as i64)
    .bind(message)
    .bind(status)
    .execute(pool)
    .await?;
    Ok(())
}

/// Asks for every dead letter of the integration to be sent again; how many.
pub async fn replay_dead_letters(pool: &AnyPool, integration: IntegrationId) -> Result<u64, Error> {
    let done = sqlx::query(
        "UPDATE integration_dead_letters SET status = $2 WHERE integration_id = $1 AND status = $3",
    )
    .bind(integration as i64)
    .bind(REPLAY)
    .bind(DEAD)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Asks for delivery to go back to just after `from_position - 1` (everything from
/// `from_position` on is sent again).
pub async fn request_replay_from(
    pool: &AnyPool,
    integration: IntegrationId,
    from_position: u64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO integration_replays (integration_id, from_position) VALUES ($1, $2) \
         ON CONFLICT (integration_id) DO UPDATE SET from_position = excluded.from_position",
    )
    .bind(integration as i64)
    .bind(from_position as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes a replay asked for, if any: the position to start from.
pub async fn take_replay(pool: &AnyPool, integration: IntegrationId) -> Result<Option<u64>, Error> {
    let from: Option<i64> = sqlx::query_scalar(
        "DELETE FROM integration_replays WHERE integration_id = $1 RETURNING from_position",
    )
    .bind(integration as i64)
    .fetch_optional(pool)
    .await?;
    Ok(from.map(|f| f as u64))
}

/// An identity integration's counts: a node's since it last saved them, or (read) every
/// node's together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnalyticsCounts {
    pub sent: u64,
    pub dropped: u64,
    pub failed: u64,
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    pub last_sent_at_micros: Option<i64>,
}

/// Adds `node`'s new counts (`sent`, `dropped`, `failed`) to its row, and sets its
/// consecutive failures, last error (when one is given) and last sending time.
pub async fn add_analytics_counts(
    pool: &AnyPool,
    integration: IntegrationId,
    node: &str,
    counts: &AnalyticsCounts,
    now_micros: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO integration_analytics (integration_id, node, sent, dropped, failed, \
         consecutive_failures, last_error, last_sent_at_micros, updated_at_micros) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (integration_id, node) DO UPDATE SET \
         sent = integration_analytics.sent + excluded.sent, \
         dropped = integration_analytics.dropped + excluded.dropped, \
         failed = integration_analytics.failed + excluded.failed, \
         consecutive_failures = excluded.consecutive_failures, \
         last_error = COALESCE(excluded.last_error, integration_analytics.last_error), \
         last_sent_at_micros = COALESCE(excluded.last_sent_at_micros, \
             integration_analytics.last_sent_at_micros), \
         updated_at_micros = excluded.updated_at_micros",
    )
    .bind(integration as i64)
    .bind(node)
    .bind(counts.sent as i64)
    .bind(counts.dropped as i64)
    .bind(counts.failed as i64)
    .bind(counts.consecutive_failures as i64)
    .bind(counts.last_error.clone())
    .bind(counts.last_sent_at_micros)
    .bind(now_micros)
    .execute(pool)
    .await?;
    Ok(())
}

type CountsRow = (i64, i64, i64, i64, Option<i64>);

/// Every node's counts of `integration` together: the largest consecutive failures, the
/// latest error and sending time.
pub async fn analytics_counts(
    pool: &AnyPool,
    integration: IntegrationId,
) -> Result<AnalyticsCounts, Error> {
    let row: CountsRow = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT), CAST(COALESCE(SUM(dropped), 0) AS BIGINT), \
         CAST(COALESCE(SUM(failed), 0) AS BIGINT), \
         CAST(COALESCE(MAX(consecutive_failures), 0) AS BIGINT), MAX(last_sent_at_micros) \
         FROM integration_analytics WHERE integration_id = $1",
    )
    .bind(integration as i64)
    .fetch_one(pool)
    .await?;
    let last_error: Option<String> = sqlx::query_scalar(
        "SELECT last_error FROM integration_analytics \
         WHERE integration_id = $1 AND last_error IS NOT NULL \
         ORDER BY updated_at_micros DESC LIMIT 1",
    )
    .bind(integration as i64)
    .fetch_optional(pool)
    .await?;
    Ok(AnalyticsCounts {
        sent: row.0 as u64,
        dropped: row.1 as u64,
        failed: row.2 as u64,
        consecutive_failures: row.3 as u64,
        last_error,
        last_sent_at_micros: row.4,
    })
}

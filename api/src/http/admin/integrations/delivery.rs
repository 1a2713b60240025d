//! An integration's delivery: its status (change integrations: the cursor, the lag, the
//! failures; identity integrations: every node's counts), its dead letters, and replays.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::integration::catalogue::{self, Family, ScopeKind};
use domain::integration::{Integration, IntegrationId};
use projections::integrations::store::{self, DeadLetter};
use serde::{Deserialize, Serialize};

use super::{admin_scope, integration_at};
use crate::http::AppState;
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Path};

/// Where an integration's delivery stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryStatus {
    pub integration_id: IntegrationId,
    pub kind: String,
    pub enabled: bool,
    /// Every event up to this position was delivered (or dead-lettered).
    pub position: u64,
    pub delivered: u64,
    /// Events in the log after `position`.
    pub lag_events: u64,
    /// Age of the oldest of them.
    pub lag_seconds: f64,
    pub consecutive_failures: u64,
    pub last_error: Option<String>,
    pub last_delivered_at: Option<String>,
    /// Dead letters not yet delivered by a replay.
    pub dead_letters: u64,
    /// Identity integrations: served identities not sent because a queue was full (every
    /// node's count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Identity integrations: identities whose request failed every attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
}

pub(super) async fn status(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path((scope, id)): Path<(String, IntegrationId)>,
) -> Result<Json<DeliveryStatus>> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    let integration = integration_at(&state, scope, id).await?;
    Ok(Json(status_of(&state, integration).await?))
}

/// Where `integration`'s delivery stands (for a caller already allowed to know).
pub async fn status_of(state: &AppState, integration: Integration) -> Result<DeliveryStatus> {
    let id = integration.id;
    if catalogue::kind(&integration.kind).is_some_and(|k| k.family == Family::Identities) {
        return analytics_status(state, integration).await;
    }
    let delivery = store::delivery_state(&state.read_models, id)
        .await?
        .unwrap_or_default();
    let head = state.log.head().await.map_err(::commands::Error::from)?;
    let lag_seconds = if head > delivery.position {
        let next = state
            .log
            .read_all(delivery.position, 1)
            .await
            .map_err(::commands::Error::from)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
        next.first().map_or(0.0, |e| {
            (now as i64 - e.recorded_at_micros).max(0) as f64 / 1e6
        })
    } else {
        0.0
    };
    let dead = store::dead_letters(&state.read_models, id, None)
        .await?
        .iter()
        .filter(|l| l.status != store::REPLAYED)
        .count() as u64;
    Ok(DeliveryStatus {
        integration_id: id,
        kind: integration.kind,
        enabled: integration.enabled,
        position: delivery.position,
        delivered: delivery.delivered,
        lag_events: head.saturating_sub(delivery.position),
        lag_seconds,
        consecutive_failures: delivery.consecutive_failures,
        last_error: delivery.last_error,
        last_delivered_at: delivery
            .last_delivered_at_micros
            .and_then(domain::log::rfc3339),
        dead_letters: dead,
        dropped: None,
        failed: None,
    })
}

/// An identity integration's status: sent identities as `delivered`, with every node's drops
/// and failures; it follows no cursor (analytics are sent as identities are served), so it
/// is never behind the log.
async fn analytics_status(state: &AppState, integration: Integration) -> Result<DeliveryStatus> {
    let counts = store::analytics_counts(&state.read_models, integration.id).await?;
    let head = state.log.head().await.map_err(::commands::Error::from)?;
    Ok(DeliveryStatus {
        integration_id: integration.id,
        kind: integration.kind,
        enabled: integration.enabled,
        position: head,
        delivered: counts.sent,
        lag_events: 0,
        lag_seconds: 0.0,
        consecutive_failures: counts.consecutive_failures,
        last_error: counts.last_error,
        last_delivered_at: counts.last_sent_at_micros.and_then(domain::log::rfc3339),
        dead_letters: 0,
        dropped: Some(counts.dropped),
        failed: Some(counts.failed),
    })
}

pub(super) async fn dead_letters(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path((scope, id)): Path<(String, IntegrationId)>,
) -> Result<Json<Vec<DeadLetter>>> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    integration_at(&state, scope, id).await?;
    Ok(Json(
        store::dead_letters(&state.read_models, id, None).await?,
    ))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct Replay {
    /// Send everything from this position on again; without it, the dead letters.
    #[serde(default)]
    pub from_position: Option<u64>,
}

pub(super) async fn replay(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path((scope, id)): Path<(String, IntegrationId)>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    integration_at(&state, scope, id).await?;
    // The body is optional: none replays the dead letters.
    let body: Replay = if body.iter().all(u8::is_ascii_whitespace) {
        Replay::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Error::bad_request("body", e.to_string()))?
    };
    let answer = match body.from_position {
        Some(0) => return Err(Error::bad_request("from_position", "positions start at 1")),
        Some(from) => {
            store::request_replay_from(&state.read_models, id, from).await?;
            serde_json::json!({"replaying_from": from})
        }
        None => {
            let count = store::replay_dead_letters(&state.read_models, id).await?;
            serde_json::json!({"replaying_dead_letters": count})
        }
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

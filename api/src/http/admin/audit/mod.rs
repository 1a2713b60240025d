//! The audit log: its history ([`history`]: the filtered list and its exports) and its tamper
//! evidence. `GET /api/v1/audit-log/verify` recomputes the hash chain
//! over the whole log or a range and answers whether it is intact (with the head hash an auditor
//! can save as a checkpoint) or the first position that does not verify, with what was expected
//! there; given a saved checkpoint it also says whether the log still extends it.
//! `GET /api/v1/audit-log/checkpoint` answers the head's position and hash, signed with the
//! server's Ed25519 key, for parties outside flaglog to keep.

pub mod export;
pub mod history;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use commands::verify::{self, Checkpoint};
use domain::checkpoint::SignedCheckpoint;
use domain::log::GENESIS_HASH;
use projections::audit_history;
use serde::Deserialize;

use crate::http::AppState;
use crate::http::admin::{require_admin, wait_until_projected};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit-log/verify", get(verify_log))
        .route("/api/v1/audit-log/checkpoint", get(checkpoint))
        .route("/api/v1/audit-log/", get(history::list))
        .route("/api/v1/audit-log/export", get(export::export))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
pub struct VerifyQuery {
    /// First position to check (default 1).
    pub from: Option<u64>,
    /// Last position to check (default: the head).
    pub to: Option<u64>,
    /// A checkpoint saved earlier (with `checkpoint_hash`): the log must still extend it.
    pub checkpoint_position: Option<u64>,
    /// The checkpoint's hash, 64 hex digits.
    pub checkpoint_hash: Option<String>,
}

/// A hash as 64 hex digits.
pub fn parse_hash(text: &str) -> std::result::Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| "a hash is 32 bytes: 64 hex digits".to_string())
}

/// Recomputes the hash chain. Needs an organisation administrator. Answers `{"intact", "first",
/// "last", "head", "head_hash"}`, or with `intact: false` the `first_bad_position`, `reason`,
/// and `expected_hash` / `stored_hash` where a hash is wrong; and `audit_history`: its `rows`
/// against the log's `log_events` (`complete` when equal: one row per event).
#[utoipa::path(get, path = "/api/v1/audit-log/verify", tag = "audit", params(VerifyQuery),
    responses((status = 200, body = Object), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody)))]
pub async fn verify_log(
    State(state): State<AppState>,
    caller: Admin,
    Query(query): Query<VerifyQuery>,
) -> Result<Json<serde_json::Value>> {
    require_admin(&caller)?;
    let checkpoint = match (query.checkpoint_position, query.checkpoint_hash.as_deref()) {
        (Some(position), Some(hash)) => Some(Checkpoint {
            position,
            hash: parse_hash(hash).map_err(|e| Error::bad_request("checkpoint_hash", e))?,
        }),
        (None, None) => None,
        _ => {
            return Err(Error::bad_request(
                "checkpoint_position",
                "give checkpoint_position and checkpoint_hash together",
            ));
        }
    };
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from > to
    {
        return Err(Error::bad_request("from", "from is after to"));
    }
    let verification = verify::verify(&*state.log, query.from.unwrap_or(1), query.to, checkpoint)
        .await
        .map_err(commands::Error::from)?;
    wait_until_projected(&state, audit_history::NAME).await?;
    let head = state.log.head().await.map_err(commands::Error::from)?;
    let completeness = audit_history::completeness(&state.read_models, head)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut answer =
        serde_json::to_value(&verification).map_err(|e| Error::Internal(e.to_string()))?;
    answer["audit_history"] =
        serde_json::to_value(completeness).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Json(answer))
}

/// The log's head, signed: `{"position", "head_hash", "time", "public_key", "signature"}` (the
/// signature covers `flaglog-checkpoint-v1\n{position}\n{head_hash}\n{time}`). Keep it, and
/// later pass its position and hash to verify. Needs an organisation administrator.
#[utoipa::path(get, path = "/api/v1/audit-log/checkpoint", tag = "audit",
    responses((status = 200, body = Object), (status = 403, body = crate::http::error::ErrorBody)))]
pub async fn checkpoint(
    State(state): State<AppState>,
    caller: Admin,
) -> Result<Json<SignedCheckpoint>> {
    require_admin(&caller)?;
    let head = state.log.head().await.map_err(commands::Error::from)?;
    let hash = match head {
        0 => GENESIS_HASH,
        _ => state
            .log
            .read_all(head - 1, 1)
            .await
            .map_err(commands::Error::from)?
            .first()
            .map(|e| e.hash)
            .ok_or_else(|| Error::Internal(format!("event {head} cannot be read")))?,
    };
    let time = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Json(domain::checkpoint::sign(
        &state.signing_key,
        head,
        hash,
        &time,
    )))
}

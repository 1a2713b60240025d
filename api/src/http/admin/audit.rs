//! The audit log's tamper evidence: `GET /api/v1/audit-log/verify` recomputes the hash chain
//! over the whole log or a range and answers whether it is intact (with the head hash an auditor
//! can save as a checkpoint) or the first position that does not verify, with what was expected
//! there; given a saved checkpoint it also says whether the log still extends it.
//! `GET /api/v1/audit-log/checkpoint` answers the head's position and hash, signed with the
//! server's Ed25519 key, for parties outside flaglog to keep.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use commands::verify::{self, Checkpoint, Verification};
use domain::checkpoint::SignedCheckpoint;
use domain::log::GENESIS_HASH;
use serde::Deserialize;

use crate::http::AppState;
use crate::http::admin::require_admin;
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Query};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit-log/verify", get(verify_log))
        .route("/api/v1/audit-log/checkpoint", get(checkpoint))
        .route("/api/v1/audit-log/export", get(export))
}

#[derive(Deserialize, utoipa::IntoParams)]
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
/// and `expected_hash` / `stored_hash` where a hash is wrong.
#[utoipa::path(get, path = "/api/v1/audit-log/verify", tag = "audit", params(VerifyQuery),
    responses((status = 200, body = Object), (status = 400, body = crate::http::error::ErrorBody),
              (status = 403, body = crate::http::error::ErrorBody)))]
pub async fn verify_log(
    State(state): State<AppState>,
    caller: Admin,
    Query(query): Query<VerifyQuery>,
) -> Result<Json<Verification>> {
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
    Ok(Json(verification))
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

/// Events per batch of an export: what it holds in memory at a time.
const EXPORT_BATCH: usize = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// `ndjson` (the only format yet).
    pub format: Option<String>,
    /// First position (default 1).
    pub from: Option<u64>,
    /// Last position (default: the head when the export starts).
    pub to: Option<u64>,
}

/// The log's events as NDJSON, one recorded event per line with its hashes, streamed in batches
/// (flat memory however long the log): what `flaglog verify --export` checks offline against a
/// signed checkpoint. Needs an organisation administrator.
#[utoipa::path(get, path = "/api/v1/audit-log/export", tag = "audit", params(ExportQuery),
    responses((status = 200, content_type = "application/x-ndjson", body = String),
              (status = 400, body = crate::http::error::ErrorBody), (status = 403, body = crate::http::error::ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Admin,
    Query(query): Query<ExportQuery>,
) -> Result<axum::response::Response> {
    require_admin(&caller)?;
    if query.format.as_deref().is_some_and(|f| f != "ndjson") {
        return Err(Error::bad_request("format", "only ndjson is supported"));
    }
    let head = state.log.head().await.map_err(commands::Error::from)?;
    let last = query.to.unwrap_or(head).min(head);
    let start = query.from.unwrap_or(1).max(1) - 1;
    let log = state.log.clone();
    let batches = futures_util::stream::unfold(start, move |position| {
        let log = log.clone();
        async move {
            if position >= last {
                return None;
            }
            let events = match log.read_all(position, EXPORT_BATCH).await {
                Ok(events) => events,
                Err(e) => return Some((Err(std::io::Error::other(e.to_string())), last)),
            };
            let mut text = String::new();
            let mut reached = last;
            for event in events.iter().take_while(|e| e.position <= last) {
                match serde_json::to_string(event) {
                    Ok(line) => {
                        text.push_str(&line);
                        text.push('\n');
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), last)),
                }
                reached = event.position;
            }
            if events.is_empty() {
                reached = last;
            }
            Some((Ok(axum::body::Bytes::from(text)), reached))
        }
    });
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(batches));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

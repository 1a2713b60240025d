//! `GET /api/v1/environments/{api_key}/applied-without-review/`: the changes an admin applied
//! with a break-glass reason while four-eyes was on, to the environment, its identities'
//! overrides, or its project's definitions, oldest first.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::Value;

use super::rfc3339;
use crate::http::AppState;
use crate::http::admin::{environment_by_key, require_reader};
use crate::http::error::Result;
use crate::http::extract::{Admin, Path};

/// How many events one read of the log takes.
const BATCH: usize = 1000;

/// A change applied without review: by an admin, with a reason, while four-eyes was on.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UnreviewedChange {
    pub position: u64,
    pub stream_id: String,
    pub event_type: String,
    pub actor: String,
    pub reason: Option<String>,
    /// RFC 3339.
    pub recorded_at: Option<String>,
    #[schema(value_type = Object)]
    pub payload: Value,
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/applied-without-review/", tag = "change requests",
    params(("api_key" = String, Path)),
    responses((status = 200, body = Vec<UnreviewedChange>), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn applied_without_review(
    State(state): State<AppState>,
    caller: Admin,
    Path(api_key): Path<String>,
) -> Result<Json<Vec<UnreviewedChange>>> {
    let env = environment_by_key(&state, &api_key).await?;
    require_reader(&state, &caller, env.state.project_id).await?;
    let project = domain::project::stream(env.state.project_id);
    let identities = format!("identity-{}-", env.state.id);
    let concerns = |stream: &str| {
        stream == env.stream_id || stream == project || stream.starts_with(&identities)
    };
    // Until the audit projection indexes it, the log is read whole (break-glass is rare; the
    // read is in batches, so memory stays flat).
    let log = state.commands.store().log();
    let mut changes = Vec::new();
    let mut after = 0;
    loop {
        let records = log
            .read_all(after, BATCH)
            .await
            .map_err(commands::Error::from)?;
        let Some(last) = records.last() else { break };
        after = last.position;
        let full = records.len() == BATCH;
        changes.extend(
            records
                .into_iter()
                .filter(|r| r.metadata.break_glass && concerns(&r.stream_id))
                .map(|r| UnreviewedChange {
                    position: r.position,
                    stream_id: r.stream_id,
                    event_type: r.event_type,
                    actor: r.metadata.actor,
                    reason: r.metadata.reason,
                    recorded_at: rfc3339(r.recorded_at_micros),
                    payload: r.payload,
                }),
        );
        if !full {
            break;
        }
    }
    Ok(Json(changes))
}

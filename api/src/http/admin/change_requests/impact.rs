//! `GET /api/v1/change-requests/{id}/impact/`: for an open (or scheduled) request, how many of
//! each affected environment's known identities (those with stored traits) would be served a
//! different flag if it were committed now, with a sample of them (`domain::impact`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use domain::change_request::Status;
use domain::identity::IdentityOverrides;
use domain::impact::{AffectedIdentity, Side, impact};
use serde::Serialize;

use super::readable;
use crate::http::AppState;
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Path};

#[derive(Serialize, utoipa::ToSchema)]
pub struct EnvironmentImpact {
    pub environment_id: u64,
    pub identities_evaluated: usize,
    pub identities_affected: usize,
    /// Up to `domain::impact::SAMPLE_SIZE` affected identities, each with the flags that change
    /// for it (`before` / `after`: enabled and value).
    #[schema(value_type = Vec<Object>)]
    pub sample: Vec<AffectedIdentity>,
}

#[utoipa::path(get, path = "/api/v1/change-requests/{id}/impact/", tag = "change requests",
    params(("id" = u64, Path)),
    responses((status = 200, body = Vec<EnvironmentImpact>), (status = 404, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn impact_of(
    State(state): State<AppState>,
    caller: Admin,
    Path(id): Path<u64>,
) -> Result<Json<Vec<EnvironmentImpact>>> {
    let request = readable(&state, &caller, id).await?;
    if !matches!(request.status, Status::Open | Status::Scheduled) {
        return Err(Error::Conflict {
            field: Some("status".into()),
            message: format!("change request {id} is no longer open: it changes nothing now"),
        });
    }
    let mut answer = Vec::new();
    for proposed in state.commands.proposed(&request).await? {
        let environment_id = proposed.environment_id;
        let identities = state
            .sdk_store
            .identities(environment_id)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut before: BTreeMap<String, IdentityOverrides> = BTreeMap::new();
        for (identifier, _) in &identities {
            let overrides = state
                .commands
                .identity_overrides(environment_id, identifier)
                .await?
                .state;
            if !overrides.overrides.is_empty() {
                before.insert(identifier.clone(), overrides);
            }
        }
        let mut after = before.clone();
        after.extend(proposed.identity_overrides_after);
        let result = impact(
            &Side {
                project: &proposed.project_before,
                environment: &proposed.before,
                identity_overrides: &before,
            },
            &Side {
                project: &proposed.project_after,
                environment: &proposed.after,
                identity_overrides: &after,
            },
            &identities,
        );
        answer.push(EnvironmentImpact {
            environment_id,
            identities_evaluated: result.identities_evaluated,
            identities_affected: result.identities_affected,
            sample: result.sample,
        });
    }
    Ok(Json(answer))
}

//! Erasing an identity (`DELETE /api/v1/environments/{api_key}/identities/{identifier}`): a
//! person's request to be forgotten, honoured without breaking the log's hash chain. The log
//! records that the identity was erased (its overrides stop applying); its identifier, held only
//! beside the log, and its stored traits are deleted; the answer comes once the environment's
//! documents and the audit history reflect it, so no read after it names the identity.

use axum::extract::State;
use axum::routing::delete;
use axum::{Json, Router};
use domain::access;
use domain::command::{Command, IdentityCommand};
use domain::identity::IdentityName;
use serde::Serialize;

use crate::http::AppState;
use crate::http::admin::{environment_by_key, require, wait_until_projected};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, Path};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/environments/{api_key}/identities/{identifier}",
        delete(erase_identity),
    )
}

/// What an erasure removed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// The identity had overrides: the log now records its erasure, at this position.
    pub position: Option<u64>,
    /// Its identifier was deleted from beside the log.
    pub identifier_erased: bool,
    /// Its stored traits were deleted.
    pub traits_erased: bool,
}

#[utoipa::path(delete, path = "/api/v1/environments/{api_key}/identities/{identifier}", tag = "identities",
    params(("api_key" = String, Path), ("identifier" = String, Path, description = "The identity's identifier, percent-encoded")),
    responses((status = 200, body = Erased), (status = 403, body = crate::http::error::ErrorBody),
              (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn erase_identity(
    State(state): State<AppState>,
    admin: Admin,
    Path((api_key, identifier)): Path<(String, String)>,
) -> Result<Json<Erased>> {
    let environment = environment_by_key(&state, &api_key).await?;
    let environment_id = environment.state.id;
    let command: Command = IdentityCommand::EraseIdentity {
        environment_id,
        identity: IdentityName::Identifier(identifier.clone()),
    }
    .into();
    require(&state, &admin, &access::requirement(&command)).await?;

    let reference = state
        .commands
        .identity_reference(environment_id, &identifier, false)
        .await?;
    let position = match reference {
        Some(_) => {
            state
                .commands
                .erase_identity(&admin.metadata, environment_id, &identifier)
                .await?
                .position
        }
        None => None,
    };
    let traits_erased = state
        .sdk_store
        .erase_traits(environment_id, &identifier)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    if reference.is_none() && !traits_erased {
        return Err(Error::NotFound(format!(
            "no identity with that identifier in environment {api_key}"
        )));
    }
    wait_until_projected(&state, projections::environment_documents::NAME).await?;
    wait_until_projected(&state, projections::audit_history::NAME).await?;
    projections::forget_deleted(&state.read_models)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Json(Erased {
        position,
        identifier_erased: reference.is_some(),
        traits_erased,
    }))
}

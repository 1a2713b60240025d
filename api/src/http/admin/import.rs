//! Import of a Flagsmith environment document over the API (the same import as
//! `flaglog import --environment-document FILE`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use commands::import::Imported;

use crate::http::AppState;
use crate::http::admin::require_admin;
use crate::http::error::{Error, Result};
use crate::http::extract::Admin;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/environment-document/import/",
        post(import_document),
    )
}

/// Creates a project and environment with its features, segments and overrides from a Flagsmith
/// environment document (alone, or as `{"environment": ...}` / `{"environment_document": ...}`),
/// keeping the ids evaluation hashes on. A malformed document is refused whole.
#[utoipa::path(post, path = "/api/v1/environment-document/import/", tag = "import",
    request_body(content = Object, description = "A Flagsmith environment document"),
    responses((status = 201, description = "`{project_id, environment_id, client_key, server_side_key}`"), (status = 400, body = crate::http::error::ErrorBody),
              (status = 409, body = crate::http::error::ErrorBody)))]
pub async fn import_document(
    State(state): State<AppState>,
    admin: Admin,
    body: Bytes,
) -> Result<(StatusCode, Json<Imported>)> {
    require_admin(&admin)?;
    let document = commands::import::parse_document(&body)
        .map_err(|e| Error::bad_request(e.path, e.message))?;
    let mut metadata = admin.metadata;
    metadata.actor = "import".into();
    metadata
        .reason
        .get_or_insert_with(|| format!("import requested by {}", admin.principal.actor()));
    let imported = commands::import::import(&state.commands, &metadata, document).await?;
    Ok((StatusCode::CREATED, Json(imported)))
}

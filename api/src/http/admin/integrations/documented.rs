//! The OpenAPI descriptions of the environment's routes (the handlers take the scope first).

use super::*;

/// The environment's integrations (secrets by name only).
#[utoipa::path(get, path = "/api/v1/environments/{api_key}/integrations/", tag = "integrations",
    responses((status = 200, body = Vec<IntegrationView>), (status = 403, body = crate::http::error::ErrorBody)))]
pub async fn list(
    s: State<AppState>,
    c: Admin,
    p: Path<String>,
) -> Result<Json<Vec<IntegrationView>>> {
    super::list(ScopeKind::Environment, s, c, p).await
}

/// Configures an integration (a kind of the catalogue); secret fields are stored apart and
/// never answered.
#[utoipa::path(post, path = "/api/v1/environments/{api_key}/integrations/", tag = "integrations",
    request_body = NewIntegration,
    responses((status = 201, body = IntegrationView), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn create(
    s: State<AppState>,
    c: Admin,
    p: Path<String>,
    b: JsonBody<NewIntegration>,
) -> Result<(StatusCode, Json<IntegrationView>)> {
    super::create(ScopeKind::Environment, s, c, p, b).await
}

#[utoipa::path(get, path = "/api/v1/environments/{api_key}/integrations/{id}/", tag = "integrations",
    responses((status = 200, body = IntegrationView), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn show(
    s: State<AppState>,
    c: Admin,
    p: Path<(String, IntegrationId)>,
) -> Result<Json<IntegrationView>> {
    super::show(ScopeKind::Environment, s, c, p).await
}

/// Changes an integration: `config` replaces its fields (secrets not given are kept),
/// `enabled` turns delivery on or off.
#[utoipa::path(put, path = "/api/v1/environments/{api_key}/integrations/{id}/", tag = "integrations",
    request_body = IntegrationChange,
    responses((status = 200, body = IntegrationView), (status = 400, body = crate::http::error::ErrorBody)))]
pub async fn update(
    s: State<AppState>,
    c: Admin,
    p: Path<(String, IntegrationId)>,
    b: JsonBody<IntegrationChange>,
) -> Result<Json<IntegrationView>> {
    super::update(ScopeKind::Environment, s, c, p, b).await
}

#[utoipa::path(delete, path = "/api/v1/environments/{api_key}/integrations/{id}/", tag = "integrations",
    responses((status = 204), (status = 404, body = crate::http::error::ErrorBody)))]
pub async fn remove(
    s: State<AppState>,
    c: Admin,
    p: Path<(String, IntegrationId)>,
) -> Result<StatusCode> {
    super::remove(ScopeKind::Environment, s, c, p).await
}

/// Delivery: last position delivered, lag, consecutive failures, last error.
#[utoipa::path(get, path = "/api/v1/environments/{api_key}/integrations/{id}/status", tag = "integrations",
    responses((status = 200, body = DeliveryStatus)))]
pub async fn status(
    s: State<AppState>,
    c: Admin,
    p: Path<(String, IntegrationId)>,
) -> Result<Json<DeliveryStatus>> {
    super::status(ScopeKind::Environment, s, c, p).await
}

/// Messages that failed every attempt.
#[utoipa::path(get, path = "/api/v1/environments/{api_key}/integrations/{id}/dead-letters", tag = "integrations",
    responses((status = 200, description = "the dead letters, in log order")))]
pub async fn dead_letters(
    s: State<AppState>,
    c: Admin,
    p: Path<(String, IntegrationId)>,
) -> Result<Json<Vec<DeadLetter>>> {
    super::dead_letters(ScopeKind::Environment, s, c, p).await
}

/// Sends the dead letters again, or, with `{"from_position": N}`, everything from N on.
#[utoipa::path(post, path = "/api/v1/environments/{api_key}/integrations/{id}/replay", tag = "integrations",
    request_body = Option<Replay>, responses((status = 202, description = "the replay is under way")))]
pub async fn replay(
    s: State<AppState>,
    c: Admin,
    p: Path<(String, IntegrationId)>,
    b: axum::body::Bytes,
) -> Result<impl IntoResponse> {
    super::replay(ScopeKind::Environment, s, c, p, b).await
}

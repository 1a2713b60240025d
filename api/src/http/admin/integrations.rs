//! Integrations: the catalogue (`GET /api/v1/integrations/catalogue`), and per environment,
//! project or organisation (`/api/v1/{environments/{api_key},projects/{id},organisations/{id}}/integrations/`)
//! configuring one, its delivery status, its dead letters and replays.
//!
//! Secret fields are write-only: a request's secret values are stored beside the log
//! (`projections::integrations::store`) under new random references, and the command carries
//! only the references; answers name which secrets are set, never a value. Everything here
//! needs the admin role where the integration is (an organisation administrator for an
//! organisation's).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, response::IntoResponse};
use domain::access::{Requirement, Role, Scope};
use domain::command::DirectoryCommand;
use domain::integration::catalogue::{self, Kind, ScopeKind};
use domain::integration::{self, Integration, IntegrationId, IntegrationScope};
use projections::integrations::store::{self, DeadLetter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::http::AppState;
use crate::http::admin::{execute, require};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, JsonBody, Path};

/// Where integrations are configured: the route prefix and the scope its parameter names.
/// The environment's routes are documented in the OpenAPI spec, and copied there for the
/// others (`openapi::IntegrationScopes`).
pub const PREFIXES: [(&str, ScopeKind); 3] = [
    (
        "/api/v1/environments/{api_key}/integrations",
        ScopeKind::Environment,
    ),
    (
        "/api/v1/projects/{project_id}/integrations",
        ScopeKind::Project,
    ),
    (
        "/api/v1/organisations/{organisation_id}/integrations",
        ScopeKind::Organisation,
    ),
];

pub fn router() -> Router<AppState> {
    let mut router = Router::new().route("/api/v1/integrations/catalogue", get(catalogue_list));
    for (prefix, kind) in PREFIXES {
        router = router
            .route(
                &format!("{prefix}/"),
                get(move |s, c, p| list(kind, s, c, p))
                    .post(move |s, c, p, b| create(kind, s, c, p, b)),
            )
            .route(
                &format!("{prefix}/{{id}}/"),
                get(move |s, c, p| show(kind, s, c, p))
                    .put(move |s, c, p, b| update(kind, s, c, p, b))
                    .delete(move |s, c, p| remove(kind, s, c, p)),
            )
            .route(
                &format!("{prefix}/{{id}}/status"),
                get(move |s, c, p| status(kind, s, c, p)),
            )
            .route(
                &format!("{prefix}/{{id}}/dead-letters"),
                get(move |s, c, p| dead_letters(kind, s, c, p)),
            )
            .route(
                &format!("{prefix}/{{id}}/replay"),
                post(move |s, c, p, b| replay(kind, s, c, p, b)),
            );
    }
    router
}

/// The OpenAPI descriptions of the environment's routes (the handlers take the scope first).
pub mod documented {
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
}

/// The integrations flaglog can send to, with their fields (`secret`: write-only).
#[utoipa::path(get, path = "/api/v1/integrations/catalogue", tag = "integrations",
    responses((status = 200, description = "every kind, with its fields")))]
pub async fn catalogue_list(_caller: Admin) -> Json<&'static [Kind]> {
    Json(catalogue::KINDS)
}

/// An integration as answered: its secrets by name only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub id: IntegrationId,
    #[schema(value_type = Object)]
    pub scope: IntegrationScope,
    pub kind: String,
    /// The fields that are not secret.
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// The secret fields that hold a value (never the value).
    pub secrets_set: Vec<String>,
    pub enabled: bool,
}

impl From<&Integration> for IntegrationView {
    fn from(i: &Integration) -> Self {
        IntegrationView {
            id: i.id,
            scope: i.scope,
            kind: i.kind.clone(),
            config: i.config.clone(),
            secrets_set: i.secrets.keys().cloned().collect(),
            enabled: i.enabled,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewIntegration {
    /// A kind of the catalogue, e.g. `webhook`, `datadog`.
    pub kind: String,
    /// The kind's fields; secret ones are stored apart and never answered.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct IntegrationChange {
    /// Replaces the fields that are not secret; secret fields given here get new values, those
    /// not given keep theirs.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Map<String, Value>>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// The scope a path names: an environment's client key, a project's or an organisation's id.
async fn scope_of(state: &AppState, kind: ScopeKind, text: &str) -> Result<IntegrationScope> {
    let directory = state.commands.directory().await?.state;
    let id = |what: &str| {
        text.parse::<u64>()
            .map_err(|_| Error::bad_request("path", format!("not a {what} id: {text:?}")))
    };
    let scope = match kind {
        ScopeKind::Environment => IntegrationScope::Environment(
            directory
                .environment_by_client_key(text)
                .ok_or_else(|| Error::NotFound(format!("environment {text} not found")))?,
        ),
        ScopeKind::Project => IntegrationScope::Project(id("project")?),
        ScopeKind::Organisation => IntegrationScope::Organisation(id("organisation")?),
    };
    directory.require_scope(scope)?;
    Ok(scope)
}

/// The scope, once the caller is found to hold the admin role there.
async fn admin_scope(
    state: &AppState,
    caller: &Admin,
    kind: ScopeKind,
    text: &str,
) -> Result<IntegrationScope> {
    let scope = scope_of(state, kind, text).await?;
    let access = match scope {
        IntegrationScope::Organisation(id) => Scope::Organisation(Some(id)),
        IntegrationScope::Project(id) => Scope::Project(id),
        IntegrationScope::Environment(id) => Scope::Environment(id),
    };
    require(
        state,
        caller,
        &Requirement {
            scope: access,
            role: Role::Admin,
        },
    )
    .await?;
    Ok(scope)
}

async fn integration_at(
    state: &AppState,
    scope: IntegrationScope,
    id: IntegrationId,
) -> Result<Integration> {
    let directory = state.commands.directory().await?.state;
    Ok(directory.integration_at(scope, id)?.clone())
}

/// Stores the secret values `config` holds and takes them out of it; their references.
async fn store_secrets(
    state: &AppState,
    scope: IntegrationScope,
    kind: &Kind,
    config: &mut Map<String, Value>,
) -> Result<BTreeMap<String, String>> {
    let mut references = BTreeMap::new();
    for (field, value) in integration::take_secrets(kind, config) {
        let reference = uuid::Uuid::new_v4().simple().to_string();
        store::store_secret(&state.read_models, scope, &reference, &value).await?;
        references.insert(field, reference);
    }
    Ok(references)
}

async fn list(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path(scope): Path<String>,
) -> Result<Json<Vec<IntegrationView>>> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    let directory = state.commands.directory().await?.state;
    Ok(Json(
        directory
            .integrations
            .values()
            .filter(|i| i.scope == scope)
            .map(IntegrationView::from)
            .collect(),
    ))
}

async fn create(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path(scope): Path<String>,
    JsonBody(body): JsonBody<NewIntegration>,
) -> Result<(StatusCode, Json<IntegrationView>)> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    let spec = integration::kind_named(&body.kind)?;
    let mut config = body.config;
    let secrets = store_secrets(&state, scope, spec, &mut config).await?;
    let executed = execute(
        &state,
        &caller,
        DirectoryCommand::CreateIntegration {
            scope,
            kind: body.kind,
            config,
            secrets,
            enabled: body.enabled.unwrap_or(true),
        },
    )
    .await?;
    let created = integration_at(&state, scope, executed.created_id()?).await?;
    Ok((StatusCode::CREATED, Json(IntegrationView::from(&created))))
}

async fn show(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path((scope, id)): Path<(String, IntegrationId)>,
) -> Result<Json<IntegrationView>> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    Ok(Json(IntegrationView::from(
        &integration_at(&state, scope, id).await?,
    )))
}

async fn update(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path((scope, id)): Path<(String, IntegrationId)>,
    JsonBody(body): JsonBody<IntegrationChange>,
) -> Result<Json<IntegrationView>> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    let current = integration_at(&state, scope, id).await?;
    let spec = integration::kind_named(&current.kind)?;
    let mut config = body.config;
    let secrets = match config.as_mut() {
        Some(config) => store_secrets(&state, scope, spec, config).await?,
        None => BTreeMap::new(),
    };
    execute(
        &state,
        &caller,
        DirectoryCommand::UpdateIntegration {
            scope,
            integration_id: id,
            config,
            secrets,
            enabled: body.enabled,
        },
    )
    .await?;
    Ok(Json(IntegrationView::from(
        &integration_at(&state, scope, id).await?,
    )))
}

async fn remove(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path((scope, id)): Path<(String, IntegrationId)>,
) -> Result<StatusCode> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    execute(
        &state,
        &caller,
        DirectoryCommand::RemoveIntegration {
            scope,
            integration_id: id,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

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
}

async fn status(
    kind: ScopeKind,
    State(state): State<AppState>,
    caller: Admin,
    Path((scope, id)): Path<(String, IntegrationId)>,
) -> Result<Json<DeliveryStatus>> {
    let scope = admin_scope(&state, &caller, kind, &scope).await?;
    let integration = integration_at(&state, scope, id).await?;
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
    Ok(Json(DeliveryStatus {
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
    }))
}

async fn dead_letters(
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

async fn replay(
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

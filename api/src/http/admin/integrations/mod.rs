//! Integrations: the catalogue (`GET /api/v1/integrations/catalogue`), and per environment,
//! project or organisation (`/api/v1/{environments/{api_key},projects/{id},organisations/{id}}/integrations/`)
//! configuring one ([`delivery`]: its delivery status, its dead letters and replays;
//! [`documented`]: the routes as the OpenAPI document describes them).
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
use domain::integration::catalogue::{self, FieldType, Kind, ScopeKind};
use domain::integration::{self, Integration, IntegrationId, IntegrationScope};
use projections::integrations::network::{self, PrivateNetworks};
use projections::integrations::store::{self, DeadLetter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::http::AppState;
use crate::http::admin::{execute, require};
use crate::http::error::{Error, Result};
use crate::http::extract::{Admin, JsonBody, Path};

mod delivery;
pub mod documented;

pub use delivery::{DeliveryStatus, Replay, status_of};
use delivery::{dead_letters, replay, status};

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

/// Refuses a URL field whose host is a private or local address when the node refuses those
/// ([`network`]); names are checked again wherever they resolve, at every request.
fn refuse_private_urls(state: &AppState, spec: &Kind, config: &Map<String, Value>) -> Result<()> {
    if state.integration_networks == PrivateNetworks::Allowed {
        return Ok(());
    }
    for field in spec.all_fields().filter(|f| f.field_type == FieldType::Url) {
        if let Some(url) = config.get(field.key).and_then(Value::as_str)
            && let Some(refused) = network::refused_host(url)
        {
            return Err(Error::bad_request(format!("config.{}", field.key), refused));
        }
    }
    Ok(())
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
    refuse_private_urls(&state, spec, &config)?;
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
    if let Some(config) = &config {
        refuse_private_urls(&state, spec, config)?;
    }
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

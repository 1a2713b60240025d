//! `GET /api/v1/openapi.json`: the OpenAPI description of the admin API, generated from the
//! handlers' annotations, so it cannot drift from the code.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::AppState;
use crate::http::admin::{
    analytics, audit, change_requests, commands, environments, events, features, identities,
    identity_overrides, import, integrations, organisations, projects, segments, tokens, users,
    versions,
};
use crate::http::{health, time_travel};

#[derive(OpenApi)]
#[openapi(
    info(title = "flaglog", description = "An event-sourced feature-flag server, compatible with Flagsmith's SDKs."),
    paths(
        health::health,
        users::init, users::create, users::set_role,
        tokens::list, tokens::issue_personal, tokens::issue_service, tokens::rotate, tokens::revoke,
        organisations::list, organisations::create,
        projects::list, projects::create, projects::show, projects::update,
        environments::list, environments::create, environments::show, environments::update,
        environments::issue_key, environments::feature_states, environments::set_feature_state,
        environments::set_segment_override, environments::remove_segment_override,
        identity_overrides::identity_overrides, identity_overrides::set_identity_override,
        identity_overrides::remove_identity_override, identities::erase_identity,
        features::list, features::create, features::show, features::update, features::delete,
        segments::list, segments::create, segments::show, segments::update, segments::delete,
        import::import_document,
        commands::execute_command,
        change_requests::open_for_environment, change_requests::inbox::list_for_environment,
        change_requests::open_for_project, change_requests::inbox::list_for_project,
        change_requests::inbox::inbox,
        change_requests::show, change_requests::edit, change_requests::approve,
        change_requests::withdraw_approval, change_requests::reject, change_requests::comment,
        change_requests::close, change_requests::commit, change_requests::rebase,
        change_requests::cancel_schedule, change_requests::revert,
        change_requests::unreviewed::applied_without_review, change_requests::impact::impact_of,
        versions::list, versions::show, versions::compare_versions, versions::restore,
        versions::compare_environments,
        analytics::evaluations, analytics::usage,
        audit::verify_log, audit::checkpoint, audit::history::list, audit::export::export,
        time_travel::environment_document, time_travel::identity,
        integrations::catalogue_list, integrations::documented::list,
        integrations::documented::create, integrations::documented::show,
        integrations::documented::update, integrations::documented::remove,
        integrations::documented::status, integrations::documented::dead_letters,
        integrations::documented::replay,
        events::list, events::stream,
    ),
    modifiers(&TokenAuth, &IntegrationScopes, &UniqueOperationIds),
    security(("token" = [])),
)]
pub struct ApiDoc;

/// `Authorization: Token <token>` on every admin route.
struct TokenAuth;

impl Modify for TokenAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Token <token>`, as printed by `flaglog admin create`",
            ))),
        );
    }
}

/// The integrations' routes are the same under a project and an organisation as under an
/// environment (documented there): copied to each prefix.
struct IntegrationScopes;

impl Modify for IntegrationScopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let (documented, _) = integrations::PREFIXES[0];
        let copies: Vec<(String, utoipa::openapi::PathItem)> = openapi
            .paths
            .paths
            .iter()
            .filter(|(path, _)| path.starts_with(documented))
            .flat_map(|(path, item)| {
                integrations::PREFIXES[1..]
                    .iter()
                    .map(move |(prefix, _)| (path.replacen(documented, prefix, 1), item.clone()))
            })
            .collect();
        openapi.paths.paths.extend(copies);
    }
}

/// Handlers of different resources share names (`list`, `create`); OpenAPI wants each
/// operation id unique, so ids become `<method>_<path>` (`get_api_v1_projects_project_id`).
struct UniqueOperationIds;

impl Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let slug: String = path
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            for (method, operation) in [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("put", &mut item.put),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ] {
                if let Some(operation) = operation {
                    operation.operation_id = Some(format!("{method}_{slug}"));
                }
            }
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/openapi.json",
        get(|| async { Json(ApiDoc::openapi()) }),
    )
}

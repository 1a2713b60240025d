//! The admin REST API: everything an operator or a script changes, each change an event.
//! Every route needs `Authorization: Token <token>` except the one-time bootstrap of the first
//! user. Reads answer from the aggregates' current state, so a write is visible to the next read.

pub mod analytics;
pub mod audit;
pub mod change_requests;
pub mod commands;
pub mod environments;
pub mod events;
pub mod features;
pub mod identities;
pub mod identity_overrides;
pub mod import;
pub mod integrations;
pub mod organisations;
pub mod projects;
pub mod segments;
pub mod tokens;
pub mod users;
pub mod versions;

use ::commands::handlers::Executed;
use ::commands::store::Loaded;
use axum::Router;
use domain::access;
use domain::command::Command;
use domain::directory::Directory;
use domain::environment::Environment;
use domain::model::ProjectId;

use crate::http::extract::Admin;

use crate::http::AppState;
use crate::http::error::{Error, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(users::router())
        .merge(organisations::router())
        .merge(projects::router())
        .merge(environments::router())
        .merge(identity_overrides::router())
        .merge(identities::router())
        .merge(features::router())
        .merge(segments::router())
        .merge(import::router())
        .merge(commands::router())
        .merge(change_requests::router())
        .merge(versions::router())
        .merge(tokens::router())
        .merge(audit::router())
        .merge(integrations::router())
        .merge(events::router())
        .merge(analytics::router())
}

/// The environment whose client key is `api_key` (how Flagsmith's admin API names environments).
pub async fn environment_by_key(state: &AppState, api_key: &str) -> Result<Loaded<Environment>> {
    let directory = state.commands.directory().await?;
    let id = directory
        .state
        .environment_by_client_key(api_key)
        .ok_or_else(|| Error::NotFound(format!("environment {api_key} not found")))?;
    Ok(state.commands.environment(id).await?)
}

/// Executes `command` for the caller: the one path every admin mutation takes, checked against
/// `domain::access` (where the command applies, the least role it needs there). A break-glass
/// change (applied despite four-eyes, `X-Break-Glass-Reason`) needs the admin role there.
pub async fn execute(
    state: &AppState,
    caller: &crate::http::extract::Admin,
    command: impl Into<Command>,
) -> Result<Executed> {
    let command = command.into();
    let mut needed = access::requirement(&command);
    if caller.metadata.break_glass {
        needed.role = access::Role::Admin;
    }
    require(state, caller, &needed).await?;
    Ok(state.commands.execute(&caller.metadata, &command).await?)
}

/// Executes `commands` for the caller as one atomic append, each checked as [`execute`] checks
/// one.
pub async fn execute_all(
    state: &AppState,
    caller: &crate::http::extract::Admin,
    commands: &[Command],
) -> Result<Executed> {
    for command in commands {
        let mut needed = access::requirement(command);
        if caller.metadata.break_glass {
            needed.role = access::Role::Admin;
        }
        require(state, caller, &needed).await?;
    }
    Ok(state
        .commands
        .execute_all(&caller.metadata, commands)
        .await?)
}

/// Refuses (403, naming the role) a caller who does not meet `needed`.
pub async fn require(state: &AppState, caller: &Admin, needed: &access::Requirement) -> Result<()> {
    let allowed = caller.principal.is_organisation_admin() || {
        let directory = state.commands.directory().await?.state;
        access::allows(&directory, &caller.principal, needed)
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::Forbidden(needed.refusal()))
    }
}

/// Whether the caller may read `project`: any role on it (organisation admins read everything).
pub fn may_read(directory: &Directory, caller: &Admin, project: ProjectId) -> bool {
    caller.principal.is_organisation_admin()
        || caller.principal.role_on(directory, project).is_some()
}

/// Refuses (403) a caller who may not read `project`.
pub async fn require_reader(state: &AppState, caller: &Admin, project: ProjectId) -> Result<()> {
    let directory = state.commands.directory().await?.state;
    if may_read(&directory, caller, project) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            access::Requirement {
                scope: access::Scope::Project(project),
                role: access::Role::Viewer,
            }
            .refusal(),
        ))
    }
}

/// Refuses callers that are not administrators.
pub fn require_admin(admin: &crate::http::extract::Admin) -> Result<()> {
    if admin.principal.is_organisation_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden("this needs an administrator".into()))
    }
}

/// Longest a read of a projection's table waits for it to catch up with the log.
pub const FRESHNESS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const FRESHNESS_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Waits until projection `name` reflects the log as it was on arrival (or [`FRESHNESS_WAIT`]
/// passed), so a client sees its own change in the next read of that projection, on any node.
pub async fn wait_until_projected(state: &AppState, name: &str) -> Result<()> {
    let head = state.log.head().await.map_err(::commands::Error::from)?;
    let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
    loop {
        let position = projections::checkpoint(&state.read_models, name)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        if position >= head || tokio::time::Instant::now() >= deadline {
            if position < head {
                tracing::warn!(
                    projection = name,
                    position,
                    head,
                    "a projection lags the log"
                );
            }
            return Ok(());
        }
        tokio::time::sleep(FRESHNESS_POLL).await;
    }
}

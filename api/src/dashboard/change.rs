//! One way every edit form changes what is served: where four-eyes is in force for the change
//! (the environment's setting for feature states and overrides, the project's for its
//! definitions: [`access::four_eyes`], the rule the command side applies) the form proposes it
//! as a change request, else it runs the commands directly. Pages ask [`review_scope`] to label
//! their buttons "Propose" instead of "Save".

use axum::response::{IntoResponse, Redirect, Response};
use domain::access;
use domain::change_request::Scope;
use domain::command::Command;
use domain::command::change_request::ChangeRequestCommand;
use time::PrimitiveDateTime;
use time::macros::format_description;

use super::PageError;
use super::fields::Fields;
use super::session::Visitor;
use crate::http::AppState;
use crate::http::admin::change_requests::open_command;
use crate::http::admin::execute_all;
use crate::http::error::Error;

/// Where `command` must be proposed for review (its change request's scope), or `None` when it
/// may be applied directly.
pub async fn review_scope(state: &AppState, command: &Command) -> Result<Option<Scope>, PageError> {
    let (scope, minimum) = match command {
        Command::Project(c) => {
            let project = state.commands.project(c.project_id()).await?.state;
            (
                Scope::Project(c.project_id()),
                project.settings.minimum_change_request_approvals,
            )
        }
        Command::Environment(c) => environment_scope(state, c.environment_id()).await?,
        Command::Identity(c) => environment_scope(state, c.environment_id()).await?,
        Command::Directory(_) => return Ok(None),
    };
    let guarded = access::four_eyes(command, minimum, access::Review::Direct).is_err();
    Ok(guarded.then_some(scope))
}

async fn environment_scope(state: &AppState, id: u64) -> Result<(Scope, u32), PageError> {
    let environment = state.commands.environment(id).await?.state;
    Ok((
        Scope::Environment(id),
        environment.settings.minimum_change_request_approvals,
    ))
}

/// What a change form did.
pub enum Outcome {
    Applied,
    /// Proposed as change request `id`.
    Proposed(u64),
}

impl Outcome {
    /// Back to `page` after a direct change; to the request after a proposal.
    pub fn redirect(self, page: &str) -> Response {
        match self {
            Outcome::Applied => Redirect::to(page).into_response(),
            Outcome::Proposed(id) => {
                Redirect::to(&format!("/change-requests/{id}")).into_response()
            }
        }
    }
}

/// Applies `commands` (one atomic append) as the signed-in visitor once the CSRF token checks
/// out, or proposes them as a change request titled `title` where the first one asks for
/// review; `live_from` (a proposal's schedule, "YYYY-MM-DDTHH:MM" in UTC as a browser's
/// datetime-local input sends it) may be empty.
pub async fn apply(
    state: &AppState,
    visitor: &Visitor,
    csrf: &str,
    commands: Vec<Command>,
    title: String,
    live_from: &str,
) -> Result<Outcome, PageError> {
    visitor.check_csrf(csrf)?;
    let caller = visitor.require()?;
    let Some(first) = commands.first() else {
        return Err(PageError::from(Error::bad_request(
            "form",
            "nothing to change",
        )));
    };
    let Some(scope) = review_scope(state, first).await? else {
        execute_all(state, caller, &commands).await?;
        return Ok(Outcome::Applied);
    };
    let open = ChangeRequestCommand::OpenChangeRequest {
        change_request_id: 0,
        scope,
        title,
        description: String::new(),
        commands,
        base_versions: Default::default(),
        live_from_micros: schedule(live_from)?,
        reviewers: Vec::new(),
    };
    let (_, axum::Json(opened)) = open_command(state, caller, scope, open).await?;
    Ok(Outcome::Proposed(opened.id))
}

/// [`apply`] for a form of one command: its CSRF token and schedule (`live_from`) read from
/// `fields`.
pub async fn apply_form(
    state: &AppState,
    visitor: &Visitor,
    fields: &Fields,
    command: impl Into<Command>,
    title: String,
) -> Result<Outcome, PageError> {
    let csrf = fields.one(super::session::CSRF_FIELD);
    let commands = vec![command.into()];
    apply(
        state,
        visitor,
        csrf,
        commands,
        title,
        fields.one("live_from"),
    )
    .await
}

/// A datetime-local field's value (UTC) as µs since the epoch; empty is "when committed".
pub fn schedule(live_from: &str) -> Result<Option<i64>, PageError> {
    let text = live_from.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let formats = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    ];
    let parsed = formats
        .iter()
        .find_map(|format| PrimitiveDateTime::parse(text, format).ok())
        .ok_or_else(|| {
            Error::bad_request(
                "live_from",
                format!("{text:?} is not a time as YYYY-MM-DDTHH:MM (UTC)"),
            )
        })?;
    let micros = parsed.assume_utc().unix_timestamp_nanos() / 1000;
    Ok(Some(i64::try_from(micros).map_err(|_| {
        Error::bad_request("live_from", "out of range")
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_read_as_utc_and_nonsense_is_a_400() {
        assert_eq!(schedule("").ok(), Some(None));
        assert_eq!(
            schedule("2026-12-07T14:03").ok(),
            Some(Some(1_796_652_180_000_000))
        );
        match schedule("tomorrow") {
            Err(PageError::Status(status, message)) => {
                assert_eq!(status.as_u16(), 400);
                assert!(message.contains("YYYY-MM-DDTHH:MM"), "{message}");
            }
            other => panic!("expected a 400, got {:?}", other.map(|_| ())),
        }
    }
}

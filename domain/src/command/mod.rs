//! Commands as values: every mutation of the model is a [`Command`], a plain value that can be
//! stored (a change request holds the commands it proposes), shown to approvers, compared and
//! executed later (a scheduled change), not only a method call.
//!
//! There is one command type per aggregate ([`DirectoryCommand`], [`ProjectCommand`],
//! [`EnvironmentCommand`], [`IdentityCommand`]), each decided by one pure function of the shape
//! `decide(&State, &Command, &Facts) -> Result<Vec<Event>>`, where the facts are what the decision
//! reads from *other* aggregates, looked up by the caller beforehand. Each command also says which
//! facts it reads (`reads_*`), so the executor can append with those aggregates' versions as
//! expectations (`domain::log::StreamAppend::expect`): a decision taken on a fact that changed
//! meanwhile is refused by the log and decided again, so a rule that spans two aggregates holds
//! under concurrency.
//!
//! The JSON form is stable (it is stored inside events): an object tagged by `"type"`, the variant
//! in snake_case, with named fields, e.g.
//! `{"type":"set_feature_state","environment_id":3,"feature_id":7,"enabled":true,"feature_state_value":"blue"}`.
//! Stored commands carry the schema version they were written with ([`StoredCommand`]); a format
//! change bumps [`SCHEMA_VERSION`] and adds an arm to [`upcast`], as for events.

pub mod change_request;
pub mod directory;
pub mod environment;
pub mod identity;
pub mod project;
pub mod restore;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use strum::VariantNames;

use crate::aggregate::CodecError;

pub use directory::{DirectoryCommand, DirectoryDecision};
pub use environment::{EnvironmentCommand, EnvironmentFacts};
pub use identity::{IdentityCommand, IdentityFacts};
pub use project::{ProjectCommand, ProjectFacts};

/// The schema version of every command's JSON form written by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// Any command, of any aggregate. Serialises as the aggregate command it holds (the JSON form has
/// no wrapper); deserialising routes on `"type"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Command {
    Directory(DirectoryCommand),
    Project(ProjectCommand),
    Environment(EnvironmentCommand),
    Identity(IdentityCommand),
}

impl Command {
    /// Every command type (the `"type"` of its JSON form), of every aggregate.
    pub fn types() -> impl Iterator<Item = &'static str> {
        DirectoryCommand::VARIANTS
            .iter()
            .chain(ProjectCommand::VARIANTS)
            .chain(EnvironmentCommand::VARIANTS)
            .chain(IdentityCommand::VARIANTS)
            .copied()
    }

    /// This command's `"type"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Command::Directory(c) => c.into(),
            Command::Project(c) => c.into(),
            Command::Environment(c) => c.into(),
            Command::Identity(c) => c.into(),
        }
    }

    /// Parses a command's JSON form.
    pub fn from_json(value: Value) -> Result<Command, serde_json::Error> {
        let kind = match value.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => return Err(serde::de::Error::custom("`type` must be a string")),
            None => return Err(serde::de::Error::missing_field("type")),
        };
        let kind = kind.as_str();
        if DirectoryCommand::VARIANTS.contains(&kind) {
            serde_json::from_value(value).map(Command::Directory)
        } else if ProjectCommand::VARIANTS.contains(&kind) {
            serde_json::from_value(value).map(Command::Project)
        } else if EnvironmentCommand::VARIANTS.contains(&kind) {
            serde_json::from_value(value).map(Command::Environment)
        } else if IdentityCommand::VARIANTS.contains(&kind) {
            serde_json::from_value(value).map(Command::Identity)
        } else {
            let known: Vec<_> = Command::types().collect();
            Err(serde::de::Error::custom(format!(
                "unknown command type {kind:?}; known types: {}",
                known.join(", ")
            )))
        }
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Command::from_json(value).map_err(serde::de::Error::custom)
    }
}

impl From<DirectoryCommand> for Command {
    fn from(c: DirectoryCommand) -> Self {
        Command::Directory(c)
    }
}
impl From<ProjectCommand> for Command {
    fn from(c: ProjectCommand) -> Self {
        Command::Project(c)
    }
}
impl From<EnvironmentCommand> for Command {
    fn from(c: EnvironmentCommand) -> Self {
        Command::Environment(c)
    }
}
impl From<IdentityCommand> for Command {
    fn from(c: IdentityCommand) -> Self {
        Command::Identity(c)
    }
}

/// A command as stored inside another record (e.g. a change request's proposed changes): the
/// schema version its JSON form was written with, and that JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCommand {
    pub schema_version: u32,
    pub command: Value,
}

impl StoredCommand {
    pub fn new(command: &Command) -> Result<Self, CodecError> {
        Ok(StoredCommand {
            schema_version: SCHEMA_VERSION,
            command: serde_json::to_value(command).map_err(|e| CodecError(e.to_string()))?,
        })
    }

    /// The command, upgraded from its stored schema version.
    pub fn decode(&self) -> Result<Command, CodecError> {
        let kind = self
            .command
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let value = upcast(kind, self.schema_version, &self.command)?;
        Command::from_json(value).map_err(|e| CodecError(format!("command {kind}: {e}")))
    }
}

/// Brings a stored command's JSON up to [`SCHEMA_VERSION`]: where an old format is upgraded on
/// read (add an arm `("set_feature_state", 1) => ...` and bump the version). A version newer
/// than this code knows is refused instead of being misread.
pub fn upcast(command_type: &str, schema_version: u32, json: &Value) -> Result<Value, CodecError> {
    match (command_type, schema_version) {
        (_, 1) => Ok(json.clone()),
        (_, other) => Err(CodecError(format!(
            "command {command_type} has schema version {other}, which this build of flaglog does not know"
        ))),
    }
}

#[cfg(test)]
mod tests;

//! What a change request would make of each environment it affects, without appending: the
//! proposed commands decided in a [`Workspace`] on the current state, and the states before and
//! after, for the impact preview (`domain::impact`).

use std::collections::BTreeMap;

use domain::access::Review;
use domain::change_request::{ChangeRequest, Scope};
use domain::command::Command;
use domain::environment::Environment;
use domain::identity::{self, IdentityOverrides};
use domain::model::EnvironmentId;
use domain::project::Project;

use crate::Commands;
use crate::change_requests::decode_all;
use crate::error::Result;
use crate::workspace::Workspace;

/// One environment before and after a request.
pub struct Proposed {
    pub environment_id: EnvironmentId,
    pub project_before: Project,
    pub before: Environment,
    pub project_after: Project,
    pub after: Environment,
    /// The overrides after the request of each identity it changes, by identifier.
    pub identity_overrides_after: BTreeMap<String, IdentityOverrides>,
}

impl Commands {
    /// Each environment `request` affects (its environment, or every environment of its
    /// project), before and after its commands. Refused as a commit would refuse them.
    pub async fn proposed(&self, request: &ChangeRequest) -> Result<Vec<Proposed>> {
        let commands = decode_all(request)?;
        let mut workspace = Workspace::new(self);
        workspace
            .apply_each(&commands, Review::ChangeRequest)
            .await?;
        let environments: Vec<EnvironmentId> = match request.scope {
            Some(Scope::Environment(id)) => vec![id],
            Some(Scope::Project(project)) => self
                .directory()
                .await?
                .state
                .environments
                .iter()
                .filter(|(_, (p, _))| *p == project)
                .map(|(id, _)| *id)
                .collect(),
            None => vec![],
        };
        let mut proposed = Vec::new();
        for environment_id in environments {
            let before = self.environment(environment_id).await?.state;
            let project_before = self.project(before.project_id).await?.state;
            let after = workspace
                .environment_state(environment_id)
                .cloned()
                .unwrap_or_else(|| before.clone());
            let project_after = workspace
                .project_state(before.project_id)
                .cloned()
                .unwrap_or_else(|| project_before.clone());
            let references: Vec<String> = commands
                .iter()
                .filter_map(|command| match command {
                    Command::Identity(c) if c.environment_id() == environment_id => {
                        c.identity().reference().map(str::to_string)
                    }
                    _ => None,
                })
                .collect();
            let identifiers = self
                .store()
                .log()
                .identifiers(environment_id, &references)
                .await?;
            let mut identity_overrides_after = BTreeMap::new();
            for (reference, identifier) in identifiers {
                let stream = identity::stream(environment_id, &reference);
                if let Some(state) = workspace.identity_state(&stream) {
                    identity_overrides_after.insert(identifier, state.clone());
                }
            }
            proposed.push(Proposed {
                environment_id,
                project_before,
                before,
                project_after,
                after,
                identity_overrides_after,
            });
        }
        Ok(proposed)
    }
}

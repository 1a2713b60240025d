//! Naming identities on the write side: an identifier given by a client becomes the identity's
//! reference before anything is decided or stored (see `domain::identity`), and an erasure
//! deletes the identifier once the log says the identity is erased.

use domain::command::{Command, IdentityCommand};
use domain::identity::{self, IdentityName, IdentityOverrides};
use domain::log::{Metadata, StreamAppend};
use domain::model::EnvironmentId;

use crate::error::Result;
use crate::handlers::{Commands, Executed};
use crate::secrets;
use crate::store::Loaded;

impl Commands {
    /// The reference of `identifier` in the environment; with `assign`, one is given to an
    /// identifier that has none.
    pub async fn identity_reference(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
        assign: bool,
    ) -> Result<Option<String>> {
        identity::validate_identifier(identifier)?;
        let new = assign.then(secrets::new_identity_reference);
        Ok(self
            .store()
            .log()
            .identity_reference(environment_id, identifier, new.as_deref())
            .await?)
    }

    /// Names every identity in `commands` by its reference: setting an override gives an
    /// identifier seen for the first time its reference; the other commands refuse an identifier
    /// that has none (there is nothing to remove or erase).
    pub(crate) async fn resolve_identities(&self, commands: &mut [Command]) -> Result<()> {
        for command in commands {
            if let Command::Identity(c) = command {
                self.resolve_identity(c).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn resolve_identity(&self, command: &mut IdentityCommand) -> Result<()> {
        let IdentityName::Identifier(identifier) = command.identity() else {
            return Ok(());
        };
        let reference = self
            .identity_reference(
                command.environment_id(),
                identifier,
                command.assigns_reference(),
            )
            .await?
            .ok_or_else(|| domain::Error::not_found("identity", identifier))?;
        *command.identity_mut() = IdentityName::Identity(reference);
        Ok(())
    }

    /// The overrides of the identity `identifier` names (none for an identifier never given
    /// an override).
    pub async fn identity_overrides(
        &self,
        environment_id: EnvironmentId,
        identifier: &str,
    ) -> Result<Loaded<IdentityOverrides>> {
        let reference = self
            .identity_reference(environment_id, identifier, false)
            .await?
            .unwrap_or_default();
        self.store()
            .load(&identity::stream(environment_id, &reference))
            .await
    }

    /// Deletes the identifiers of identities whose erasure was just appended: whichever path
    /// appended it (a direct command, a change request's commit), the identifier goes with it.
    pub(crate) async fn erase_identifiers(&self, erased: &[(EnvironmentId, String)]) -> Result<()> {
        for (environment_id, reference) in erased {
            self.store()
                .log()
                .erase_identifier(*environment_id, reference)
                .await?;
        }
        Ok(())
    }

    /// Erases the identity `identifier` names: appends its erasure (its overrides stop
    /// applying) and deletes its identifier. Repeating an erasure that was interrupted
    /// between the two finishes it.
    pub async fn erase_identity(
        &self,
        metadata: &Metadata,
        environment_id: EnvironmentId,
        identifier: &str,
    ) -> Result<Executed> {
        let reference = self
            .identity_reference(environment_id, identifier, false)
            .await?
            .ok_or_else(|| domain::Error::not_found("identity", identifier))?;
        let command = IdentityCommand::EraseIdentity {
            environment_id,
            identity: IdentityName::Identity(reference.clone()),
        };
        let executed = self.execute(metadata, &command.into()).await?;
        self.erase_identifiers(&[(environment_id, reference)])
            .await?;
        Ok(executed)
    }
}

/// The identities (environment, reference) whose erasure `appends` record.
pub(crate) fn erasures(appends: &[StreamAppend]) -> Vec<(EnvironmentId, String)> {
    appends
        .iter()
        .flat_map(|append| &append.events)
        .filter(|event| event.event_type == ERASED)
        .filter_map(|event| {
            let environment_id = event.payload.get("environment_id")?.as_u64()?;
            let reference = event.payload.get("identity")?.as_str()?;
            Some((environment_id, reference.to_string()))
        })
        .collect()
}

/// The event type of an erasure (`IdentityEvent::IdentityErased`).
const ERASED: &str = "IdentityErased";

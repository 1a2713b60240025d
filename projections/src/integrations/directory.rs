//! The directory as the integration workers follow it: its integrations and environments, kept
//! current from the directory's stream, and the log position each integration was first
//! configured at (it hears of what follows).

use std::collections::HashMap;
use std::sync::Arc;

use domain::aggregate::{Aggregate, DomainEvent};
use domain::directory::{self, Directory, DirectoryEvent};
use domain::integration::catalogue::{self, Family};
use domain::integration::{Integration, IntegrationId};
use domain::log::EventLog;

use crate::Error;

pub struct FollowedDirectory {
    log: Arc<dyn EventLog>,
    pub directory: Directory,
    version: u64,
    configured_at: HashMap<IntegrationId, u64>,
}

impl FollowedDirectory {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        FollowedDirectory {
            log,
            directory: Directory::default(),
            version: 0,
            configured_at: HashMap::new(),
        }
    }

    /// Applies what the directory's stream holds since the last call.
    pub async fn refresh(&mut self) -> Result<(), Error> {
        let events = self
            .log
            .read_stream(directory::STREAM, self.version)
            .await?;
        for record in &events {
            let event = DirectoryEvent::from_recorded(record)?;
            if let DirectoryEvent::IntegrationConfigured { integration } = &event {
                self.configured_at
                    .entry(integration.id)
                    .or_insert(record.position);
            }
            self.directory.apply(&event);
            self.version = record.version;
        }
        Ok(())
    }

    /// The enabled integrations of `family`.
    pub fn enabled(&self, family: Family) -> Vec<Integration> {
        self.directory
            .integrations
            .values()
            .filter(|i| i.enabled)
            .filter(|i| catalogue::kind(&i.kind).is_some_and(|k| k.family == family))
            .cloned()
            .collect()
    }

    /// The log position `id` was first configured at (0 when unknown).
    pub fn configured_at(&self, id: IntegrationId) -> u64 {
        self.configured_at.get(&id).copied().unwrap_or(0)
    }
}

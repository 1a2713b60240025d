//! The directory's integrations: configured, reconfigured and removed as directory events, with
//! ids never reused (a delivery's cursor and dead letters are kept by id).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Directory, DirectoryEvent};
use crate::error::{Error, Result};
use crate::integration::{self, Integration, IntegrationId, IntegrationScope};

impl Directory {
    pub(super) fn apply_integration(&mut self, event: &DirectoryEvent) {
        match event {
            DirectoryEvent::IntegrationConfigured { integration } => {
                self.next_integration_id = self.next_integration_id.max(integration.id + 1);
                self.integrations
                    .insert(integration.id, integration.clone());
            }
            DirectoryEvent::IntegrationRemoved { id } => {
                self.integrations.remove(id);
            }
            _ => {}
        }
    }

    /// Whether `scope` names an organisation, project or environment that exists.
    pub fn require_scope(&self, scope: IntegrationScope) -> Result<()> {
        match scope {
            IntegrationScope::Organisation(id) => self.require_organisation(id),
            IntegrationScope::Project(id) => self.require_project(id).map(|_| ()),
            IntegrationScope::Environment(id) => {
                if self.environments.contains_key(&id) {
                    Ok(())
                } else {
                    Err(Error::not_found("environment", id))
                }
            }
        }
    }

    /// The integration `id`, configured at `scope` (another scope's is not found there).
    pub fn integration_at(
        &self,
        scope: IntegrationScope,
        id: IntegrationId,
    ) -> Result<&Integration> {
        self.integrations
            .get(&id)
            .filter(|i| i.scope == scope)
            .ok_or_else(|| Error::not_found("integration", id))
    }

    /// The organisation `scope` belongs to.
    pub fn organisation_of_scope(&self, scope: IntegrationScope) -> Option<u64> {
        match scope {
            IntegrationScope::Organisation(id) => Some(id),
            IntegrationScope::Project(id) => self.projects.get(&id).copied(),
            IntegrationScope::Environment(id) => self
                .environments
                .get(&id)
                .and_then(|(project, _)| self.projects.get(project).copied()),
        }
    }

    /// Decides configuring a new integration; its id is the next one.
    pub fn create_integration(
        &self,
        scope: IntegrationScope,
        kind: &str,
        config: &Map<String, Value>,
        secrets: &BTreeMap<String, String>,
        enabled: bool,
    ) -> Result<(IntegrationId, Vec<DirectoryEvent>)> {
        self.require_scope(scope)?;
        let spec = integration::kind_named(kind)?;
        integration::validate(spec, scope, config, secrets)?;
        let id = self.next_integration_id.max(1);
        Ok((
            id,
            vec![DirectoryEvent::IntegrationConfigured {
                integration: Integration {
                    id,
                    scope,
                    kind: kind.to_string(),
                    config: config.clone(),
                    secrets: secrets.clone(),
                    enabled,
                },
            }],
        ))
    }

    /// Decides a change of an integration: `config`, when given, replaces the fields that are
    /// not secret; `secrets` replaces the references it names and keeps the others.
    pub fn update_integration(
        &self,
        scope: IntegrationScope,
        id: IntegrationId,
        config: Option<&Map<String, Value>>,
        secrets: &BTreeMap<String, String>,
        enabled: Option<bool>,
    ) -> Result<Vec<DirectoryEvent>> {
        let current = self.integration_at(scope, id)?;
        let mut next = current.clone();
        if let Some(config) = config {
            next.config = config.clone();
        }
        next.secrets.extend(secrets.clone());
        if let Some(enabled) = enabled {
            next.enabled = enabled;
        }
        let spec = integration::kind_named(&next.kind)?;
        integration::validate(spec, scope, &next.config, &next.secrets)?;
        if &next == current {
            return Ok(vec![]);
        }
        Ok(vec![DirectoryEvent::IntegrationConfigured {
            integration: next,
        }])
    }

    pub fn remove_integration(
        &self,
        scope: IntegrationScope,
        id: IntegrationId,
    ) -> Result<Vec<DirectoryEvent>> {
        self.integration_at(scope, id)?;
        Ok(vec![DirectoryEvent::IntegrationRemoved { id }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Aggregate;
    use serde_json::json;

    fn directory() -> Directory {
        let mut d = Directory::default();
        let (org, events) = d.create_organisation("acme").unwrap();
        events.iter().for_each(|e| d.apply(e));
        let (_, events) = d.register_project(org).unwrap();
        events.iter().for_each(|e| d.apply(e));
        d
    }

    fn url(u: &str) -> Map<String, Value> {
        json!({ "url": u }).as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn ids_are_never_reused_and_scopes_are_kept_apart() {
        let mut d = directory();
        let scope = IntegrationScope::Organisation(1);
        let (first, events) = d
            .create_integration(
                scope,
                "webhook",
                &url("https://a.io"),
                &BTreeMap::new(),
                true,
            )
            .unwrap();
        events.iter().for_each(|e| d.apply(e));
        d.remove_integration(scope, first)
            .unwrap()
            .iter()
            .for_each(|e| d.apply(e));
        let (second, _) = d
            .create_integration(
                scope,
                "webhook",
                &url("https://b.io"),
                &BTreeMap::new(),
                true,
            )
            .unwrap();
        assert_eq!((first, second), (1, 2));
        assert!(matches!(
            d.remove_integration(IntegrationScope::Project(1), first),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn an_update_keeps_secrets_it_does_not_name() {
        let mut d = directory();
        let scope = IntegrationScope::Project(1);
        let secrets = BTreeMap::from([("api_key".to_string(), "ref-1".to_string())]);
        let (id, events) = d
            .create_integration(scope, "datadog", &Map::new(), &secrets, true)
            .unwrap();
        events.iter().for_each(|e| d.apply(e));
        let events = d
            .update_integration(scope, id, None, &BTreeMap::new(), Some(false))
            .unwrap();
        events.iter().for_each(|e| d.apply(e));
        let integration = &d.integrations[&id];
        assert!(!integration.enabled);
        assert_eq!(integration.secrets, secrets);
        assert!(
            d.update_integration(scope, id, None, &BTreeMap::new(), Some(false))
                .unwrap()
                .is_empty(),
            "nothing changed, nothing appended"
        );
    }
}

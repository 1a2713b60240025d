//! Integrations: where flaglog sends what happens, configured per organisation, project or
//! environment as the [`catalogue`] allows. The directory holds them (they are rare, and their
//! ids are unique across the installation); each is configured and removed by events like
//! everything else, so the audit history shows who pointed flag changes where.
//!
//! Secrets (API keys, signing secrets) never enter the log: the caller stores each value beside
//! it and the configuration holds only a reference to the stored value ([`Integration::secrets`]),
//! so neither the audit history, an export nor an event feed can show one.

pub mod catalogue;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{EnvironmentId, OrganisationId, ProjectId};
use catalogue::{FieldType, Kind, ScopeKind};

pub type IntegrationId = u64;

/// Where an integration is configured: what it hears of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IntegrationScope {
    Organisation(OrganisationId),
    Project(ProjectId),
    Environment(EnvironmentId),
}

impl IntegrationScope {
    pub fn kind(self) -> ScopeKind {
        match self {
            IntegrationScope::Organisation(_) => ScopeKind::Organisation,
            IntegrationScope::Project(_) => ScopeKind::Project,
            IntegrationScope::Environment(_) => ScopeKind::Environment,
        }
    }
}

/// One configured integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub id: IntegrationId,
    pub scope: IntegrationScope,
    /// A [`catalogue::Kind`]'s key.
    pub kind: String,
    /// The fields that are not secret, as validated.
    pub config: Map<String, Value>,
    /// Secret field → the reference of its value, stored outside the log.
    pub secrets: BTreeMap<String, String>,
    pub enabled: bool,
}

impl Integration {
    /// A field's value, or its default.
    pub fn field(&self, key: &str) -> Option<Value> {
        if let Some(value) = self.config.get(key) {
            return Some(value.clone());
        }
        let field = catalogue::kind(&self.kind)?
            .all_fields()
            .find(|f| f.key == key)?;
        let default = field.default?;
        Some(match field.field_type {
            FieldType::Boolean => Value::Bool(default == "true"),
            FieldType::Integer => default.parse::<u64>().map_or(Value::Null, Value::from),
            FieldType::Url | FieldType::Text => Value::String(default.to_string()),
        })
    }

    pub fn text(&self, key: &str) -> Option<String> {
        match self.field(key)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.field(key), Some(Value::Bool(true)))
    }

    pub fn number(&self, key: &str) -> Option<u64> {
        self.field(key)?.as_u64()
    }
}

/// The kind called `key`, or a refusal naming the field.
pub fn kind_named(key: &str) -> Result<&'static Kind> {
    catalogue::kind(key).ok_or_else(|| {
        Error::invalid(
            "kind",
            format!(
                "no integration {key:?}; the catalogue has {}",
                catalogue::KINDS
                    .iter()
                    .map(|k| k.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

/// Takes the secret fields out of a request's `config` (their values are stored apart), leaving
/// the rest: (secret field, value) in field order. Only string values are secrets; anything
/// else under a secret's name is left for [`validate`] to refuse.
pub fn take_secrets(kind: &Kind, config: &mut Map<String, Value>) -> Vec<(String, String)> {
    let mut taken = Vec::new();
    for field in kind.all_fields().filter(|f| f.secret) {
        if let Some(Value::String(value)) = config.get(field.key) {
            let value = value.clone();
            config.remove(field.key);
            if !value.is_empty() {
                taken.push((field.key.to_string(), value));
            }
        }
    }
    taken
}

/// Checks a configuration of `kind` at `scope`: only the catalogue's fields, each of its type,
/// every required one given (secrets by reference in `secrets`).
pub fn validate(
    kind: &Kind,
    scope: IntegrationScope,
    config: &Map<String, Value>,
    secrets: &BTreeMap<String, String>,
) -> Result<()> {
    if !kind.scopes.contains(&scope.kind()) {
        return Err(Error::invalid(
            "kind",
            format!(
                "{} is configured per {}, not per {}",
                kind.key,
                kind.scopes
                    .iter()
                    .map(scope_name)
                    .collect::<Vec<_>>()
                    .join(" or "),
                scope_name(&scope.kind())
            ),
        ));
    }
    for key in config.keys() {
        let Some(field) = kind.all_fields().find(|f| f.key == key) else {
            return Err(Error::invalid(
                format!("config.{key}"),
                format!(
                    "{} has no such field; it has {}",
                    kind.key,
                    kind.all_fields()
                        .map(|f| f.key)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if field.secret {
            return Err(Error::invalid(
                format!("config.{key}"),
                "a secret must be a non-empty string",
            ));
        }
    }
    for field in kind.all_fields() {
        let path = format!("config.{}", field.key);
        if field.secret {
            if field.required && !secrets.contains_key(field.key) {
                return Err(Error::invalid(path, "is required"));
            }
            continue;
        }
        match config.get(field.key) {
            None | Some(Value::Null) => {
                if field.required {
                    return Err(Error::invalid(path, "is required"));
                }
            }
            Some(value) => check_type(&path, field.field_type, value)?,
        }
    }
    if let Some(unknown) = secrets
        .keys()
        .find(|k| !kind.all_fields().any(|f| f.secret && f.key == k.as_str()))
    {
        return Err(Error::invalid(
            format!("config.{unknown}"),
            format!("{} has no such secret", kind.key),
        ));
    }
    Ok(())
}

fn scope_name(scope: &ScopeKind) -> &'static str {
    match scope {
        ScopeKind::Organisation => "organisation",
        ScopeKind::Project => "project",
        ScopeKind::Environment => "environment",
    }
}

fn check_type(path: &str, field_type: FieldType, value: &Value) -> Result<()> {
    let ok = match field_type {
        FieldType::Boolean => value.is_boolean(),
        FieldType::Integer => value.is_u64(),
        FieldType::Text => value.as_str().is_some_and(|s| s.len() <= 2000),
        FieldType::Url => value.as_str().is_some_and(is_http_url),
    };
    if ok {
        return Ok(());
    }
    Err(Error::invalid(
        path,
        match field_type {
            FieldType::Boolean => "must be true or false",
            FieldType::Integer => "must be a whole number, 0 or more",
            FieldType::Text => "must be a string of at most 2000 characters",
            FieldType::Url => "must be an http:// or https:// URL",
        },
    ))
}

fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && text.len() <= 2000 && !text.chars().any(char::is_whitespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn secrets_are_taken_out_of_the_config() {
        let kind = kind_named("webhook").unwrap();
        let mut c = config(json!({"url": "http://127.0.0.1:9/hook", "secret": "s3"}));
        let taken = take_secrets(kind, &mut c);
        assert_eq!(taken, vec![("secret".to_string(), "s3".to_string())]);
        assert_eq!(c, config(json!({"url": "http://127.0.0.1:9/hook"})));
    }

    #[test]
    fn a_valid_webhook_passes_and_bad_fields_are_named() {
        let kind = kind_named("webhook").unwrap();
        let scope = IntegrationScope::Environment(1);
        let none = BTreeMap::new();
        validate(
            kind,
            scope,
            &config(json!({"url": "https://x.io/h"})),
            &none,
        )
        .unwrap();
        let refused = |c: Value, scope| match validate(kind, scope, &config(c), &none) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(refused(json!({}), scope), "config.url");
        assert_eq!(refused(json!({"url": "ftp://x"}), scope), "config.url");
        assert_eq!(
            refused(json!({"url": "https://x.io", "colour": 1}), scope),
            "config.colour"
        );
        assert_eq!(
            refused(json!({"url": "https://x.io", "max_attempts": -1}), scope),
            "config.max_attempts"
        );
        assert_eq!(
            refused(json!({"url": "https://x.io"}), IntegrationScope::Project(1)),
            "kind"
        );
    }

    #[test]
    fn required_secrets_must_be_referenced() {
        let kind = kind_named("datadog").unwrap();
        let scope = IntegrationScope::Project(1);
        let c = config(json!({}));
        assert!(matches!(
            validate(kind, scope, &c, &BTreeMap::new()),
            Err(Error::Invalid { field, .. }) if field == "config.api_key"
        ));
        let secrets = BTreeMap::from([("api_key".to_string(), "ref".to_string())]);
        validate(kind, scope, &c, &secrets).unwrap();
    }

    #[test]
    fn defaults_fill_absent_fields() {
        let integration = Integration {
            id: 1,
            scope: IntegrationScope::Project(1),
            kind: "datadog".into(),
            config: Map::new(),
            secrets: BTreeMap::new(),
            enabled: true,
        };
        assert_eq!(
            integration.text("base_url").as_deref(),
            Some("https://api.datadoghq.com")
        );
        assert!(integration.flag("use_custom_source"));
        assert_eq!(integration.number("max_attempts"), Some(10));
    }
}

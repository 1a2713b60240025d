//! The integrations flaglog can send to, with the fields each is configured with: what
//! `GET /api/v1/integrations/catalogue` lists and what a configuration is validated against.
//! Keys and field names follow Flagsmith's catalogue (its `integration_data`), so a form made for
//! one fills the other; a field marked `secret` is write-only (its value never leaves the server).

use serde::Serialize;

/// What an integration is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Changes to flags and segments, from the log, in order, at least once.
    Changes,
    /// The flags served to each identity, from the identities endpoint, best effort.
    Identities,
}

/// Where an integration of a kind may be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Organisation,
    Project,
    Environment,
}

/// How a field's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// An `http://` or `https://` URL.
    Url,
    Text,
    Boolean,
    /// A whole number ≥ 0.
    Integer,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub required: bool,
    /// Write-only: stored outside the log, never answered, never logged.
    pub secret: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<&'static str>,
    /// Suggested values (a `Url` field's regions); others are accepted too.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub options: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Kind {
    pub key: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub tags: &'static [&'static str],
    pub family: Family,
    pub scopes: &'static [ScopeKind],
    pub fields: &'static [Field],
}

const fn field(key: &'static str, label: &'static str, field_type: FieldType) -> Field {
    Field {
        key,
        label,
        field_type,
        required: true,
        secret: false,
        default: None,
        options: &[],
    }
}

const fn secret(key: &'static str, label: &'static str) -> Field {
    Field {
        secret: true,
        ..field(key, label, FieldType::Text)
    }
}

const fn optional(field: Field) -> Field {
    Field {
        required: false,
        ..field
    }
}

const fn url(key: &'static str, label: &'static str, options: &'static [&'static str]) -> Field {
    Field {
        default: if options.is_empty() {
            None
        } else {
            Some(options[0])
        },
        required: options.is_empty(),
        options,
        ..field(key, label, FieldType::Url)
    }
}

/// Fields every change integration has: how its delivery retries before a message becomes a
/// dead letter.
pub const DELIVERY_FIELDS: [Field; 4] = [
    Field {
        default: Some("10"),
        ..optional(field(
            "max_attempts",
            "Attempts before a message is a dead letter",
            FieldType::Integer,
        ))
    },
    Field {
        default: Some("86400"),
        ..optional(field(
            "max_age_seconds",
            "Seconds of retrying before a message is a dead letter",
            FieldType::Integer,
        ))
    },
    Field {
        default: Some("1000"),
        ..optional(field(
            "retry_initial_ms",
            "First wait before a retry (milliseconds; doubles each time)",
            FieldType::Integer,
        ))
    },
    Field {
        default: Some("300000"),
        ..optional(field(
            "retry_max_ms",
            "Longest wait between retries (milliseconds)",
            FieldType::Integer,
        ))
    },
];

const ANALYTICS: &[&str] = &["analytics"];
const MONITORING: &[&str] = &["logs"];
const ENVIRONMENT: &[ScopeKind] = &[ScopeKind::Environment];
const PROJECT: &[ScopeKind] = &[ScopeKind::Project];

pub const KINDS: &[Kind] = &[
    Kind {
        key: "webhook",
        title: "Webhook",
        description: "Sends every flag change (and, for an organisation, every audit record) \
                      to your own endpoint, signed, in order, at least once.",
        tags: &["webhook"],
        family: Family::Changes,
        scopes: &[ScopeKind::Environment, ScopeKind::Organisation],
        fields: &[
            field("url", "URL", FieldType::Url),
            optional(secret("secret", "Secret")),
            optional(field(
                "creation_event",
                "Send FLAG_CREATED for new flags (Flagsmith sends FLAG_UPDATED)",
                FieldType::Boolean,
            )),
        ],
    },
    Kind {
        key: "datadog",
        title: "Datadog",
        description: "Sends events to Datadog for when flags are created, updated and removed.",
        tags: MONITORING,
        family: Family::Changes,
        scopes: PROJECT,
        fields: &[
            url(
                "base_url",
                "Base URL",
                &[
                    "https://api.datadoghq.com",
                    "https://api.us3.datadoghq.com",
                    "https://api.us5.datadoghq.com",
                    "https://api.datadoghq.eu",
                    "https://api.ddog-gov.com",
                    "https://api.ap1.datadoghq.com",
                ],
            ),
            secret("api_key", "API Key"),
            Field {
                default: Some("true"),
                ..optional(field(
                    "use_custom_source",
                    "Use Custom Source",
                    FieldType::Boolean,
                ))
            },
        ],
    },
    Kind {
        key: "dynatrace",
        title: "Dynatrace",
        description: "Sends events to Dynatrace for when flags are created, updated and removed.",
        tags: MONITORING,
        family: Family::Changes,
        scopes: ENVIRONMENT,
        fields: &[
            url("base_url", "Base URL", &[]),
            secret("api_key", "API Key"),
            optional(field("entity_selector", "Entity Selector", FieldType::Text)),
        ],
    },
    Kind {
        key: "new-relic",
        title: "New Relic",
        description: "Sends deployment markers to New Relic for when flags are created, updated \
                      and removed.",
        tags: MONITORING,
        family: Family::Changes,
        scopes: PROJECT,
        fields: &[
            url(
                "base_url",
                "New Relic Base URL",
                &["https://api.newrelic.com/", "https://api.eu.newrelic.com/"],
            ),
            secret("api_key", "API Key"),
            field("app_id", "Application ID", FieldType::Text),
        ],
    },
    Kind {
        key: "slack",
        title: "Slack",
        description: "Posts a message to a Slack channel for when flags are created, updated \
                      and removed.",
        tags: &["messaging"],
        family: Family::Changes,
        scopes: &[ScopeKind::Environment, ScopeKind::Project],
        fields: &[
            secret("api_token", "Bot token"),
            field("channel_id", "Channel ID", FieldType::Text),
            url("base_url", "Slack API URL", &["https://slack.com/api/"]),
        ],
    },
    Kind {
        key: "amplitude",
        title: "Amplitude",
        description: "Sends data on what flags served to each identity.",
        tags: ANALYTICS,
        family: Family::Identities,
        scopes: ENVIRONMENT,
        fields: &[
            secret("api_key", "API Key"),
            url(
                "base_url",
                "Base URL",
                &["https://api2.amplitude.com", "https://api.eu.amplitude.com"],
            ),
        ],
    },
    Kind {
        key: "segment",
        title: "Segment",
        description: "Sends data on what flags served to each identity.",
        tags: ANALYTICS,
        family: Family::Identities,
        scopes: ENVIRONMENT,
        fields: &[
            secret("api_key", "API Key"),
            url(
                "base_url",
                "Base URL",
                &[
                    "https://api.segment.io/",
                    "https://events.eu1.segmentapis.com/",
                ],
            ),
        ],
    },
    Kind {
        key: "mixpanel",
        title: "Mixpanel",
        description: "Sends data on what flags served to each identity.",
        tags: ANALYTICS,
        family: Family::Identities,
        scopes: ENVIRONMENT,
        fields: &[
            secret("api_key", "Project Token"),
            url(
                "base_url",
                "Base URL",
                &[
                    "https://api.mixpanel.com",
                    "https://api-eu.mixpanel.com",
                    "https://api-in.mixpanel.com",
                ],
            ),
        ],
    },
    Kind {
        key: "heap",
        title: "Heap Analytics",
        description: "Sends data on what flags served to each identity.",
        tags: ANALYTICS,
        family: Family::Identities,
        scopes: ENVIRONMENT,
        fields: &[
            secret("api_key", "API Key"),
            url(
                "base_url",
                "Base URL",
                &["https://heapanalytics.com", "https://c.eu.heap-api.com"],
            ),
        ],
    },
    Kind {
        key: "rudderstack",
        title: "Rudderstack",
        description: "Sends data on what flags served to each identity.",
        tags: ANALYTICS,
        family: Family::Identities,
        scopes: ENVIRONMENT,
        fields: &[
            url("base_url", "Rudderstack Data Plane URL", &[]),
            secret("api_key", "API Key"),
        ],
    },
    Kind {
        key: "identity-webhook",
        title: "Identity webhook",
        description: "Sends data on what flags served to each identity to your own endpoint, \
                      signed (Flagsmith's catalogue calls it `webhook`).",
        tags: ANALYTICS,
        family: Family::Identities,
        scopes: ENVIRONMENT,
        fields: &[
            field("url", "URL", FieldType::Url),
            optional(secret("secret", "Secret")),
        ],
    },
];

/// The kind called `key`.
pub fn kind(key: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.key == key)
}

impl Kind {
    /// Every field of this kind: its own, then (for change integrations) the delivery's.
    pub fn all_fields(&self) -> impl Iterator<Item = &'static Field> + use<> {
        let delivery: &'static [Field] = match self.family {
            Family::Changes => &DELIVERY_FIELDS,
            Family::Identities => &[],
        };
        self.fields.iter().chain(delivery)
    }
}

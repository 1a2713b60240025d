//! What each change integration is sent for one audit row: zero or more messages, each an HTTP
//! request in the receiver's own format with its own authentication. Pure: the delivery renders
//! a message again for every attempt (a fresh `webhook-timestamp`), from the row, the
//! integration's configuration and its secrets, so nothing secret is ever stored with a
//! message, and a dead letter is replayed by rendering it again.
//!
//! Formats (see `reference/flagsmith/integrations.md`): Flagsmith's environment and
//! organisation webhooks (`FLAG_UPDATED` / `FLAG_DELETED` with `new_state` and
//! `previous_state`, `AUDIT_LOG_CREATED`), with `FLAG_CREATED` for a new flag when the webhook
//! opts in; Datadog's events API; Dynatrace's events ingest; New Relic's deployment markers;
//! Slack's `chat.postMessage`. Where Flagsmith puts a vendor key in the query string, flaglog
//! sends the vendor's documented header instead (URLs end up in logs).

use std::collections::HashMap;

use bytes::Bytes;
use domain::audit::{FlagChange, FlagChangeKind};
use domain::integration::{Integration, IntegrationScope};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::wire;
use crate::audit_history::AuditRow;
use crate::identity_names::ERASED;

/// One HTTP request to send (always a POST).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Which message of the row's this is: stable, so a dead letter names it.
    pub key: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// How the receiver's answer says it took the message.
    pub answer: Answer,
}

/// How a receiver says it took a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx status.
    Status,
    /// Slack: 200 with `{"ok": true}` (it answers failures with 200 and `"ok": false`).
    SlackOk,
    /// Mixpanel with `Accept: text/plain`: 200 with the body `1` (`0` on a refusal).
    One,
}

/// The secret values of an integration, by field.
pub type Secrets = HashMap<String, String>;

/// The messages `integration` gets for `row` (identities already named in it), unsigned: each
/// attempt [`sign`]s one at its own time. An integration that hears nothing of the row gets
/// none.
pub fn messages(integration: &Integration, row: &AuditRow, secrets: &Secrets) -> Vec<Message> {
    let flags: Vec<FlagChange> = row
        .detail
        .get("flags")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default();
    match integration.kind.as_str() {
        "webhook" => webhook(integration, row, &flags),
        kind => vendor(kind, integration, row, &flags, secrets)
            .into_iter()
            .collect(),
    }
}

/// `2021-06-18T07:50:26.595298Z`, as Flagsmith's webhooks write times.
fn flagsmith_time(micros: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

pub(super) fn message(key: impl Into<String>, url: String, body: Vec<u8>) -> Message {
    Message {
        key: key.into(),
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
        answer: Answer::Status,
    }
}

/// Flagsmith's feature-state object with the identity named, unless it was erased.
fn state(value: &Option<Value>, change: &FlagChange, row: &AuditRow) -> Value {
    let Some(mut state) = value.clone() else {
        return Value::Null;
    };
    if change.identity.is_some() {
        let named = row.identity.as_deref().filter(|i| *i != ERASED);
        state["identity_identifier"] = json!(named);
    }
    state
}

fn webhook(integration: &Integration, row: &AuditRow, flags: &[FlagChange]) -> Vec<Message> {
    let Some(url) = integration.text("url") else {
        return vec![];
    };
    let creation_event = integration.flag("creation_event");
    let mut out = Vec::new();
    for (index, change) in flags.iter().enumerate() {
        if let IntegrationScope::Environment(id) = integration.scope
            && change.environment_id != id
        {
            continue;
        }
        let event_type = match change.kind {
            FlagChangeKind::Created if creation_event => "FLAG_CREATED",
            FlagChangeKind::Created | FlagChangeKind::Updated => "FLAG_UPDATED",
            FlagChangeKind::Deleted => "FLAG_DELETED",
        };
        let mut data = json!({
            "changed_by": row.actor_name,
            "timestamp": flagsmith_time(row.recorded_at_micros),
            "new_state": state(&change.new_state, change, row),
        });
        if change.previous_state.is_some() {
            data["previous_state"] = state(&change.previous_state, change, row);
        }
        let body = json!({"data": data, "event_type": event_type});
        out.push(message(
            format!("flag-{index}"),
            url.clone(),
            wire::python_json(&body),
        ));
    }
    if matches!(integration.scope, IntegrationScope::Organisation(_))
        && (row.project_id.is_some() || row.environment_id.is_some())
    {
        let author = row
            .actor
            .strip_prefix("user:")
            .and_then(|id| id.parse::<u64>().ok())
            .map(|id| json!({"id": id, "email": row.actor_name}));
        let environment_name = flags
            .iter()
            .find(|c| Some(c.environment_id) == row.environment_id)
            .map(|c| c.environment_name.clone());
        let data = json!({
            "id": row.position,
            "created_date": flagsmith_time(row.recorded_at_micros),
            "log": row.summary,
            "author": author,
            "environment": row.environment_id.map(|id| json!({"id": id, "name": environment_name})),
            "project": row.project_id.map(|id| json!({"id": id, "organisation": row.organisation_id})),
            "related_object_id": row.feature_id.or(row.segment_id).or(row.change_request_id),
            "related_object_uuid": Value::Null,
            "related_object_type": related_object_type(row),
            "is_system_event": !row.actor.starts_with("user:"),
        });
        let body = json!({"data": data, "event_type": "AUDIT_LOG_CREATED"});
        out.push(message("audit", url, wire::python_json(&body)));
    }
    out
}

fn related_object_type(row: &AuditRow) -> &'static str {
    let stream = row.stream_id.as_str();
    if stream.starts_with("change-request-") {
        "CHANGE_REQUEST"
    } else if stream.starts_with("identity-") {
        "EDGE_IDENTITY"
    } else if row.segment_id.is_some() && row.feature_id.is_none() {
        "SEGMENT"
    } else if stream.starts_with("environment-") && row.feature_id.is_some() {
        "FEATURE_STATE"
    } else if row.feature_id.is_some() {
        "FEATURE"
    } else if row.environment_id.is_some() {
        "ENVIRONMENT"
    } else {
        "PROJECT"
    }
}

/// Whether a row is a flag or segment change (what monitoring and chat integrations hear of).
/// Unlike Flagsmith, identity overrides count too (its issue #7983).
fn is_flag_change(row: &AuditRow, flags: &[FlagChange]) -> bool {
    !flags.is_empty()
        || (row.stream_id.starts_with("project-")
            && (row.feature_id.is_some() || row.segment_id.is_some()))
}

/// `base` and `path` with exactly one `/` between them.
/// The name of the segment a row changed, as it stood after (or, removed, before) the change.
fn segment_name(row: &AuditRow) -> Option<String> {
    ["after", "before"]
        .iter()
        .find_map(|side| row.detail.get(side)?.get("name")?.as_str())
        .map(str::to_owned)
}

pub(super) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

fn vendor(
    kind: &str,
    integration: &Integration,
    row: &AuditRow,
    flags: &[FlagChange],
    secrets: &Secrets,
) -> Option<Message> {
    if !is_flag_change(row, flags) {
        return None;
    }
    let environment = flags
        .iter()
        .find(|c| Some(c.environment_id) == row.environment_id)
        .map_or("unknown", |c| c.environment_name.as_str());
    let text = format!("{} by user {}", row.summary, row.actor_name);
    let base = integration.text("base_url")?;
    let key = secrets.get("api_key").cloned().unwrap_or_default();
    let mut out = match kind {
        "datadog" => {
            let mut body = json!({
                "title": "flaglog feature flag event",
                "text": text,
                "tags": [format!("env:{environment}")],
            });
            if integration.flag("use_custom_source") {
                body["source_type_name"] = json!("flaglog");
            }
            let mut m = message(
                "event",
                join(&base, "api/v1/events"),
                body.to_string().into_bytes(),
            );
            m.headers.push(("dd-api-key".into(), key));
            m
        }
        "dynatrace" => {
            let deployment = match (flags.first(), row.segment_id) {
                (Some(change), _) => {
                    format!("flaglog Deployment - Flag Changed: {}", change.feature_name)
                }
                (None, Some(segment)) => format!(
                    "flaglog Deployment - Segment Changed: {}",
                    segment_name(row).unwrap_or_else(|| segment.to_string())
                ),
                (None, None) => "Deployment".to_string(),
            };
            let mut body = json!({
                "title": "flaglog flag change.",
                "eventType": "CUSTOM_DEPLOYMENT",
                "properties": {
                    "event": text,
                    "environment": environment,
                    "dt.event.deployment.name": deployment,
                },
            });
            if let Some(selector) = integration
                .text("entity_selector")
                .filter(|s| !s.is_empty())
            {
                body["entitySelector"] = json!(selector);
            }
            let mut m = message(
                "event",
                join(&base, "api/v2/events/ingest"),
                body.to_string().into_bytes(),
            );
            m.headers
                .push(("authorization".into(), format!("Api-Token {key}")));
            m
        }
        "new-relic" => {
            let app = integration.text("app_id")?;
            let body = json!({"deployment": {
                "revision": format!("env:{environment}"),
                "changelog": text,
                "description": "flaglog feature flag event",
                "user": row.actor_name,
            }});
            let url = join(&base, &format!("v2/applications/{app}/deployments.json"));
            let mut m = message("event", url, body.to_string().into_bytes());
            m.headers.push(("api-key".into(), key));
            m
        }
        "slack" => {
            let token = secrets.get("api_token").cloned().unwrap_or_default();
            let body = json!({
                "channel": integration.text("channel_id")?,
                "text": row.summary,
                "blocks": [
                    {"type": "section", "text": {"type": "plain_text", "text": row.summary}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": format!("*Environment:*\n{environment}")},
                        {"type": "mrkdwn", "text": format!("*User:*\n{}", row.actor_name)},
                    ]},
                ],
            });
            let mut m = message(
                "event",
                join(&base, "chat.postMessage"),
                body.to_string().into_bytes(),
            );
            m.headers
                .push(("authorization".into(), format!("Bearer {token}")));
            m.answer = Answer::SlackOk;
            m
        }
        _ => return None,
    };
    out.headers.push((
        "idempotency-key".into(),
        format!("{}-{}", row.position, out.key),
    ));
    Some(out)
}

/// `message` as attempted at `now`: for a webhook, with the event's position as an
/// idempotency key (the same on every attempt), a fresh `webhook-timestamp` and, with a secret,
/// both signatures; any other kind as it is.
pub fn sign(
    integration: &Integration,
    row: &AuditRow,
    secrets: &Secrets,
    message: &Message,
    now: OffsetDateTime,
) -> Message {
    let mut message = message.clone();
    if integration.kind != "webhook" {
        return message;
    }
    let id = format!("msg_{}_{}", row.position, message.key);
    let timestamp = now.unix_timestamp();
    message.headers.extend([
        ("x-flaglog-position".to_string(), row.position.to_string()),
        (
            "idempotency-key".to_string(),
            format!("{}-{}", row.position, message.key),
        ),
        ("webhook-id".to_string(), id.clone()),
        ("webhook-timestamp".to_string(), timestamp.to_string()),
    ]);
    if let Some(secret) = secrets.get("secret").filter(|s| !s.is_empty()) {
        message.headers.extend([
            (
                "x-flagsmith-signature".to_string(),
                wire::flagsmith_signature(secret, &message.body),
            ),
            (
                "webhook-signature".to_string(),
                wire::standard_signature(secret, &id, timestamp, &message.body),
            ),
        ]);
    }
    message
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn dynatrace_names_a_changed_segment_by_its_name() {
        let integration = Integration {
            id: 1,
            scope: IntegrationScope::Environment(3),
            kind: "dynatrace".to_string(),
            config: json!({"base_url": "https://dt.example/"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            secrets: BTreeMap::new(),
            enabled: true,
        };
        let row = |detail: Value| AuditRow {
            position: 7,
            recorded_at_micros: 0,
            stream_id: "project-1".to_string(),
            event_type: "SegmentUpdated".to_string(),
            actor: "user:1".to_string(),
            actor_name: "alice@example.com".to_string(),
            organisation_id: Some(1),
            project_id: Some(1),
            environment_id: Some(3),
            feature_id: None,
            segment_id: Some(12),
            identity: None,
            change_request_id: None,
            summary: "alice updated segment beta".to_string(),
            detail,
        };
        let deployment = |row: &AuditRow| {
            let message = messages(&integration, row, &Secrets::new()).remove(0);
            let body: Value = serde_json::from_slice(&message.body).unwrap();
            body["properties"]["dt.event.deployment.name"].clone()
        };
        assert_eq!(
            deployment(&row(
                json!({"before": {"name": "old"}, "after": {"name": "beta"}})
            )),
            "flaglog Deployment - Segment Changed: beta"
        );
        // Removed: the name it had.
        assert_eq!(
            deployment(&row(json!({"before": {"name": "gone"}, "after": null}))),
            "flaglog Deployment - Segment Changed: gone"
        );
    }
}

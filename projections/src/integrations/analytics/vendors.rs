//! The requests each identity integration gets for a batch of served identities: pure, so every
//! vendor's format is checked without a network. Formats follow
//! `reference/flagsmith/integrations.md` (what Flagsmith sends, what each vendor documents):
//!
//! - Amplitude: `POST {base}/identify`, form `api_key` and `identification` (a JSON array of
//!   `{user_id, user_properties}`); Identify has no de-duplication key (its `$set` is
//!   idempotent).
//! - Segment and Rudderstack: `POST {base}/v1/batch`, Basic auth with the write key, identify
//!   messages whose `messageId` is the served identity's id (the vendors de-duplicate on it).
//! - Mixpanel: `POST {base}/engage`, profile `$set` updates with `$ip: "0"` and `$time` (last
//!   write wins, so a repeat is harmless), answered `1` when taken.
//! - Heap: `POST {base}/api/track`, the bulk form (`events`), each with `idempotency_key`.
//! - The identity webhook: one signed request per identity (Flagsmith's body, no envelope), its
//!   id as `idempotency-key` and `webhook-id`.
//!
//! Flags are sent as a map of feature name to value: the value when the flag is enabled and has
//! one, otherwise whether it is enabled. Mixpanel and Rudderstack take "has one" as Python's
//! truthiness, the others as "is not null", as Flagsmith does.

use std::sync::Arc;

use base64::Engine;
use domain::evaluation::is_truthy;
use domain::integration::Integration;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::ServedIdentity;
use crate::integrations::render::{Answer, Message, Secrets, join, message};
use crate::integrations::wire;

/// Identities one request carries at most (the identity webhook: one).
pub const MAX_BATCH: usize = 100;
/// A request body's size at most, below the smallest vendor limit (Segment's 500 KB).
pub const MAX_BODY_BYTES: usize = 400_000;
/// The event Heap records.
pub const HEAP_EVENT: &str = "Flagsmith Feature Flags";

/// A served identity as queued: with its id, which every attempt and every vendor uses.
#[derive(Debug)]
pub struct Queued {
    pub id: Uuid,
    pub served: ServedIdentity,
}

/// One request, and how many identities it carries.
#[derive(Debug)]
pub struct Request {
    pub message: Message,
    pub identities: u64,
}

/// How many identities a request of `kind` carries at most.
pub fn batch_limit(kind: &str) -> usize {
    if kind == "identity-webhook" {
        1
    } else {
        MAX_BATCH
    }
}

/// The requests `integration` gets for `batch`, at `now`; none for a kind that is not an
/// identity integration, or without the field it needs.
pub fn requests(
    integration: &Integration,
    secrets: &Secrets,
    batch: &[Arc<Queued>],
    now: OffsetDateTime,
) -> Vec<Request> {
    let key = secrets.get("api_key").cloned().unwrap_or_default();
    let base = |default: &str| {
        integration
            .text("base_url")
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    match integration.kind.as_str() {
        "amplitude" => {
            let url = join(&base("https://api2.amplitude.com"), "identify");
            let elements = batch.iter().map(|q| {
                json!({"user_id": q.served.identifier, "user_properties": properties(&q.served, false)})
            });
            packed(elements)
                .into_iter()
                .map(|(identification, identities)| {
                    let body = serde_urlencoded::to_string([
                        ("api_key", key.as_str()),
                        ("identification", &Value::Array(identification).to_string()),
                    ])
                    .unwrap_or_default();
                    let mut m = message("identify", url.clone(), body.into_bytes());
                    m.headers = vec![(
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    )];
                    Request {
                        message: m,
                        identities,
                    }
                })
                .collect()
        }
        "segment" | "rudderstack" => {
            let rudderstack = integration.kind == "rudderstack";
            let base = if rudderstack {
                match integration.text("base_url") {
                    Some(url) if !url.is_empty() => url,
                    _ => return Vec::new(),
                }
            } else {
                base("https://api.segment.io/")
            };
            let url = join(&base, "v1/batch");
            let auth = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
            );
            let elements = batch.iter().map(|q| {
                let mut m = json!({
                    "type": "identify",
                    "userId": q.served.identifier,
                    "anonymousId": null,
                    "traits": properties(&q.served, rudderstack),
                    "messageId": q.id.to_string(),
                    "timestamp": iso_millis(q.served.served_at),
                    "context": {"library": {"name": "flaglog", "version": env!("CARGO_PKG_VERSION")}},
                    "integrations": {},
                });
                if rudderstack {
                    m["integrations"] = json!({"All": true});
                    m["channel"] = json!("server");
                }
                m
            });
            packed(elements)
                .into_iter()
                .map(|(messages, identities)| {
                    let body = json!({"batch": messages, "sentAt": iso_millis(now)});
                    let mut m = message("batch", url.clone(), body.to_string().into_bytes());
                    m.headers.push(("authorization".into(), auth.clone()));
                    Request {
                        message: m,
                        identities,
                    }
                })
                .collect()
        }
        "mixpanel" => {
            let url = join(&base("https://api.mixpanel.com"), "engage");
            let elements = batch.iter().map(|q| {
                json!({
                    "$token": key,
                    "$distinct_id": q.served.identifier,
                    "$set": properties(&q.served, true),
                    "$ip": "0",
                    "$time": millis(q.served.served_at),
                })
            });
            packed(elements)
                .into_iter()
                .map(|(updates, identities)| {
                    let mut m = message(
                        "engage",
                        url.clone(),
                        Value::Array(updates).to_string().into_bytes(),
                    );
                    m.headers.extend([
                        ("accept".into(), "text/plain".into()),
                        ("x-mixpanel-integration-id".into(), "flagsmith".into()),
                    ]);
                    m.answer = Answer::One;
                    Request {
                        message: m,
                        identities,
                    }
                })
                .collect()
        }
        "heap" => {
            let url = join(&base("https://heapanalytics.com"), "api/track");
            let elements = batch.iter().map(|q| {
                json!({
                    "identity": q.served.identifier,
                    "event": HEAP_EVENT,
                    "properties": properties(&q.served, false),
                    "timestamp": iso_millis(q.served.served_at),
                    "idempotency_key": q.id.to_string(),
                })
            });
            packed(elements)
                .into_iter()
                .map(|(events, identities)| {
                    let body = json!({"app_id": key, "events": events});
                    Request {
                        message: message("track", url.clone(), body.to_string().into_bytes()),
                        identities,
                    }
                })
                .collect()
        }
        "identity-webhook" => {
            let Some(url) = integration.text("url").filter(|u| !u.is_empty()) else {
                return Vec::new();
            };
            let secret = secrets.get("secret").filter(|s| !s.is_empty());
            batch
                .iter()
                .map(|q| Request {
                    message: webhook(&url, secret.map(String::as_str), q, now),
                    identities: 1,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The flags as a map of feature name to what the vendor records: the value when the flag is
/// enabled and has one (`truthy`: a value Python calls true), otherwise whether it is enabled.
fn properties(served: &ServedIdentity, truthy: bool) -> Map<String, Value> {
    served
        .flags
        .iter()
        .map(|flag| {
            let has_value = if truthy {
                is_truthy(&flag.value)
            } else {
                !flag.value.is_null()
            };
            let recorded = if flag.enabled && has_value {
                flag.value.clone()
            } else {
                Value::Bool(flag.enabled)
            };
            (flag.name.clone(), recorded)
        })
        .collect()
}

/// `elements` packed into arrays of at most [`MAX_BATCH`] whose JSON stays under
/// [`MAX_BODY_BYTES`] (an element alone over it still goes, alone), each with its length.
fn packed(elements: impl Iterator<Item = Value>) -> Vec<(Vec<Value>, u64)> {
    let mut packs: Vec<(Vec<Value>, u64)> = Vec::new();
    let mut bytes = 0;
    for element in elements {
        let size = element.to_string().len() + 1;
        match packs.last_mut() {
            Some((pack, count)) if pack.len() < MAX_BATCH && bytes + size <= MAX_BODY_BYTES => {
                pack.push(element);
                *count += 1;
                bytes += size;
            }
            _ => {
                packs.push((vec![element], 1));
                bytes = size;
            }
        }
    }
    packs
}

/// Flagsmith's identity webhook body for one identity, signed as its other webhooks are (both
/// schemes), with the identity's id as its idempotency key.
fn webhook(url: &str, secret: Option<&str>, queued: &Queued, now: OffsetDateTime) -> Message {
    let served = &queued.served;
    let flags: Vec<Value> = served
        .flags
        .iter()
        .map(|f| {
            json!({
                "id": f.feature_id,
                "enabled": f.enabled,
                "environment": served.environment_id,
                "identity": null,
                "feature_segment": null,
                "feature_state_value": f.value,
                "feature": {"id": f.feature_id, "name": f.name, "type": f.feature_type},
            })
        })
        .collect();
    let body = wire::python_json(&json!({
        "identity": served.identifier,
        "traits": served.traits.iter().map(|(k, v)| json!({"trait_key": k, "trait_value": v})).collect::<Vec<_>>(),
        "flags": flags,
        "segments": served.segments.iter().map(|(id, name)| json!({"id": id, "name": name, "member": true})).collect::<Vec<_>>(),
    }));
    let id = format!("msg_{}", queued.id.simple());
    let timestamp = now.unix_timestamp();
    let mut m = message("identity", url.to_string(), Vec::new());
    m.headers.extend([
        ("idempotency-key".to_string(), queued.id.to_string()),
        ("webhook-id".to_string(), id.clone()),
        ("webhook-timestamp".to_string(), timestamp.to_string()),
    ]);
    if let Some(secret) = secret {
        m.headers.extend([
            (
                "x-flagsmith-signature".to_string(),
                wire::flagsmith_signature(secret, &body),
            ),
            (
                "webhook-signature".to_string(),
                wire::standard_signature(secret, &id, timestamp, &body),
            ),
        ]);
    }
    m.body = body;
    m
}

/// `2026-12-06T20:50:00.123Z`.
fn iso_millis(at: OffsetDateTime) -> String {
    let at = at
        .replace_nanosecond(at.millisecond() as u32 * 1_000_000)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

fn millis(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests;

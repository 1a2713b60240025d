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
use domain::integration::Integration;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{ServedContext, ServedIdentity};
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

/// Whether requests of `kind` hold the identity's traits and segments besides its flags.
pub fn sends_traits_and_segments(kind: &str) -> bool {
    kind == "identity-webhook"
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
    let key = secrets.get("api_key").map_or("", String::as_str);
    let base = |default: &str| {
        integration
            .text("base_url")
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let request = |key: &str, url: &str, body: Vec<u8>, identities: u64| Request {
        message: message(key, url.to_string(), body),
        identities,
    };
    match integration.kind.as_str() {
        "amplitude" => {
            let url = join(&base("https://api2.amplitude.com"), "identify");
            packed("", "", batch, |q, out| {
                Object::open(out)
                    .string("user_id", &q.served.identifier)
                    .properties("user_properties", &q.served, false)
                    .close();
            })
            .into_iter()
            .map(|(identification, identities)| {
                let identification = String::from_utf8_lossy(&identification);
                let body = serde_urlencoded::to_string([
                    ("api_key", key),
                    ("identification", &identification),
                ])
                .unwrap_or_default();
                let mut r = request("identify", &url, body.into_bytes(), identities);
                r.message.headers = vec![(
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                )];
                r
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
            let library =
                json!({"library": {"name": "flaglog", "version": env!("CARGO_PKG_VERSION")}})
                    .to_string();
            let (destinations, channel) = if rudderstack {
                ("{\"All\":true}", Some("\"server\""))
            } else {
                ("{}", None)
            };
            let tail = format!(",\"sentAt\":{}}}", Value::from(iso_millis(now)));
            packed("{\"batch\":", &tail, batch, |q, out| {
                let message = Object::open(out)
                    .raw("type", "\"identify\"")
                    .string("userId", &q.served.identifier)
                    .raw("anonymousId", "null")
                    .properties("traits", &q.served, rudderstack)
                    .uuid("messageId", q.id)
                    .string("timestamp", &iso_millis(q.served.served_at))
                    .raw("context", &library)
                    .raw("integrations", destinations);
                match channel {
                    Some(channel) => message.raw("channel", channel).close(),
                    None => message.close(),
                }
            })
            .into_iter()
            .map(|(body, identities)| {
                let mut r = request("batch", &url, body, identities);
                r.message
                    .headers
                    .push(("authorization".into(), auth.clone()));
                r
            })
            .collect()
        }
        "mixpanel" => {
            let url = join(&base("https://api.mixpanel.com"), "engage");
            packed("", "", batch, |q, out| {
                Object::open(out)
                    .string("$token", key)
                    .string("$distinct_id", &q.served.identifier)
                    .properties("$set", &q.served, true)
                    .raw("$ip", "\"0\"")
                    .number("$time", millis(q.served.served_at))
                    .close();
            })
            .into_iter()
            .map(|(updates, identities)| {
                let mut r = request("engage", &url, updates, identities);
                r.message.headers.extend([
                    ("accept".into(), "text/plain".into()),
                    ("x-mixpanel-integration-id".into(), "flagsmith".into()),
                ]);
                r.message.answer = Answer::One;
                r
            })
            .collect()
        }
        "heap" => {
            let url = join(&base("https://heapanalytics.com"), "api/track");
            let head = format!("{{\"app_id\":{},\"events\":", Value::from(key));
            packed(&head, "}", batch, |q, out| {
                Object::open(out)
                    .string("identity", &q.served.identifier)
                    .string("event", HEAP_EVENT)
                    .properties("properties", &q.served, false)
                    .string("timestamp", &iso_millis(q.served.served_at))
                    .uuid("idempotency_key", q.id)
                    .close();
            })
            .into_iter()
            .map(|(body, identities)| request("track", &url, body, identities))
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

/// A JSON object written field by field into a request body: keys are this module's own (no
/// escaping needed), values JSON already, strings to escape, or an identity's properties.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// `key` with `json`, a value written as JSON already.
    fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
        self
    }

    /// `key` with `value` as a JSON string.
    fn string(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        write_json(self.out, value);
        self
    }

    fn number(mut self, key: &str, value: i64) -> Self {
        self.key(key);
        write_json(self.out, &value);
        self
    }

    fn uuid(mut self, key: &str, id: Uuid) -> Self {
        self.key(key);
        let mut text = Uuid::encode_buffer();
        self.out.push(b'"');
        self.out
            .extend_from_slice(id.hyphenated().encode_lower(&mut text).as_bytes());
        self.out.push(b'"');
        self
    }

    /// `key` with the flags as a JSON object of feature name to what the vendor records
    /// ([`ServedIdentity::write_properties`]).
    fn properties(mut self, key: &str, served: &ServedIdentity, truthy: bool) -> Self {
        self.key(key);
        served.write_properties(self.out, truthy);
        self
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Appends `value` as JSON (strings, numbers and JSON values always serialise).
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

/// Request bodies for `batch`: each `head`, a JSON array of at most [`MAX_BATCH`] elements
/// (`write` writes one), then `tail`, under [`MAX_BODY_BYTES`] (an element alone over it still
/// goes, alone); each with how many it holds. Elements are written in place.
fn packed(
    head: &str,
    tail: &str,
    batch: &[Arc<Queued>],
    mut write: impl FnMut(&Queued, &mut Vec<u8>),
) -> Vec<(Vec<u8>, u64)> {
    let mut bodies = Vec::new();
    let mut body = Vec::new();
    let mut count = 0u64;
    let finish = |mut body: Vec<u8>, count: u64, bodies: &mut Vec<(Vec<u8>, u64)>| {
        body.push(b']');
        body.extend_from_slice(tail.as_bytes());
        bodies.push((body, count));
    };
    for (i, queued) in batch.iter().enumerate() {
        let start = if count == 0 {
            body.extend_from_slice(head.as_bytes());
            body.push(b'[');
            body.len()
        } else {
            body.push(b',');
            body.len() - 1
        };
        write(queued, &mut body);
        count += 1;
        if count == 1 {
            // Room for the rest of this body, if they are all about this size.
            let size = body.len() - start + 1;
            let rest = (batch.len() - i - 1).min(MAX_BATCH - 1);
            body.reserve((size * rest).min(MAX_BODY_BYTES) + tail.len() + 1);
        }
        if count > 1 && body.len() + tail.len() + 1 > MAX_BODY_BYTES {
            // It does not fit: it opens the next body.
            let element = body.split_off(start + 1);
            body.truncate(start);
            finish(std::mem::take(&mut body), count - 1, &mut bodies);
            body.extend_from_slice(head.as_bytes());
            body.push(b'[');
            body.extend_from_slice(&element);
            count = 1;
        }
        if count as usize == MAX_BATCH {
            finish(std::mem::take(&mut body), count, &mut bodies);
            count = 0;
        }
    }
    if count > 0 {
        finish(body, count, &mut bodies);
    }
    bodies
}

/// Flagsmith's identity webhook body for one identity, signed as its other webhooks are (both
/// schemes), with the identity's id as its idempotency key.
fn webhook(url: &str, secret: Option<&str>, queued: &Queued, now: OffsetDateTime) -> Message {
    let served = &queued.served;
    // The worker hands the webhook only identities served with their context.
    let none = ServedContext::default();
    let context = served.context.as_ref().unwrap_or(&none);
    let flags: Vec<Value> = served
        .flags()
        .map(|flag| {
            let feature = flag.feature;
            json!({
                "id": feature.id,
                "enabled": flag.enabled,
                "environment": served.environment_id,
                "identity": null,
                "feature_segment": null,
                "feature_state_value": flag.value(),
                "feature": {"id": feature.id, "name": feature.name, "type": feature.feature_type},
            })
        })
        .collect();
    let body = wire::python_json(&json!({
        "identity": served.identifier,
        "traits": context.traits.iter().map(|(k, v)| json!({"trait_key": k, "trait_value": v})).collect::<Vec<_>>(),
        "flags": flags,
        "segments": context.segments.iter().map(|(id, name)| json!({"id": id, "name": name, "member": true})).collect::<Vec<_>>(),
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
    m.body = body.into();
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

use std::collections::BTreeMap;

use domain::integration::IntegrationScope;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;
use crate::integrations::analytics::{ServedContext, ServedFeature};
use domain::document::ChangedFlags;

fn integration(kind: &str, config: Value) -> Integration {
    Integration {
        id: 7,
        scope: IntegrationScope::Environment(3),
        kind: kind.to_string(),
        config: config.as_object().cloned().unwrap_or_default(),
        secrets: BTreeMap::new(),
        enabled: true,
    }
}

/// An identity served `flags` from features named as they are: even ones in their own state,
/// odd ones changed (their own state is another value).
fn served_with(identifier: &str, flags: &[(&str, bool, Value)]) -> ServedIdentity {
    let features: Vec<ServedFeature> = flags
        .iter()
        .enumerate()
        .map(|(i, (name, enabled, value))| {
            let own = if i % 2 == 0 {
                (*enabled, value.clone())
            } else {
                (!enabled, json!("other"))
            };
            ServedFeature::new(
                100 + i as i64,
                name.to_string(),
                "STANDARD".to_string(),
                Some(own),
            )
        })
        .collect();
    ServedIdentity {
        environment_id: 3,
        identifier: identifier.to_string(),
        context: Some(ServedContext {
            traits: vec![("plan".to_string(), json!("pro"))],
            segments: vec![(12, "beta".to_string())],
        }),
        features: Arc::new(features.into_iter().collect()),
        hide_disabled: false,
        changed: {
            let mut changed = ChangedFlags::default();
            for (feature, (_, enabled, value)) in flags.iter().enumerate() {
                if feature % 2 == 1 {
                    changed.push(feature, *enabled, value);
                }
            }
            changed
        },
        served_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
    }
}

fn queued(identifier: &str) -> Arc<Queued> {
    queued_with(identifier, &[])
}

/// An identity served four flags (`zero`: 0, `off`: disabled, `plain`: no value, `colour`),
/// and `more`.
fn queued_with(identifier: &str, more: &[(&str, bool, Value)]) -> Arc<Queued> {
    let mut flags = vec![
        ("zero", true, json!(0)),
        ("off", false, json!("x")),
        ("plain", true, Value::Null),
        ("colour", true, json!("blue")),
    ];
    flags.extend(more.iter().cloned());
    Arc::new(Queued {
        id: Uuid::new_v4(),
        served: served_with(identifier, &flags),
    })
}

fn secrets(pairs: &[(&str, &str)]) -> Secrets {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_100).unwrap()
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn json_body(message: &Message) -> Value {
    serde_json::from_slice(&message.body).unwrap()
}

#[test]
fn amplitude_identifies_in_a_form_with_values_that_are_not_null() {
    let batch = [queued("alice"), queued("bob")];
    let sent = requests(
        &integration("amplitude", json!({"base_url": "http://127.0.0.1:9/amp/"})),
        &secrets(&[("api_key", "amp-key")]),
        &batch,
        now(),
    );
    assert_eq!(sent.len(), 1);
    let m = &sent[0].message;
    assert_eq!(sent[0].identities, 2);
    assert_eq!(m.url, "http://127.0.0.1:9/amp/identify");
    assert_eq!(
        header(m, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&m.body).unwrap();
    assert_eq!(form["api_key"], "amp-key");
    let identification: Value = serde_json::from_str(&form["identification"]).unwrap();
    assert_eq!(
        identification[0],
        json!({"user_id": "alice", "user_properties":
            {"zero": 0, "off": false, "plain": true, "colour": "blue"}})
    );
    assert_eq!(identification[1]["user_id"], "bob");
}

#[test]
fn segment_batches_identifies_under_basic_auth_with_stable_message_ids() {
    let batch = [queued("alice"), queued("bob"), queued("carol")];
    let segment = integration("segment", json!({}));
    let first = requests(&segment, &secrets(&[("api_key", "wk")]), &batch, now());
    let again = requests(&segment, &secrets(&[("api_key", "wk")]), &batch, now());
    assert_eq!(first.len(), 1);
    let m = &first[0].message;
    assert_eq!(m.url, "https://api.segment.io/v1/batch");
    // "wk:" in base64: the write key as user name, no password.
    assert_eq!(header(m, "authorization"), Some("Basic d2s6"));
    let body = json_body(m);
    let messages = body["batch"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0]["type"], "identify");
    assert_eq!(messages[0]["userId"], "alice");
    assert_eq!(messages[0]["messageId"], batch[0].id.to_string());
    assert_eq!(messages[0]["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(
        messages[0]["traits"],
        json!({"zero": 0, "off": false, "plain": true, "colour": "blue"})
    );
    // A retry carries the same ids: the vendor de-duplicates on them.
    assert_eq!(json_body(&again[0].message)["batch"], body["batch"]);
}

#[test]
fn rudderstack_needs_its_data_plane_and_takes_values_python_calls_true() {
    let batch = [queued("alice")];
    let keys = secrets(&[("api_key", "rk")]);
    assert!(requests(&integration("rudderstack", json!({})), &keys, &batch, now()).is_empty());
    let sent = requests(
        &integration("rudderstack", json!({"base_url": "http://127.0.0.1:9"})),
        &keys,
        &batch,
        now(),
    );
    let m = &sent[0].message;
    assert_eq!(m.url, "http://127.0.0.1:9/v1/batch");
    let message = &json_body(m)["batch"][0];
    assert_eq!(message["integrations"], json!({"All": true}));
    assert_eq!(
        message["traits"],
        json!({"zero": true, "off": false, "plain": true, "colour": "blue"})
    );
}

#[test]
fn mixpanel_sets_profiles_and_reads_its_answer() {
    let sent = requests(
        &integration("mixpanel", json!({})),
        &secrets(&[("api_key", "token")]),
        &[queued("alice")],
        now(),
    );
    let m = &sent[0].message;
    assert_eq!(m.url, "https://api.mixpanel.com/engage");
    assert_eq!(m.answer, Answer::One);
    assert_eq!(header(m, "accept"), Some("text/plain"));
    assert_eq!(header(m, "x-mixpanel-integration-id"), Some("flagsmith"));
    assert_eq!(
        json_body(m),
        json!([{"$token": "token", "$distinct_id": "alice", "$ip": "0", "$time": 1_700_000_000_000i64,
            "$set": {"zero": true, "off": false, "plain": true, "colour": "blue"}}])
    );
}

#[test]
fn heap_tracks_in_bulk_with_idempotency_keys() {
    let batch = [queued("alice"), queued("bob")];
    let sent = requests(
        &integration("heap", json!({"base_url": "https://c.eu.heap-api.com"})),
        &secrets(&[("api_key", "app")]),
        &batch,
        now(),
    );
    let m = &sent[0].message;
    assert_eq!(m.url, "https://c.eu.heap-api.com/api/track");
    let body = json_body(m);
    assert_eq!(body["app_id"], "app");
    assert_eq!(body["events"][1]["identity"], "bob");
    assert_eq!(body["events"][1]["event"], HEAP_EVENT);
    assert_eq!(
        body["events"][1]["idempotency_key"],
        batch[1].id.to_string()
    );
}

#[test]
fn the_identity_webhook_sends_one_signed_request_per_identity() {
    let batch = [queued("alice"), queued("bob")];
    let sent = requests(
        &integration(
            "identity-webhook",
            json!({"url": "http://127.0.0.1:9/hook"}),
        ),
        &secrets(&[("secret", "shh")]),
        &batch,
        now(),
    );
    assert_eq!(sent.len(), 2);
    let m = &sent[1].message;
    assert_eq!(
        header(m, "idempotency-key"),
        Some(batch[1].id.to_string().as_str())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(b"shh").unwrap();
    mac.update(&m.body);
    assert_eq!(
        header(m, "x-flagsmith-signature"),
        Some(hex::encode(mac.finalize().into_bytes()).as_str())
    );
    let body = json_body(m);
    assert_eq!(body["identity"], "bob");
    assert_eq!(
        body["traits"],
        json!([{"trait_key": "plan", "trait_value": "pro"}])
    );
    assert_eq!(
        body["segments"],
        json!([{"id": 12, "name": "beta", "member": true}])
    );
    assert_eq!(body["flags"][3]["feature"]["name"], "colour");
    assert_eq!(body["flags"][3]["feature_state_value"], "blue");
    // Keys sorted, Python's separators: the bytes Flagsmith's receivers verify.
    assert!(m.body.starts_with(b"{\"flags\": [{\"enabled\": true, "));
}

#[test]
fn batches_hold_at_most_the_limit_and_stay_under_the_body_size() {
    let many: Vec<Arc<Queued>> = (0..250).map(|i| queued(&format!("user-{i}"))).collect();
    let sent = requests(
        &integration("segment", json!({})),
        &Secrets::new(),
        &many,
        now(),
    );
    let sizes: Vec<u64> = sent.iter().map(|r| r.identities).collect();
    assert_eq!(sizes, vec![100, 100, 50]);

    let big = "x".repeat(150_000);
    let large: Vec<Arc<Queued>> = (0..5)
        .map(|i| queued_with(&format!("user-{i}"), &[("big", true, json!(big))]))
        .collect();
    let sent = requests(
        &integration("heap", json!({})),
        &Secrets::new(),
        &large,
        now(),
    );
    assert_eq!(sent.iter().map(|r| r.identities).sum::<u64>(), 5);
    for r in &sent {
        assert!(
            r.message.body.len() <= MAX_BODY_BYTES + 100,
            "{}",
            r.message.body.len()
        );
    }
    assert_eq!(sent.len(), 3);
}

#[test]
fn hidden_disabled_flags_are_left_out() {
    let mut q = Arc::into_inner(queued("alice")).unwrap();
    q.served.hide_disabled = true;
    let sent = requests(
        &integration("segment", json!({})),
        &Secrets::new(),
        &[Arc::new(q)],
        now(),
    );
    assert_eq!(
        json_body(&sent[0].message)["batch"][0]["traits"],
        json!({"zero": 0, "plain": true, "colour": "blue"})
    );
}

#[test]
fn change_integrations_get_nothing_here() {
    assert!(
        requests(
            &integration("datadog", json!({})),
            &Secrets::new(),
            &[queued("a")],
            now()
        )
        .is_empty()
    );
}

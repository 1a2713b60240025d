//! Identity analytics end to end: the identities endpoints' answers reach Amplitude, Segment,
//! Mixpanel, Heap, Rudderstack and the identity webhook (a loopback receiver behind each base
//! URL) in each vendor's format, batched, each identity under its own de-duplication id; a
//! receiver that cannot keep up makes the bounded queue drop and count, and nothing served is
//! unaccounted for.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use flaglog_tests::receiver::{Received, Receiver};
use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::{Value, json};

use super::{SECRET, assert_signed, project_with_environment};

const KEY: &str = "analytics-env";

/// Every analytics kind on environment [`KEY`], each under its own path of `receiver`.
const KINDS: [(&str, &str); 6] = [
    ("amplitude", "/amp/identify"),
    ("segment", "/seg/v1/batch"),
    ("mixpanel", "/mp/engage"),
    ("heap", "/heap/api/track"),
    ("rudderstack", "/rs/v1/batch"),
    ("identity-webhook", "/hook"),
];

fn config(kind: &str, base: &str) -> Value {
    match kind {
        "amplitude" => json!({"base_url": format!("{base}/amp"), "api_key": "amp-key-9"}),
        "segment" => json!({"base_url": format!("{base}/seg/"), "api_key": "seg-key-9"}),
        "mixpanel" => json!({"base_url": format!("{base}/mp"), "api_key": "mp-token-9"}),
        "heap" => json!({"base_url": format!("{base}/heap"), "api_key": "heap-app-9"}),
        "rudderstack" => json!({"base_url": format!("{base}/rs"), "api_key": "rs-key-9"}),
        _ => json!({"url": format!("{base}/hook"), "secret": SECRET}),
    }
}

async fn configure(server: &Server, kind: &str, base: &str) -> u64 {
    server
        .post(
            &format!("/api/v1/environments/{KEY}/integrations/"),
            json!({"kind": kind, "config": config(kind, base)}),
        )
        .send()
        .await
        .expect_status(201)
        .u64("id")
}

/// Asks for `identifier`'s flags as an SDK does (GET, or POST with traits).
async fn identify(server: &Server, identifier: &str, traits: Option<Value>) -> Value {
    let call = match traits {
        None => server.get(&format!("/api/v1/identities/?identifier={identifier}")),
        Some(traits) => server.post(
            "/api/v1/identities/",
            json!({"identifier": identifier, "traits": traits}),
        ),
    };
    call.without_token()
        .header("x-environment-key", KEY)
        .send()
        .await
        .expect_status(200)
        .body
}

/// Identifies `warmup-N` until every path in `paths` received one: from then on the node's
/// worker knows the integrations. Returns how many identities it took.
async fn warm_up(server: &Server, receiver: &Receiver, paths: &[&str]) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        n += 1;
        // Until the environment is projected, its key is not known yet (401).
        server
            .get(&format!("/api/v1/identities/?identifier=warmup-{n}"))
            .without_token()
            .header("x-environment-key", KEY)
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let received = receiver.delivered();
        if paths.iter().all(|p| received.iter().any(|r| r.path == *p)) {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the analytics integrations got nothing in 30 s"
        );
    }
}

fn to<'a>(received: &'a [Received], path: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.path == path).collect()
}

/// Segment's and Rudderstack's messages for `identifier`, over every batch.
fn messages_for(received: &[Received], path: &str, identifier: &str) -> Vec<Value> {
    to(received, path)
        .iter()
        .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["userId"] == identifier)
        .collect()
}

async fn status(server: &Server, id: u64) -> Value {
    server
        .get(&format!(
            "/api/v1/environments/{KEY}/integrations/{id}/status"
        ))
        .send()
        .await
        .expect_status(200)
        .body
}

async fn every_analytics_vendor_gets_the_served_flags_in_its_format(backend: Backend) {
    let server = Server::start(backend).await;
    let (project, environment) = project_with_environment(&server, KEY).await;
    let mut features = Vec::new();
    for (name, value) in [("checkout", json!("v2")), ("zero", json!(0))] {
        let feature = server.feature(project, json!({"name": name})).await;
        server
            .put(
                &format!("/api/v1/environments/{KEY}/featurestates/{feature}/"),
                json!({"enabled": true, "feature_state_value": value}),
            )
            .send()
            .await
            .expect_status(200);
        features.push(feature);
    }
    // Identities on the pro plan get checkout v3: they differ from the environment there.
    let pros = server
        .segment(
            project,
            json!({"name": "pros", "rules": [{"type": "ALL", "conditions": [
                {"operator": "EQUAL", "property_": "plan", "value": "pro"}]}]}),
        )
        .await;
    server
        .put(
            &format!(
                "/api/v1/environments/{KEY}/segment-overrides/{}/{pros}/",
                features[0]
            ),
            json!({"priority": 1, "enabled": true, "feature_state_value": "v3"}),
        )
        .send()
        .await
        .expect_status(204);
    let receiver = Receiver::start().await;
    // Mixpanel's answer when it took the updates; the others read the status alone.
    receiver.answer_with("1");
    let mut ids = BTreeMap::new();
    for (kind, _) in KINDS {
        ids.insert(kind, configure(&server, kind, &receiver.base).await);
    }
    let paths: Vec<&str> = KINDS.iter().map(|(_, p)| *p).collect();
    let warmups = warm_up(&server, &receiver, &paths).await;

    identify(&server, "alice", None).await;
    identify(&server, "bob", None).await;
    let carol = identify(
        &server,
        "carol",
        Some(json!([{"trait_key": "plan", "trait_value": "pro"}])),
    )
    .await;
    assert_eq!(carol["identifier"], "carol");
    let people = ["alice", "bob", "carol"];
    let received = receiver
        .until("every vendor heard of alice, bob and carol", |d| {
            people.iter().all(|who| {
                !messages_for(d, "/seg/v1/batch", who).is_empty()
                    && !messages_for(d, "/rs/v1/batch", who).is_empty()
                    && to(d, "/hook").iter().any(|r| r.json()["identity"] == *who)
                    && to(d, "/heap/api/track").iter().any(|r| {
                        r.json()["events"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|e| e["identity"] == *who)
                    })
                    && to(d, "/mp/engage").iter().any(|r| {
                        r.json()
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|u| u["$distinct_id"] == *who)
                    })
                    && to(d, "/amp/identify").iter().any(|r| {
                        let form: BTreeMap<String, String> =
                            serde_urlencoded::from_bytes(&r.body).unwrap();
                        form["identification"].contains(&format!("\"{who}\""))
                    })
            })
        })
        .await;

    // Segment: Basic auth with the write key, identify messages with the served flags.
    let segment = to(&received, "/seg/v1/batch");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("seg-key-9:")
    );
    assert!(
        segment
            .iter()
            .all(|r| r.header("authorization") == Some(basic.as_str()))
    );
    let alice = &messages_for(&received, "/seg/v1/batch", "alice")[0];
    assert_eq!(alice["type"], "identify");
    assert_eq!(alice["traits"], json!({"checkout": "v2", "zero": 0}));
    // Rudderstack counts 0 as no value, as Flagsmith does: the flag is recorded as enabled.
    let rudder = &messages_for(&received, "/rs/v1/batch", "alice")[0];
    assert_eq!(rudder["traits"], json!({"checkout": "v2", "zero": true}));
    // Carol is on the pro plan: her checkout is the segment's.
    let carol_segment = &messages_for(&received, "/seg/v1/batch", "carol")[0];
    assert_eq!(
        carol_segment["traits"],
        json!({"checkout": "v3", "zero": 0})
    );
    // Each served identity has its own id: every message id differs.
    let message_ids: Vec<String> = segment
        .iter()
        .flat_map(|r| r.json()["batch"].as_array().cloned().unwrap())
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect();
    let distinct: BTreeSet<&String> = message_ids.iter().collect();
    assert_eq!(distinct.len(), message_ids.len(), "{message_ids:?}");

    // Amplitude: the key in the form, user properties per identity.
    let amplitude = to(&received, "/amp/identify");
    let form: BTreeMap<String, String> = serde_urlencoded::from_bytes(&amplitude[0].body).unwrap();
    assert_eq!(form["api_key"], "amp-key-9");
    assert_eq!(
        amplitude[0].header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    // Mixpanel: the token in each update, Flagsmith's integration id header.
    let mixpanel = to(&received, "/mp/engage");
    assert_eq!(mixpanel[0].json()[0]["$token"], "mp-token-9");
    assert_eq!(mixpanel[0].json()[0]["$ip"], "0");
    assert_eq!(
        mixpanel[0].header("x-mixpanel-integration-id"),
        Some("flagsmith")
    );
    // Heap: the app id, one event per identity, each with an idempotency key.
    let heap = to(&received, "/heap/api/track");
    assert_eq!(heap[0].json()["app_id"], "heap-app-9");
    assert!(heap[0].json()["events"][0]["idempotency_key"].is_string());
    // The identity webhook: signed both ways, Flagsmith's body with the stored traits.
    let hooks = to(&received, "/hook");
    let carol_hook = hooks
        .iter()
        .find(|r| r.json()["identity"] == "carol")
        .unwrap();
    assert_signed(carol_hook, SECRET);
    let body = carol_hook.json();
    assert_eq!(
        body["traits"],
        json!([{"trait_key": "plan", "trait_value": "pro"}])
    );
    assert_eq!(body["flags"][0]["environment"], environment);
    assert_eq!(body["flags"][0]["feature_state_value"], "v3");
    assert_eq!(
        body["segments"],
        json!([{"id": pros, "name": "pros", "member": true}])
    );
    assert!(carol_hook.header("idempotency-key").is_some());

    // The status counts what went out: the warm-up identities after the worker knew the
    // integration, and the three.
    let segment_id = ids["segment"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = status(&server, segment_id).await;
        let sent = status["delivered"].as_u64().unwrap();
        if sent >= 4 {
            assert!(sent <= warmups + 3, "{status}");
            assert_eq!(status["dropped"], 0, "{status}");
            assert_eq!(status["failed"], 0, "{status}");
            assert!(status["last_delivered_at"].is_string(), "{status}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The key appears in no answer.
    let listed = server
        .get(&format!("/api/v1/environments/{KEY}/integrations/"))
        .send()
        .await
        .expect_status(200);
    assert!(!listed.text.contains("seg-key-9") && !listed.text.contains("amp-key-9"));
}

/// A node run with `options`, environment [`KEY`] with one feature, and a `kind` integration
/// sending to the returned receiver (its id last).
async fn node_with_integration(
    backend: Backend,
    options: api::NodeOptions,
    kind: &str,
) -> (Server, Receiver, u64) {
    let (server, _) = Server::start_with_options(backend, options).await;
    let (project, _) = project_with_environment(&server, KEY).await;
    server.feature(project, json!({"name": "checkout"})).await;
    let receiver = Receiver::start().await;
    let id = configure(&server, kind, &receiver.base).await;
    (server, receiver, id)
}

async fn a_full_queue_drops_and_counts_every_identity_served(backend: Backend) {
    let options = api::NodeOptions {
        analytics_queue: 2,
        ..flaglog_tests::test_node()
    };
    let (server, receiver, heap) = node_with_integration(backend, options, "heap").await;
    let warmups = warm_up(&server, &receiver, &["/heap/api/track"]).await;

    // The receiver now refuses everything: a batch takes its attempts and their waits, while
    // 40 more identities are served.
    receiver.fail_always(503);
    identify(&server, "first", None).await;
    // The first batch is now being attempted (its waits are longer than this).
    tokio::time::sleep(vendors_fill_wait() + Duration::from_millis(50)).await;
    let served = 41;
    for n in 1..served {
        identify(&server, &format!("user-{n}"), None).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = status(&server, heap).await;
        let count = |field: &str| status[field].as_u64().unwrap();
        let accounted = count("delivered") + count("dropped") + count("failed");
        // Every identity served after the warm-up is sent, dropped or failed; none vanish.
        if accounted > served {
            assert!(accounted <= served + warmups, "{status}");
            assert!(count("dropped") > 0, "a queue of 2 overflowed: {status}");
            assert!(count("failed") > 0, "{status}");
            assert!(
                status["last_error"].as_str().unwrap().contains("503"),
                "{status}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node that counts as saturated (it sheds from a busy share of 0) sends nothing: every
/// identity served is dropped and counted, before anything is noted for it.
async fn a_saturated_node_drops_and_counts_instead_of_sending(backend: Backend) {
    let options = api::NodeOptions {
        analytics_shed_above: 0.0,
        ..flaglog_tests::test_node()
    };
    let (server, receiver, segment) = node_with_integration(backend, options, "segment").await;
    let dropped = |status: &Value| status["dropped"].as_u64().unwrap();
    // Until the worker knows the integration, identities are not counted at all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    let before = loop {
        n += 1;
        server
            .get(&format!("/api/v1/identities/?identifier=warmup-{n}"))
            .without_token()
            .header("x-environment-key", KEY)
            .send()
            .await;
        let status = status(&server, segment).await;
        if dropped(&status) > 0 {
            break dropped(&status);
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let served = 20;
    for n in 0..served {
        identify(&server, &format!("user-{n}"), None).await;
    }
    loop {
        let status = status(&server, segment).await;
        if dropped(&status) >= before + served {
            assert_eq!(status["delivered"], 0, "{status}");
            assert_eq!(status["failed"], 0, "{status}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(vendors_fill_wait() * 3).await;
    assert!(receiver.delivered().is_empty(), "a saturated node sent");
}

/// How often the analytics worker takes what was served.
fn vendors_fill_wait() -> Duration {
    projections::integrations::analytics::worker::TAKE_EVERY
}

on_both_backends!(
    every_analytics_vendor_gets_the_served_flags_in_its_format,
    a_full_queue_drops_and_counts_every_identity_served,
    a_saturated_node_drops_and_counts_instead_of_sending,
);

//! Integration delivery end to end, against real HTTP receivers on loopback: webhooks signed
//! both ways and delivered in log order after a receiver that failed for a while recovers
//! (duplicates only under one idempotency key), dead letters and their replay, each vendor's
//! request shape and auth header, and secrets in no answer and nowhere in the log.

mod analytics;
mod feed;
mod isolation;
mod network;
mod vendors;

use base64::Engine;
use flaglog_tests::receiver::{Received, Receiver};
use flaglog_tests::{Backend, Server, on_both_backends};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "s3cret-webhook-key-4Vq9";

/// A project `p` with environment `key` and a feature `banner`; the project's id.
async fn project_with_environment(server: &Server, key: &str) -> (u64, u64) {
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, key).await;
    let environment = server
        .get(&format!("/api/v1/environments/{key}/"))
        .send()
        .await
        .expect_status(200)
        .u64("id");
    (project, environment)
}

/// Fast retries, so failures pass within a test.
fn fast(mut config: Value, max_attempts: u64) -> Value {
    config["retry_initial_ms"] = json!(20);
    config["retry_max_ms"] = json!(100);
    config["max_attempts"] = json!(max_attempts);
    config
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Checks both signatures as a receiver holding `secret` would, over the raw body.
fn assert_signed(request: &Received, secret: &str) {
    let flagsmith: String = hmac_sha256(secret.as_bytes(), &request.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        request.header("x-flagsmith-signature"),
        Some(flagsmith.as_str())
    );
    let id = request.header("webhook-id").expect("webhook-id");
    let timestamp = request
        .header("webhook-timestamp")
        .expect("webhook-timestamp");
    let signed = [
        id.as_bytes(),
        b".",
        timestamp.as_bytes(),
        b".",
        &request.body,
    ]
    .concat();
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret.as_bytes(), &signed))
    );
    assert_eq!(request.header("webhook-signature"), Some(expected.as_str()));
}

fn position(request: &Received) -> u64 {
    request
        .header("x-flaglog-position")
        .and_then(|p| p.parse().ok())
        .expect("a position")
}

async fn a_webhook_gets_every_flag_change_in_order_signed_after_its_receiver_recovers(
    backend: Backend,
) {
    let server = Server::start(backend).await;
    let (project, _) = project_with_environment(&server, "hook-env").await;
    let receiver = Receiver::start().await;
    receiver.fail_next(4, 500);
    let created = server
        .post(
            "/api/v1/environments/hook-env/integrations/",
            json!({"kind": "webhook", "config": fast(json!({"url": format!("{}/hook", receiver.base), "secret": SECRET}), 50)}),
        )
        .send()
        .await
        .expect_status(201);
    assert_eq!(created.body["secrets_set"], json!(["secret"]));
    assert!(!created.text.contains(SECRET), "{}", created.text);
    let integration = created.u64("id");

    let feature = server
        .feature(project, json!({"name": "banner", "default_enabled": false}))
        .await;
    for value in ["one", "two", "three"] {
        server
            .put(
                &format!("/api/v1/environments/hook-env/featurestates/{feature}/"),
                json!({"enabled": true, "feature_state_value": value}),
            )
            .send()
            .await
            .expect_status(200);
    }
    server
        .delete(&format!("/api/v1/projects/{project}/features/{feature}/"))
        .send()
        .await
        .expect_status(204);

    let delivered = receiver
        .until("the creation, three updates and the deletion", |d| {
            d.len() >= 5
        })
        .await;
    let kinds: Vec<String> = delivered
        .iter()
        .map(|r| r.json()["event_type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "FLAG_UPDATED",
            "FLAG_UPDATED",
            "FLAG_UPDATED",
            "FLAG_UPDATED",
            "FLAG_DELETED"
        ],
        "Flagsmith's types: a creation is FLAG_UPDATED without previous_state"
    );
    let positions: Vec<u64> = delivered.iter().map(position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "log order: {positions:?}"
    );
    let values: Vec<Value> = delivered[1..4]
        .iter()
        .map(|r| r.json()["data"]["new_state"]["feature_state_value"].clone())
        .collect();
    assert_eq!(values, [json!("one"), json!("two"), json!("three")]);
    let first = delivered[0].json();
    assert!(first["data"].get("previous_state").is_none(), "{first}");
    assert_eq!(first["data"]["new_state"]["feature"]["name"], "banner");
    assert_eq!(
        first["data"]["new_state"]["environment"]["name"],
        "env hook-env"
    );
    assert_eq!(first["data"]["changed_by"], "admin@example.com");
    let second = delivered[1].json();
    assert_eq!(second["data"]["previous_state"]["enabled"], false);
    assert_eq!(second["data"]["new_state"]["enabled"], true);
    let deleted = delivered[4].json();
    assert_eq!(deleted["data"]["new_state"], Value::Null);
    assert_eq!(
        deleted["data"]["previous_state"]["feature_state_value"],
        "three"
    );
    for request in &delivered {
        assert_signed(request, SECRET);
        assert_eq!(request.path, "/hook");
        // Python's json.dumps(sort_keys=True) separators, as Flagsmith's receivers expect.
        assert!(String::from_utf8_lossy(&request.body).starts_with(r#"{"data": {"#));
    }

    // The failures were retried: every request after the four 500s, each retry under the key
    // its first attempt had.
    let received = receiver.received();
    assert_eq!(received.iter().filter(|r| r.answered == 500).count(), 4);
    for failed in received.iter().filter(|r| r.answered == 500) {
        let key = failed.header("idempotency-key");
        assert!(
            delivered.iter().any(|d| d.header("idempotency-key") == key),
            "a failed message was delivered later under the same key"
        );
    }
    let keys: std::collections::BTreeSet<_> = delivered
        .iter()
        .map(|r| r.header("idempotency-key"))
        .collect();
    assert_eq!(keys.len(), delivered.len(), "each message delivered once");

    // The cursor is saved once a batch is through.
    let mut status = None;
    for _ in 0..250 {
        let reply = server
            .get(&format!(
                "/api/v1/environments/hook-env/integrations/{integration}/status"
            ))
            .send()
            .await
            .expect_status(200);
        if reply.u64("delivered") == 5 {
            status = Some(reply);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = status.expect("the status counts five deliveries");
    assert_eq!(status.u64("delivered"), 5, "{}", status.text);
    assert_eq!(status.u64("consecutive_failures"), 0);
    assert!(
        status.body["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("500")
    );

    // The secret is in no answer and nowhere in the log.
    for path in [
        "/api/v1/environments/hook-env/integrations/".to_string(),
        format!("/api/v1/environments/hook-env/integrations/{integration}/"),
        "/api/v1/audit-log/?limit=500".to_string(),
        "/api/v1/events/?limit=1000".to_string(),
        "/api/v1/audit-log/export?format=csv".to_string(),
    ] {
        let reply = server.get(&path).send().await.expect_status(200);
        assert!(!reply.text.contains(SECRET), "{path}: {}", reply.text);
    }
    assert!(!server.log_text().await.contains(SECRET));
}

async fn dead_letters_after_the_attempts_run_out_and_a_replay_delivers_them(backend: Backend) {
    let server = Server::start(backend).await;
    let (project, _) = project_with_environment(&server, "dead-env").await;
    let receiver = Receiver::start().await;
    receiver.fail_always(503);
    let integration = server
        .post(
            "/api/v1/environments/dead-env/integrations/",
            json!({"kind": "webhook", "config": fast(json!({"url": receiver.base}), 2)}),
        )
        .send()
        .await
        .expect_status(201)
        .u64("id");
    let base = format!("/api/v1/environments/dead-env/integrations/{integration}");
    server.feature(project, json!({"name": "a"})).await;
    server.feature(project, json!({"name": "b"})).await;

    let mut letters = Value::Null;
    for _ in 0..300 {
        letters = server
            .get(&format!("{base}/dead-letters"))
            .send()
            .await
            .expect_status(200)
            .body;
        if letters.as_array().is_some_and(|l| l.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let letters = letters.as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters
            .iter()
            .all(|l| l["attempts"] == 2 && l["status"] == "dead")
    );
    assert!(
        letters[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("503")
    );
    assert_eq!(receiver.received().len(), 4, "two attempts each, no more");
    let status = server
        .get(&format!("{base}/status"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(status.u64("dead_letters"), 2);
    assert!(status.u64("consecutive_failures") >= 2);

    receiver.recover();
    let replay = server
        .post(&format!("{base}/replay"), json!({}))
        .send()
        .await
        .expect_status(202);
    assert_eq!(replay.body["replaying_dead_letters"], 2);
    let delivered = receiver.until("both dead letters", |d| d.len() == 2).await;
    let names: Vec<Value> = delivered
        .iter()
        .map(|r| r.json()["data"]["new_state"]["feature"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("a"), json!("b")]);

    // A replay from a position sends everything from there again.
    let from = position(&delivered[1]);
    server
        .post(&format!("{base}/replay"), json!({"from_position": from}))
        .send()
        .await
        .expect_status(202);
    let again = receiver.until("b again", |d| d.len() == 3).await;
    assert_eq!(
        again[2].header("idempotency-key"),
        delivered[1].header("idempotency-key")
    );
    server
        .post(&format!("{base}/replay"), json!({"from_position": 0}))
        .send()
        .await
        .expect_error(400, "bad_request", Some("from_position"));
}

async fn configurations_are_validated_and_scoped(backend: Backend) {
    let server = Server::start(backend).await;
    let (project, _) = project_with_environment(&server, "cfg-env").await;
    let catalogue = server
        .get("/api/v1/integrations/catalogue")
        .send()
        .await
        .expect_status(200);
    let kinds: Vec<&str> = catalogue
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["key"].as_str())
        .collect();
    for kind in [
        "webhook",
        "datadog",
        "dynatrace",
        "new-relic",
        "slack",
        "amplitude",
        "segment",
        "mixpanel",
        "heap",
        "rudderstack",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let envs = "/api/v1/environments/cfg-env/integrations/";
    server
        .post(envs, json!({"kind": "pager"}))
        .send()
        .await
        .expect_error(400, "bad_request", Some("kind"));
    server
        .post(envs, json!({"kind": "webhook", "config": {}}))
        .send()
        .await
        .expect_error(400, "bad_request", Some("config.url"));
    server
        .post(
            envs,
            json!({"kind": "webhook", "config": {"url": "ftp://x"}}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("config.url"));
    server
        .post(envs, json!({"kind": "datadog", "config": {"api_key": "k"}}))
        .send()
        .await
        .expect_error(400, "bad_request", Some("kind"));
    let projects = format!("/api/v1/projects/{project}/integrations/");
    let datadog = server
        .post(
            &projects,
            json!({"kind": "datadog", "config": {"api_key": "dd-secret-1"}}),
        )
        .send()
        .await
        .expect_status(201);
    let id = datadog.u64("id");
    // Another scope does not see it.
    server
        .get(&format!("{envs}{id}/"))
        .send()
        .await
        .expect_error(404, "not_found", None);
    let changed = server
        .put(&format!("{projects}{id}/"), json!({"enabled": false}))
        .send()
        .await
        .expect_status(200);
    assert_eq!(changed.body["enabled"], false);
    assert_eq!(changed.body["secrets_set"], json!(["api_key"]), "kept");
    // A viewer of the project may not see or change its integrations.
    let viewer = server.member(project, "viewer@example.com", "viewer").await;
    server
        .get(&projects)
        .token(&viewer.token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    server
        .delete(&format!("{projects}{id}/"))
        .send()
        .await
        .expect_status(204);
    server
        .get(&format!("{projects}{id}/"))
        .send()
        .await
        .expect_error(404, "not_found", None);
    assert!(!server.log_text().await.contains("dd-secret-1"));
    // Audit rows say who configured it.
    let audit = server
        .get("/api/v1/audit-log/?event_type=IntegrationConfigured")
        .send()
        .await
        .expect_status(200);
    assert!(
        audit.body["results"][0]["summary"]
            .as_str()
            .unwrap_or("")
            .contains("datadog"),
        "{}",
        audit.text
    );
}

on_both_backends!(
    a_webhook_gets_every_flag_change_in_order_signed_after_its_receiver_recovers,
    dead_letters_after_the_attempts_run_out_and_a_replay_delivers_them,
    configurations_are_validated_and_scoped,
);

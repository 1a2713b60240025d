//! Each vendor's request: its path, its auth header (the secret, which no answer shows), its
//! body, as the vendor documents them; the base URLs point at a loopback receiver.

use flaglog_tests::receiver::Receiver;
use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use super::{fast, project_with_environment};

async fn each_vendor_gets_its_own_format_and_auth_header(backend: Backend) {
    let server = Server::start(backend).await;
    let (project, _) = project_with_environment(&server, "vendor-env").await;
    let receiver = Receiver::start().await;
    receiver.answer_like_slack();
    let base = receiver.base.clone();
    let projects = format!("/api/v1/projects/{project}/integrations/");
    let environments = "/api/v1/environments/vendor-env/integrations/";
    for (path, kind, config) in [
        (
            projects.as_str(),
            "datadog",
            json!({"base_url": format!("{base}/dd"), "api_key": "dd-key-7"}),
        ),
        (
            projects.as_str(),
            "new-relic",
            json!({"base_url": format!("{base}/nr/"), "api_key": "nr-key-7", "app_id": "42"}),
        ),
        (
            environments,
            "dynatrace",
            json!({"base_url": format!("{base}/dt/"), "api_key": "dt-key-7", "entity_selector": "type(SERVICE)"}),
        ),
        (
            environments,
            "slack",
            json!({"base_url": format!("{base}/slack/"), "api_token": "xoxb-key-7", "channel_id": "C123"}),
        ),
    ] {
        server
            .post(path, json!({"kind": kind, "config": fast(config, 5)}))
            .send()
            .await
            .expect_status(201);
    }
    let feature = server.feature(project, json!({"name": "checkout"})).await;
    server
        .put(
            &format!("/api/v1/environments/vendor-env/featurestates/{feature}/"),
            json!({"enabled": true}),
        )
        .send()
        .await
        .expect_status(200);
    // Project-wide: the creation and the change; per environment: the change.
    let delivered = receiver.until("six vendor events", |d| d.len() >= 6).await;
    let to = |prefix: &str| -> Vec<_> {
        delivered
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    };

    let datadog = to("/dd/");
    assert_eq!(datadog.len(), 2);
    assert_eq!(datadog[0].path, "/dd/api/v1/events");
    assert_eq!(datadog[0].header("dd-api-key"), Some("dd-key-7"));
    assert_eq!(datadog[0].query, None, "the key is not in the URL");
    let event = datadog[1].json();
    assert_eq!(event["tags"], json!(["env:env vendor-env"]));
    assert_eq!(event["source_type_name"], "flaglog");
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .ends_with("by user admin@example.com"),
        "{event}"
    );

    let new_relic = to("/nr/");
    assert_eq!(new_relic.len(), 2);
    assert_eq!(new_relic[0].path, "/nr/v2/applications/42/deployments.json");
    assert_eq!(new_relic[0].header("api-key"), Some("nr-key-7"));
    assert_eq!(
        new_relic[1].json()["deployment"]["revision"],
        "env:env vendor-env"
    );

    let dynatrace = to("/dt/");
    assert_eq!(dynatrace.len(), 1, "only its environment's change");
    assert_eq!(dynatrace[0].path, "/dt/api/v2/events/ingest");
    assert_eq!(
        dynatrace[0].header("authorization"),
        Some("Api-Token dt-key-7")
    );
    let event = dynatrace[0].json();
    assert_eq!(event["eventType"], "CUSTOM_DEPLOYMENT");
    assert_eq!(event["entitySelector"], "type(SERVICE)");
    assert_eq!(
        event["properties"]["dt.event.deployment.name"],
        "flaglog Deployment - Flag Changed: checkout"
    );

    let slack = to("/slack/");
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0].path, "/slack/chat.postMessage");
    assert_eq!(slack[0].header("authorization"), Some("Bearer xoxb-key-7"));
    let message = slack[0].json();
    assert_eq!(message["channel"], "C123");
    assert_eq!(
        message["blocks"][1]["fields"][0]["text"],
        "*Environment:*\nenv vendor-env"
    );

    for secret in ["dd-key-7", "nr-key-7", "dt-key-7", "xoxb-key-7"] {
        for path in [projects.as_str(), environments] {
            let reply = server.get(path).send().await.expect_status(200);
            assert!(!reply.text.contains(secret), "{path}: {}", reply.text);
        }
        assert!(!server.log_text().await.contains(secret));
    }
}

/// A receiver that quotes the request's headers in its refusal: the key it was sent is taken
/// out of the error the status API shows (and the log), as are Basic credentials made of it.
async fn a_receiver_echoing_credentials_does_not_put_them_in_the_status(backend: Backend) {
    let server = Server::start(backend).await;
    let (project, _) = project_with_environment(&server, "echo-env").await;
    let receiver = Receiver::start().await;
    receiver.fail_always(400);
    receiver.echo_failures();
    let base = receiver.base.clone();
    let datadog = server
        .post(
            &format!("/api/v1/projects/{project}/integrations/"),
            json!({"kind": "datadog", "config": fast(json!({"base_url": base, "api_key": "dd-echo-key-11"}), 1)}),
        )
        .send()
        .await
        .expect_status(201)
        .u64("id");
    let segment = server
        .post(
            "/api/v1/environments/echo-env/integrations/",
            json!({"kind": "segment", "config": {"base_url": base, "api_key": "seg-echo-key-12"}}),
        )
        .send()
        .await
        .expect_status(201)
        .u64("id");
    server.feature(project, json!({"name": "echoed"})).await;
    let statuses = [
        format!("/api/v1/projects/{project}/integrations/{datadog}/status"),
        format!("/api/v1/environments/echo-env/integrations/{segment}/status"),
    ];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    for status in &statuses {
        loop {
            // Identities keep coming until the analytics worker has one to send.
            let _ = server
                .get("/api/v1/identities/?identifier=echo")
                .without_token()
                .header("x-environment-key", "echo-env")
                .send()
                .await;
            let answer = server.get(status).send().await.expect_status(200);
            if let Some(error) = answer.body["last_error"].as_str() {
                assert!(error.contains("[redacted]"), "{error}");
                assert!(!error.contains("echo-key"), "{error}");
                // Basic credentials made of the key ("seg-echo-key-12:") are taken out too.
                assert!(!error.contains("c2VnLWVjaG8ta2V5LTEyOg"), "{error}");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{status}: no error within 30 s: {}",
                answer.text
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    // The receiver did get the credentials: they were sent, then quoted back.
    let received = receiver.received();
    assert!(
        received
            .iter()
            .any(|r| r.header("dd-api-key") == Some("dd-echo-key-11"))
    );
}

on_both_backends!(
    each_vendor_gets_its_own_format_and_auth_header,
    a_receiver_echoing_credentials_does_not_put_them_in_the_status,
);

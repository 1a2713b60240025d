//! `POST /api/v1/analytics/flags/`: SDKs report how often each flag was evaluated,
//! `{"feature name": count}`. Counts add up per environment (and hour) in the SDK store; they are
//! not events.

use flaglog_tests::{Backend, on_both_backends};
use serde_json::json;

use crate::{SdkCall, environment_with_server_key, start};

const KEY: &str = "analytics-client-key";

async fn analytics_counts_accumulate(backend: Backend) {
    let server = start(backend).await;
    let (_, environment, server_key) = environment_with_server_key(&server, KEY).await;
    server.projected().await;
    let head = server.log.head().await.unwrap();

    for (key, body) in [
        (KEY, json!({"banner": 3, "limit": 1})),
        (server_key.as_str(), json!({"banner": 4})),
        (KEY, json!({"limit": 0, "colour": 10})),
        (KEY, json!({})),
    ] {
        let reply = server
            .post("/api/v1/analytics/flags/", body)
            .environment_key(key)
            .send()
            .await
            .expect_status(200);
        assert!(reply.status < 300);
    }

    let counts = server.state.sdk_store.counts(environment).await.unwrap();
    let mut totals: Vec<(String, i64)> = Vec::new();
    for (name, _hour, count) in counts {
        match totals.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += count,
            None => totals.push((name, count)),
        }
    }
    totals.sort();
    assert_eq!(
        totals,
        [
            ("banner".to_string(), 7),
            ("colour".to_string(), 10),
            ("limit".to_string(), 1)
        ]
    );
    assert_eq!(
        server.log.head().await.unwrap(),
        head,
        "analytics append nothing to the log"
    );
}

async fn analytics_counts_must_be_whole_numbers_not_below_zero(backend: Backend) {
    let server = start(backend).await;
    let (_, environment, _) = environment_with_server_key(&server, KEY).await;
    server.projected().await;

    for (body, field) in [
        (json!({"banner": -1}), "banner"),
        (json!({"ok": 1, "banner": 1.5}), "banner"),
        (json!({"banner": "3"}), "banner"),
        (json!({"banner": null}), "banner"),
        (json!({"banner": [1]}), "banner"),
        (json!({"banner": true}), "banner"),
        (json!([1, 2]), "body"),
        (json!("banner"), "body"),
    ] {
        server
            .post("/api/v1/analytics/flags/", body.clone())
            .environment_key(KEY)
            .send()
            .await
            .expect_error(400, "bad_request", Some(field));
    }
    server
        .post("/api/v1/analytics/flags/", json!({"banner": 1}))
        .without_token()
        .send()
        .await
        .expect_error(401, "unauthorized", None);
    server
        .post("/api/v1/analytics/flags/", json!({"banner": 1}))
        .environment_key("no-such-key")
        .send()
        .await
        .expect_error(401, "unauthorized", None);
    assert_eq!(
        server.state.sdk_store.counts(environment).await.unwrap(),
        [],
        "a refused report counts nothing, not even its valid entries"
    );
}

on_both_backends!(
    analytics_counts_accumulate,
    analytics_counts_must_be_whole_numbers_not_below_zero,
);

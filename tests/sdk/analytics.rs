//! `POST /api/v1/analytics/flags/`: SDKs report how often each flag was evaluated,
//! `{"feature name": count}`. Counts add up per environment (and hour) in the SDK store; they are
//! not events. The `flag_analytics` worker rolls the raw counts up into 15-minute and hourly
//! buckets, which `GET .../analytics/flags/` serves per period; SDK API calls are counted per
//! environment and day (`GET /api/v1/organisations/{id}/usage/`).

use std::time::Duration;

use flaglog_tests::{Backend, Server, on_both_backends, test_node};
use serde_json::json;

use crate::{Sdk, SdkCall, environment_with_server_key, start};

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

async fn raw_rows(sdk: &Sdk) -> i64 {
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM flag_evaluations")
        .fetch_one(&sdk.state.read_models)
        .await
        .unwrap();
    rows
}

async fn counts_are_rolled_up_and_served_per_period_and_api_calls_per_day(backend: Backend) {
    let options = api::NodeOptions {
        flag_analytics_interval: Duration::from_millis(100),
        ..test_node()
    };
    let (server, state) = Server::start_with_options(backend, options).await;
    let sdk = Sdk { server, state };
    let (_, _, _) = environment_with_server_key(&sdk, KEY).await;
    sdk.projected().await;
    for body in [json!({"banner": 3, "limit": 1}), json!({"banner": 4})] {
        sdk.post("/api/v1/analytics/flags/", body)
            .environment_key(KEY)
            .send()
            .await
            .expect_status(200);
    }
    let path = format!("/api/v1/environments/{KEY}/analytics/flags/?feature=banner");
    // Served at once, from the raw rows or the buckets, whichever holds them.
    let fresh = sdk.get(&path).send().await.expect_status(200);
    assert_eq!(fresh.body["total"], 7, "{}", fresh.text);
    assert_eq!(fresh.body["resolution_seconds"], 900);
    // The worker rolls them up: the raw rows go, the totals stay (nothing counted twice).
    let mut waited = 0;
    while raw_rows(&sdk).await > 0 {
        assert!(waited < 100, "the raw counts were not rolled up");
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
    }
    for resolution in ["15m", "1h"] {
        let rolled = sdk
            .get(&format!("{path}&resolution={resolution}"))
            .send()
            .await
            .expect_status(200);
        assert_eq!(rolled.body["total"], 7, "{resolution}: {}", rolled.text);
        assert_eq!(rolled.body["buckets"].as_array().unwrap().len(), 1);
    }
    let other = sdk
        .get(&format!(
            "/api/v1/environments/{KEY}/analytics/flags/?feature=limit&resolution=1h"
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(other.body["total"], 1);
    // A period in the past has none; bad periods and resolutions are refused.
    let past = sdk
        .get(&format!(
            "{path}&from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z"
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(past.body["total"], 0);
    for (query, field) in [
        ("&resolution=5m", "resolution"),
        ("&from=yesterday", "from"),
        ("&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
    ] {
        sdk.get(&format!("{path}{query}"))
            .send()
            .await
            .expect_error(400, "bad_request", Some(field));
    }

    // API calls: each SDK request counts once for its environment, saved per node and day.
    for _ in 0..5 {
        sdk.get("/api/v1/flags/")
            .environment_key(KEY)
            .send()
            .await
            .expect_status(200);
    }
    let mut calls = 0;
    for _ in 0..100 {
        let usage = sdk
            .get("/api/v1/organisations/1/usage/")
            .send()
            .await
            .expect_status(200);
        calls = usage.body["total"].as_i64().unwrap();
        // 2 analytics reports and 5 flag requests, and whatever projected() asked.
        if calls >= 7 {
            assert_eq!(usage.body["days"].as_array().unwrap().len(), 1);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(calls >= 7, "API calls saved: {calls}");
}

on_both_backends!(
    counts_are_rolled_up_and_served_per_period_and_api_calls_per_day,
    analytics_counts_accumulate,
    analytics_counts_must_be_whole_numbers_not_below_zero,
);

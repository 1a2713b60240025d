//! `GET /metrics`: Prometheus text that moves with the traffic. Requests are counted and timed
//! per route template and status (histogram series included), appends are counted where the
//! log commits them, and no label carries a concrete path or key.
//!
//! The recorder is process-wide and tests run in parallel, so counts are compared as "grew by
//! at least what this test did", never as totals.

use flaglog_tests::{Backend, on_both_backends};
use serde_json::json;

use crate::{Sdk, SdkCall, environment_with_server_key, start};

/// The value of the series `name{labels}` (labels exactly as rendered, sorted by name), or 0
/// when it is not there yet.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

async fn scrape(server: &Sdk) -> String {
    let reply = server
        .get("/metrics")
        .without_token()
        .send()
        .await
        .expect_status(200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.headers
    );
    reply.text
}

const FLAGS_200: &str =
    r#"flaglog_http_requests_total{method="GET",route="/api/v1/flags/",status="200"}"#;
const FLAGS_401: &str =
    r#"flaglog_http_requests_total{method="GET",route="/api/v1/flags/",status="401"}"#;

async fn metrics_count_requests_per_route_template_and_appends(backend: Backend) {
    let server = start(backend).await;
    let client_key = "metrics-client-key";
    let (project, _, server_key) = environment_with_server_key(&server, client_key).await;
    server
        .feature(project, json!({"name": "banner", "default_enabled": true}))
        .await;
    server.projected().await;

    let before = scrape(&server).await;
    for _ in 0..5 {
        server
            .get("/api/v1/flags/")
            .environment_key(client_key)
            .send()
            .await
            .expect_status(200);
    }
    server
        .get("/api/v1/flags/")
        .environment_key("not-a-key")
        .send()
        .await
        .expect_status(401);
    // A concrete path holding a key matches no route: counted as unmatched, never by path.
    server
        .get(&format!("/api/v1/no-such-route/{client_key}/{server_key}"))
        .send()
        .await
        .expect_status(404);
    // One admin write: two events or more (the feature, its state) reach the log.
    server
        .feature(project, json!({"name": "second", "default_enabled": false}))
        .await;
    server.projected().await;
    let after = scrape(&server).await;

    assert!(
        value(&after, FLAGS_200) >= value(&before, FLAGS_200) + 5.0,
        "{FLAGS_200}: before {}, after {}",
        value(&before, FLAGS_200),
        value(&after, FLAGS_200)
    );
    assert!(value(&after, FLAGS_401) >= value(&before, FLAGS_401) + 1.0);
    let unmatched = r#"flaglog_http_requests_total{method="GET",route="<unmatched>",status="404"}"#;
    assert!(value(&after, unmatched) >= value(&before, unmatched) + 1.0);
    let appended = "flaglog_events_appended_total";
    assert!(
        value(&after, appended) >= value(&before, appended) + 1.0,
        "{appended}: before {}, after {}",
        value(&before, appended),
        value(&after, appended)
    );
    assert!(
        value(&after, "flaglog_projection_position") >= 1.0,
        "{after}"
    );

    // The latency histogram of the route: buckets up to +Inf, a count and a sum.
    let labels = r#"method="GET",route="/api/v1/flags/",status="200""#;
    let histogram = "flaglog_http_request_duration_seconds";
    let count = value(&after, &format!("{histogram}_count{{{labels}}}"));
    assert!(count >= 5.0, "{histogram}_count: {count}\n{after}");
    let infinite = value(
        &after,
        &format!("{histogram}_bucket{{{labels},le=\"+Inf\"}}"),
    );
    assert_eq!(infinite, count, "every request falls in +Inf");
    let buckets = after
        .lines()
        .filter(|line| line.starts_with(&format!("{histogram}_bucket{{{labels},le=")))
        .count();
    assert!(buckets > 2, "the histogram has buckets:\n{after}");
    assert!(value(&after, &format!("{histogram}_sum{{{labels}}}")) > 0.0);
    assert!(
        after.contains(&format!("# TYPE {histogram} histogram")),
        "{after}"
    );

    // Labels name templates: no key, token or concrete path anywhere.
    for secret in [client_key, server_key.as_str(), server.token(), "not-a-key"] {
        assert!(!after.contains(secret), "{secret} is in /metrics:\n{after}");
    }
    assert!(!after.contains("no-such-route"), "{after}");
}

/// Each background worker's position and lag are gauges, by worker name, read from the worker
/// runtime when scraped.
async fn worker_gauges_follow_the_running_workers(backend: Backend) {
    let server = start(backend).await;
    let position = r#"flaglog_worker_position{worker="environment_documents"}"#;
    let lag = r#"flaglog_worker_lag{worker="environment_documents"}"#;
    // The bootstrap wrote events: once the projection has applied them its position is past 0.
    // (The recorder is process-wide, so another test's server may have set it last; any running
    // projection's position is past 0 once it caught up.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = scrape(&server).await;
        if value(&text, position) > 0.0 {
            assert!(text.lines().any(|l| l.starts_with(lag)), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no worker gauge: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

on_both_backends!(
    metrics_count_requests_per_route_template_and_appends,
    worker_gauges_follow_the_running_workers,
);

//! How soon SDKs see a change: an admin change reaches `GET /api/v1/flags/` (through the log,
//! the projection and the cache) within two seconds, and the realtime stream
//! (`/sse/environments/{client key}/stream`) announces it, so local-evaluation SDKs refetch.

use std::time::Duration;

use flaglog_tests::{Backend, on_both_backends};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Sdk, SdkCall, api_flags, environment_with_server_key, start};

/// The longest an admin change may take to reach the SDK endpoints.
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);
/// How often a test looks again.
const POLL: Duration = Duration::from_millis(20);

/// A server with an environment `KEY` holding the feature `banner`; returns it with the
/// feature's id and a server-side key.
const KEY: &str = "realtime-client-key";

async fn environment_with_banner(backend: Backend) -> (Sdk, u64, String) {
    let server = start(backend).await;
    let (project, _, server_key) = environment_with_server_key(&server, KEY).await;
    let banner = server
        .feature(
            project,
            json!({"name": "banner", "default_enabled": true, "initial_value": "v0"}),
        )
        .await;
    server.projected().await;
    (server, banner, server_key)
}

async fn set_banner(server: &Sdk, banner: u64, value: &str) {
    server
        .put(
            &format!("/api/v1/environments/{KEY}/featurestates/{banner}/"),
            json!({"enabled": true, "feature_state_value": value}),
        )
        .send()
        .await
        .expect_status(200);
}

/// Polls until `banner` is `value` on `/api/v1/flags/` and in the environment document; returns
/// how long that took from `since`, failing past [`VISIBLE_WITHIN`].
async fn visible(server: &Sdk, server_key: &str, value: &str, since: Instant) -> Duration {
    let want = (true, json!(value));
    loop {
        let flags = server
            .get("/api/v1/flags/")
            .environment_key(KEY)
            .send()
            .await
            .expect_status(200);
        if api_flags(&flags.body).get("banner") == Some(&want) {
            break;
        }
        assert!(
            since.elapsed() < VISIBLE_WITHIN,
            "banner = {value:?} not on /api/v1/flags/ within {VISIBLE_WITHIN:?}: {}",
            flags.text
        );
        tokio::time::sleep(POLL).await;
    }
    let lag = since.elapsed();
    let document = server
        .get("/api/v1/environment-document/")
        .environment_key(server_key)
        .send()
        .await
        .expect_status(200);
    let state = document.body["feature_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["feature"]["name"] == "banner")
        .unwrap_or_else(|| panic!("no banner in {}", document.text));
    assert_eq!(
        state["feature_state_value"], value,
        "the document changes with the flags"
    );
    lag
}

async fn an_admin_change_reaches_the_flags_within_two_seconds(backend: Backend) {
    let (server, banner, server_key) = environment_with_banner(backend).await;
    // Cached before each change: the change must evict it, not wait for it to expire.
    visible(&server, &server_key, "v0", Instant::now()).await;
    let mut lags = Vec::new();
    for round in 1..=5 {
        let value = format!("v{round}");
        let since = Instant::now();
        set_banner(&server, banner, &value).await;
        lags.push(visible(&server, &server_key, &value, since).await);
    }
    let worst = lags.iter().max().unwrap();
    eprintln!("{backend:?}: admin change → GET /api/v1/flags/ in {lags:?} (worst {worst:?})");
}

/// A Server-Sent Events stream, read event by event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(url: &str) -> EventStream {
        // No overall timeout: the stream stays open; every read is bounded by a deadline.
        let response = reqwest::Client::new()
            .get(url)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "GET {url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("text/event-stream"),
            "GET {url}: content-type {content_type:?}"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's `data`, parsed as JSON; fails the test if none comes by `deadline`.
    async fn next(&mut self, deadline: Instant) -> Value {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(|data| data.strip_prefix(' ').unwrap_or(data))
                    .collect();
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                let data = data.join("\n");
                return serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data:?}"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("no event before the deadline")
                .expect("reading the stream")
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

/// `updated_at` of an event: Unix seconds, as a float.
fn updated_at(event: &Value) -> f64 {
    assert!(
        event["updated_at"].is_f64(),
        "updated_at is a float of Unix seconds: {event}"
    );
    event["updated_at"].as_f64().unwrap()
}

/// When the log's last event was recorded, in Unix seconds.
async fn last_recorded(server: &Sdk) -> f64 {
    let events = server.events().await;
    events.last().unwrap().recorded_at_micros as f64 / 1e6
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() < 1e-5,
        "{what}: updated_at {actual} but the change was recorded at {expected}"
    );
}

async fn the_stream_announces_the_environment_now_and_after_each_change(backend: Backend) {
    let (server, banner, _) = environment_with_banner(backend).await;
    // Another environment, whose changes this stream must not announce.
    let other_project = server.project(json!({"name": "other"})).await;
    server.environment(other_project, "other-client-key").await;
    let other_feature = server
        .feature(other_project, json!({"name": "elsewhere"}))
        .await;
    server.projected().await;
    let ours_recorded = server
        .events()
        .await
        .iter()
        .rev()
        .find(|e| e.event_type == "FeatureCreated" && e.payload.to_string().contains("banner"))
        .map(|e| e.recorded_at_micros as f64 / 1e6)
        .expect("banner's creation is in the log");

    let mut stream =
        EventStream::open(&format!("{}/sse/environments/{KEY}/stream", server.base)).await;
    let first = stream.next(Instant::now() + VISIBLE_WITHIN).await;
    assert_close(
        updated_at(&first),
        ours_recorded,
        "the first event is the current document",
    );

    // A change elsewhere, then ours: the next event is ours.
    server
        .put(
            &format!("/api/v1/environments/other-client-key/featurestates/{other_feature}/"),
            json!({"enabled": true, "feature_state_value": "x"}),
        )
        .send()
        .await
        .expect_status(200);
    for round in 1..=3 {
        let since = Instant::now();
        set_banner(&server, banner, &format!("v{round}")).await;
        let recorded = last_recorded(&server).await;
        let event = stream.next(since + VISIBLE_WITHIN).await;
        assert_close(
            updated_at(&event),
            recorded,
            &format!("change {round} is announced"),
        );
        assert!(updated_at(&event) > updated_at(&first));
        eprintln!(
            "{backend:?}: admin change → stream event in {:?}",
            since.elapsed()
        );
    }
}

/// What a local-evaluation SDK does on each stream event: fetch the environment document at
/// once. The document it gets must already hold the change the event announced, or the SDK keeps
/// the old one until the next change.
async fn a_document_fetched_on_a_stream_event_holds_the_announced_change(backend: Backend) {
    // The race this pins is lost in about one round in 50 to 100; 300 rounds lose it almost surely.
    const ROUNDS: usize = 300;
    let (server, banner, server_key) = environment_with_banner(backend).await;
    let mut stream =
        EventStream::open(&format!("{}/sse/environments/{KEY}/stream", server.base)).await;
    stream.next(Instant::now() + VISIBLE_WITHIN).await;
    // The document is cached from here on, as it is while SDKs poll it.
    let document = || async {
        server
            .get("/api/v1/environment-document/")
            .environment_key(&server_key)
            .send()
            .await
            .expect_status(200)
            .body
    };
    document().await;
    let mut stale = Vec::new();
    for round in 1..=ROUNDS {
        let value = format!("v{round}");
        set_banner(&server, banner, &value).await;
        stream.next(Instant::now() + VISIBLE_WITHIN).await;
        let fetched = document().await;
        let served = fetched["feature_states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["feature"]["name"] == "banner")
            .map(|s| s["feature_state_value"].clone());
        if served != Some(json!(value)) {
            stale.push(format!(
                "round {round}: announced {value:?}, served {served:?}"
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{} of {ROUNDS} documents fetched right after their stream event were stale:\n  {}",
        stale.len(),
        stale.join("\n  ")
    );
}

async fn the_stream_of_an_unknown_key_is_404(backend: Backend) {
    let (server, _, server_key) = environment_with_banner(backend).await;
    for unknown in ["no-such-client-key", server_key.as_str()] {
        server
            .get(&format!("/sse/environments/{unknown}/stream"))
            .without_token()
            .send()
            .await
            .expect_error(404, "not_found", None);
    }
}

on_both_backends!(
    an_admin_change_reaches_the_flags_within_two_seconds,
    the_stream_announces_the_environment_now_and_after_each_change,
    a_document_fetched_on_a_stream_event_holds_the_announced_change,
    the_stream_of_an_unknown_key_is_404,
    a_stream_that_missed_announcements_sends_the_current_version,
);

/// A stream whose receiver lagged (announcements were dropped before it read them) cannot know
/// whether one was its environment's: it sends the environment's current version rather than
/// waiting silently for the next change.
async fn a_stream_that_missed_announcements_sends_the_current_version(backend: Backend) {
    use api::http::DocumentChanged;
    use api::http::sdk::Realtime;
    let (server, banner, _) = environment_with_banner(backend).await;
    set_banner(&server, banner, "v1").await;
    server.projected().await;
    let current = server
        .state
        .sdk
        .by_client_key(KEY)
        .await
        .unwrap()
        .unwrap()
        .updated_at_micros;
    let (changes, receiver) = tokio::sync::broadcast::channel(2);
    let mut realtime = Realtime::new(receiver, KEY.to_string(), server.state.sdk.clone());
    for position in 1..=5 {
        changes
            .send(DocumentChanged {
                environment_id: 999,
                client_key: "another-environment".into(),
                updated_at_micros: 1,
                position,
            })
            .unwrap();
    }
    let next = tokio::time::timeout(Duration::from_secs(10), realtime.next())
        .await
        .expect("an event, not silence");
    assert_eq!(next, Some(current));
}

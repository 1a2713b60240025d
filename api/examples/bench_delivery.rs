//! Integration delivery, as `scripts/bench-delivery` measures it (issue 12).
//!
//! `bench_delivery <database_url> <results_file>` starts the real server in-process
//! (`api::start` and `api::http::router` on a loopback port) and a webhook receiver on another
//! loopback port (an axum server that records when each request arrived and answers 200), then:
//!
//! - lag: `BENCH_LAG_TRIALS` feature-state changes over HTTP, one at a time, each waited for at
//!   the receiver: commit (the PUT answered) → the webhook request arrived, p50/p99/max; the
//!   baseline is the receiver's own round trip (a POST of the same body from a client here);
//! - long poll: `GET /api/v1/events/?after=HEAD&wait=10` waiting while a change commits, one at
//!   a time: commit (the PUT answered) → the poll answered with it, p50/p99/max;
//! - throughput: `BENCH_BACKLOG` changes committed while a second webhook is disabled, the audit
//!   projection caught up, then the webhook enabled: events delivered per second until the
//!   receiver has them all, next to the receiver's own limit (the same number of POSTs of the
//!   same body, one at a time, from a client here: a webhook is sent one event per request, in
//!   order);
//! - identities with analytics: `POST /api/v1/identities/` from `BENCH_CONNECTIONS` concurrent
//!   clients for `BENCH_SECONDS`, with no analytics integration and with a Segment integration
//!   pointing at the receiver, alternated over `BENCH_ROUNDS` rounds: requests/s with ÷ without.
//!
//! Each figure with its goal goes to stderr and, tab-separated (`figure`, `value`, `goal`,
//! `verdict`), to `results_file`.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// As the `flaglog` binary (api/src/main.rs): the server measured runs on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-delivery";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the receiver got: arrival times by path, and a sample body.
#[derive(Default)]
struct Arrivals {
    by_path: Mutex<std::collections::HashMap<String, Vec<Instant>>>,
    sample: Mutex<Option<Bytes>>,
    arrived: Notify,
}

impl Arrivals {
    fn count(&self, path: &str) -> usize {
        self.lock().get(path).map_or(0, Vec::len)
    }

    fn times(&self, path: &str) -> Vec<Instant> {
        self.lock().get(path).cloned().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<Instant>>> {
        self.by_path.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `path` has received `count` requests, for at most `within`.
    async fn until(&self, path: &str, count: usize, within: Duration) -> Res<Instant> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            if let Some(last) = self.lock().get(path).filter(|t| t.len() >= count) {
                return Ok(last[count - 1]);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!(
                    "{path}: {} of {count} requests within {within:?}",
                    self.count(path)
                )
                .into());
            }
        }
    }
}

async fn receive(
    State(arrivals): State<Arc<Arrivals>>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> &'static str {
    let now = Instant::now();
    arrivals
        .lock()
        .entry(uri.path().to_string())
        .or_default()
        .push(now);
    if uri.path() == "/lag" {
        *arrivals.sample.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
    }
    arrivals.arrived.notify_waiters();
    ""
}

struct Http {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Http {
    /// An identity integration's identities sent and dropped, from its status at `path`.
    async fn identities_counted(&self, path: &str) -> Res<(u64, u64)> {
        let status = self.send(reqwest::Method::GET, path, Value::Null).await?;
        let count = |field: &str| status[field].as_u64().unwrap_or(0);
        Ok((count("delivered"), count("dropped")))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Res<Value> {
        let response = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header("authorization", format!("Token {}", self.token))
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status} {text}").into());
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The value at quantile `q` of sorted `values`.
fn quantile(values: &[f64], q: f64) -> f64 {
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    values.get(i).copied().unwrap_or(f64::NAN)
}

struct Results(Mutex<String>);

impl Results {
    fn record(&self, figure: &str, value: String, goal: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        eprintln!("  {figure}: {value} (goal {goal}) {verdict}");
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(lines, "{figure}\t{value}\t{goal}\t{verdict}");
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, results_file] = args.as_slice() else {
        return Err("usage: bench_delivery <database_url> <results_file>".into());
    };
    let trials = env_number("BENCH_LAG_TRIALS", 200).max(1) as usize;
    let backlog = env_number("BENCH_BACKLOG", 20_000).max(1) as usize;
    let results = Results(Mutex::new(String::new()));

    // The receiver is on loopback.
    let options = api::NodeOptions {
        integration_networks: projections::integrations::network::PrivateNetworks::Allowed,
        ..api::NodeOptions::default()
    };
    let state = api::start_node(url, options).await?;
    let router = api::http::router(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    let arrivals = Arc::new(Arrivals::default());
    let receiver = Router::new().fallback(receive).with_state(arrivals.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let receiver_base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let init: Value = client
        .post(format!("http://{address}/api/v1/users/config/init/"))
        .json(&json!({"email": "admin@example.com"}))
        .send()
        .await?
        .json()
        .await?;
    let http = Arc::new(Http {
        base: format!("http://{address}"),
        token: init["token"].as_str().ok_or("no token")?.to_string(),
        client: client.clone(),
    });
    let post = reqwest::Method::POST;
    let put = reqwest::Method::PUT;
    let project = http
        .send(
            post.clone(),
            "/api/v1/projects/",
            json!({"name": "bench", "organisation": 1}),
        )
        .await?["id"]
        .as_u64()
        .ok_or("no project id")?;
    http.send(
        post.clone(),
        "/api/v1/environments/",
        json!({"project": project, "name": "bench", "api_key": KEY}),
    )
    .await?;
    let writers = env_number("BENCH_WRITERS", 32).max(1);
    let mut features = Vec::new();
    for n in 0..writers {
        let feature = http
            .send(
                post.clone(),
                &format!("/api/v1/projects/{project}/features/"),
                json!({"name": format!("flag_{n}")}),
            )
            .await?["id"]
            .as_u64()
            .ok_or("no feature id")?;
        features.push(feature);
    }
    let integrations = format!("/api/v1/environments/{KEY}/integrations/");
    let change_http = http.clone();
    let change = move |feature: u64, value: u64| {
        let http = change_http.clone();
        async move {
            http.send(
                reqwest::Method::PUT,
                &format!("/api/v1/environments/{KEY}/featurestates/{feature}/"),
                json!({"enabled": value.is_multiple_of(2), "feature_state_value": value}),
            )
            .await
        }
    };

    // --- Lag: commit → receiver --------------------------------------------------------------
    let lag_hook = http
        .send(
            post.clone(),
            &integrations,
            json!({"kind": "webhook", "config": {"url": format!("{receiver_base}/lag"), "secret": "bench-secret"}}),
        )
        .await?["id"]
        .as_u64()
        .ok_or("no integration id")?;
    // The first change starts the sender; not counted.
    change(features[0], 1).await?;
    arrivals.until("/lag", 1, Duration::from_secs(30)).await?;
    let mut lags = Vec::with_capacity(trials);
    for trial in 0..trials {
        let count = arrivals.count("/lag");
        change(features[0], 2 + trial as u64).await?;
        let committed = Instant::now();
        let arrived = arrivals
            .until("/lag", count + 1, Duration::from_secs(30))
            .await?;
        lags.push(arrived.saturating_duration_since(committed).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lags.sort_by(f64::total_cmp);
    let sample = arrivals
        .sample
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or("no body received")?;
    let mut round_trips = Vec::with_capacity(trials);
    for _ in 0..trials {
        let sent = Instant::now();
        client
            .post(format!("{receiver_base}/baseline"))
            .header("content-type", "application/json")
            .body(sample.clone())
            .send()
            .await?;
        round_trips.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    round_trips.sort_by(f64::total_cmp);
    let p99 = quantile(&lags, 0.99);
    results.record(
        "lag commit→receiver (ms, p50/p99/max)",
        format!(
            "{:.1}/{:.1}/{:.1} over {trials} changes; receiver round trip {:.2}/{:.2}",
            quantile(&lags, 0.5),
            p99,
            lags.last().copied().unwrap_or(f64::NAN),
            quantile(&round_trips, 0.5),
            quantile(&round_trips, 0.99)
        ),
        "p99 < 100 ms",
        Some(p99 < 100.0),
    );
    http.send(
        reqwest::Method::DELETE,
        &format!("{integrations}{lag_hook}/"),
        Value::Null,
    )
    .await?;

    // --- Long poll: commit → GET /api/v1/events/?wait answered --------------------------------
    let mut wakes = Vec::with_capacity(trials);
    for trial in 0..trials {
        // The feed's cursor is a log position: everything up to the head has been seen.
        let after = state.log.head().await?;
        let url = format!(
            "{}/api/v1/events/?after={after}&wait=10&limit=10",
            http.base
        );
        let poll = {
            let (client, token) = (client.clone(), http.token.clone());
            async move {
                let response = client
                    .get(url)
                    .header("authorization", format!("Token {token}"))
                    .send()
                    .await?;
                let answered = Instant::now();
                let body: Value = response.json().await?;
                Res::Ok((answered, body))
            }
        };
        let commit = async {
            // The poll is waiting by then.
            tokio::time::sleep(Duration::from_millis(20)).await;
            change(features[0], 10_000 + trial as u64).await?;
            Res::Ok(Instant::now())
        };
        let (polled, committed) = tokio::join!(poll, commit);
        let ((answered, body), committed) = (polled?, committed?);
        if body["events"].as_array().is_none_or(Vec::is_empty) {
            return Err(format!("the long poll answered without the change: {body}").into());
        }
        wakes.push(answered.saturating_duration_since(committed).as_secs_f64() * 1000.0);
    }
    wakes.sort_by(f64::total_cmp);
    let p99 = quantile(&wakes, 0.99);
    results.record(
        "long poll commit→answered (ms, p50/p99/max)",
        format!(
            "{:.1}/{:.1}/{:.1} over {trials} changes",
            quantile(&wakes, 0.5),
            p99,
            wakes.last().copied().unwrap_or(f64::NAN)
        ),
        "< 100 ms",
        Some(p99 < 100.0),
    );

    // --- Throughput: a backlog delivered to one receiver ------------------------------------
    let bulk_hook = http
        .send(
            post.clone(),
            &integrations,
            json!({"kind": "webhook", "enabled": false,
                   "config": {"url": format!("{receiver_base}/bulk"), "secret": "bench-secret"}}),
        )
        .await?["id"]
        .as_u64()
        .ok_or("no integration id")?;
    let started = Instant::now();
    let per_writer = backlog.div_ceil(features.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (w, feature) in features.iter().enumerate() {
        let change = change.clone();
        let feature = *feature;
        tasks.spawn(async move {
            for n in 0..per_writer {
                change(feature, 1_000_000 + (w * per_writer + n) as u64).await?;
            }
            Res::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let committed = per_writer * features.len();
    eprintln!(
        "backlog: {committed} changes committed in {:.1}s (setup, not judged)",
        started.elapsed().as_secs_f64()
    );
    let head = state.log.head().await?;
    loop {
        let checkpoint =
            projections::checkpoint(&state.read_models, projections::audit_history::NAME).await?;
        if checkpoint >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let enabled_at = Instant::now();
    http.send(
        put.clone(),
        &format!("{integrations}{bulk_hook}/"),
        json!({"enabled": true}),
    )
    .await?;
    let last = arrivals
        .until("/bulk", committed, Duration::from_secs(600))
        .await?;
    let first = arrivals.times("/bulk")[0];
    let rate = committed as f64 / last.duration_since(enabled_at).as_secs_f64();
    let steady = (committed - 1) as f64 / last.duration_since(first).as_secs_f64().max(1e-9);
    let baseline_started = Instant::now();
    for _ in 0..committed {
        client
            .post(format!("{receiver_base}/baseline"))
            .header("content-type", "application/json")
            .body(sample.clone())
            .send()
            .await?;
    }
    let baseline = committed as f64 / baseline_started.elapsed().as_secs_f64();
    results.record(
        "webhook events/s to one receiver",
        format!(
            "{rate:.0} from enabling ({steady:.0} first→last); the receiver's own limit {baseline:.0} (ratio {:.2})",
            rate / baseline
        ),
        "≥ 5000/s, else the receiver's limit",
        Some(rate >= 5000.0 || rate / baseline >= 0.8),
    );
    http.send(
        reqwest::Method::DELETE,
        &format!("{integrations}{bulk_hook}/"),
        Value::Null,
    )
    .await?;

    // --- Identities with and without an analytics integration -------------------------------
    let seconds = env_number("BENCH_SECONDS", 5).max(1);
    let rounds = env_number("BENCH_ROUNDS", 2).max(1);
    let connections = env_number("BENCH_CONNECTIONS", 32).max(1);
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut analytics: Option<u64> = None;
    // Identities Segment was sent and dropped (the node sheds them while saturated).
    let (mut delivered, mut dropped) = (0, 0);
    for round in 0..rounds * 2 {
        let on = round % 2 == 1;
        if on && analytics.is_none() {
            analytics = http
                .send(
                    post.clone(),
                    &integrations,
                    json!({"kind": "segment", "config": {"base_url": format!("{receiver_base}/segment"), "api_key": "bench-key"}}),
                )
                .await?["id"]
                .as_u64();
            // The worker sees the integration within its refresh.
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else if !on && let Some(id) = analytics.take() {
            let (sent, shed) = http
                .identities_counted(&format!("{integrations}{id}/status"))
                .await?;
            (delivered, dropped) = (delivered + sent, dropped + shed);
            http.send(
                reqwest::Method::DELETE,
                &format!("{integrations}{id}/"),
                Value::Null,
            )
            .await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let rate = identities_per_second(&http.base, connections, seconds).await?;
        eprintln!(
            "  identities/s {}: {rate:.0}",
            if on { "with analytics" } else { "without" }
        );
        if on {
            with.push(rate)
        } else {
            without.push(rate)
        }
    }
    if let Some(id) = analytics {
        tokio::time::sleep(Duration::from_secs(1)).await; // the counts are saved meanwhile
        let (sent, shed) = http
            .identities_counted(&format!("{integrations}{id}/status"))
            .await?;
        (delivered, dropped) = (delivered + sent, dropped + shed);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratio = mean(&with) / mean(&without);
    let sent = arrivals.count("/segment/v1/batch");
    results.record(
        "identities req/s with ÷ without a Segment integration",
        format!(
            "{ratio:.2} ({:.0} ÷ {:.0}; {sent} Segment batches received: {delivered} identities \
             sent, {dropped} dropped while the node was saturated or its queue full)",
            mean(&with),
            mean(&without)
        ),
        "unchanged within noise (≥ 0.9)",
        Some(ratio >= 0.9),
    );
    std::fs::write(
        results_file,
        results.0.lock().unwrap_or_else(|p| p.into_inner()).as_str(),
    )?;
    state.workers.shutdown().await;
    Ok(())
}

/// `POST /api/v1/identities/` as fast as `connections` clients go for `seconds`: requests/s.
async fn identities_per_second(base: &str, connections: u64, seconds: u64) -> Res<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (stop, done) = (stop.clone(), done.clone());
        let url = format!("{base}/api/v1/identities/");
        let client = reqwest::Client::new();
        tasks.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = json!({"identifier": format!("user-{c}-{}", n % 1000), "transient": true,
                    "traits": [{"trait_key": "plan", "trait_value": "pro"}]});
                let response = client
                    .post(&url)
                    .header("x-environment-key", KEY)
                    .json(&body)
                    .send()
                    .await?;
                if !response.status().is_success() {
                    return Err(format!("identities answered {}", response.status()).into());
                }
                response.bytes().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Res::Ok(())
        });
    }
    let before = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while let Some(task) = tasks.join_next().await {
        task??;
    }
    Ok((after - before) as f64 / elapsed)
}

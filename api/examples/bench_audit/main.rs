//! The audit history at scale, as `scripts/bench-audit` measures it (issue 11).
//!
//! `bench_audit <database_url> <events> <results_file>` starts the real server in-process
//! (`api::start` and `api::http::router` on a loopback port), creates the first administrator
//! through `POST /api/v1/users/config/init/`, then generates `events` events through the command
//! path (`Commands::execute`: projects, environments, features, segments, feature states,
//! segment and identity overrides, feature and segment edits, by several users from many
//! concurrent tasks, so the batching log writer is used; and change requests opened, approved
//! and committed or rejected over HTTP). Generation is setup: its rate is printed, not judged.
//! The background workers are stopped before generating, so the audit history's read model is
//! empty when the log is full. Then it measures:
//!
//! - catch-up: `projections::audit_history::AuditHistory` run by `projections::runner::run`
//!   from an empty read model to the log's head (events/s);
//! - queries: `GET /api/v1/audit-log/` with each kind of filter, one request at a time
//!   (p50/p95/max per kind);
//! - export: `GET /api/v1/audit-log/export` of the whole log as NDJSON and as CSV, streamed
//!   (rows/s, and this process's VmRSS at the start, its peak while streaming, and the end),
//!   each twice: memory is judged on the second, once the allocator holds what it keeps;
//! - verify: `commands::verify::verify` of the whole log (events/s);
//! - as-of: `GET /api/v1/environment-document/?as_of_position=N` of one environment, for N
//!   near the start of the log (the goal) and further on (p50/p95).
//!
//! Progress goes to stderr; each figure with its goal is written as a tab-separated line
//! (`figure`, `value`, `goal`, `verdict`) to `results_file`, for the script's summary table.
//!
//! Environment: `BENCH_QUERIES` requests timed per filter kind (default 200), `BENCH_WRITERS`
//! concurrent generating tasks (default 64).

use std::error::Error;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use projections::audit_history::AuditHistory;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod client;
mod generate;

use client::*;
use generate::*;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The results file: one tab-separated line per figure.
struct Results {
    lines: Mutex<String>,
}

impl Results {
    fn record(&self, figure: &str, value: String, goal: &str, verdict: &str) {
        eprintln!("  {figure}: {value} (goal {goal}) {verdict}");
        let mut lines = self.lines.lock().expect("the results lock is not poisoned");
        let _ = writeln!(lines, "{figure}\t{value}\t{goal}\t{verdict}");
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// As the `flaglog` binary (api/src/main.rs): the server measured runs on the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, events, results_file] = args.as_slice() else {
        return Err("usage: bench_audit <database_url> <events> <results_file>".into());
    };
    let target: u64 = events.parse()?;
    let queries = env_number("BENCH_QUERIES", 200).max(1);
    let writers = env_number("BENCH_WRITERS", 64).max(1);
    let results = Results {
        lines: Mutex::new(String::new()),
    };

    // The server, in this process (as the end-to-end tests run it).
    let state = api::start(url).await?;
    let log = state.log.clone();
    let pool = state.read_models.clone();
    let commands = state.commands.clone();
    let router = api::http::router(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let http = Http {
        base: format!("http://{address}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?,
    };
    let admin = http
        .post(
            "/api/v1/users/config/init/",
            "",
            json!({"email": "admin@example.com"}),
        )
        .await?;
    let token = admin["token"]
        .as_str()
        .ok_or("init answered no token")?
        .to_string();
    let mut actors = vec![format!("user:{}", admin["id"])];
    for n in 1..USERS {
        let user = http
            .post(
                "/api/v1/users/",
                &token,
                json!({"email": format!("user{n}@example.com"), "is_admin": true}),
            )
            .await?;
        actors.push(format!("user:{}", user["id"]));
    }
    let reviewer = http
        .post(
            "/api/v1/users/",
            &token,
            json!({"email": "reviewer@example.com", "is_admin": false}),
        )
        .await?;
    let reviewer_id = reviewer["id"].as_u64().ok_or("no reviewer id")?;
    let reviewer_token = reviewer["token"]
        .as_str()
        .ok_or("no reviewer token")?
        .to_string();
    // The log is filled with the projections stopped, so the audit history's catch-up starts
    // from an empty read model over a full log (and generation does not share the CPU).
    state.workers.shutdown().await;

    // Setup: projects, environments, features, segments; one environment under four-eyes.
    let started = Instant::now();
    let mut setup = tokio::task::JoinSet::new();
    for p in 0..PROJECTS {
        let commands = commands.clone();
        let actor = actors[0].clone();
        setup.spawn(async move { create_project(&commands, &actor, p).await });
    }
    let mut projects = Vec::new();
    while let Some(project) = setup.join_next().await {
        projects.push(project??);
    }
    projects.sort_by_key(|p| p.id);
    let review_project = &projects[0];
    let review_environment = execute(
        &commands,
        &actors[0],
        json!({"type": "create_environment", "project_id": review_project.id,
               "name": "review", "client_key": REVIEW_KEY}),
    )
    .await?
    .created_id()?;
    execute(
        &commands,
        &actors[0],
        json!({"type": "set_project_role", "project_id": review_project.id,
               "user_id": reviewer_id, "role": "approver"}),
    )
    .await?;
    execute(
        &commands,
        &actors[0],
        json!({"type": "update_environment_settings", "environment_id": review_environment,
               "minimum_change_request_approvals": 1}),
    )
    .await?;
    let setup_head = log.head().await?;
    eprintln!(
        "setup: {} projects, {} environments, {} features, {} segments: {setup_head} events in {:.1}s",
        projects.len(),
        projects.iter().map(|p| p.environments.len()).sum::<usize>() + 1,
        projects.iter().map(|p| p.features.len()).sum::<usize>(),
        projects.iter().map(|p| p.segments.len()).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );

    // Generation: many tasks executing commands until the log holds `target` events.
    let projects = Arc::new(projects);
    let actors = Arc::new(actors);
    let reached = Arc::new(AtomicU64::new(setup_head));
    let refused = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(setup_head >= target));
    let first_refusal: Arc<Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let (commands, projects, actors) = (commands.clone(), projects.clone(), actors.clone());
        let (reached, refused, done, first_refusal) = (
            reached.clone(),
            refused.clone(),
            done.clone(),
            first_refusal.clone(),
        );
        tasks.spawn(async move {
            let mut dice = Dice(writer + 1);
            while !done.load(Ordering::Relaxed) {
                let actor = dice.pick(&actors).clone();
                let command = random_command(&mut dice, &projects);
                match execute(&commands, &actor, command).await {
                    Ok(executed) => {
                        let position = executed.position.unwrap_or(0);
                        if reached.fetch_max(position, Ordering::Relaxed).max(position) >= target {
                            done.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_refusal.lock().expect("not poisoned");
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        });
    }
    // Change requests beside them, over HTTP: opened by an administrator, approved by the
    // reviewer, then committed (two in three) or rejected.
    let reviews = {
        let (http, token, reviewer_token, done) = (
            http.clone(),
            token.clone(),
            reviewer_token.clone(),
            done.clone(),
        );
        let features: Vec<u64> = projects[0].features.iter().map(|f| f.0).collect();
        tokio::spawn(async move {
            change_requests(
                &http,
                &token,
                &reviewer_token,
                review_environment,
                &features,
                &done,
            )
            .await
        })
    };
    // Progress, and the instants the history's time windows are taken from.
    let mut marks: Vec<(time::OffsetDateTime, u64)> = Vec::new();
    let mut last_print = Instant::now();
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let head = log.head().await?;
        marks.push((time::OffsetDateTime::now_utc(), head));
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            eprintln!(
                "  generated {head} events ({:.0} events/s)",
                (head - setup_head) as f64 / started.elapsed().as_secs_f64()
            );
        }
        if tasks.is_empty() {
            break;
        }
    }
    while let Some(task) = tasks.join_next().await {
        task?;
    }
    let change_request_ids = reviews.await??;
    let head = log.head().await?;
    let generation_seconds = started.elapsed().as_secs_f64();
    marks.push((time::OffsetDateTime::now_utc(), head));
    let generation_rate = (head - setup_head) as f64 / generation_seconds;
    eprintln!(
        "generated {head} events in {generation_seconds:.1}s ({generation_rate:.0} events/s, \
         {writers} tasks; {} commands refused{}; {} change requests)",
        refused.load(Ordering::Relaxed),
        first_refusal
            .lock()
            .expect("not poisoned")
            .as_deref()
            .map(|e| format!(", e.g. {e}"))
            .unwrap_or_default(),
        change_request_ids.len()
    );
    results.record(
        "generation through Commands::execute (setup)",
        format!("{head} events, {generation_rate:.0} events/s"),
        "-",
        "-",
    );

    // Catch-up: the audit history from an empty read model to the head.
    AuditHistory::reset(&pool).await?;
    let (progress, mut applied) = tokio::sync::watch::channel(0);
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let runner = tokio::spawn(projections::runner::run(
        log.clone(),
        AuditHistory::new(pool.clone()),
        progress,
        cancel.clone(),
    ));
    applied.wait_for(|position| *position >= head).await?;
    let catch_up = head as f64 / started.elapsed().as_secs_f64();
    cancel.cancel();
    runner.await??;
    results.record(
        "audit projection catch-up",
        format!("{catch_up:.0} events/s"),
        ">= 50000 events/s",
        verdict(catch_up >= 50_000.0),
    );

    // Queries: each kind of filter, one request at a time.
    let time_window = |share: f64| -> (String, String) {
        // About 1 % of the generation's duration, starting `share` of the way through it.
        let (first, last) = (marks[0].0, marks[marks.len() - 1].0);
        let span = last - first;
        let from = first + span * share;
        (rfc3339(from), rfc3339(from + span * 0.01))
    };
    let cursors = deep_cursors(&http, &token, &marks).await?;
    let event_types: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT event_type FROM audit_log WHERE project_id IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    let mut dice = Dice(7);
    let mut kinds: Vec<(&str, Vec<String>)> = Vec::new();
    let all_features: Vec<&(u64, String)> = projects.iter().flat_map(|p| &p.features).collect();
    let all_environments: Vec<u64> = projects
        .iter()
        .flat_map(|p| p.environments.iter().copied())
        .collect();
    let many = |make: &mut dyn FnMut(&mut Dice) -> String, dice: &mut Dice| {
        (0..32).map(|_| make(dice)).collect::<Vec<_>>()
    };
    kinds.push(("none (newest page)", vec![String::new()]));
    kinds.push((
        "project",
        many(
            &mut |d| format!("project={}", d.pick(&projects).id),
            &mut dice,
        ),
    ));
    kinds.push((
        "environment",
        many(
            &mut |d| format!("environment={}", d.pick(&all_environments)),
            &mut dice,
        ),
    ));
    kinds.push((
        "feature",
        many(
            &mut |d| format!("feature={}", d.pick(&all_features).0),
            &mut dice,
        ),
    ));
    kinds.push((
        "actor",
        many(&mut |d| format!("actor={}", d.pick(&actors[..])), &mut dice),
    ));
    kinds.push((
        "event_type",
        many(
            &mut |d| format!("event_type={}", d.pick(&event_types)),
            &mut dice,
        ),
    ));
    if !change_request_ids.is_empty() {
        kinds.push((
            "change_request",
            many(
                &mut |d| format!("change_request={}", d.pick(&change_request_ids)),
                &mut dice,
            ),
        ));
    }
    kinds.push((
        "time range (from, to)",
        many(
            &mut |d| {
                let (from, to) = time_window(d.below(99) as f64 / 100.0);
                format!("from={from}&to={to}")
            },
            &mut dice,
        ),
    ));
    kinds.push((
        "q (a feature's name)",
        many(&mut |d| format!("q={}", d.pick(&all_features).1), &mut dice),
    ));
    kinds.push(("q (text no row has)", vec!["q=no-such-text".to_string()]));
    kinds.push((
        "cursor deep in the history",
        cursors.iter().map(|c| format!("cursor={c}")).collect(),
    ));
    kinds.push((
        "environment + feature",
        many(
            &mut |d| {
                let project = d.pick(&projects);
                format!(
                    "environment={}&feature={}",
                    d.pick(&project.environments),
                    d.pick(&project.features).0
                )
            },
            &mut dice,
        ),
    ));
    eprintln!(
        "queries: {queries} per kind (after {} not timed)",
        queries / 10
    );
    eprintln!(
        "  {:<28} {:>9} {:>9} {:>9} {:>7}",
        "filter", "p50 ms", "p95 ms", "max ms", "empty"
    );
    let mut worst_p95: f64 = 0.0;
    let mut query_lines = Vec::new();
    for (kind, paths) in &kinds {
        let mut latencies = Vec::with_capacity(queries as usize);
        let mut empty = 0;
        for n in 0..queries + queries / 10 {
            let path = format!("/api/v1/audit-log/?{}", paths[n as usize % paths.len()]);
            let at = Instant::now();
            let page = http.get(&path, &token).await?;
            let took = at.elapsed().as_secs_f64() * 1000.0;
            if n < queries / 10 {
                continue;
            }
            latencies.push(took);
            if page["results"].as_array().is_none_or(Vec::is_empty) {
                empty += 1;
            }
        }
        latencies.sort_by(f64::total_cmp);
        let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        let (p50, p95, max) = (quantile(0.5), quantile(0.95), quantile(1.0));
        worst_p95 = worst_p95.max(p95);
        eprintln!("  {kind:<28} {p50:>9.1} {p95:>9.1} {max:>9.1} {empty:>7}");
        query_lines.push((kind.to_string(), p50, p95));
    }
    for (kind, p50, p95) in query_lines {
        results.record(
            &format!("audit query p95: {kind}"),
            format!("{p95:.1} ms (p50 {p50:.1})"),
            "< 50 ms",
            verdict(p95 < 50.0),
        );
    }

    // Exports of the whole log, streamed, with this process's resident memory. Each format is
    // exported twice: the first export leaves the allocator holding the pages it freed
    // (mimalloc returns them lazily; with MIMALLOC_PURGE_DELAY=0 the same export peaks at a
    // fraction of it and ends where it started), so flatness is judged on the second; what it
    // kept beyond the first's end is printed beside it (a leak would grow it with the rows).
    for format in ["ndjson", "csv"] {
        let (rows, bytes, seconds, first) = export(&http, &token, format).await?;
        let rate = rows as f64 / seconds;
        results.record(
            &format!("export {format}"),
            format!(
                "{rows} rows, {rate:.0} rows/s, {:.1} MB/s",
                bytes as f64 / seconds / 1e6
            ),
            "-",
            "-",
        );
        let mib = |(start, peak, end): (u64, u64, u64)| {
            format!(
                "{} / {} / {} MiB (peak +{} MiB)",
                start / 1024,
                peak / 1024,
                end / 1024,
                peak.saturating_sub(start) / 1024
            )
        };
        results.record(
            &format!("export {format}: RSS start / peak / end, first export"),
            mib(first),
            "-",
            "-",
        );
        let (_, _, _, again) = export(&http, &token, format).await?;
        let growth = again.1.saturating_sub(again.0);
        let kept = again.2.saturating_sub(first.2);
        results.record(
            &format!("export {format}: RSS start / peak / end, again"),
            format!(
                "{} (kept since the first: +{} MiB)",
                mib(again),
                kept / 1024
            ),
            "flat (peak < start + 64 MiB)",
            verdict(growth < 64 * 1024),
        );
    }

    // Verify the whole hash chain.
    let started = Instant::now();
    let verification = commands::verify::verify(&*log, 1, None, None).await?;
    let seconds = started.elapsed().as_secs_f64();
    let verified = verification.last + 1 - verification.first;
    let rate = verified as f64 / seconds;
    if !verification.intact {
        return Err(format!("verify: {}", verification.summary()).into());
    }
    results.record(
        "verify",
        format!("{verified} events in {seconds:.2}s, {rate:.0} events/s"),
        ">= 200000 events/s",
        verdict(rate >= 200_000.0),
    );

    // As-of documents: an environment's document as it stood at a position near the start of
    // the log (the goal), and further on for comparison (the cost grows with the position).
    let environment_key = "bench-0-0";
    let as_of_requests = (queries / 10).max(5);
    for (share, requests) in [(1, as_of_requests), (10, as_of_requests), (50, 5), (100, 3)] {
        let position = (head * share / 100).max(setup_head);
        let path = format!(
            "/api/v1/environment-document/?environment={environment_key}&as_of_position={position}"
        );
        let mut latencies = Vec::new();
        for n in 0..=requests {
            let at = Instant::now();
            let document = http.get(&path, &token).await?;
            let took = at.elapsed().as_secs_f64() * 1000.0;
            if document["feature_states"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                return Err(format!("{path}: a document without feature states").into());
            }
            // The first request is not timed.
            if n > 0 {
                latencies.push(took);
            }
        }
        latencies.sort_by(f64::total_cmp);
        let p95 = latencies[((latencies.len() - 1) as f64 * 0.95).round() as usize];
        let p50 = latencies[(latencies.len() - 1) / 2];
        let figure = format!("as-of document at position {position} ({share} % of the log)");
        if share == 1 {
            results.record(
                &figure,
                format!("p95 {p95:.1} ms (p50 {p50:.1})"),
                "< 200 ms",
                verdict(p95 < 200.0),
            );
        } else {
            results.record(&figure, format!("p95 {p95:.1} ms (p50 {p50:.1})"), "-", "-");
        }
    }

    let text = results.lines.into_inner().expect("not poisoned");
    std::fs::write(results_file, text)?;
    server.abort();
    Ok(())
}

//! Append throughput of the PostgreSQL event log, as `scripts/bench-append` measures it.
//!
//! `bench_append <database_url> <writers> <seconds>` migrates the database, then runs `writers`
//! tasks for `seconds`, each appending single events to its own stream with an `Exact` expected
//! version, the way a command handler does, and prints the events appended per second. Each run
//! uses fresh stream names, so runs on the same database do not conflict.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::log::{EventLog, ExpectedVersion, Metadata, NewEvent, StreamAppend};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, writers, seconds] = args.as_slice() else {
        return Err("usage: bench_append <database_url> <writers> <seconds>".into());
    };
    let writers: usize = writers.parse()?;
    let duration = Duration::from_secs_f64(seconds.parse()?);

    commands::log::migrate(url).await?;
    let log = commands::log::connect(url).await?;
    let run = uuid::Uuid::new_v4().simple().to_string();

    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        tasks.spawn(append_until(
            log.clone(),
            format!("bench-{run}-{writer}"),
            deadline,
        ));
    }
    let mut events = 0_u64;
    while let Some(appended) = tasks.join_next().await {
        events += appended??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("{:.1}", events as f64 / elapsed);
    Ok(())
}

async fn append_until(
    log: Arc<dyn EventLog>,
    stream_id: String,
    deadline: Instant,
) -> Result<u64, domain::log::LogError> {
    let mut version = 0;
    while Instant::now() < deadline {
        let appended = log
            .append(
                vec![StreamAppend {
                    stream_id: stream_id.clone(),
                    expected: ExpectedVersion::from_loaded(version),
                    events: vec![NewEvent {
                        event_type: "FeatureStateChanged".into(),
                        schema_version: 1,
                        payload: json!({"feature": 7, "enabled": true, "n": version}),
                    }],
                }],
                Metadata::actor("bench"),
            )
            .await?;
        version = appended.stream_versions[0].1;
    }
    Ok(version)
}

//! Concurrent writers and readers: one winner among creations, reopening, several instances, and the proof that no tailing reader skips an event.

use super::*;

pub(super) async fn concurrent_no_stream_appends_admit_exactly_one(h: Harness) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let log = h.log.clone();
        tasks.spawn(async move {
            let contested = log
                .append(
                    vec![to("contested", ExpectedVersion::NoStream, events(1))],
                    Metadata::actor(format!("user:{i}")),
                )
                .await;
            let own = log
                .append(
                    vec![to(
                        &format!("own-{i}"),
                        ExpectedVersion::NoStream,
                        events(1),
                    )],
                    Metadata::actor(format!("user:{i}")),
                )
                .await;
            (contested, own)
        });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (contested, own) = joined.unwrap();
        match contested {
            Ok(_) => won += 1,
            Err(LogError::Conflict { actual: 1, .. }) => lost += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
        own.unwrap();
    }
    assert_eq!((won, lost), (1, 19));
    assert_eq!(h.log.head().await.unwrap(), 21);
    assert_eq!(h.log.read_stream("contested", 0).await.unwrap().len(), 1);
    verify_chain(GENESIS_HASH, &h.everything().await).unwrap();
}

pub(super) async fn appends_after_reopening_continue_the_chain(h: Harness) {
    h.append(vec![to("a", ExpectedVersion::NoStream, events(3))])
        .await;
    let reopened = h.db.event_log().await;
    let appended = reopened
        .append(
            vec![to("a", ExpectedVersion::Exact(3), events(2))],
            metadata(),
        )
        .await
        .unwrap();
    assert_eq!(appended.last_position, 5);
    let all = h.everything().await;
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    verify_chain(GENESIS_HASH, &all).expect("the chain continues across instances");
}

/// Two adapter instances on one database (two nodes, or two processes on one SQLite file): what
/// one appends, the other's expectations must be checked against.
pub(super) async fn expectations_see_appends_made_through_another_instance(h: Harness) {
    let other = h.db.event_log().await;
    h.append(vec![to("s", ExpectedVersion::NoStream, events(1))])
        .await;
    other
        .append(
            vec![to("s", ExpectedVersion::Exact(1), events(1))],
            metadata(),
        )
        .await
        .unwrap();
    let stale = h
        .log
        .append(
            vec![to("s", ExpectedVersion::Exact(1), events(1))],
            metadata(),
        )
        .await;
    assert!(
        matches!(stale, Err(LogError::Conflict { actual: 2, .. })),
        "{stale:?}"
    );
    let fresh = h
        .append(vec![to("s", ExpectedVersion::Exact(2), events(1))])
        .await;
    assert_eq!(fresh.last_position, 3);
    verify_chain(GENESIS_HASH, &h.everything().await).unwrap();
}

pub(super) async fn tailing_reader_never_skips_an_event_under_concurrent_writers(h: Harness) {
    prove_no_subscriber_skips(vec![h.log.clone()], 16, 100).await;
}

// ---------------------------------------------------------------------------------------------
// The concurrency proof

/// What one writer task did.
pub(super) struct WriterReport {
    /// The ids of the events its successful appends wrote.
    written: Vec<String>,
    conflicts: usize,
}

/// What one tailing reader saw, in order: (position, event id).
type Seen = Vec<(u64, String)>;

/// `writers` tasks, spread over `logs` (one adapter per "node"), each append at least
/// `per_writer` events: single events and batches of three to their own stream, single events to
/// one of four shared streams, and multi-stream appends (own + shared). Their views of the shared
/// streams go stale, so they conflict and retry with the version the conflict reports. Meanwhile
/// one reader per adapter tails the log (`read_all` after its checkpoint, `wait_for_events` when
/// caught up) until the writers are done and it has read everything. Every reader must see every
/// position exactly once, in order, without gaps, each stream's versions without gaps, an
/// unbroken hash chain, and exactly the events the writers were told were written.
pub(super) async fn prove_no_subscriber_skips(
    logs: Vec<Arc<dyn EventLog>>,
    writers: usize,
    per_writer: usize,
) {
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = logs
        .iter()
        .map(|log| tokio::spawn(tail(log.clone(), done.clone())))
        .collect();

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        tasks.spawn(write(logs[w % logs.len()].clone(), w, per_writer));
    }
    let mut written = Vec::new();
    let mut conflicts = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(240), async {
        while let Some(report) = tasks.join_next().await {
            let report = report.expect("writer task");
            written.extend(report.written);
            conflicts += report.conflicts;
        }
    })
    .await;
    assert!(outcome.is_ok(), "writers did not finish in time");
    done.store(true, Ordering::SeqCst);

    let expected: BTreeSet<String> = written.iter().cloned().collect();
    assert_eq!(
        expected.len(),
        written.len(),
        "an event id was written twice"
    );
    assert!(written.len() >= writers * per_writer);
    assert!(
        conflicts > 0,
        "the writers never conflicted, so the retry path was not exercised"
    );

    for reader in readers {
        let seen = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("reader did not finish in time")
            .expect("reader task");
        let positions: Vec<u64> = seen.iter().map(|(p, _)| *p).collect();
        let all: Vec<u64> = (1..=written.len() as u64).collect();
        assert_eq!(
            positions, all,
            "the reader did not see positions 1..=N once each"
        );
        let ids: BTreeSet<String> = seen.into_iter().map(|(_, id)| id).collect();
        assert_eq!(
            ids, expected,
            "the reader saw other events than were written"
        );
    }
    for log in &logs {
        assert_eq!(log.head().await.unwrap(), written.len() as u64);
    }
}

pub(super) async fn write(log: Arc<dyn EventLog>, w: usize, per_writer: usize) -> WriterReport {
    let own = format!("writer-{w}");
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut written = Vec::new();
    let mut conflicts = 0;
    let mut next_id = 0;
    let mut round = 0;
    while written.len() < per_writer {
        let shared = format!("shared-{}", (w + round) % 4);
        let kind = round % 4;
        round += 1;
        let sizes: Vec<(&str, usize)> = match kind {
            0 => vec![(&own, 1)],
            1 => vec![(&own, 3)],
            2 => vec![(&shared, 1)],
            _ => vec![(&own, 1), (&shared, 1)],
        };
        // Ids are fixed before the first try: a conflicting try must write nothing, so a retry
        // reusing them would show up as a duplicate if it had.
        let ids: Vec<Vec<String>> = sizes
            .iter()
            .map(|(_, n)| {
                (0..*n)
                    .map(|_| {
                        next_id += 1;
                        format!("{w}-{next_id}")
                    })
                    .collect()
            })
            .collect();
        loop {
            let appends = sizes
                .iter()
                .zip(&ids)
                .map(|((stream, _), ids)| {
                    let version = versions.get(*stream).copied().unwrap_or(0);
                    to(
                        stream,
                        ExpectedVersion::from_loaded(version),
                        ids.iter()
                            .map(|id| event("Tick", json!({ "id": id, "writer": w })))
                            .collect(),
                    )
                })
                .collect();
            match log
                .append(appends, Metadata::actor(format!("writer:{w}")))
                .await
            {
                Ok(appended) => {
                    for (stream, version) in appended.stream_versions {
                        versions.insert(stream, version);
                    }
                    written.extend(ids.into_iter().flatten());
                    break;
                }
                Err(LogError::Conflict {
                    stream_id, actual, ..
                }) => {
                    conflicts += 1;
                    versions.insert(stream_id, actual);
                }
                Err(other) => panic!("writer {w}: {other}"),
            }
        }
    }
    WriterReport { written, conflicts }
}

pub(super) async fn tail(log: Arc<dyn EventLog>, done: Arc<AtomicBool>) -> Seen {
    let mut seen = Vec::new();
    let mut checkpoint = 0;
    let mut prev_hash = GENESIS_HASH;
    let mut stream_versions: HashMap<String, u64> = HashMap::new();
    loop {
        // Read `done` before reading: if the writers had all finished by then, everything they
        // wrote is committed and this read returns it.
        let writers_done = done.load(Ordering::SeqCst);
        // A small page, so the reader interleaves with the writers.
        let page = log.read_all(checkpoint, 37).await.unwrap();
        if page.is_empty() {
            if writers_done {
                return seen;
            }
            log.wait_for_events(checkpoint, Duration::from_millis(500))
                .await
                .unwrap();
            continue;
        }
        prev_hash = verify_chain(prev_hash, &page)
            .unwrap_or_else(|position| panic!("the chain breaks at position {position}"));
        for event in page {
            assert_eq!(
                event.position,
                checkpoint + 1,
                "the reader jumped from {checkpoint} to {}",
                event.position
            );
            checkpoint = event.position;
            let version = stream_versions.entry(event.stream_id.clone()).or_insert(0);
            assert_eq!(
                event.version,
                *version + 1,
                "stream {} skipped a version",
                event.stream_id
            );
            *version = event.version;
            let id = event.payload["id"].as_str().unwrap_or_default().to_string();
            seen.push((event.position, id));
        }
    }
}

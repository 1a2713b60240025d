//! The `EventLog` contract: one suite of behaviours, run against the PostgreSQL and the SQLite
//! adapter alike (the `contract!` macro instantiates every body once per backend), plus the
//! PostgreSQL-only behaviours of several nodes sharing one database.
//!
//! Every test gets a fresh database from `commands::log::testing::TestDatabase`. The PostgreSQL
//! tests never skip: if PostgreSQL is unreachable they fail, saying so.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use commands::log::Backend;
use commands::log::testing::TestDatabase;
use domain::log::{
    Appended, EventLog, ExpectedVersion, GENESIS_HASH, LogError, Metadata, NewEvent, RecordedEvent,
    StreamAppend, canonical_json, verify_chain,
};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};

/// Long enough that a slow CI machine does not make a prompt wake-up look late.
const PROMPTLY: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Harness

/// One adapter on one fresh database.
struct Harness {
    // Declared before `db` so the adapter goes away before its database is dropped.
    log: Arc<dyn EventLog>,
    db: TestDatabase,
}

impl Harness {
    async fn postgres() -> Self {
        Self::on(TestDatabase::postgres().await).await
    }

    async fn sqlite() -> Self {
        Self::on(TestDatabase::sqlite().await).await
    }

    async fn on(db: TestDatabase) -> Self {
        Self {
            log: db.event_log().await,
            db,
        }
    }

    /// Runs `sql` on a connection of its own, bypassing the adapter.
    async fn execute_raw(&self, sql: &'static str) -> Result<u64, String> {
        match self.db.backend() {
            Backend::Postgres => {
                let mut connection = PgConnection::connect(self.db.url()).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut connection)
                    .await
                    .map(|done| done.rows_affected())
            }
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(self.db.url()).await.unwrap();
                sqlx::query(sql)
                    .execute(&mut connection)
                    .await
                    .map(|done| done.rows_affected())
            }
        }
        .map_err(|e| e.to_string())
    }

    /// The payload column exactly as stored.
    async fn stored_payload_text(&self, position: i64) -> String {
        let sql = match self.db.backend() {
            Backend::Postgres => "SELECT payload FROM events WHERE position = $1",
            Backend::Sqlite => "SELECT payload FROM events WHERE position = ?1",
        };
        match self.db.backend() {
            Backend::Postgres => {
                let mut connection = PgConnection::connect(self.db.url()).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(position)
                    .fetch_one(&mut connection)
                    .await
            }
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(self.db.url()).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(position)
                    .fetch_one(&mut connection)
                    .await
            }
        }
        .unwrap()
    }

    /// Appends that are expected to succeed.
    async fn append(&self, appends: Vec<StreamAppend>) -> Appended {
        self.log.append(appends, metadata()).await.unwrap()
    }

    async fn everything(&self) -> Vec<RecordedEvent> {
        self.log.read_all(0, usize::MAX).await.unwrap()
    }
}

fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_type: event_type.into(),
        schema_version: 1,
        payload,
    }
}

fn to(stream_id: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream_id: stream_id.into(),
        expected,
        events,
    }
}

/// `n` numbered events.
fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("Happened", json!({ "n": i })))
        .collect()
}

fn metadata() -> Metadata {
    Metadata {
        actor: "user:42".into(),
        request_id: Some("req-1".into()),
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        reason: Some("rollout: ünïcödé reason ✓".into()),
        break_glass: true,
        approvers: vec!["user:7".into(), "user:9".into()],
    }
}

fn now_micros() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// Fails a test that hangs (say, on a lock nobody releases) instead of blocking the run.
async fn within_limit(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(300), test)
        .await
        .expect("the test did not finish within 300 s");
}

// ---------------------------------------------------------------------------------------------
// The contract, instantiated for both backends

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::within_limit(super::$name(super::Harness::postgres().await)).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::within_limit(super::$name(super::Harness::sqlite().await)).await;
                }
            )*
        }
    };
}

contract!(
    append_then_read_stream_round_trips_events_and_metadata,
    read_stream_between_is_what_a_stream_gained_between_two_positions,
    read_positions_reads_exactly_those_events_in_order,
    read_all_honours_after_and_limit,
    head_is_the_last_position,
    no_stream_on_an_existing_stream_conflicts_and_writes_nothing,
    stale_exact_version_conflicts_and_writes_nothing,
    multi_stream_append_is_all_or_nothing,
    invalid_appends_are_refused_and_write_nothing,
    hash_chain_verifies_and_survives_the_storage_round_trip,
    update_is_rejected_by_the_database,
    delete_is_rejected_by_the_database,
    truncate_is_rejected_by_the_database,
    wait_for_events_wakes_promptly_when_another_task_appends,
    wait_for_events_returns_after_max_wait_when_nothing_happens,
    wait_for_events_returns_at_once_when_the_head_is_already_past,
    concurrent_no_stream_appends_admit_exactly_one,
    appends_after_reopening_continue_the_chain,
    expectations_see_appends_made_through_another_instance,
    tailing_reader_never_skips_an_event_under_concurrent_writers,
    expectations_on_streams_not_written_are_checked_and_write_nothing,
    a_write_decided_on_a_read_stream_is_ordered_before_any_change_to_it,
);

async fn read_positions_reads_exactly_those_events_in_order(h: Harness) {
    h.append(vec![to("project-1", ExpectedVersion::NoStream, events(5))])
        .await;
    let all = h.log.read_all(0, 10).await.unwrap();
    let read = h.log.read_positions(&[4, 2, 4, 9]).await.unwrap();
    assert_eq!(read, vec![all[1].clone(), all[3].clone()]);
    assert!(h.log.read_positions(&[]).await.unwrap().is_empty());
    let many: Vec<u64> = (1..=1200).map(|p| p % 5 + 1).collect();
    assert_eq!(h.log.read_positions(&many).await.unwrap(), all);
}

async fn read_stream_between_is_what_a_stream_gained_between_two_positions(h: Harness) {
    // project-1 at positions 1, 2 and 4; another stream at 3.
    h.append(vec![to("project-1", ExpectedVersion::NoStream, events(2))])
        .await;
    h.append(vec![to("project-2", ExpectedVersion::Any, events(1))])
        .await;
    h.append(vec![to("project-1", ExpectedVersion::Exact(2), events(1))])
        .await;
    let whole = h.log.read_stream("project-1", 0).await.unwrap();
    for (until, expected) in [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (99, 3)] {
        let then = h
            .log
            .read_stream_between("project-1", 0, until)
            .await
            .unwrap();
        assert_eq!(then, whole[..expected], "until {until}");
    }
    for (after, until, expected) in [(1, 4, 1..3), (2, 3, 2..2), (2, 4, 2..3), (4, 9, 3..3)] {
        let gained = h
            .log
            .read_stream_between("project-1", after, until)
            .await
            .unwrap();
        assert_eq!(gained, whole[expected], "between {after} and {until}");
    }
    let nothing = h.log.read_stream_between("nothing-1", 0, 9).await.unwrap();
    assert!(nothing.is_empty());
}

async fn append_then_read_stream_round_trips_events_and_metadata(h: Harness) {
    let before = now_micros();
    let appended = h
        .append(vec![to(
            "project-1",
            ExpectedVersion::NoStream,
            vec![
                event(
                    "ProjectCreated",
                    json!({"name": "Shop", "tags": ["a", "b"]}),
                ),
                NewEvent {
                    event_type: "ProjectRenamed".into(),
                    schema_version: 3,
                    payload: json!({"name": "Shop 2"}),
                },
            ],
        )])
        .await;
    let after = now_micros();
    assert_eq!(
        appended,
        Appended {
            last_position: 2,
            stream_versions: vec![("project-1".into(), 2)],
        }
    );
    h.append(vec![to("project-2", ExpectedVersion::Any, events(1))])
        .await;

    let stream = h.log.read_stream("project-1", 0).await.unwrap();
    assert_eq!(stream.len(), 2);
    let (first, second) = (&stream[0], &stream[1]);
    assert_eq!((first.position, first.version), (1, 1));
    assert_eq!((second.position, second.version), (2, 2));
    assert_eq!(first.stream_id, "project-1");
    assert_eq!(first.event_type, "ProjectCreated");
    assert_eq!(first.schema_version, 1);
    assert_eq!(first.payload, json!({"name": "Shop", "tags": ["a", "b"]}));
    assert_eq!(second.event_type, "ProjectRenamed");
    assert_eq!(second.schema_version, 3);
    assert_eq!(second.payload, json!({"name": "Shop 2"}));
    for e in &stream {
        assert_eq!(e.metadata, metadata());
        assert!(
            (before..=after).contains(&e.recorded_at_micros),
            "recorded_at {} not within the append ({before}..={after})",
            e.recorded_at_micros
        );
    }
    assert_eq!(first.prev_hash, GENESIS_HASH);
    assert_eq!(second.prev_hash, first.hash);

    let later = h.log.read_stream("project-1", 1).await.unwrap();
    assert_eq!(later, stream[1..].to_vec());
    assert!(h.log.read_stream("project-1", 2).await.unwrap().is_empty());
    assert!(
        h.log
            .read_stream("no-such-stream", 0)
            .await
            .unwrap()
            .is_empty()
    );

    // Metadata with only an actor comes back without the optional fields.
    h.log
        .append(
            vec![to("project-3", ExpectedVersion::NoStream, events(1))],
            Metadata::actor("system"),
        )
        .await
        .unwrap();
    let plain = h.log.read_stream("project-3", 0).await.unwrap();
    assert_eq!(plain[0].metadata, Metadata::actor("system"));
}

async fn read_all_honours_after_and_limit(h: Harness) {
    for i in 0..5 {
        let stream = if i % 2 == 0 { "even" } else { "odd" };
        h.append(vec![to(stream, ExpectedVersion::Any, events(1))])
            .await;
    }
    let positions = |events: Vec<RecordedEvent>| -> Vec<u64> {
        events.into_iter().map(|e| e.position).collect()
    };
    assert_eq!(
        positions(h.log.read_all(0, 100).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(positions(h.log.read_all(2, 2).await.unwrap()), vec![3, 4]);
    assert_eq!(positions(h.log.read_all(4, 100).await.unwrap()), vec![5]);
    assert!(h.log.read_all(5, 100).await.unwrap().is_empty());
    assert!(h.log.read_all(0, 0).await.unwrap().is_empty());
    assert!(h.log.read_all(u64::MAX, 10).await.unwrap().is_empty());
    let all = h.log.read_all(0, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| (e.stream_id.as_str(), e.version))
            .collect::<Vec<_>>(),
        vec![
            ("even", 1),
            ("odd", 1),
            ("even", 2),
            ("odd", 2),
            ("even", 3)
        ]
    );
}

async fn head_is_the_last_position(h: Harness) {
    assert_eq!(h.log.head().await.unwrap(), 0);
    h.append(vec![to("a", ExpectedVersion::NoStream, events(3))])
        .await;
    assert_eq!(h.log.head().await.unwrap(), 3);
    h.append(vec![to("b", ExpectedVersion::NoStream, events(2))])
        .await;
    assert_eq!(h.log.head().await.unwrap(), 5);
    // A conflict does not move it.
    let _ = h
        .log
        .append(
            vec![to("b", ExpectedVersion::NoStream, events(1))],
            metadata(),
        )
        .await;
    assert_eq!(h.log.head().await.unwrap(), 5);
    // Another adapter instance on the same database agrees.
    let other = h.db.event_log().await;
    assert_eq!(other.head().await.unwrap(), 5);
}

async fn no_stream_on_an_existing_stream_conflicts_and_writes_nothing(h: Harness) {
    h.append(vec![to("flag-1", ExpectedVersion::NoStream, events(1))])
        .await;
    let result = h
        .log
        .append(
            vec![to("flag-1", ExpectedVersion::NoStream, events(2))],
            metadata(),
        )
        .await;
    match result {
        Err(LogError::Conflict {
            stream_id,
            expected,
            actual,
        }) => {
            assert_eq!(stream_id, "flag-1");
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, 1);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(h.log.head().await.unwrap(), 1);
    assert_eq!(h.log.read_stream("flag-1", 0).await.unwrap().len(), 1);
}

async fn stale_exact_version_conflicts_and_writes_nothing(h: Harness) {
    h.append(vec![to("seg-1", ExpectedVersion::NoStream, events(2))])
        .await;
    for stale in [ExpectedVersion::Exact(1), ExpectedVersion::Exact(3)] {
        let result = h
            .log
            .append(vec![to("seg-1", stale, events(1))], metadata())
            .await;
        assert!(
            matches!(
                &result,
                Err(LogError::Conflict { stream_id, actual: 2, expected })
                    if stream_id == "seg-1" && *expected == stale
            ),
            "{stale:?} gave {result:?}"
        );
    }
    let missing = h
        .log
        .append(
            vec![to("seg-2", ExpectedVersion::Exact(1), events(1))],
            metadata(),
        )
        .await;
    assert!(matches!(missing, Err(LogError::Conflict { actual: 0, .. })));
    assert_eq!(h.log.head().await.unwrap(), 2);

    let exact = h
        .append(vec![to("seg-1", ExpectedVersion::Exact(2), events(1))])
        .await;
    assert_eq!(exact.stream_versions, vec![("seg-1".to_string(), 3)]);
    let any = h
        .append(vec![to("seg-1", ExpectedVersion::Any, events(1))])
        .await;
    assert_eq!(any.stream_versions, vec![("seg-1".to_string(), 4)]);
    assert_eq!(any.last_position, 4);
    let versions: Vec<u64> = h
        .log
        .read_stream("seg-1", 0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4]);
}

async fn multi_stream_append_is_all_or_nothing(h: Harness) {
    h.append(vec![to("a", ExpectedVersion::NoStream, events(1))])
        .await;

    // `b` and `c` would be fine, but `a` is stale: nothing at all may be written.
    let result = h
        .log
        .append(
            vec![
                to("b", ExpectedVersion::NoStream, events(2)),
                to("a", ExpectedVersion::Exact(5), events(1)),
                to("c", ExpectedVersion::Any, events(1)),
            ],
            metadata(),
        )
        .await;
    assert!(
        matches!(&result, Err(LogError::Conflict { stream_id, actual: 1, .. }) if stream_id == "a"),
        "{result:?}"
    );
    assert_eq!(h.log.head().await.unwrap(), 1);
    assert!(h.log.read_stream("b", 0).await.unwrap().is_empty());
    assert!(h.log.read_stream("c", 0).await.unwrap().is_empty());

    let appended = h
        .append(vec![
            to("b", ExpectedVersion::NoStream, events(2)),
            to("a", ExpectedVersion::Exact(1), events(1)),
            to("c", ExpectedVersion::Any, events(1)),
        ])
        .await;
    assert_eq!(
        appended,
        Appended {
            last_position: 5,
            stream_versions: vec![("b".into(), 2), ("a".into(), 2), ("c".into(), 1)],
        }
    );
    let written: Vec<(u64, String, u64)> = h
        .log
        .read_all(1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.position, e.stream_id, e.version))
        .collect();
    assert_eq!(
        written,
        vec![
            (2, "b".into(), 1),
            (3, "b".into(), 2),
            (4, "a".into(), 2),
            (5, "c".into(), 1)
        ]
    );
}

async fn invalid_appends_are_refused_and_write_nothing(h: Harness) {
    let cases: Vec<(&str, Vec<StreamAppend>)> = vec![
        ("no streams", vec![]),
        (
            "empty stream id",
            vec![to("", ExpectedVersion::Any, events(1))],
        ),
        (
            "a stream without events",
            vec![
                to("a", ExpectedVersion::Any, events(1)),
                to("b", ExpectedVersion::Any, vec![]),
            ],
        ),
        (
            "only expectations",
            vec![StreamAppend::expect("a", ExpectedVersion::NoStream)],
        ),
        (
            "an expectation of any version",
            vec![
                to("a", ExpectedVersion::Any, events(1)),
                StreamAppend::expect("b", ExpectedVersion::Any),
            ],
        ),
        (
            "the same stream twice",
            vec![
                to("a", ExpectedVersion::Any, events(1)),
                to("a", ExpectedVersion::Any, events(1)),
            ],
        ),
        (
            "an empty event type",
            vec![to("a", ExpectedVersion::Any, vec![event("", json!({}))])],
        ),
    ];
    for (case, appends) in cases {
        let result = h.log.append(appends, metadata()).await;
        assert!(
            matches!(result, Err(LogError::Invalid(_))),
            "{case}: {result:?}"
        );
    }
    assert_eq!(h.log.head().await.unwrap(), 0);
}

async fn expectations_on_streams_not_written_are_checked_and_write_nothing(h: Harness) {
    h.append(vec![to("project-7", ExpectedVersion::NoStream, events(2))])
        .await;

    let appended = h
        .append(vec![
            to("environment-1", ExpectedVersion::NoStream, events(1)),
            StreamAppend::expect("project-7", ExpectedVersion::Exact(2)),
        ])
        .await;
    assert_eq!(
        appended,
        Appended {
            last_position: 3,
            stream_versions: vec![("environment-1".into(), 1)],
        }
    );
    assert_eq!(h.log.read_stream("project-7", 0).await.unwrap().len(), 2);

    h.append(vec![to("project-7", ExpectedVersion::Exact(2), events(1))])
        .await;
    let stale = h
        .log
        .append(
            vec![
                to("environment-2", ExpectedVersion::NoStream, events(1)),
                StreamAppend::expect("project-7", ExpectedVersion::Exact(2)),
            ],
            metadata(),
        )
        .await;
    assert!(
        matches!(&stale, Err(LogError::Conflict { stream_id, actual: 3, .. }) if stream_id == "project-7"),
        "{stale:?}"
    );
    let no_stream = h
        .log
        .append(
            vec![
                to("environment-2", ExpectedVersion::NoStream, events(1)),
                StreamAppend::expect("project-7", ExpectedVersion::NoStream),
            ],
            metadata(),
        )
        .await;
    assert!(
        matches!(no_stream, Err(LogError::Conflict { .. })),
        "{no_stream:?}"
    );
    assert!(
        h.log
            .read_stream("environment-2", 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.log.head().await.unwrap(), 4);

    // A stream that must not exist yet, and does not.
    h.append(vec![
        to("environment-2", ExpectedVersion::NoStream, events(1)),
        StreamAppend::expect("segment-9", ExpectedVersion::NoStream),
    ])
    .await;
    assert!(h.log.read_stream("segment-9", 0).await.unwrap().is_empty());
    assert_eq!(h.log.head().await.unwrap(), 5);
}

/// Many rounds of two appends released together: one changes `project`, the other writes
/// `environment` having read `project` at the same version. Both may succeed, but only in that
/// order of the log: a write decided on a read stream never lands after a change to it.
async fn a_write_decided_on_a_read_stream_is_ordered_before_any_change_to_it(h: Harness) {
    h.append(vec![to("project", ExpectedVersion::NoStream, events(1))])
        .await;
    let mut refused = 0;
    for round in 0..40u64 {
        let version = round + 1;
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (log_a, log_b) = (h.log.clone(), h.log.clone());
        let (barrier_a, barrier_b) = (barrier.clone(), barrier.clone());
        let change = tokio::spawn(async move {
            barrier_a.wait().await;
            log_a
                .append(
                    vec![to("project", ExpectedVersion::Exact(version), events(1))],
                    metadata(),
                )
                .await
        });
        let reader = tokio::spawn(async move {
            barrier_b.wait().await;
            log_b
                .append(
                    vec![
                        to(
                            &format!("environment-{round}"),
                            ExpectedVersion::NoStream,
                            events(1),
                        ),
                        StreamAppend::expect("project", ExpectedVersion::Exact(version)),
                    ],
                    metadata(),
                )
                .await
        });
        let change = change
            .await
            .unwrap()
            .expect("the change itself never conflicts");
        match reader.await.unwrap() {
            Ok(read) => assert!(
                read.last_position < change.last_position,
                "round {round}: the write decided on project v{version} landed after it moved"
            ),
            Err(LogError::Conflict { stream_id, .. }) => {
                assert_eq!(stream_id, "project");
                refused += 1;
                let env = h
                    .log
                    .read_stream(&format!("environment-{round}"), 0)
                    .await
                    .unwrap();
                assert!(env.is_empty(), "round {round}: a refused append wrote");
            }
            Err(other) => panic!("round {round}: {other}"),
        }
    }
    assert_eq!(
        h.log.read_stream("project", 0).await.unwrap().len(),
        41,
        "{refused} refused"
    );
}

/// Payloads whose JSON a careless store would change: floats, big integers, unicode, escapes,
/// and objects whose keys are not sorted.
fn awkward_payloads() -> Vec<Value> {
    vec![
        json!({"price": 12.5, "ratio": 1.0, "tenth": 0.1, "sum": 0.30000000000000004}),
        json!({"tiny": 5e-324, "huge": 1.7976931348623157e308, "small": 2.2250738585072014e-308,
               "neg_zero": -0.0, "exp": 1e21, "third": 0.3333333333333333}),
        json!({"u64_max": u64::MAX, "i64_min": i64::MIN, "past_f64": 9_007_199_254_740_993_u64,
               "zero": 0, "negative": -17}),
        json!({"text": "héllo wörld 🌍 中文 ☃", "escapes": "quote\" back\\slash\nnew\ttab\u{1}",
               "rtl": "مرحبا", "empty": ""}),
        json!({"z": {"y": [3, {"k": true, "b": null}], "a": "first?"}, "m": [], "b": {},
               "a": [1.5, -2, "x", false]}),
        json!([{"b": 1, "a": 2}, 1.0, null]),
        json!("just a string"),
        json!(12.5),
        Value::Null,
    ]
}

async fn hash_chain_verifies_and_survives_the_storage_round_trip(h: Harness) {
    let payloads = awkward_payloads();
    // Several appends, single- and multi-stream, so the chain spans batches and streams.
    for (i, chunk) in payloads.chunks(2).enumerate() {
        let mut appends = vec![to(
            &format!("stream-{i}"),
            ExpectedVersion::NoStream,
            vec![event("Awkward", chunk[0].clone())],
        )];
        if let Some(second) = chunk.get(1) {
            appends.push(to(
                "shared",
                ExpectedVersion::Any,
                vec![event("Awkward", second.clone())],
            ));
        }
        h.append(appends).await;
    }

    let all = h.everything().await;
    assert_eq!(all.len(), payloads.len());
    let last = verify_chain(GENESIS_HASH, &all).expect("the stored chain verifies");
    assert_eq!(last, all.last().unwrap().hash);

    let mut stored_payloads = Vec::new();
    for e in &all {
        assert_eq!(e.hash, e.computed_hash(), "position {}", e.position);
        stored_payloads.push(e.payload.clone());
        // The column holds exactly the canonical text the hash covers.
        let text = h.stored_payload_text(e.position as i64).await;
        assert_eq!(text, canonical_json(&e.payload), "position {}", e.position);
    }
    // Each append puts its `stream-i` event before its `shared` one: the log keeps input order.
    assert_eq!(stored_payloads, payloads);
    for (stored, original) in stored_payloads.iter().zip(&payloads) {
        assert_eq!(canonical_json(stored), canonical_json(original));
    }

    // Stream ids, event types and metadata with quotes, escapes and unicode survive too.
    let awkward_stream = "it's a \"stream\" \\ $$ é🌍 '); DROP TABLE events; --";
    let awkward_metadata = Metadata {
        actor: "user:'o\"brien'".into(),
        request_id: Some("$tag$ \\x00 \n".into()),
        correlation_id: None,
        causation_id: Some("日本語".into()),
        reason: Some("line one\nline 'two'\t\u{7}".into()),
        ..Metadata::default()
    };
    h.log
        .append(
            vec![to(
                awkward_stream,
                ExpectedVersion::NoStream,
                vec![event("Ev'ent \"type\" ☃", json!({"k": "v"}))],
            )],
            awkward_metadata.clone(),
        )
        .await
        .unwrap();
    let stored = h.log.read_stream(awkward_stream, 0).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].stream_id, awkward_stream);
    assert_eq!(stored[0].event_type, "Ev'ent \"type\" ☃");
    assert_eq!(stored[0].metadata, awkward_metadata);
    assert_eq!(stored[0].hash, stored[0].computed_hash());
    let all = h.everything().await;
    verify_chain(GENESIS_HASH, &all).expect("the chain verifies with awkward text");

    // Tampering with any field of a read event breaks verification at that event.
    let mut tampered = all.clone();
    tampered[3].payload = json!({"price": 12.6});
    assert_eq!(verify_chain(GENESIS_HASH, &tampered), Err(4));
}

/// Three events to tamper with.
async fn seed(h: &Harness) {
    h.append(vec![to("a", ExpectedVersion::NoStream, events(2))])
        .await;
    h.append(vec![to("b", ExpectedVersion::NoStream, events(1))])
        .await;
}

/// `sql` must fail because of the append-only rule and leave the log exactly as it was.
async fn assert_rejected(h: &Harness, sql: &'static str) {
    let before = h.everything().await;
    let result = h.execute_raw(sql).await;
    match result {
        Err(message) => assert!(
            message.contains("append-only"),
            "`{sql}` failed, but not because of the append-only rule: {message}"
        ),
        Ok(rows) => panic!("`{sql}` succeeded ({rows} rows affected)"),
    }
    let after = h.everything().await;
    assert_eq!(after.len(), 3);
    assert_eq!(after, before, "`{sql}` changed the log");
}

async fn update_is_rejected_by_the_database(h: Harness) {
    seed(&h).await;
    assert_rejected(
        &h,
        "UPDATE events SET event_type = 'Tampered' WHERE position = 2",
    )
    .await;
    assert_rejected(&h, "UPDATE events SET payload = '{}'").await;
}

async fn delete_is_rejected_by_the_database(h: Harness) {
    seed(&h).await;
    assert_rejected(&h, "DELETE FROM events WHERE position = 3").await;
}

async fn truncate_is_rejected_by_the_database(h: Harness) {
    seed(&h).await;
    let truncate = match h.db.backend() {
        Backend::Postgres => "TRUNCATE events",
        // SQLite has no TRUNCATE; an unqualified DELETE is its truncate optimisation.
        Backend::Sqlite => "DELETE FROM events",
    };
    assert_rejected(&h, truncate).await;
}

async fn wait_for_events_wakes_promptly_when_another_task_appends(h: Harness) {
    h.append(vec![to("a", ExpectedVersion::NoStream, events(1))])
        .await;
    let writer = h.log.clone();
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .append(
                vec![to("a", ExpectedVersion::Exact(1), events(1))],
                metadata(),
            )
            .await
    });
    let started = Instant::now();
    h.log
        .wait_for_events(1, Duration::from_secs(60))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(waited < PROMPTLY, "woke only after {waited:?}");
    append.await.unwrap().unwrap();
    assert_eq!(h.log.read_all(1, 10).await.unwrap().len(), 1);
}

async fn wait_for_events_returns_after_max_wait_when_nothing_happens(h: Harness) {
    let max_wait = Duration::from_millis(300);
    for after in [0, 1] {
        if after == 1 {
            h.append(vec![to("a", ExpectedVersion::NoStream, events(1))])
                .await;
        }
        let started = Instant::now();
        h.log.wait_for_events(after, max_wait).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= max_wait,
            "returned after {waited:?}, before max_wait"
        );
        assert!(waited < PROMPTLY, "took {waited:?}");
    }
}

async fn wait_for_events_returns_at_once_when_the_head_is_already_past(h: Harness) {
    h.append(vec![to("a", ExpectedVersion::NoStream, events(2))])
        .await;
    // Also on a fresh instance, which has never seen an append itself.
    let fresh = h.db.event_log().await;
    for log in [&h.log, &fresh] {
        for after in [0, 1] {
            let started = Instant::now();
            log.wait_for_events(after, Duration::from_secs(60))
                .await
                .unwrap();
            assert!(started.elapsed() < PROMPTLY);
        }
    }
}

async fn concurrent_no_stream_appends_admit_exactly_one(h: Harness) {
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

async fn appends_after_reopening_continue_the_chain(h: Harness) {
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
async fn expectations_see_appends_made_through_another_instance(h: Harness) {
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

async fn tailing_reader_never_skips_an_event_under_concurrent_writers(h: Harness) {
    prove_no_subscriber_skips(vec![h.log.clone()], 16, 100).await;
}

// ---------------------------------------------------------------------------------------------
// The concurrency proof

/// What one writer task did.
struct WriterReport {
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
async fn prove_no_subscriber_skips(
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

async fn write(log: Arc<dyn EventLog>, w: usize, per_writer: usize) -> WriterReport {
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

async fn tail(log: Arc<dyn EventLog>, done: Arc<AtomicBool>) -> Seen {
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

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: several nodes on one database

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_nodes_writing_concurrently_never_let_a_tailing_reader_skip_an_event() {
    within_limit(two_nodes_never_let_a_reader_skip()).await;
}

async fn two_nodes_never_let_a_reader_skip() {
    let db = TestDatabase::postgres().await;
    let nodes = vec![db.event_log().await, db.event_log().await];
    prove_no_subscriber_skips(nodes, 16, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wait_for_events_wakes_for_an_append_by_another_node() {
    within_limit(another_nodes_append_wakes_a_waiter()).await;
}

async fn another_nodes_append_wakes_a_waiter() {
    let db = TestDatabase::postgres().await;
    let (node_a, node_b) = (db.event_log().await, db.event_log().await);
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        node_b
            .append(
                vec![to("a", ExpectedVersion::NoStream, events(1))],
                metadata(),
            )
            .await
    });
    let started = Instant::now();
    node_a
        .wait_for_events(0, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        started.elapsed() < PROMPTLY,
        "woke only after {:?}",
        started.elapsed()
    );
    append.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_reconnects_after_its_connection_is_killed() {
    within_limit(killed_listeners_reconnect()).await;
}

async fn killed_listeners_reconnect() {
    let db = TestDatabase::postgres().await;
    let (node_a, node_b) = (db.event_log().await, db.event_log().await);
    let name = db.url().rsplit('/').next().unwrap().to_string();
    // From the admin database: a database cannot refuse connections while we are in it.
    let mut admin = PgConnection::connect(&TestDatabase::admin_url())
        .await
        .unwrap();
    let allow = |yes: bool| {
        sqlx::AssertSqlSafe(format!(
            r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS {yes}"#
        ))
    };
    let listeners = "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = $1 AND application_name = 'flaglog-listener'";

    // Kill the listeners while the database refuses new connections, so their first attempts to
    // reconnect fail too and they have to keep trying.
    sqlx::query(allow(false)).execute(&mut admin).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND application_name = 'flaglog-listener') AS t",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, 2, "expected one listener connection per node");
    tokio::time::sleep(Duration::from_secs(1)).await;
    sqlx::query(allow(true)).execute(&mut admin).await.unwrap();

    // Both listeners come back on their own.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count: i64 = sqlx::query_scalar(listeners)
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if count == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the listeners did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // And node A hears about node B's append again, long before its 60 s fallback.
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        node_b
            .append(
                vec![to("a", ExpectedVersion::NoStream, events(1))],
                metadata(),
            )
            .await
    });
    let started = Instant::now();
    node_a
        .wait_for_events(0, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        started.elapsed() < PROMPTLY,
        "woke only after {:?}",
        started.elapsed()
    );
    append.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_appends_recover_after_the_writer_connection_is_killed() {
    within_limit(appends_recover_after_the_writer_is_killed()).await;
}

async fn appends_recover_after_the_writer_is_killed() {
    let db = TestDatabase::postgres().await;
    let log = db.event_log().await;
    log.append(
        vec![to("s", ExpectedVersion::NoStream, events(1))],
        metadata(),
    )
    .await
    .unwrap();
    let name = db.url().rsplit('/').next().unwrap().to_string();
    let mut admin = PgConnection::connect(&TestDatabase::admin_url())
        .await
        .unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND application_name = 'flaglog-writer') AS t",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, 1, "expected one writer connection");

    // The batch that finds the connection dead fails as a whole (nothing written); the writer
    // then reconnects, and the next append goes through on top of the intact chain.
    let mut failures = 0;
    let appended = loop {
        match log
            .append(
                vec![to("s", ExpectedVersion::Exact(1), events(1))],
                metadata(),
            )
            .await
        {
            Ok(appended) => break appended,
            Err(LogError::Storage(_)) if failures == 0 => failures += 1,
            Err(other) => panic!("after a reconnect: {other:?}"),
        }
    };
    assert_eq!(appended.last_position, 2);
    let all = log.read_all(0, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    verify_chain(GENESIS_HASH, &all).unwrap();
}

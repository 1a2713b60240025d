//! The writer's batch planning and failure handling, without a database.

use super::*;
use domain::log::{NewEvent, verify_chain};
use serde_json::json;

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_type: "Happened".into(),
        schema_version: 1,
        payload: json!({"n": n}),
    }
}

fn request(appends: Vec<StreamAppend>) -> (Request, oneshot::Receiver<Result<Appended, LogError>>) {
    let (reply, answer) = oneshot::channel();
    let payload_json = appends
        .iter()
        .flat_map(|a| a.events.iter())
        .map(|e| canonical_json(&e.payload))
        .collect();
    let request = Request {
        appends,
        metadata_json: r#"{"actor":"user:1"}"#.into(),
        payload_json,
        reply,
    };
    (request, answer)
}

fn to(stream: &str, expected: ExpectedVersion, events: usize) -> StreamAppend {
    StreamAppend {
        stream_id: stream.into(),
        expected,
        events: (0..events as u64).map(event).collect(),
    }
}

fn recorded(rows: &[Row]) -> Vec<domain::log::RecordedEvent> {
    rows.iter()
        .map(|r| domain::log::RecordedEvent {
            position: r.position as u64,
            stream_id: r.stream_id.clone(),
            version: r.version as u64,
            event_type: r.event_type.clone(),
            schema_version: r.schema_version as u32,
            payload: serde_json::from_str(&r.payload).unwrap(),
            metadata: serde_json::from_str(&r.metadata).unwrap(),
            recorded_at_micros: r.recorded_at_micros,
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
        .collect()
}

#[test]
fn a_conflicting_request_writes_nothing_and_later_requests_see_earlier_ones_in_the_batch() {
    let versions = HashMap::from([("a".to_string(), 2)]);
    let batch = vec![
        request(vec![to("a", ExpectedVersion::Exact(2), 2)]).0,
        // Stale: the first request moved `a` to 4.
        request(vec![
            to("a", ExpectedVersion::Exact(2), 1),
            to("b", ExpectedVersion::Any, 1),
        ])
        .0,
        request(vec![
            to("a", ExpectedVersion::Exact(4), 1),
            to("b", ExpectedVersion::NoStream, 1),
        ])
        .0,
    ];
    let plan = plan(Head::GENESIS, &versions, &batch, 10);

    assert!(matches!(
        &plan.outcomes[1],
        Err(LogError::Conflict { stream_id, actual: 4, .. }) if stream_id == "a"
    ));
    let first = plan.outcomes[0].as_ref().unwrap();
    assert_eq!(first.last_position, 2);
    assert_eq!(first.stream_versions, vec![("a".to_string(), 4)]);
    let third = plan.outcomes[2].as_ref().unwrap();
    assert_eq!(third.last_position, 4);
    assert_eq!(
        third.stream_versions,
        vec![("a".to_string(), 5), ("b".to_string(), 1)]
    );
    assert_eq!(plan.head.position, 4);
    assert_eq!(plan.head.hash, plan.rows[3].hash);
    let layout: Vec<_> = plan
        .rows
        .iter()
        .map(|r| (r.position, r.stream_id.as_str(), r.version))
        .collect();
    assert_eq!(
        layout,
        vec![(1, "a", 3), (2, "a", 4), (3, "a", 5), (4, "b", 1)]
    );
}

#[test]
fn expectations_are_checked_against_earlier_requests_of_the_batch_and_write_nothing() {
    let versions = HashMap::from([("project".to_string(), 5)]);
    let batch = vec![
        // Reads the project at 5 and writes the environment.
        request(vec![
            to("env", ExpectedVersion::NoStream, 1),
            StreamAppend::expect("project", ExpectedVersion::Exact(5)),
        ])
        .0,
        // Moves the project to 6.
        request(vec![to("project", ExpectedVersion::Exact(5), 1)]).0,
        // Decided on the project at 5: refused, although the stored version is 5.
        request(vec![
            to("other", ExpectedVersion::NoStream, 1),
            StreamAppend::expect("project", ExpectedVersion::Exact(5)),
        ])
        .0,
    ];
    let plan = plan(Head::GENESIS, &versions, &batch, 10);
    let first = plan.outcomes[0].as_ref().unwrap();
    assert_eq!(first.stream_versions, vec![("env".to_string(), 1)]);
    assert!(plan.outcomes[1].is_ok());
    assert!(matches!(
        &plan.outcomes[2],
        Err(LogError::Conflict { stream_id, actual: 6, .. }) if stream_id == "project"
    ));
    let layout: Vec<_> = plan
        .rows
        .iter()
        .map(|r| (r.position, r.stream_id.as_str(), r.version))
        .collect();
    assert_eq!(layout, vec![(1, "env", 1), (2, "project", 6)]);
}

#[test]
fn planned_rows_continue_the_chain_from_the_head() {
    let first = plan(
        Head::GENESIS,
        &HashMap::new(),
        &[request(vec![to("a", ExpectedVersion::NoStream, 3)]).0],
        100,
    );
    let last = first.rows.last().unwrap();
    let head = Head {
        position: last.position as u64,
        hash: last.hash,
        recorded_at_micros: last.recorded_at_micros,
    };
    // A clock that went backwards must not make recorded_at go backwards along the log.
    let second = plan(
        head,
        &HashMap::from([("a".to_string(), 3)]),
        &[request(vec![to("a", ExpectedVersion::Exact(3), 2)]).0],
        50,
    );
    assert!(second.rows.iter().all(|r| r.recorded_at_micros == 100));
    let all: Vec<_> = first.rows.iter().chain(&second.rows).cloned().collect();
    assert!(verify_chain(domain::log::GENESIS_HASH, &recorded(&all)).is_ok());
}

#[test]
fn invalid_appends_are_refused() {
    assert!(matches!(validate(&[]), Err(LogError::Invalid(_))));
    assert!(matches!(
        validate(&[to("", ExpectedVersion::Any, 1)]),
        Err(LogError::Invalid(_))
    ));
    assert!(matches!(
        validate(&[to("a", ExpectedVersion::Any, 0)]),
        Err(LogError::Invalid(_))
    ));
    // Expectations alone write nothing; an expectation must name a version.
    assert!(matches!(
        validate(&[StreamAppend::expect("a", ExpectedVersion::Exact(1))]),
        Err(LogError::Invalid(_))
    ));
    assert!(matches!(
        validate(&[
            to("a", ExpectedVersion::Any, 1),
            StreamAppend::expect("b", ExpectedVersion::Any)
        ]),
        Err(LogError::Invalid(_))
    ));
    assert!(
        validate(&[
            to("a", ExpectedVersion::Any, 1),
            StreamAppend::expect("b", ExpectedVersion::NoStream)
        ])
        .is_ok()
    );
    assert!(matches!(
        validate(&[
            to("a", ExpectedVersion::Any, 1),
            to("a", ExpectedVersion::Any, 1)
        ]),
        Err(LogError::Invalid(_))
    ));
    assert!(
        validate(&[
            to("a", ExpectedVersion::Any, 1),
            to("b", ExpectedVersion::Any, 1)
        ])
        .is_ok()
    );
}

/// The stored text must parse back to the very value that was hashed, floats included.
#[test]
fn canonical_json_text_round_trips_any_float_exactly() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..100_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let float = f64::from_bits(state);
        if !float.is_finite() {
            continue;
        }
        let value = json!({ "x": float });
        let text = canonical_json(&value);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(canonical_json(&back), text, "{float:e} did not round-trip");
    }
}

struct FailingStore;

#[async_trait]
impl BatchStore for FailingStore {
    async fn write_batch(&mut self, _batch: &[Request]) -> Result<Plan, LogError> {
        Err(LogError::Storage("disk on fire".into()))
    }
}

#[tokio::test]
async fn when_a_batch_fails_every_request_in_it_gets_a_storage_error() {
    let writer = Arc::new(Writer::spawn(FailingStore, HeadWatch::new(0)).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let writer = writer.clone();
        tasks.spawn(async move {
            let appends = vec![to(&format!("s{i}"), ExpectedVersion::Any, 1)];
            writer.append(appends, Metadata::actor("a")).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        let result = result.unwrap();
        assert!(matches!(result, Err(LogError::Storage(m)) if m.contains("disk on fire")));
    }
}

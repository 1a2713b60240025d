//! Reading: streams, ranges, positions, the whole log and its head.

use super::*;

pub(super) async fn read_positions_reads_exactly_those_events_in_order(h: Harness) {
    h.append(vec![to("project-1", ExpectedVersion::NoStream, events(5))])
        .await;
    let all = h.log.read_all(0, 10).await.unwrap();
    let read = h.log.read_positions(&[4, 2, 4, 9]).await.unwrap();
    assert_eq!(read, vec![all[1].clone(), all[3].clone()]);
    assert!(h.log.read_positions(&[]).await.unwrap().is_empty());
    let many: Vec<u64> = (1..=1200).map(|p| p % 5 + 1).collect();
    assert_eq!(h.log.read_positions(&many).await.unwrap(), all);
}

pub(super) async fn read_stream_between_is_what_a_stream_gained_between_two_positions(h: Harness) {
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

pub(super) async fn append_then_read_stream_round_trips_events_and_metadata(h: Harness) {
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

pub(super) async fn read_all_honours_after_and_limit(h: Harness) {
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

pub(super) async fn head_is_the_last_position(h: Harness) {
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

//! Appending: optimistic concurrency, atomic multi-stream appends, expectations on streams only read, and what is refused.

use super::*;

pub(super) async fn no_stream_on_an_existing_stream_conflicts_and_writes_nothing(h: Harness) {
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

pub(super) async fn stale_exact_version_conflicts_and_writes_nothing(h: Harness) {
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

pub(super) async fn multi_stream_append_is_all_or_nothing(h: Harness) {
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

pub(super) async fn invalid_appends_are_refused_and_write_nothing(h: Harness) {
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

pub(super) async fn expectations_on_streams_not_written_are_checked_and_write_nothing(h: Harness) {
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
pub(super) async fn a_write_decided_on_a_read_stream_is_ordered_before_any_change_to_it(
    h: Harness,
) {
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

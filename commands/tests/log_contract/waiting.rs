//! Waiting for events: prompt wake-ups, the polling fallback.

use super::*;

pub(super) async fn wait_for_events_wakes_promptly_when_another_task_appends(h: Harness) {
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

pub(super) async fn wait_for_events_returns_after_max_wait_when_nothing_happens(h: Harness) {
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

pub(super) async fn wait_for_events_returns_at_once_when_the_head_is_already_past(h: Harness) {
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

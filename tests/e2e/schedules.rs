//! Scheduled changes: a committed request with a later `live_from` is applied by the scheduler
//! worker at that time (never before), once, as the `scheduler` actor with the request as
//! causation; an edited schedule never fires at its old time, a cancelled one never fires.

use std::time::Duration;

use flaglog_tests::{Backend, on_both_backends};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::change_requests::{Review, review};

/// How long after `live_from` the tests wait for a change before failing (the scheduler applies
/// it within a second; this leaves room for a loaded machine).
const GRACE: Duration = Duration::from_secs(10);

fn in_(lead: Duration) -> (String, i64) {
    let at = OffsetDateTime::now_utc() + lead;
    let micros = (at.unix_timestamp_nanos() / 1000) as i64;
    (at.format(&Rfc3339).expect("RFC 3339"), micros)
}

async fn schedule(r: &Review, value: &str, live_from: &str) -> Value {
    let opened = r
        .server
        .post(
            &format!("/api/v1/environments/{}/change-requests/", r.key),
            json!({"title": "later", "commands": [r.set_state(value)], "live_from": live_from}),
        )
        .token(&r.author.token)
        .send()
        .await
        .expect_status(201);
    let id = opened.body["id"].clone();
    r.act(&id, "approve", &r.approvers[0])
        .send()
        .await
        .expect_status(200);
    let committed = r
        .act(&id, "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(committed.body["status"], "scheduled", "{}", committed.body);
    id
}

/// Waits until the request leaves the `scheduled` state, or `within` passes.
async fn settled(r: &Review, id: &Value, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let shown = r.show(id).await;
        if shown["status"] != "scheduled" || tokio::time::Instant::now() > deadline {
            return shown;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn committed_events(events: &[domain::log::RecordedEvent], id: &Value) -> Vec<i64> {
    let stream = format!("change-request-{id}");
    events
        .iter()
        .filter(|e| e.stream_id == stream && e.event_type == "ChangeRequestCommitted")
        .map(|e| e.recorded_at_micros)
        .collect()
}

async fn a_scheduled_change_goes_live_at_its_time_once_as_the_scheduler(backend: Backend) {
    let r = review(backend, 1).await;
    let (live_from, at) = in_(Duration::from_millis(1500));
    let id = schedule(&r, "scheduled", &live_from).await;
    assert_eq!(r.served_value().await, Value::Null, "not before its time");

    let shown = settled(&r, &id, Duration::from_millis(1500) + GRACE).await;
    assert_eq!(shown["status"], "committed", "{shown}");
    assert_eq!(r.served_value().await, "scheduled");
    let events = r.server.events().await;
    let committed = committed_events(&events, &id);
    assert_eq!(committed.len(), 1, "exactly once");
    assert!(committed[0] >= at, "applied {} µs early", at - committed[0]);
    eprintln!("applied {} ms after live_from", (committed[0] - at) / 1000);
    let applied = events
        .iter()
        .find(|e| e.event_type == "FeatureStateSet" && e.recorded_at_micros == committed[0])
        .expect("the change in the commit's append");
    assert_eq!(applied.metadata.actor, "scheduler");
    assert_eq!(
        applied.metadata.causation_id.as_deref(),
        Some(format!("change-request-{id}").as_str())
    );
    assert_eq!(
        applied.metadata.approvers,
        [format!("user:{}", r.approvers[0].id)]
    );
}

async fn an_edited_schedule_never_fires_at_its_old_time_nor_a_cancelled_one(backend: Backend) {
    let r = review(backend, 1).await;
    let (old_time, old_at) = in_(Duration::from_millis(1500));
    let edited = schedule(&r, "edited", &old_time).await;
    let cancelled = schedule(&r, "cancelled", &old_time).await;

    // Moving the time takes the request off the schedule until approved and committed again.
    let (new_time, new_at) = in_(Duration::from_millis(4000));
    let moved = r
        .server
        .patch(
            &format!("/api/v1/change-requests/{edited}/"),
            json!({"live_from": new_time}),
        )
        .token(&r.author.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(moved.body["status"], "open");
    assert_eq!(moved.body["approval_count"], 0);
    r.act(&cancelled, "cancel-schedule", &r.author)
        .send()
        .await
        .expect_status(200);
    r.act(&edited, "approve", &r.approvers[1])
        .send()
        .await
        .expect_status(200);
    let again = r
        .act(&edited, "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(again.body["status"], "scheduled");

    // Past the old time: nothing fired.
    let wait = u64::try_from(old_at + 1_500_000 - now_micros()).unwrap_or(0);
    tokio::time::sleep(Duration::from_micros(wait)).await;
    assert_eq!(r.served_value().await, Value::Null);
    assert_eq!(r.show(&cancelled).await["status"], "open");
    assert_eq!(r.show(&edited).await["status"], "scheduled");

    let shown = settled(&r, &edited, Duration::from_millis(4000) + GRACE).await;
    assert_eq!(shown["status"], "committed", "{shown}");
    assert_eq!(r.served_value().await, "edited");
    let events = r.server.events().await;
    let committed = committed_events(&events, &edited);
    assert_eq!(committed.len(), 1);
    assert!(committed[0] >= new_at, "fired before its new time");
    assert!(committed_events(&events, &cancelled).is_empty());
}

fn now_micros() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

on_both_backends!(
    a_scheduled_change_goes_live_at_its_time_once_as_the_scheduler,
    an_edited_schedule_never_fires_at_its_old_time_nor_a_cancelled_one,
);

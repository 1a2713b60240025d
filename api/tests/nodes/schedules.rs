//! Scheduled changes on several nodes: with two nodes up, a change goes live once (one commit in
//! the log, applied by whichever node leads the scheduler); with every node down at its time, it
//! goes live when a node starts again.

use std::time::Duration;

use commands::log::testing::TestDatabase;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{DEADLINE, Node, create_admin, environment_with_banner, until};

fn in_(lead: Duration) -> (String, i64) {
    let at = OffsetDateTime::now_utc() + lead;
    (
        at.format(&Rfc3339).unwrap(),
        (at.unix_timestamp_nanos() / 1000) as i64,
    )
}

/// (recorded_at µs, actor) of each `ChangeRequestCommitted` of request `id`.
async fn commits(db: &TestDatabase, id: &Value) -> Vec<(i64, String)> {
    let pool = projections::connect(db.url()).await.unwrap();
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT recorded_at_micros, metadata FROM events WHERE stream_id = $1 \
         AND event_type = 'ChangeRequestCommitted'",
    )
    .bind(format!("change-request-{id}"))
    .fetch_all(&pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(at, metadata)| {
            let metadata: Value = serde_json::from_str(&metadata).unwrap();
            (at, metadata["actor"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_change_goes_live_once_on_two_nodes_and_after_a_restart() {
    let _serial = crate::support::one_at_a_time().await;
    let db = TestDatabase::postgres().await;
    let token = create_admin(db.url()).await;
    let mut a = Node::start(db.url(), "node-a", &token).await;
    let mut b = Node::start(db.url(), "node-b", &token).await;
    let key = "scheduled-key";
    let banner = environment_with_banner(&a, key).await;
    let environment = a
        .expect(
            Method::PATCH,
            &format!("/api/v1/environments/{key}/"),
            Some(json!({"minimum_change_request_approvals": 1})),
            200,
        )
        .await["id"]
        .clone();
    let project = a
        .expect(
            Method::GET,
            &format!("/api/v1/environments/{key}/"),
            None,
            200,
        )
        .await["project"]
        .clone();
    let approver = a
        .expect(
            Method::POST,
            "/api/v1/users/",
            Some(json!({"email": "approver@example.com", "password": "a long secret"})),
            201,
        )
        .await;
    a.expect(
        Method::PUT,
        &format!("/api/v1/projects/{project}/roles/{}/", approver["id"]),
        Some(json!({"role": "approver"})),
        200,
    )
    .await;
    let approver_token = approver["token"].as_str().unwrap().to_string();

    // Scheduled through A, approved and committed; each goes live at its time.
    let schedule = async |node: &Node, value: &str, live_from: &str| -> Value {
        let command = json!({"type": "set_feature_state", "environment_id": environment,
                             "feature_id": banner, "enabled": true, "feature_state_value": value});
        let id = node
            .expect(
                Method::POST,
                &format!("/api/v1/environments/{key}/change-requests/"),
                Some(json!({"title": value, "commands": [command], "live_from": live_from})),
                201,
            )
            .await["id"]
            .clone();
        let approved = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/change-requests/{id}/approve/",
                node.base
            ))
            .header("authorization", format!("Token {approver_token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(approved.status().as_u16(), 200);
        let committed = node
            .expect(
                Method::POST,
                &format!("/api/v1/change-requests/{id}/commit/"),
                None,
                200,
            )
            .await;
        assert_eq!(committed["status"], "scheduled");
        id
    };

    let (live_from, at) = in_(Duration::from_millis(2000));
    let first = schedule(&a, "first", &live_from).await;
    until("both nodes serve the first change", DEADLINE, async || {
        a.flag_value(key, "banner").await == "first" && b.flag_value(key, "banner").await == "first"
    })
    .await;
    let committed = commits(&db, &first).await;
    assert_eq!(
        committed.len(),
        1,
        "exactly once on two nodes: {committed:?}"
    );
    assert_eq!(committed[0].1, "scheduler");
    assert!(committed[0].0 >= at, "not before its time");
    eprintln!(
        "went live {} ms after live_from",
        (committed[0].0 - at) / 1000
    );

    // Every node down when the second change falls due; it goes live once one is back.
    let (live_from, at) = in_(Duration::from_millis(1500));
    let second = schedule(&b, "second", &live_from).await;
    a.kill9();
    b.kill9();
    let wait = u64::try_from(at - (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64)
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_micros(wait) + Duration::from_millis(500)).await;
    assert!(commits(&db, &second).await.is_empty(), "no node was up");
    let restarted = Node::start(db.url(), "node-a", &token).await;
    until(
        "the restarted node serves the second change",
        DEADLINE,
        async || restarted.flag_value(key, "banner").await == "second",
    )
    .await;
    let committed = commits(&db, &second).await;
    assert_eq!(committed.len(), 1, "{committed:?}");
    assert!(committed[0].0 >= at);
    let shown = restarted
        .expect(
            Method::GET,
            &format!("/api/v1/change-requests/{second}/"),
            None,
            200,
        )
        .await;
    assert_eq!(shown["status"], "committed");
}

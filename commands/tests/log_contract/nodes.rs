//! PostgreSQL only: several nodes on one database.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn postgres_two_nodes_writing_concurrently_never_let_a_tailing_reader_skip_an_event()
 {
    within_limit(two_nodes_never_let_a_reader_skip()).await;
}

pub(super) async fn two_nodes_never_let_a_reader_skip() {
    let db = TestDatabase::postgres().await;
    let nodes = vec![db.event_log().await, db.event_log().await];
    prove_no_subscriber_skips(nodes, 16, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(super) async fn postgres_wait_for_events_wakes_for_an_append_by_another_node() {
    within_limit(another_nodes_append_wakes_a_waiter()).await;
}

pub(super) async fn another_nodes_append_wakes_a_waiter() {
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
pub(super) async fn postgres_listener_reconnects_after_its_connection_is_killed() {
    within_limit(killed_listeners_reconnect()).await;
}

pub(super) async fn killed_listeners_reconnect() {
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
pub(super) async fn postgres_appends_recover_after_the_writer_connection_is_killed() {
    within_limit(appends_recover_after_the_writer_is_killed()).await;
}

pub(super) async fn appends_recover_after_the_writer_is_killed() {
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

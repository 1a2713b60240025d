//! Integration delivery survives SIGKILL: a node killed while its webhook's receiver is failing
//! (the first message being retried) loses nothing; started again, it resumes from the durable
//! cursor and the receiver gets every change in log order, a message repeated only under its
//! own idempotency key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use commands::log::testing::TestDatabase;
use reqwest::Method;
use serde_json::json;

use crate::support::{DEADLINE, Node, create_admin, environment_with_banner, set_banner, until};

/// (position, idempotency key, answered) of every request received.
type Log = Arc<Mutex<Vec<(u64, String, u16)>>>;

async fn receiver(failing: Arc<AtomicBool>, log: Log) -> String {
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let (failing, log) = (failing.clone(), log.clone());
        async move {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let status = if failing.load(Ordering::SeqCst) {
                503
            } else {
                200
            };
            let position = header("x-flaglog-position").parse().unwrap_or(0);
            log.lock()
                .unwrap()
                .push((position, header("idempotency-key"), status));
            StatusCode::from_u16(status).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

async fn a_node_killed_mid_delivery_resumes_without_losing_a_change(db: TestDatabase) {
    let token = create_admin(db.url()).await;
    let mut node = Node::start(db.url(), "node-a", &token).await;
    let banner = environment_with_banner(&node, "kill-key").await;
    let failing = Arc::new(AtomicBool::new(true));
    let log: Log = Arc::default();
    let url = receiver(failing.clone(), log.clone()).await;
    node.expect(
        Method::POST,
        "/api/v1/environments/kill-key/integrations/",
        Some(
            json!({"kind": "webhook", "config": {"url": url, "retry_initial_ms": 20,
                    "retry_max_ms": 50, "max_attempts": 1000000}}),
        ),
        201,
    )
    .await;
    for value in ["v1", "v2", "v3", "v4", "v5"] {
        set_banner(&node, "kill-key", banner, value).await;
    }
    until("the first message is being retried", DEADLINE, async || {
        log.lock().unwrap().len() >= 3
    })
    .await;
    node.kill9();
    failing.store(false, Ordering::SeqCst);
    let failed_keys: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(_, k, _)| k.clone())
        .collect();

    let _restarted = Node::start(db.url(), "node-a", &token).await;
    until("all five changes delivered", DEADLINE, async || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(_, _, s)| *s == 200)
            .count()
            >= 5
    })
    .await;
    let delivered: Vec<(u64, String)> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, s)| *s == 200)
        .map(|(p, k, _)| (*p, k.clone()))
        .collect();
    assert_eq!(delivered.len(), 5, "each change once: {delivered:?}");
    assert!(
        delivered.windows(2).all(|w| w[0].0 < w[1].0),
        "log order: {delivered:?}"
    );
    assert!(
        failed_keys.iter().all(|k| *k == delivered[0].1),
        "only the first message was tried before the kill, under one key"
    );
}

on_both_backends!(a_node_killed_mid_delivery_resumes_without_losing_a_change);

//! Several `flaglog serve` processes (nodes) on one database, and their background workers, end
//! to end with the real binary on loopback ports:
//!
//! - three nodes elect one leader of the projection; `kill -9` of it and another node takes over
//!   within 5 s, resuming from the checkpoint (not from 0), and keeps the documents right;
//! - a change made through one node is served and streamed (SSE) by another, also across a
//!   reconnect of the listeners;
//! - traits stored through one node are read by another without a restart;
//! - the projection's leader session killed (`pg_terminate_backend`): it restarts with backoff,
//!   resumes from its checkpoint and reports the error;
//! - the database unreachable: `/health` is 503, and 200 again after, with the workers running;
//! - SIGTERM to a node with writes in flight: exit 0, every answered write in the log, and the
//!   read model's checkpoint consistent with its rows (both backends);
//! - `/health` and `flaglog workers status` name the workers and their leader (both backends).

mod schedules;
mod support;

use std::time::{Duration, Instant};

use commands::log::testing::TestDatabase;
use reqwest::Method;
use serde_json::{Value, json};
use support::{
    DEADLINE, EventStream, Node, create_admin, environment_with_banner, run, set_banner, until,
};

const PROJECTION: &str = "environment_documents";
/// How soon another node must have taken over after the leader died.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(5);

async fn checkpoint(db: &TestDatabase) -> u64 {
    let pool = projections::connect(db.url()).await.unwrap();
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(PROJECTION)
            .fetch_optional(&pool)
            .await
            .unwrap();
    position.unwrap_or(0) as u64
}

/// Waits until every node's `/health` names one running leader of the projection; returns it.
async fn agreed_leader(nodes: &[&Node]) -> String {
    let mut leader = String::new();
    until(
        "every node names the same running leader",
        DEADLINE,
        async || {
            let mut named = Vec::new();
            for node in nodes {
                named.push(node.worker(PROJECTION).await["leader"].clone());
            }
            let Some(first) = named[0].as_str() else {
                return false;
            };
            let leads = nodes.iter().find(|n| n.id == first);
            let running = match leads {
                Some(node) => node.worker(PROJECTION).await["state"] == "running",
                None => false,
            };
            leader = first.to_string();
            running && named.iter().all(|n| n == first)
        },
    )
    .await;
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_another_node_takes_over_from_the_checkpoint() {
    let _serial = crate::support::one_at_a_time().await;
    let db = TestDatabase::postgres().await;
    let token = create_admin(db.url()).await;
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        nodes.push(Node::start(db.url(), id, &token).await);
    }
    let banner = environment_with_banner(&nodes[0], "takeover-key").await;
    set_banner(&nodes[1], "takeover-key", banner, "v1").await;
    until("v1 is served", DEADLINE, async || {
        nodes[2].flag_value("takeover-key", "banner").await == "v1"
    })
    .await;
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;
    let before = checkpoint(&db).await;
    assert!(before > 0);

    let index = nodes.iter().position(|n| n.id == leader).unwrap();
    let mut killed = nodes.remove(index);
    killed.kill9();
    let died = Instant::now();
    let mut new_leader = String::new();
    until("another node leads", TAKEOVER_WITHIN * 2, async || {
        for node in &nodes {
            let worker = node.worker(PROJECTION).await;
            if worker["state"] == "running" && worker["leader"] == node.id.as_str() {
                new_leader = node.id.clone();
                return true;
            }
        }
        false
    })
    .await;
    let took = died.elapsed();
    eprintln!("takeover after kill -9 of {leader}: {took:?} (by {new_leader})");
    assert!(took < TAKEOVER_WITHIN, "took over after {took:?}");

    let successor = nodes.iter().find(|n| n.id == new_leader).unwrap();
    // It started from the checkpoint the dead leader left, not from 0.
    let resumed = format!("checkpoint={before}");
    until(
        "the new leader logs where it resumed",
        DEADLINE,
        async || successor.stderr().contains(&resumed),
    )
    .await;
    let log = successor.stderr();
    let resumes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("resuming from"))
        .collect();
    assert!(
        resumes.last().is_some_and(|l| l.contains(&resumed)),
        "its last start was from the checkpoint:\n{log}"
    );
    if resumes.len() > 1 {
        eprintln!(
            "{} started the projection more than once:\n{log}",
            successor.id
        );
    }
    // Its reported position starts from there too (the status is written just after the log
    // line, so it is waited for, not read once).
    until(
        "the new leader reports a position from the checkpoint on",
        DEADLINE,
        async || {
            successor.worker(PROJECTION).await["position"]
                .as_u64()
                .unwrap_or(0)
                >= before
        },
    )
    .await;

    // And the documents stay right: a change through one survivor is served by the other.
    let other = nodes.iter().find(|n| n.id != new_leader).unwrap();
    set_banner(other, "takeover-key", banner, "v2").await;
    for node in &nodes {
        until("v2 is served by every survivor", DEADLINE, async || {
            node.flag_value("takeover-key", "banner").await == "v2"
        })
        .await;
    }
    assert!(checkpoint(&db).await > before);
    agreed_leader(&nodes.iter().collect::<Vec<_>>()).await;

    let (ok, table, stderr) = run(db.url(), &["workers", "status"]).await;
    assert!(ok, "{stderr}");
    for expected in [
        PROJECTION,
        "sdk_cache",
        "notifications",
        "node-a",
        "node-b",
        "node-c",
    ] {
        assert!(table.contains(expected), "{expected} in:\n{table}");
    }
    let projection_rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with(PROJECTION))
        .collect();
    assert_eq!(projection_rows.len(), 3, "{table}");
    for row in projection_rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[3], new_leader,
            "every row names the new leader: {row}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_node_is_served_and_streamed_by_another() {
    let _serial = crate::support::one_at_a_time().await;
    let db = TestDatabase::postgres().await;
    let token = create_admin(db.url()).await;
    let a = Node::start(db.url(), "writer", &token).await;
    let b = Node::start(db.url(), "reader", &token).await;
    let banner = environment_with_banner(&a, "across-key").await;
    until("b serves v0", DEADLINE, async || {
        b.flag_value("across-key", "banner").await == "v0"
    })
    .await;
    // b has it cached now: only hearing of the change can make it serve the next one.
    let mut stream = EventStream::open(&b, "across-key").await;
    let first = stream.next(DEADLINE).await["updated_at"].as_f64().unwrap();
    for round in 1..=3 {
        let value = format!("v{round}");
        set_banner(&a, "across-key", banner, &value).await;
        let event = stream.next(DEADLINE).await;
        assert!(event["updated_at"].as_f64().unwrap() >= first, "{event}");
        // The stream dropped b's cached entry before announcing: b serves the change now.
        assert_eq!(b.flag_value("across-key", "banner").await, json!(value));
    }

    // The listeners' sessions killed: they reconnect, and whatever was notified meanwhile is
    // caught up on (the change lands while they may be down).
    let pool = projections::connect(db.url()).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() \
         AND application_name = 'flaglog-notifications') AS t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 2, "one listener per node");
    set_banner(&a, "across-key", banner, "after-reconnect").await;
    stream.next(DEADLINE).await;
    until(
        "b serves the change made while its listener reconnected",
        DEADLINE,
        async || b.flag_value("across-key", "banner").await == "after-reconnect",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traits_stored_through_one_node_are_read_by_another() {
    let _serial = crate::support::one_at_a_time().await;
    let db = TestDatabase::postgres().await;
    let token = create_admin(db.url()).await;
    let a = Node::start(db.url(), "a", &token).await;
    let b = Node::start(db.url(), "b", &token).await;
    environment_with_banner(&a, "traits-key").await;
    let stored = async |node: &Node| -> Value {
        let (status, body) = node
            .sdk(
                Method::GET,
                "/api/v1/identities/?identifier=alice",
                "traits-key",
                None,
            )
            .await;
        if status == 200 {
            body["traits"].clone()
        } else {
            Value::Null
        }
    };
    until("b answers for alice", DEADLINE, async || {
        stored(&b).await == json!([])
    })
    .await;
    let (status, body) = a
        .sdk(
            Method::POST,
            "/api/v1/identities/",
            "traits-key",
            Some(json!({"identifier": "alice",
                        "traits": [{"trait_key": "plan", "trait_value": "gold"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    until("b reads alice's stored trait", DEADLINE, async || {
        stored(&b).await.to_string().contains("gold")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_restarts_after_its_session_is_killed_and_resumes_from_its_checkpoint() {
    let _serial = crate::support::one_at_a_time().await;
    let db = TestDatabase::postgres().await;
    let token = create_admin(db.url()).await;
    let node = Node::start(db.url(), "solo", &token).await;
    let banner = environment_with_banner(&node, "restart-key").await;
    set_banner(&node, "restart-key", banner, "v1").await;
    until("v1 is served", DEADLINE, async || {
        node.flag_value("restart-key", "banner").await == "v1"
    })
    .await;
    let before = checkpoint(&db).await;

    let pool = projections::connect(db.url()).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() \
         AND application_name = 'flaglog-leader-environment_documents') AS t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(killed, 1, "the projection's leader session");
    until(
        "it reports the error and runs again",
        DEADLINE,
        async || {
            let worker = node.worker(PROJECTION).await;
            worker["state"] == "running"
                && worker["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("leadership"))
        },
    )
    .await;
    let resumed = format!("checkpoint={before} memory_kept=true");
    until("it resumed from its checkpoint", DEADLINE, async || {
        node.stderr().contains(&resumed)
    })
    .await;
    set_banner(&node, "restart-key", banner, "v2").await;
    until("v2 is served", DEADLINE, async || {
        node.flag_value("restart-key", "banner").await == "v2"
    })
    .await;
    assert!(checkpoint(&db).await > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_database_is_unreachable_and_the_workers_recover() {
    let _serial = crate::support::one_at_a_time().await;
    use sqlx::Connection;
    let db = TestDatabase::postgres().await;
    let token = create_admin(db.url()).await;
    let node = Node::start(db.url(), "outage", &token).await;
    let banner = environment_with_banner(&node, "outage-key").await;
    until("v0 is served", DEADLINE, async || {
        node.flag_value("outage-key", "banner").await == "v0"
    })
    .await;
    let name = db.url().rsplit('/').next().unwrap().to_string();
    let mut admin = sqlx::PgConnection::connect(&TestDatabase::admin_url())
        .await
        .unwrap();
    let allow = async |admin: &mut sqlx::PgConnection, allowed: bool| {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS {allowed}"#
        )))
        .execute(&mut *admin)
        .await
        .unwrap();
    };
    allow(&mut admin, false).await;
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();
    until("/health answers 503", DEADLINE, async || {
        let (status, body) = node.health_status().await;
        status == 503 && body["database"] == "unreachable" && body["node"] == "outage"
    })
    .await;
    allow(&mut admin, true).await;
    until("/health answers 200 again", DEADLINE, async || {
        node.health_status().await.0 == 200
    })
    .await;
    // The workers got over it: a change is projected and served again. (The log writer's own
    // connection may fail the first write after the outage: try until one is answered.)
    until("a write is answered", DEADLINE, async || {
        let path = format!("/api/v1/environments/outage-key/featurestates/{banner}/");
        let body = json!({"enabled": true, "feature_state_value": "after-outage"});
        matches!(
            node.send(Method::PUT, &path, Some(body)).await,
            Ok((200, _))
        )
    })
    .await;
    until("the change is served", DEADLINE, async || {
        node.flag_value("outage-key", "banner").await == "after-outage"
    })
    .await;
    until("the projection runs", DEADLINE, async || {
        node.worker(PROJECTION).await["state"] == "running"
    })
    .await;
}

async fn sigterm_with_writes_in_flight_exits_zero_consistently(db: TestDatabase) {
    let token = create_admin(db.url()).await;
    let mut node = Node::start(db.url(), "busy", &token).await;
    environment_with_banner(&node, "busy-key").await;
    let project = 1;
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let base = node.base.clone();
    let mut writers = Vec::new();
    for writer in 0..4 {
        let answered = answered.clone();
        let base = base.clone();
        let token = token.clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let name = format!("f_{writer}_{i}");
                let sent = client
                    .post(format!("{base}/api/v1/projects/{project}/features/"))
                    .header("authorization", format!("Token {token}"))
                    .json(&json!({"name": name, "default_enabled": true}))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().as_u16() == 201 => {
                        answered.lock().unwrap().push(name)
                    }
                    Ok(response) => panic!("a write answered {}", response.status()),
                    // The server stopped accepting.
                    Err(_) => return,
                }
            }
        }));
    }
    until("writes are flowing", DEADLINE, async || {
        answered.lock().unwrap().len() >= 40
    })
    .await;
    // And the projection is applying them (on a loaded machine it may lag the first writes):
    // the check below, that its read model holds whole batches, needs it to have some.
    let log = db.event_log().await;
    until("the projection applies the writes", DEADLINE, async || {
        let events = log.read_all(0, 1_000_000).await.unwrap();
        let second = events
            .iter()
            .filter(|e| e.event_type == "FeatureCreated")
            .nth(1)
            .map(|e| e.position);
        match second {
            Some(position) => checkpoint(&db).await >= position,
            None => false,
        }
    })
    .await;
    let status = node.terminate().await;
    assert!(status.success(), "exit {status:?}: {}", node.stderr());
    for writer in writers {
        writer.await.unwrap();
    }
    let stderr = node.stderr();
    assert!(stderr.contains("worker stopped"), "{stderr}");

    // Every answered write is in the log.
    let events = log.read_all(0, 1_000_000).await.unwrap();
    let created: Vec<String> = events
        .iter()
        .filter(|e| e.event_type == "FeatureCreated")
        .map(|e| e.payload.to_string())
        .collect();
    for name in answered.lock().unwrap().iter() {
        let quoted = format!("\"{name}\"");
        assert!(
            created.iter().any(|p| p.contains(&quoted)),
            "{name} answered 201 but is not in the log"
        );
    }
    // The read model is a whole number of batches: its document holds exactly the features
    // created up to its checkpoint.
    let at = checkpoint(&db).await;
    let pool = projections::connect(db.url()).await.unwrap();
    let stored = projections::environment_documents::by_client_key(&pool, "busy-key")
        .await
        .unwrap()
        .expect("the environment is projected");
    assert!(stored.position <= at);
    let document: Value = serde_json::from_str(&stored.document).unwrap();
    let projected = document["feature_states"].as_array().unwrap().len();
    let expected = events
        .iter()
        .filter(|e| e.event_type == "FeatureCreated" && e.position <= at)
        .count();
    assert!(expected > 1);
    assert_eq!(projected, expected, "document at checkpoint {at}");
}

async fn health_and_workers_status_name_the_workers_and_their_leader(db: TestDatabase) {
    let token = create_admin(db.url()).await;
    let node = Node::start(db.url(), "named-node", &token).await;
    until("the projection runs", DEADLINE, async || {
        node.worker(PROJECTION).await["state"] == "running"
    })
    .await;
    // Each one-node worker reports its leader once it has taken the lock (they start together,
    // in no set order).
    until("every worker names its leader", DEADLINE, async || {
        let health = node.health().await;
        health["workers"]
            .as_array()
            .is_some_and(|workers| workers.iter().all(|w| w["leader"] == "named-node"))
    })
    .await;
    let health = node.health().await;
    assert_eq!(health["database"], "ok", "{health}");
    assert_eq!(health["node"], "named-node", "{health}");
    for worker in health["workers"].as_array().unwrap() {
        for field in [
            "name",
            "state",
            "leader",
            "position",
            "lag_events",
            "lag_seconds",
            "last_error",
        ] {
            assert!(worker.get(field).is_some(), "{field} in {worker}");
        }
        assert_eq!(worker["leader"], "named-node", "{worker}");
    }
    until("the projection has caught up", DEADLINE, async || {
        let projection = node.worker(PROJECTION).await;
        projection["lag_events"] == 0 && projection["position"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    until(
        "the table has the projection running",
        DEADLINE,
        async || {
            let (ok, table, _) = run(db.url(), &["workers", "status"]).await;
            ok && table.lines().any(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                cells.len() > 3 && cells[..4] == [PROJECTION, "named-node", "running", "named-node"]
            })
        },
    )
    .await;
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { let _serial = crate::support::one_at_a_time().await; super::$name(TestDatabase::sqlite().await).await })*
            use commands::log::testing::TestDatabase;
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { let _serial = crate::support::one_at_a_time().await; super::$name(TestDatabase::postgres().await).await })*
            use commands::log::testing::TestDatabase;
        }
    };
}

on_both_backends!(
    sigterm_with_writes_in_flight_exits_zero_consistently,
    health_and_workers_status_name_the_workers_and_their_leader,
);

// After the macro: it uses `on_both_backends!`.
mod delivery;

//! Tamper evidence: `GET /api/v1/audit-log/verify` recomputes the hash chain. An intact log
//! answers its head hash; an event changed behind the database's back (its append-only trigger
//! dropped, as the database owner can) is named by position with the hash expected there; a log
//! cut back is internally consistent, and only a checkpoint saved earlier shows it. Checkpoints
//! are served signed with the server's Ed25519 key.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::{Value, json};

/// Runs `statements` on the server's database as its owner, the append-only guard dropped.
async fn tamper(server: &Server, backend: Backend, statement: &str) {
    let pool = projections::connect(server.database_url()).await.unwrap();
    let unguard = match backend {
        Backend::Postgres => vec!["ALTER TABLE events DISABLE TRIGGER events_append_only"],
        Backend::Sqlite => vec![
            "DROP TRIGGER IF EXISTS events_no_update",
            "DROP TRIGGER IF EXISTS events_no_delete",
        ],
    };
    for sql in unguard.into_iter().chain([statement]) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    pool.close().await;
}

async fn verify(server: &Server, query: &str) -> Value {
    server
        .get(&format!("/api/v1/audit-log/verify{query}"))
        .send()
        .await
        .expect_status(200)
        .body
}

/// A signed checkpoint of the log's head, as the server answers it.
async fn signed_checkpoint(server: &Server) -> domain::checkpoint::SignedCheckpoint {
    let taken = server
        .get("/api/v1/audit-log/checkpoint")
        .send()
        .await
        .expect_status(200);
    serde_json::from_value(taken.body).unwrap()
}

async fn some_history(server: &Server) {
    let project = server.project(json!({"name": "audited"})).await;
    server.environment(project, "audited-key").await;
    for name in ["a", "b", "c"] {
        server.feature(project, json!({"name": name})).await;
    }
}

async fn an_intact_log_verifies_and_a_changed_event_is_named(backend: Backend) {
    let server = Server::start(backend).await;
    some_history(&server).await;
    let events = server.events().await;
    let head = events.last().unwrap();
    let intact = verify(&server, "").await;
    assert_eq!(intact["intact"], true, "{intact}");
    assert_eq!(intact["first"], 1);
    assert_eq!(intact["last"], head.position);
    assert_eq!(intact["head_hash"], hex(&head.hash));
    let range = verify(&server, "?from=2&to=4").await;
    assert_eq!(
        (range["intact"].clone(), range["last"].clone()),
        (json!(true), json!(4))
    );
    assert_eq!(range["head_hash"], hex(&events[3].hash));

    tamper(
        &server,
        backend,
        "UPDATE events SET payload = '{}' WHERE position = 3",
    )
    .await;
    let broken = verify(&server, "").await;
    assert_eq!(broken["intact"], false, "{broken}");
    assert_eq!(broken["first_bad_position"], 3, "{broken}");
    assert!(
        broken["reason"].as_str().unwrap().contains("changed"),
        "{broken}"
    );
    assert_eq!(broken["stored_hash"], hex(&events[2].hash));
    assert_ne!(broken["expected_hash"], broken["stored_hash"]);
    assert!(broken.get("head_hash").is_none(), "{broken}");
    // A range that ends before it still verifies; one that starts after it too (it is chained
    // on from the stored hash before it).
    assert_eq!(verify(&server, "?to=2").await["intact"], true);
    assert_eq!(verify(&server, "?from=4").await["intact"], true);
}

async fn a_log_cut_back_is_shown_by_a_checkpoint_saved_before(backend: Backend) {
    let server = Server::start(backend).await;
    some_history(&server).await;
    let saved = verify(&server, "").await;
    let (position, hash) = (saved["last"].as_u64().unwrap(), saved["head_hash"].clone());
    let checkpoint = format!(
        "?checkpoint_position={position}&checkpoint_hash={}",
        hash.as_str().unwrap()
    );
    assert_eq!(verify(&server, &checkpoint).await["intact"], true);

    tamper(
        &server,
        backend,
        &format!("DELETE FROM events WHERE position > {}", position - 2),
    )
    .await;
    // What is left is a consistent chain: alone, verify cannot tell.
    assert_eq!(verify(&server, "").await["intact"], true);
    let cut = verify(&server, &checkpoint).await;
    assert_eq!(cut["intact"], false, "{cut}");
    assert_eq!(cut["first_bad_position"], position - 1, "{cut}");
    assert!(
        cut["reason"]
            .as_str()
            .unwrap()
            .contains("behind the checkpoint"),
        "{cut}"
    );

    // Another hash at the checkpoint's position: rewritten, not extended.
    let other = format!("?checkpoint_position=2&checkpoint_hash={}", "ab".repeat(32));
    let rewritten = verify(&server, &other).await;
    assert_eq!(rewritten["first_bad_position"], 2, "{rewritten}");
    assert!(rewritten["reason"].as_str().unwrap().contains("rewritten"));
}

async fn verify_refuses_bad_queries_and_non_administrators(backend: Backend) {
    let server = Server::start(backend).await;
    some_history(&server).await;
    for (query, field) in [
        ("?checkpoint_position=2", "checkpoint_position"),
        (
            "?checkpoint_position=2&checkpoint_hash=xyz",
            "checkpoint_hash",
        ),
        (
            "?checkpoint_position=2&checkpoint_hash=abcd",
            "checkpoint_hash",
        ),
        ("?from=5&to=2", "from"),
    ] {
        server
            .get(&format!("/api/v1/audit-log/verify{query}"))
            .send()
            .await
            .expect_error(400, "bad_request", Some(field));
    }
    let project = server.project(json!({"name": "p"})).await;
    let editor = server.member(project, "editor@example.com", "admin").await;
    server
        .get("/api/v1/audit-log/verify")
        .token(&editor.token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
}

async fn a_signed_checkpoint_verifies_and_pins_the_log(backend: Backend) {
    let server = Server::start(backend).await;
    some_history(&server).await;
    let head = server.events().await.last().unwrap().clone();
    let checkpoint = signed_checkpoint(&server).await;
    assert_eq!(checkpoint.position, head.position);
    assert_eq!(json!(checkpoint.head_hash), hex(&head.hash));
    checkpoint.verify(&checkpoint.public_key).unwrap();
    let mut forged = checkpoint.clone();
    forged.position -= 1;
    assert!(
        forged.verify(&checkpoint.public_key).is_err(),
        "a changed checkpoint fails"
    );
    // The same key signs every checkpoint of this database.
    server.project(json!({"name": "more"})).await;
    let later = signed_checkpoint(&server).await;
    assert_eq!(later.public_key, checkpoint.public_key);
    assert!(later.position > checkpoint.position);
    let pinned = format!(
        "?checkpoint_position={}&checkpoint_hash={}",
        checkpoint.position, checkpoint.head_hash
    );
    assert_eq!(verify(&server, &pinned).await["intact"], true);
    let project = server.project(json!({"name": "q"})).await;
    let admin = server.member(project, "p-admin@example.com", "admin").await;
    server
        .get("/api/v1/audit-log/checkpoint")
        .token(&admin.token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
}

async fn an_export_verifies_offline_against_a_signed_checkpoint(backend: Backend) {
    let server = Server::start(backend).await;
    some_history(&server).await;
    let checkpoint = signed_checkpoint(&server).await;
    server
        .project(json!({"name": "after the checkpoint"}))
        .await;
    let export = server
        .get("/api/v1/audit-log/export?format=ndjson")
        .send()
        .await
        .expect_status(200);
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let events = server.events().await;
    let lines: Vec<&str> = export.text.lines().collect();
    assert_eq!(lines.len(), events.len());
    for (line, event) in lines.iter().zip(&events) {
        let line: Value = serde_json::from_str(line).unwrap();
        let exported: domain::log::RecordedEvent =
            serde_json::from_value(line["event"].clone()).unwrap();
        assert_eq!(&exported, event);
        assert_eq!(line["position"], event.position, "the audit row beside it");
    }
    let offline = commands::verify::verify_export(
        export.text.as_bytes(),
        &checkpoint,
        &checkpoint.public_key,
    );
    assert!(offline.intact, "{offline:?}");
    assert_eq!(offline.last, events.last().unwrap().position);

    // A changed line, a wrong key, an export that stops short: each refused, saying why.
    let changed: String = lines
        .iter()
        .map(|line| {
            let mut line: Value = serde_json::from_str(line).unwrap();
            if line["event"]["event_type"] == "ProjectCreated" {
                line["event"]["payload"]["settings"]["name"] = json!("edited!");
            }
            format!("{line}\n")
        })
        .collect();
    assert_ne!(changed, export.text);
    let refused =
        commands::verify::verify_export(changed.as_bytes(), &checkpoint, &checkpoint.public_key);
    assert!(
        !refused.intact && refused.expected_hash.is_some(),
        "{refused:?}"
    );
    let stranger = "11".repeat(32);
    let refused = commands::verify::verify_export(export.text.as_bytes(), &checkpoint, &stranger);
    assert!(refused.reason.unwrap().contains("checkpoint"));
    let short = server
        .get(&format!(
            "/api/v1/audit-log/export?to_position={}",
            checkpoint.position - 1
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(short.text.lines().count() as u64, checkpoint.position - 1);
    let refused =
        commands::verify::verify_export(short.text.as_bytes(), &checkpoint, &checkpoint.public_key);
    assert!(refused.reason.unwrap().contains("does not reach"));
    server
        .get("/api/v1/audit-log/export?format=xml")
        .send()
        .await
        .expect_error(400, "bad_request", Some("format"));
}

fn hex(bytes: &[u8; 32]) -> Value {
    json!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The server publishes signed checkpoints into the log itself while it grows (and none while
/// it is idle): every reader of the log holds them, and an export verifies against one.
async fn signed_checkpoints_are_published_into_the_log(backend: Backend) {
    let options = api::NodeOptions {
        audit_checkpoint_interval: std::time::Duration::from_millis(100),
        ..flaglog_tests::test_node()
    };
    let (server, _) = Server::start_with_options(backend, options).await;
    some_history(&server).await;
    let published =
        |events: &[domain::log::RecordedEvent]| -> Vec<domain::checkpoint::SignedCheckpoint> {
            events
                .iter()
                .filter(|e| e.stream_id == domain::checkpoint::STREAM)
                .map(|e| serde_json::from_value(e.payload["checkpoint"].clone()).unwrap())
                .collect()
        };
    // Until the newest event is a checkpoint of everything before it (one taken while the
    // history was still being written names an earlier head: a later one follows).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let events = server.events().await;
        if events.last().is_some_and(|e| {
            e.stream_id == domain::checkpoint::STREAM
                && published(std::slice::from_ref(e))
                    .first()
                    .is_some_and(|c| c.position == e.position - 1)
        }) {
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let checkpoint = published(&events).pop().unwrap();
    assert_eq!(checkpoint.position, events.len() as u64 - 1);
    let key = signed_checkpoint(&server).await.public_key;
    checkpoint.verify(&key).unwrap();
    let at = &events[checkpoint.position as usize - 1];
    assert_eq!(checkpoint.head_hash, hex(&at.hash).as_str().unwrap());

    // An idle log gets no further checkpoint of itself.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        server.events().await.len(),
        events.len(),
        "checkpoints of nothing new"
    );
    let row = server
        .get("/api/v1/audit-log/?event_type=CheckpointPublished")
        .send()
        .await
        .expect_status(200)
        .body;
    assert!(
        row["results"][0]["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "system published a signed checkpoint of positions 1..{}",
                checkpoint.position
            )),
        "{row}"
    );

    // Whoever holds an export holds the checkpoint: the export verifies against it offline.
    let export = server
        .get("/api/v1/audit-log/export")
        .send()
        .await
        .expect_status(200);
    let offline = commands::verify::verify_export(export.text.as_bytes(), &checkpoint, &key);
    assert!(offline.intact, "{offline:?}");
}

on_both_backends!(
    signed_checkpoints_are_published_into_the_log,
    an_intact_log_verifies_and_a_changed_event_is_named,
    a_log_cut_back_is_shown_by_a_checkpoint_saved_before,
    verify_refuses_bad_queries_and_non_administrators,
    a_signed_checkpoint_verifies_and_pins_the_log,
    an_export_verifies_offline_against_a_signed_checkpoint,
);

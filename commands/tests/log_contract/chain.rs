//! The hash chain, and the append-only table the database itself enforces.

use super::*;

/// Payloads whose JSON a careless store would change: floats, big integers, unicode, escapes,
/// and objects whose keys are not sorted.
pub(super) fn awkward_payloads() -> Vec<Value> {
    vec![
        json!({"price": 12.5, "ratio": 1.0, "tenth": 0.1, "sum": 0.30000000000000004}),
        json!({"tiny": 5e-324, "huge": 1.7976931348623157e308, "small": 2.2250738585072014e-308,
               "neg_zero": -0.0, "exp": 1e21, "third": 0.3333333333333333}),
        json!({"u64_max": u64::MAX, "i64_min": i64::MIN, "past_f64": 9_007_199_254_740_993_u64,
               "zero": 0, "negative": -17}),
        json!({"text": "héllo wörld 🌍 中文 ☃", "escapes": "quote\" back\\slash\nnew\ttab\u{1}",
               "rtl": "مرحبا", "empty": ""}),
        json!({"z": {"y": [3, {"k": true, "b": null}], "a": "first?"}, "m": [], "b": {},
               "a": [1.5, -2, "x", false]}),
        json!([{"b": 1, "a": 2}, 1.0, null]),
        json!("just a string"),
        json!(12.5),
        Value::Null,
    ]
}

pub(super) async fn hash_chain_verifies_and_survives_the_storage_round_trip(h: Harness) {
    let payloads = awkward_payloads();
    // Several appends, single- and multi-stream, so the chain spans batches and streams.
    for (i, chunk) in payloads.chunks(2).enumerate() {
        let mut appends = vec![to(
            &format!("stream-{i}"),
            ExpectedVersion::NoStream,
            vec![event("Awkward", chunk[0].clone())],
        )];
        if let Some(second) = chunk.get(1) {
            appends.push(to(
                "shared",
                ExpectedVersion::Any,
                vec![event("Awkward", second.clone())],
            ));
        }
        h.append(appends).await;
    }

    let all = h.everything().await;
    assert_eq!(all.len(), payloads.len());
    let last = verify_chain(GENESIS_HASH, &all).expect("the stored chain verifies");
    assert_eq!(last, all.last().unwrap().hash);

    let mut stored_payloads = Vec::new();
    for e in &all {
        assert_eq!(e.hash, e.computed_hash(), "position {}", e.position);
        stored_payloads.push(e.payload.clone());
        // The column holds exactly the canonical text the hash covers.
        let text = h.stored_payload_text(e.position as i64).await;
        assert_eq!(text, canonical_json(&e.payload), "position {}", e.position);
    }
    // Each append puts its `stream-i` event before its `shared` one: the log keeps input order.
    assert_eq!(stored_payloads, payloads);
    for (stored, original) in stored_payloads.iter().zip(&payloads) {
        assert_eq!(canonical_json(stored), canonical_json(original));
    }

    // Stream ids, event types and metadata with quotes, escapes and unicode survive too.
    let awkward_stream = "it's a \"stream\" \\ $$ é🌍 '); DROP TABLE events; --";
    let awkward_metadata = Metadata {
        actor: "user:'o\"brien'".into(),
        request_id: Some("$tag$ \\x00 \n".into()),
        correlation_id: None,
        causation_id: Some("日本語".into()),
        reason: Some("line one\nline 'two'\t\u{7}".into()),
        ..Metadata::default()
    };
    h.log
        .append(
            vec![to(
                awkward_stream,
                ExpectedVersion::NoStream,
                vec![event("Ev'ent \"type\" ☃", json!({"k": "v"}))],
            )],
            awkward_metadata.clone(),
        )
        .await
        .unwrap();
    let stored = h.log.read_stream(awkward_stream, 0).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].stream_id, awkward_stream);
    assert_eq!(stored[0].event_type, "Ev'ent \"type\" ☃");
    assert_eq!(stored[0].metadata, awkward_metadata);
    assert_eq!(stored[0].hash, stored[0].computed_hash());
    let all = h.everything().await;
    verify_chain(GENESIS_HASH, &all).expect("the chain verifies with awkward text");

    // Tampering with any field of a read event breaks verification at that event.
    let mut tampered = all.clone();
    tampered[3].payload = json!({"price": 12.6});
    assert_eq!(verify_chain(GENESIS_HASH, &tampered), Err(4));
}

/// Three events to tamper with.
pub(super) async fn seed(h: &Harness) {
    h.append(vec![to("a", ExpectedVersion::NoStream, events(2))])
        .await;
    h.append(vec![to("b", ExpectedVersion::NoStream, events(1))])
        .await;
}

/// `sql` must fail because of the append-only rule and leave the log exactly as it was.
pub(super) async fn assert_rejected(h: &Harness, sql: &'static str) {
    let before = h.everything().await;
    let result = h.execute_raw(sql).await;
    match result {
        Err(message) => assert!(
            message.contains("append-only"),
            "`{sql}` failed, but not because of the append-only rule: {message}"
        ),
        Ok(rows) => panic!("`{sql}` succeeded ({rows} rows affected)"),
    }
    let after = h.everything().await;
    assert_eq!(after.len(), 3);
    assert_eq!(after, before, "`{sql}` changed the log");
}

pub(super) async fn update_is_rejected_by_the_database(h: Harness) {
    seed(&h).await;
    assert_rejected(
        &h,
        "UPDATE events SET event_type = 'Tampered' WHERE position = 2",
    )
    .await;
    assert_rejected(&h, "UPDATE events SET payload = '{}'").await;
}

pub(super) async fn delete_is_rejected_by_the_database(h: Harness) {
    seed(&h).await;
    assert_rejected(&h, "DELETE FROM events WHERE position = 3").await;
}

pub(super) async fn truncate_is_rejected_by_the_database(h: Harness) {
    seed(&h).await;
    let truncate = match h.db.backend() {
        Backend::Postgres => "TRUNCATE events",
        // SQLite has no TRUNCATE; an unqualified DELETE is its truncate optimisation.
        Backend::Sqlite => "DELETE FROM events",
    };
    assert_rejected(&h, truncate).await;
}

pub(super) async fn read_stored_gives_the_bytes_the_chain_hashes(h: Harness) {
    let payloads = awkward_payloads();
    let appended = payloads
        .iter()
        .map(|payload| event("Awkward", payload.clone()))
        .collect();
    h.append(vec![to("awkward", ExpectedVersion::NoStream, appended)])
        .await;
    let stored = h.log.read_stored(0, usize::MAX).await.unwrap();
    let recorded = h.everything().await;
    assert_eq!(stored.len(), payloads.len());
    for (stored, recorded) in stored.iter().zip(&recorded) {
        assert_eq!(
            stored.computed_hash(),
            stored.hash,
            "position {}",
            stored.position
        );
        assert_eq!(stored.hash, recorded.hash);
        assert_eq!(stored.prev_hash, recorded.prev_hash);
        assert_eq!(stored.payload, canonical_json(&recorded.payload));
    }
    let after_first = h.log.read_stored(1, 2).await.unwrap();
    assert_eq!(
        after_first.iter().map(|s| s.position).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

//! Reading the history: every filter, a cursor stable while events arrive, what viewers see, and
//! the exports of the same query.

use super::*;

/// Two projects with some history each; returns (shop, other) project ids.
async fn two_projects(server: &Server) -> (u64, u64) {
    let shop = server.project(json!({"name": "shop"})).await;
    server.environment(shop, "shop-key").await;
    let checkout = server.feature(shop, json!({"name": "checkout"})).await;
    server
        .put(
            &format!("/api/v1/environments/shop-key/featurestates/{checkout}/"),
            json!({"enabled": true}),
        )
        .send()
        .await
        .expect_status(200);
    server
        .segment(shop, json!({"name": "beta", "rules": []}))
        .await;
    let other = server.project(json!({"name": "other"})).await;
    server.environment(other, "other-key").await;
    server.feature(other, json!({"name": "search"})).await;
    (shop, other)
}

/// Keeps rows whose summary contains `text`, ignoring case.
fn summary_contains(text: impl Into<String>) -> Box<dyn Fn(&Value) -> bool> {
    let text: String = text.into();
    Box::new(move |r| {
        r["summary"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(&text)
    })
}

async fn every_filter_returns_exactly_its_rows(backend: Backend) {
    let server = Server::start(backend).await;
    let (shop, _) = two_projects(&server).await;
    let editor = server.member(shop, "ed@example.com", "editor").await;
    let banner = server.feature(shop, json!({"name": "banner"})).await;
    server
        .put(
            &format!("/api/v1/environments/shop-key/featurestates/{banner}/"),
            json!({"enabled": true}),
        )
        .token(&editor.token)
        .send()
        .await
        .expect_status(200);
    server
        .post(
            "/api/v1/environments/shop-key/identity-overrides/",
            json!({"identifier": "someone", "feature": banner, "enabled": true}),
        )
        .send()
        .await
        .expect_status(204);
    let all = history(&server, "", None).await;
    assert_eq!(all.len(), server.events().await.len());
    // Part of the identity's reference, which its override's stored summary holds (the API
    // shows the identifier in its place).
    let shop_id = all
        .iter()
        .find(|r| r["event_type"] == "EnvironmentCreated" && r["project"] == shop)
        .unwrap()["environment"]
        .as_u64()
        .unwrap();
    let stream = server.identity_stream(shop_id, "someone").await;
    let reference = stream[stream.len() - 12..stream.len() - 4].to_string();
    let shop_env = all
        .iter()
        .find(|r| r["event_type"] == "EnvironmentCreated" && r["project"] == shop)
        .unwrap()["environment"]
        .clone();
    let segment = all
        .iter()
        .find(|r| r["event_type"] == "SegmentCreated")
        .unwrap()["segment"]
        .clone();
    let middle = &all[all.len() / 2];
    let at = middle["recorded_at"].as_str().unwrap().to_string();

    type Keep = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(String, Keep)> = vec![
        (
            format!("project={shop}"),
            Box::new(move |r| r["project"] == shop),
        ),
        ("environment=shop-key".into(), {
            let e = shop_env.clone();
            Box::new(move |r| r["environment"] == e)
        }),
        (format!("environment={shop_env}"), {
            let e = shop_env.clone();
            Box::new(move |r| r["environment"] == e)
        }),
        (
            format!("feature={banner}&project={shop}"),
            Box::new(move |r| r["feature"] == banner && r["project"] == shop),
        ),
        (format!("feature={banner}&environment=shop-key"), {
            let e = shop_env.clone();
            Box::new(move |r| r["feature"] == banner && r["environment"] == e)
        }),
        (format!("segment={segment}"), {
            let s = segment.clone();
            Box::new(move |r| r["segment"] == s)
        }),
        (format!("actor=user:{}", editor.id), {
            let a = format!("user:{}", editor.id);
            Box::new(move |r| r["actor"] == a)
        }),
        ("actor=ed@example.com".into(), {
            let a = format!("user:{}", editor.id);
            Box::new(move |r| r["actor"] == a)
        }),
        (
            "event_type=FeatureCreated".into(),
            Box::new(|r| r["event_type"] == "FeatureCreated"),
        ),
        (format!("from={}", urlencode(&at)), {
            let at = at.clone();
            Box::new(move |r| r["recorded_at"].as_str().unwrap() >= at.as_str())
        }),
        (format!("to={}", urlencode(&at)), {
            let at = at.clone();
            Box::new(move |r| r["recorded_at"].as_str().unwrap() <= at.as_str())
        }),
        (
            "q=CHECKOUT".into(),
            Box::new(|r| {
                r["summary"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .contains("checkout")
            }),
        ),
        (
            "q=100%25".into(),
            Box::new(|r| r["summary"].as_str().unwrap().contains("100%")),
        ),
        // Across words, at their edges, a word first seen late, text nowhere, not ASCII: each
        // as the summaries hold it (the vocabulary only ever narrows the scan).
        (
            "q=ENABLED%20%60banner".into(),
            summary_contains("enabled `banner"),
        ),
        ("q=banner%60%20in".into(), summary_contains("banner` in")),
        ("q=%20in%20".into(), summary_contains(" in ")),
        ("q=%60banner%60".into(), summary_contains("`banner`")),
        ("q=no-such-text".into(), summary_contains("no-such-text")),
        ("q=%C3%BCber".into(), summary_contains("über")),
        (
            format!("q={reference}"),
            summary_contains("for identity `someone`"),
        ),
    ];
    for (query, keep) in cases {
        let found = history(&server, &query, None).await;
        let expected: Vec<u64> = all
            .iter()
            .filter(|r| keep(r))
            .filter_map(|r| r["position"].as_u64())
            .collect();
        assert_eq!(positions(&found), expected, "{query}");
        if !["q=100", "q=no-such", "q=%C3"]
            .iter()
            .any(|vacuous| query.starts_with(vacuous))
        {
            assert!(
                !expected.is_empty(),
                "{query} matches nothing: a vacuous case"
            );
        }
    }
    // The editor's change says who, what and where.
    let by_editor = history(&server, "actor=ed@example.com", None).await;
    assert_eq!(
        by_editor[0]["summary"],
        "ed@example.com enabled `banner` in env shop-key"
    );
    // Bad filters are refused, naming the parameter.
    for (query, field) in [
        ("from=yesterday", "from"),
        ("cursor=zz", "cursor"),
        ("environment=nowhere", "environment"),
        ("actor=nobody@example.com", "actor"),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
    ] {
        server
            .get(&format!("/api/v1/audit-log/?{query}"))
            .send()
            .await
            .expect_error(400, "bad_request", Some(field));
    }
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

async fn a_cursor_stays_stable_while_events_arrive(backend: Backend) {
    let server = Server::start(backend).await;
    let (shop, _) = two_projects(&server).await;
    let before = history(&server, "", None).await;
    let first = server
        .get("/api/v1/audit-log/?limit=3")
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(
        positions(first["results"].as_array().unwrap()),
        positions(&before[..3])
    );
    // New events arrive between pages: they are newer, so no page shifts.
    for name in ["late_one", "late_two", "late_three", "late_four"] {
        server.feature(shop, json!({"name": name})).await;
    }
    let mut seen = positions(first["results"].as_array().unwrap());
    let mut next = first["next"].as_str().map(String::from);
    while let Some(cursor) = next {
        let page = server
            .get(&format!("/api/v1/audit-log/?limit=3&cursor={cursor}"))
            .send()
            .await
            .expect_status(200)
            .body;
        seen.extend(positions(page["results"].as_array().unwrap()));
        next = page["next"].as_str().map(String::from);
    }
    assert_eq!(seen, positions(&before), "no row repeated, none skipped");
}

async fn a_viewer_sees_only_the_projects_they_hold_a_role_on(backend: Backend) {
    let server = Server::start(backend).await;
    let (shop, other) = two_projects(&server).await;
    let viewer = server.member(shop, "viewer@example.com", "viewer").await;
    let seen = history(&server, "", Some(&viewer.token)).await;
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r["project"] == shop), "{seen:?}");
    let all = history(&server, "", None).await;
    let of_shop = all.iter().filter(|r| r["project"] == shop).count();
    assert_eq!(seen.len(), of_shop);
    assert!(
        history(&server, &format!("project={other}"), Some(&viewer.token))
            .await
            .is_empty()
    );
    let export = server
        .get("/api/v1/audit-log/export?format=ndjson")
        .token(&viewer.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(export.text.lines().count(), of_shop);
    assert!(
        !export.text.contains("\"other\""),
        "a row of the other project was exported"
    );
}

async fn exports_stream_the_same_query_as_ndjson_and_csv(backend: Backend) {
    let server = Server::start(backend).await;
    let (shop, _) = two_projects(&server).await;
    // A reason typed as a spreadsheet formula.
    server
        .post(
            &format!("/api/v1/projects/{shop}/features/"),
            json!({"name": "formula"}),
        )
        .header("X-Change-Reason", "=HYPERLINK(\"http://example.com\")")
        .send()
        .await
        .expect_status(201);
    let listed = history(&server, &format!("project={shop}"), None).await;
    let ndjson = server
        .get(&format!(
            "/api/v1/audit-log/export?format=ndjson&project={shop}"
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(ndjson.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = ndjson
        .text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut in_log_order = listed.clone();
    in_log_order.reverse();
    for (line, row) in lines.iter().zip(&in_log_order) {
        let mut without_event = line.clone();
        let event = without_event
            .as_object_mut()
            .unwrap()
            .remove("event")
            .unwrap();
        assert_eq!(&without_event, row);
        assert_eq!(event["position"], row["position"]);
        assert!(event["hash"].is_string());
    }
    assert_eq!(lines.len(), listed.len());

    let csv = server
        .get(&format!(
            "/api/v1/audit-log/export?format=csv&project={shop}"
        ))
        .send()
        .await
        .expect_status(200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..3], ["position", "recorded_at", "actor"]);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), listed.len());
    let summary_at = header.iter().position(|h| h == "summary").unwrap();
    let reason_at = header.iter().position(|h| h == "reason").unwrap();
    let formula = records.last().unwrap();
    assert_eq!(
        &formula[reason_at], "'=HYPERLINK(\"http://example.com\")",
        "a spreadsheet would run it"
    );
    assert_eq!(
        lines.last().unwrap()["reason"],
        "=HYPERLINK(\"http://example.com\")"
    );
    let after_at = header.iter().position(|h| h == "after").unwrap();
    for (record, row) in records.iter().zip(&in_log_order) {
        assert_eq!(record[0], row["position"].to_string());
        assert_eq!(record[summary_at], *row["summary"].as_str().unwrap());
        let after: Value = serde_json::from_str(&record[after_at]).unwrap();
        assert_eq!(after, row["after"]);
    }
    // An export with nothing in it is still a CSV with its header.
    let empty = server
        .get("/api/v1/audit-log/export?format=csv&event_type=NoSuchEvent")
        .send()
        .await
        .expect_status(200);
    assert_eq!(empty.text.lines().count(), 1);
    server
        .get("/api/v1/audit-log/export?format=xml")
        .send()
        .await
        .expect_error(400, "bad_request", Some("format"));
}

on_both_backends!(
    every_filter_returns_exactly_its_rows,
    a_cursor_stays_stable_while_events_arrive,
    a_viewer_sees_only_the_projects_they_hold_a_role_on,
    exports_stream_the_same_query_as_ndjson_and_csv,
    free_text_read_in_windows_answers_as_one_read,
);

/// Free text is read a window of positions at a time: with windows of 1 to 7 positions, every
/// text, both orders, and pages after a cursor answer exactly what one statement over the whole
/// table answers.
async fn free_text_read_in_windows_answers_as_one_read(backend: Backend) {
    let (server, state) = Server::start_with_state(backend).await;
    let (shop, _) = two_projects(&server).await;
    for n in 0..6 {
        let feature = server.feature(shop, json!({"name": format!("f{n}")})).await;
        server
            .put(
                &format!("/api/v1/environments/shop-key/featurestates/{feature}/"),
                json!({"enabled": n % 2 == 0}),
            )
            .send()
            .await
            .expect_status(200);
    }
    // The projection has every event (the API waits for it).
    let all = history(&server, "", None).await;
    let pool = &state.read_models;
    let head = all.len() as u64;
    for text in ["enabled", "`f", "created feature", "shop-key", "nowhere"] {
        for order in [
            projections::audit_history::Order::NewestFirst,
            projections::audit_history::Order::LogOrder,
        ] {
            for (after, limit) in [(None, 3), (None, 100), (Some(head / 2), 4)] {
                let query = projections::audit_history::AuditQuery {
                    text: Some(text.to_string()),
                    order,
                    after_position: after,
                    limit,
                    ..Default::default()
                };
                let whole = projections::audit_history::query_in_windows(pool, &query, u64::MAX)
                    .await
                    .unwrap();
                for window in 1..=7 {
                    let windowed =
                        projections::audit_history::query_in_windows(pool, &query, window)
                            .await
                            .unwrap();
                    assert_eq!(
                        windowed, whole,
                        "{text:?} {order:?} {after:?} {limit} {window}"
                    );
                }
                if text != "nowhere" && after.is_none() {
                    assert!(!whole.is_empty(), "{text:?} finds rows");
                }
            }
        }
    }
}

//! `GET /api/v1/flags/`: the environment's flags without identity, in Flagsmith's shape, for a
//! client key or a server-side key; `?feature=NAME` for one of them.

use flaglog_tests::{Backend, on_both_backends};
use serde_json::{Value, json};

use crate::{
    SEEDS, SdkCall, api_flags, assert_same_flags, engine_flags, environment_with_server_key,
    import, seed, start,
};

async fn flags_are_served_in_flagsmith_shape_for_client_and_server_keys(backend: Backend) {
    let server = start(backend).await;
    let (project, environment, server_key) =
        environment_with_server_key(&server, "shape-client-key").await;
    let banner = server
        .feature(
            project,
            json!({"name": "banner", "default_enabled": true, "initial_value": "hello"}),
        )
        .await;
    let limit = server
        .feature(project, json!({"name": "limit", "initial_value": 42}))
        .await;
    let colour = server
        .feature(
            project,
            json!({"name": "colour", "type": "MULTIVARIATE", "default_enabled": true,
                   "initial_value": "grey",
                   "multivariate_options": [{"value": "red", "default_percentage_allocation": 50}]}),
        )
        .await;
    server.projected().await;

    for key in ["shape-client-key", server_key.as_str()] {
        let reply = server
            .get("/api/v1/flags/")
            .environment_key(key)
            .send()
            .await
            .expect_status(200);
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{:?}",
            reply.headers
        );
        let mut flags = reply.body.as_array().unwrap().clone();
        flags.sort_by_key(|flag| flag["feature"]["id"].as_u64());
        let wanted = [
            (banner, "banner", "STANDARD", true, json!("hello")),
            (limit, "limit", "STANDARD", false, json!(42)),
            // Without an identity, a multivariate feature serves its control value.
            (colour, "colour", "MULTIVARIATE", true, json!("grey")),
        ];
        let mut wanted: Vec<_> = wanted.to_vec();
        wanted.sort_by_key(|w| w.0);
        assert_eq!(flags.len(), wanted.len(), "{}", reply.text);
        for (flag, (id, name, kind, enabled, value)) in flags.iter().zip(wanted) {
            assert_eq!(
                flag["feature"],
                json!({"id": id, "name": name, "type": kind}),
                "{flag}"
            );
            assert_eq!(flag["enabled"], enabled, "{flag}");
            assert_eq!(flag["feature_state_value"], value, "{flag}");
            assert_eq!(flag["environment"], environment, "{flag}");
            assert_eq!(flag["identity"], Value::Null, "{flag}");
        }
    }
}

async fn flags_of_every_seed_document_match_flagsmiths_engine(backend: Backend) {
    let server = start(backend).await;
    for n in 1..=SEEDS {
        let seed = seed(n);
        let document = &seed["environment_document"];
        let imported = import(&server, document).await;
        assert_eq!(
            imported.client_key, document["api_key"],
            "seed {n}: the import keeps the client key (identity keys hash on it)"
        );
        let expected = engine_flags(&seed["environment_result"]);
        for key in [&imported.client_key, &imported.server_side_key] {
            let reply = server
                .get("/api/v1/flags/")
                .environment_key(key)
                .send()
                .await
                .expect_status(200);
            assert_same_flags(
                &api_flags(&reply.body),
                &expected,
                &format!("seed {n}: GET /api/v1/flags/"),
            );
        }
    }
}

async fn one_flag_is_served_by_name_and_an_unknown_name_is_404(backend: Backend) {
    let server = start(backend).await;
    let seed = seed(1);
    let imported = import(&server, &seed["environment_document"]).await;
    let expected = engine_flags(&seed["environment_result"]);
    let (name, (enabled, value)) = expected.iter().nth(3).unwrap();
    let reply = server
        .get(&format!("/api/v1/flags/?feature={name}"))
        .environment_key(&imported.client_key)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        reply.body["feature"]["name"],
        name.as_str(),
        "{}",
        reply.text
    );
    assert_eq!(reply.body["enabled"], *enabled, "{}", reply.text);
    assert_eq!(reply.body["feature_state_value"], *value, "{}", reply.text);

    for unknown in ["no_such_feature", ""] {
        server
            .get(&format!("/api/v1/flags/?feature={unknown}"))
            .environment_key(&imported.client_key)
            .send()
            .await
            .expect_error(404, "not_found", None);
    }
}

/// Once one request is served a change, no later one is served what was there before: no
/// cached copy (per-thread fronts included) outlives the change's announcement.
async fn after_a_change_is_served_no_request_is_served_the_old_flags(backend: Backend) {
    let server = start(backend).await;
    let project = server.project(json!({"name": "cached"})).await;
    server.environment(project, "cached-key").await;
    let feature = server
        .feature(project, json!({"name": "f", "initial_value": "old"}))
        .await;
    server.projected().await;
    let values = |n: usize| {
        let calls: Vec<_> = (0..n)
            .map(|_| server.get("/api/v1/flags/").environment_key("cached-key"))
            .map(|call| async move {
                let reply = call.send().await.expect_status(200);
                reply.body[0]["feature_state_value"].clone()
            })
            .collect();
        flaglog_tests::join_all(calls)
    };
    assert!(values(64).await.iter().all(|v| *v == "old"));
    server
        .put(
            &format!("/api/v1/environments/cached-key/featurestates/{feature}/"),
            json!({"enabled": true, "feature_state_value": "new"}),
        )
        .send()
        .await
        .expect_status(200);
    let deadline = std::time::Instant::now() + crate::PROJECTION_DEADLINE;
    while values(1).await[0] != "new" {
        assert!(
            std::time::Instant::now() < deadline,
            "the change is never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let later = values(256).await;
    assert!(later.iter().all(|v| *v == "new"), "{later:?}");
}

/// A row read before its change is announced (here: a server-side key's first request loads the
/// document, and with it a newer row) is what every later request on any thread is served: no
/// thread's front keeps the version before it.
async fn a_newer_row_loaded_before_its_announcement_replaces_every_front(backend: Backend) {
    let server = start(backend).await;
    let (_, _, server_key) = environment_with_server_key(&server, "front-key").await;
    server.projected().await;
    let cache = &server.state.sdk;
    // This test's body runs on one thread: these reads fill that thread's front.
    let first = cache.by_client_key("front-key").await.unwrap().unwrap();
    for _ in 0..3 {
        let again = cache.by_client_key("front-key").await.unwrap().unwrap();
        assert_eq!(again.position, first.position);
    }
    // A newer row, not announced (as between the projection's commit and its announcement).
    let pool = projections::connect(server.database_url()).await.unwrap();
    sqlx::query(
        "UPDATE environment_documents SET position = position + 1, flags = '[]' \
         WHERE client_key = 'front-key'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let hash = commands::secrets::sha256_hex(&server_key);
    let loaded = cache.by_server_key_hash(&hash).await.unwrap().unwrap();
    assert_eq!(
        loaded.position,
        first.position + 1,
        "the document's first load reads the row"
    );
    let after = cache.by_client_key("front-key").await.unwrap().unwrap();
    assert_eq!(
        after.position,
        first.position + 1,
        "the front does not keep the older one"
    );
    assert_eq!(&after.flags[..], b"[]");
}

on_both_backends!(
    flags_are_served_in_flagsmith_shape_for_client_and_server_keys,
    flags_of_every_seed_document_match_flagsmiths_engine,
    one_flag_is_served_by_name_and_an_unknown_name_is_404,
    after_a_change_is_served_no_request_is_served_the_old_flags,
    a_newer_row_loaded_before_its_announcement_replaces_every_front,
);

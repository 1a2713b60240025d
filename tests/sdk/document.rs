//! `GET /api/v1/environment-document/`: the whole environment for local evaluation, for
//! server-side keys only; and the ETags that let SDKs poll it (and `/api/v1/flags/`) cheaply.

use flaglog_tests::{Backend, Reply, on_both_backends};
use serde_json::json;

use crate::{Imported, Sdk, SdkCall, api_flags, import, seed, start};

async fn the_environment_document_is_for_server_side_keys_only(backend: Backend) {
    let server = start(backend).await;
    let seed = seed(2);
    let original = &seed["environment_document"];
    let imported = import(&server, original).await;

    let reply = server
        .get("/api/v1/environment-document/")
        .environment_key(&imported.server_side_key)
        .send()
        .await
        .expect_status(200);
    let document = &reply.body;
    assert_eq!(document["api_key"], imported.client_key, "{}", reply.text);
    assert!(
        document["name"].as_str().is_some_and(|n| !n.is_empty()),
        "today's SDKs need a name: {}",
        reply.text
    );
    assert!(document["updated_at"].is_string(), "{}", reply.text);
    for (field, of) in [
        ("feature_states", &document["feature_states"]),
        ("project.segments", &document["project"]["segments"]),
        ("identity_overrides", &document["identity_overrides"]),
    ] {
        let served = of.as_array().map(Vec::len);
        let path: Vec<&str> = field.split('.').collect();
        let original_len = path
            .iter()
            .fold(original, |value, key| &value[*key])
            .as_array()
            .map(Vec::len);
        assert_eq!(served, original_len, "{field} holds what was imported");
    }

    // A client key is refused: it ships in browsers and apps.
    let refused = server
        .get("/api/v1/environment-document/")
        .environment_key(&imported.client_key)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(!refused.text.contains("feature_states"), "{}", refused.text);
    // No key, or one nobody issued.
    server
        .get("/api/v1/environment-document/")
        .without_token()
        .send()
        .await
        .expect_error(401, "unauthorized", None);
    server
        .get("/api/v1/environment-document/")
        .environment_key("ser.not-a-key-anyone-issued")
        .send()
        .await
        .expect_error(401, "unauthorized", None);
    // A key without the server-side prefix is refused whether or not it names an environment.
    let refused = server
        .get("/api/v1/environment-document/")
        .environment_key("not-a-client-key")
        .send()
        .await;
    assert!(
        [401, 403].contains(&refused.status),
        "an unknown client key: {} {}",
        refused.status,
        refused.text
    );
    // The admin token is not an environment key.
    server
        .get("/api/v1/environment-document/")
        .send()
        .await
        .expect_error(401, "unauthorized", None);
}

/// The answer to `path` for `key`, sending `If-None-Match` when given.
async fn conditional(server: &Sdk, path: &str, key: &str, etag: Option<&str>) -> Reply {
    let mut call = server.get(path).environment_key(key);
    if let Some(etag) = etag {
        call = call.header("if-none-match", etag);
    }
    call.send().await
}

fn etag_of(reply: &Reply) -> String {
    reply
        .header("etag")
        .unwrap_or_else(|| panic!("{}: no ETag", reply.description))
        .to_string()
}

async fn etags_answer_304_until_the_environment_changes(backend: Backend) {
    let server = start(backend).await;
    let seed = seed(3);
    let Imported {
        client_key,
        server_side_key,
        ..
    } = import(&server, &seed["environment_document"]).await;
    let endpoints = [
        ("/api/v1/flags/", client_key.as_str()),
        ("/api/v1/environment-document/", server_side_key.as_str()),
    ];

    let mut etags = Vec::new();
    for (path, key) in endpoints {
        let first = conditional(&server, path, key, None)
            .await
            .expect_status(200);
        let etag = etag_of(&first);
        let again = conditional(&server, path, key, Some(&etag))
            .await
            .expect_status(304);
        assert!(again.text.is_empty(), "{path}: a 304 has no body");
        assert_eq!(etag_of(&again), etag, "{path}: a 304 repeats the ETag");
        // Another ETag (or none) gets the body.
        conditional(&server, path, key, Some("\"something-else\""))
            .await
            .expect_status(200);
        etags.push(etag);
    }

    // Change the environment: turn its first flag around.
    let flags = conditional(&server, "/api/v1/flags/", &client_key, None)
        .await
        .body;
    let first = &flags[0];
    let feature = first["feature"]["id"].as_u64().unwrap();
    let enabled = !first["enabled"].as_bool().unwrap();
    server
        .put(
            &format!("/api/v1/environments/{client_key}/featurestates/{feature}/"),
            json!({"enabled": enabled, "feature_state_value": "changed"}),
        )
        .send()
        .await
        .expect_status(200);

    for ((path, key), old) in endpoints.into_iter().zip(etags) {
        let deadline = tokio::time::Instant::now() + crate::PROJECTION_DEADLINE;
        let changed = loop {
            let reply = conditional(&server, path, key, Some(&old)).await;
            if reply.status == 200 {
                break reply;
            }
            reply.expect_status(304);
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: still 304 for the old ETag {:?} after the change",
                crate::PROJECTION_DEADLINE
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let new = etag_of(&changed);
        assert_ne!(new, old, "{path}: the ETag changes with the environment");
        conditional(&server, path, key, Some(&new))
            .await
            .expect_status(304);
        if path == "/api/v1/flags/" {
            let served = api_flags(&changed.body);
            let name = first["feature"]["name"].as_str().unwrap();
            assert_eq!(
                served[name],
                (enabled, json!("changed")),
                "{}",
                changed.text
            );
        }
    }
}

/// `If-None-Match` as caches and SDKs send it: the tag marked weak (`W/"…"`, what a proxy that
/// compressed the body hands on), in a list with others, or in a second header; compared weakly
/// as RFC 9110 has it for this header. A list that does not name the tag gets the body.
async fn if_none_match_takes_weak_tags_and_lists(backend: Backend) {
    let server = start(backend).await;
    let Imported {
        client_key,
        server_side_key,
        ..
    } = import(&server, &seed(2)["environment_document"]).await;
    for (path, key) in [
        ("/api/v1/flags/", client_key.as_str()),
        ("/api/v1/environment-document/", server_side_key.as_str()),
    ] {
        let etag = etag_of(
            &conditional(&server, path, key, None)
                .await
                .expect_status(200),
        );
        for header in [
            format!("W/{etag}"),
            format!("\"a\", {etag}"),
            format!("\"a\",W/{etag} , \"b\""),
            "*".to_string(),
        ] {
            let reply = conditional(&server, path, key, Some(&header)).await;
            let reply = reply.expect_status(304);
            assert_eq!(etag_of(&reply), etag, "{path} with {header}");
        }
        for header in ["\"a\", \"b\"", "W/\"a\""] {
            conditional(&server, path, key, Some(header))
                .await
                .expect_status(200);
        }
        let two_headers = server
            .get(path)
            .environment_key(key)
            .header("if-none-match", "\"a\"")
            .header("if-none-match", &etag)
            .send()
            .await;
        two_headers.expect_status(304);
    }
}

on_both_backends!(
    the_environment_document_is_for_server_side_keys_only,
    etags_answer_304_until_the_environment_changes,
    if_none_match_takes_weak_tags_and_lists,
);

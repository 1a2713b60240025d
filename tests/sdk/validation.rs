//! What the SDK endpoints refuse, and how: a 4xx with a JSON body naming what was wrong, never a
//! 5xx (every request checks that), and nothing stored.

use flaglog_tests::{Backend, on_both_backends};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{Sdk, SdkCall, start};

const KEY: &str = "validation-client-key";

async fn environment(backend: Backend) -> Sdk {
    let server = start(backend).await;
    let project = server.project(json!({"name": "validation"})).await;
    server.environment(project, KEY).await;
    server
        .feature(project, json!({"name": "banner", "initial_value": "x"}))
        .await;
    server.projected().await;
    server
}

async fn bad_identify_bodies_are_400_naming_the_field(backend: Backend) {
    let server = environment(backend).await;
    let long = "i".repeat(2001);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"traits": []}), "identifier"),
        (json!({"identifier": null}), "identifier"),
        (json!({"identifier": 42}), "identifier"),
        (json!({"identifier": ""}), "identifier"),
        (json!({"identifier": long}), "identifier"),
        (json!({"identifier": "u", "traits": "x"}), "traits"),
        (
            json!({"identifier": "u", "traits": {"plan": "gold"}}),
            "traits",
        ),
        (json!({"identifier": "u", "traits": ["plan"]}), "traits[0]"),
        (
            json!({"identifier": "u", "traits": [{"trait_key": "plan", "trait_value": {"a": 1}}]}),
            "traits[0].trait_value",
        ),
        (
            json!({"identifier": "u", "traits": [
                {"trait_key": "ok", "trait_value": 1},
                {"trait_key": "plan", "trait_value": [1, 2]}]}),
            "traits[1].trait_value",
        ),
        (
            json!({"identifier": "u", "traits": [{"trait_value": 1}]}),
            "traits[0]",
        ),
        (
            json!({"identifier": "u", "traits": [{"trait_key": "", "trait_value": 1}]}),
            "traits[0].trait_key",
        ),
        (
            json!({"identifier": "u", "traits": [{"trait_key": 7, "trait_value": 1}]}),
            "traits[0].trait_key",
        ),
        (json!({"identifier": "u", "transient": "yes"}), "transient"),
        (json!([]), "body"),
        (json!("alice"), "body"),
    ];
    for (body, field) in cases {
        let reply = server
            .post("/api/v1/identities/", body.clone())
            .environment_key(KEY)
            .send()
            .await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.body["error"], "bad_request", "{body}: {}", reply.text);
        // A missing field is reported where it is missing from (its parent), by name.
        let named = reply.body["field"].as_str().unwrap_or("");
        let message = reply.body["message"].as_str().unwrap_or("");
        let last = field.rsplit(['.', '[']).next().unwrap_or(field);
        assert!(
            named == field || message.contains(&format!("`{last}`")),
            "{body}: the error should name {field:?}: {}",
            reply.text
        );
    }

    // Not JSON at all.
    for raw in ["{", "{\"identifier\": \"u\",}", "identifier=u", ""] {
        let reply = server
            .request(Method::POST, "/api/v1/identities/")
            .raw_json(raw)
            .environment_key(KEY)
            .send()
            .await;
        reply.expect_error(400, "bad_request", None);
    }

    // The longest identifier there may be is fine.
    server
        .post(
            "/api/v1/identities/",
            json!({"identifier": "i".repeat(2000)}),
        )
        .environment_key(KEY)
        .send()
        .await
        .expect_status(200);
    let reply = server
        .get(&format!("/api/v1/identities/?identifier={long}"))
        .environment_key(KEY)
        .send()
        .await;
    reply.expect_error(400, "bad_request", Some("identifier"));
    server
        .get("/api/v1/identities/")
        .environment_key(KEY)
        .send()
        .await
        .expect_error(400, "bad_request", None);

    // Nothing refused was stored.
    let reply = server
        .get("/api/v1/identities/?identifier=u")
        .environment_key(KEY)
        .send()
        .await
        .expect_status(200);
    assert_eq!(reply.body["traits"], json!([]), "{}", reply.text);
}

async fn sdk_endpoints_need_a_valid_environment_key(backend: Backend) {
    let server = environment(backend).await;
    let identify = json!({"identifier": "u"});
    let calls = || {
        [
            server.get("/api/v1/flags/"),
            server.get("/api/v1/identities/?identifier=u"),
            server.post("/api/v1/identities/", identify.clone()),
            server.post("/api/v1/analytics/flags/", json!({"banner": 1})),
            server.get("/api/v1/environment-document/"),
        ]
    };
    // No key (the admin token is no environment key), an empty one, unknown ones.
    for call in calls() {
        call.send().await.expect_error(401, "unauthorized", None);
    }
    for key in ["", "   ", "no-such-key", "ser.no-such-key"] {
        for call in calls().into_iter().take(4) {
            call.environment_key(key)
                .send()
                .await
                .expect_error(401, "unauthorized", None);
        }
    }
    // The key works.
    for call in calls().into_iter().take(4) {
        call.environment_key(KEY).send().await.expect_status(200);
    }
}

on_both_backends!(
    bad_identify_bodies_are_400_naming_the_field,
    sdk_endpoints_need_a_valid_environment_key,
);

//! What the API refuses, and how: a 4xx with a JSON body that names the offending field, and
//! nothing appended to the log. (Every request also checks there is never a 5xx.)

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::{Value, json};

/// A server with a project (id returned) and an environment `env-key` of it.
async fn with_project(backend: Backend, settings: Value) -> (Server, u64) {
    let server = Server::start(backend).await;
    let project = server.project(settings).await;
    server.environment(project, "env-key").await;
    (server, project)
}

async fn a_feature_name_against_the_project_pattern_is_refused_naming_name(backend: Backend) {
    let (server, project) = with_project(
        backend,
        json!({"name": "p", "feature_name_regex": "[a-z_]+"}),
    )
    .await;
    let path = format!("/api/v1/projects/{project}/features/");
    for bad in ["NewCheckout", "new-checkout", "ok_prefix but space"] {
        server
            .post(&path, json!({"name": bad}))
            .send()
            .await
            .expect_error(400, "bad_request", Some("name"));
    }
    // The pattern is the whole name, not a part of it.
    server
        .post(&path, json!({"name": "abc!"}))
        .send()
        .await
        .expect_error(400, "bad_request", Some("name"));
    server
        .feature(project, json!({"name": "new_checkout"}))
        .await;
}

async fn an_invalid_project_pattern_is_refused(backend: Backend) {
    let server = Server::start(backend).await;
    server
        .post(
            "/api/v1/projects/",
            json!({"organisation": 1, "name": "p", "feature_name_regex": "(unclosed"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("feature_name_regex"));
    for name in ["", "   ", &"n".repeat(2001)] {
        server
            .post(
                "/api/v1/projects/",
                json!({"organisation": 1, "name": name}),
            )
            .send()
            .await
            .expect_error(400, "bad_request", Some("name"));
    }
}

async fn a_duplicate_feature_name_ignoring_case_is_a_conflict(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let path = format!("/api/v1/projects/{project}/features/");
    server.feature(project, json!({"name": "Checkout"})).await;
    for duplicate in ["Checkout", "checkout", "CHECKOUT", "  checkout  "] {
        server
            .post(&path, json!({"name": duplicate}))
            .send()
            .await
            .expect_error(409, "conflict", Some("name"));
    }
    let features = server.get(&path).send().await.expect_status(200);
    assert_eq!(features.body.as_array().unwrap().len(), 1);
}

async fn a_case_sensitive_project_allows_names_differing_in_case(backend: Backend) {
    let (server, project) = with_project(
        backend,
        json!({"name": "p", "case_sensitive_feature_names": true}),
    )
    .await;
    let upper = server.feature(project, json!({"name": "A"})).await;
    let lower = server.feature(project, json!({"name": "a"})).await;
    assert_ne!(upper, lower);
    server
        .post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": "A"}),
        )
        .send()
        .await
        .expect_error(409, "conflict", Some("name"));
}

async fn unknown_projects_features_segments_and_environments_are_not_found(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let segment = server
        .segment(project, json!({"name": "s", "rules": []}))
        .await;
    let before = server.events().await.len();
    let state = json!({"enabled": true});
    let not_found = [
        server.get("/api/v1/projects/999/"),
        server.put("/api/v1/projects/999/", json!({"name": "x"})),
        server.get("/api/v1/projects/999/features/"),
        server.post("/api/v1/projects/999/features/", json!({"name": "x"})),
        server.get(&format!("/api/v1/projects/{project}/features/999/")),
        server.patch(
            &format!("/api/v1/projects/{project}/features/999/"),
            json!({"default_enabled": true}),
        ),
        server.delete(&format!("/api/v1/projects/{project}/features/999/")),
        server.get("/api/v1/projects/999/segments/"),
        server.post(
            "/api/v1/projects/999/segments/",
            json!({"name": "s", "rules": []}),
        ),
        server.get(&format!("/api/v1/projects/{project}/segments/999/")),
        server.put(
            &format!("/api/v1/projects/{project}/segments/999/"),
            json!({"name": "s", "rules": []}),
        ),
        server.delete(&format!("/api/v1/projects/{project}/segments/999/")),
        server.post(
            "/api/v1/projects/",
            json!({"organisation": 999, "name": "x"}),
        ),
        server.post(
            "/api/v1/environments/",
            json!({"project": 999, "name": "x"}),
        ),
        server.get("/api/v1/environments/no-such-key/"),
        server.patch("/api/v1/environments/no-such-key/", json!({"name": "x"})),
        server.post(
            "/api/v1/environments/no-such-key/api-keys/",
            json!({"name": "x"}),
        ),
        server.get("/api/v1/environments/no-such-key/featurestates/"),
        server.put(
            &format!("/api/v1/environments/no-such-key/featurestates/{feature}/"),
            state.clone(),
        ),
        server.put(
            "/api/v1/environments/env-key/featurestates/999/",
            state.clone(),
        ),
        server.put(
            &format!("/api/v1/environments/env-key/segment-overrides/999/{segment}/"),
            state.clone(),
        ),
        server.put(
            &format!("/api/v1/environments/env-key/segment-overrides/{feature}/999/"),
            state.clone(),
        ),
        server.delete(&format!(
            "/api/v1/environments/env-key/segment-overrides/{feature}/{segment}/"
        )),
        server.get("/api/v1/environments/no-such-key/identity-overrides/?identifier=u"),
        server.post(
            "/api/v1/environments/env-key/identity-overrides/",
            json!({"identifier": "u", "feature": 999, "enabled": true}),
        ),
        server.post(
            "/api/v1/environments/no-such-key/identity-overrides/",
            json!({"identifier": "u", "feature": feature, "enabled": true}),
        ),
        server.delete(&format!(
            "/api/v1/environments/env-key/identity-overrides/?identifier=u&feature={feature}"
        )),
    ];
    for call in not_found {
        call.send().await.expect_error(404, "not_found", None);
    }
    assert_eq!(
        server.events().await.len(),
        before,
        "refusals append nothing"
    );
}

async fn an_unknown_operator_is_refused_naming_its_place(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let path = format!("/api/v1/projects/{project}/segments/");
    server
        .post(
            &path,
            json!({"name": "s", "rules": [{"type": "ALL", "conditions": [
                {"operator": "ROUGHLY_EQUAL", "property_": "age", "value": "1"}]}]}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("rules[0].conditions[0].operator"));
    server
        .post(
            &path,
            json!({"name": "s", "rules": [{"type": "ALL", "conditions": [], "rules": [
                {"type": "ANY", "conditions": [
                    {"operator": "EQUAL", "property_": "a", "value": "1"},
                    {"operator": "equal", "property_": "a", "value": "1"}]}]}]}),
        )
        .send()
        .await
        .expect_error(
            400,
            "bad_request",
            Some("rules[0].rules[0].conditions[1].operator"),
        );
    server
        .post(
            &path,
            json!({"name": "s", "rules": [{"type": "SOME", "conditions": []}]}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("rules[0].type"));
}

async fn bad_condition_values_are_refused_naming_the_value(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let path = format!("/api/v1/projects/{project}/segments/");
    for (operator, value) in [
        ("MODULO", "3"),
        ("MODULO", "0|1"),
        ("MODULO", "x|1"),
        ("MODULO", "3|y"),
        ("PERCENTAGE_SPLIT", "101"),
        ("PERCENTAGE_SPLIT", "lots"),
        ("REGEX", "(unclosed"),
        ("CONTAINS", "1.2.3:semver"),
        ("GREATER_THAN", "1.2:semver"),
    ] {
        server
            .post(
                &path,
                json!({"name": "s", "rules": [{"type": "ALL", "conditions": [], "rules": [
                    {"type": "NONE", "conditions": [
                        {"operator": "IS_SET", "property_": "a"},
                        {"operator": operator, "property_": "n", "value": value}]}]}]}),
            )
            .send()
            .await
            .expect_error(
                400,
                "bad_request",
                Some("rules[0].rules[0].conditions[1].value"),
            );
    }
    server
        .post(
            &path,
            json!({"name": "s", "rules": [{"type": "ALL", "conditions": [
                {"operator": "MODULO", "property_": "n", "value": "3"}]}]}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("rules[0].conditions[0].value"));
    // The same checks hold when a segment is replaced.
    let segment = server
        .segment(project, json!({"name": "s", "rules": []}))
        .await;
    server
        .put(
            &format!("{path}{segment}/"),
            json!({"name": "s", "rules": [{"type": "ALL", "conditions": [
                {"operator": "MODULO", "property_": "n", "value": "3"}]}]}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("rules[0].conditions[0].value"));
}

async fn multivariate_allocations_over_one_hundred_are_refused(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let feature = server
        .post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": "colour", "multivariate_options": [
                {"value": "red", "default_percentage_allocation": 50},
                {"value": "blue", "default_percentage_allocation": 50}]}),
        )
        .send()
        .await
        .expect_status(201);
    let options: Vec<u64> = feature.body["multivariate_options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_u64().unwrap())
        .collect();
    let feature = feature.u64("id");
    let before = server.events().await.len();
    let over = json!({"enabled": true, "multivariate_feature_state_values": [
        {"multivariate_feature_option": options[0], "percentage_allocation": 60},
        {"multivariate_feature_option": options[1], "percentage_allocation": 40.5}]});
    server
        .put(
            &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
            over.clone(),
        )
        .send()
        .await
        .expect_error(
            400,
            "bad_request",
            Some("multivariate_feature_state_values"),
        );
    let segment = server
        .segment(project, json!({"name": "s", "rules": []}))
        .await;
    let before_override = server.events().await.len();
    server
        .put(
            &format!("/api/v1/environments/env-key/segment-overrides/{feature}/{segment}/"),
            over,
        )
        .send()
        .await
        .expect_error(
            400,
            "bad_request",
            Some("multivariate_feature_state_values"),
        );
    assert_eq!(server.events().await.len(), before_override);
    // An option the feature does not have, and a single allocation over 100.
    server
        .put(
            &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
            json!({"enabled": true, "multivariate_feature_state_values": [
                {"multivariate_feature_option": 9999, "percentage_allocation": 10}]}),
        )
        .send()
        .await
        .expect_error(
            400,
            "bad_request",
            Some("multivariate_feature_state_values[0].multivariate_feature_option"),
        );
    server
        .put(
            &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
            json!({"enabled": true, "multivariate_feature_state_values": [
                {"multivariate_feature_option": options[0], "percentage_allocation": 100.5}]}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", None);
    // Default allocations over 100 on the feature itself.
    server
        .post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": "size", "multivariate_options": [
                {"value": 1, "default_percentage_allocation": 60},
                {"value": 2, "default_percentage_allocation": 41}]}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("multivariate_options"));
    assert_eq!(server.events().await.len(), before + 1, "only the segment");
}

async fn malformed_json_is_a_bad_request(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let paths = [
        "/api/v1/users/config/init/".to_string(),
        "/api/v1/organisations/".to_string(),
        "/api/v1/projects/".to_string(),
        "/api/v1/environments/".to_string(),
        format!("/api/v1/projects/{project}/features/"),
        format!("/api/v1/projects/{project}/segments/"),
        "/api/v1/environments/env-key/identity-overrides/".to_string(),
    ];
    for path in &paths {
        for body in ["{", "", "not json", "{\"name\": }", "[1, 2"] {
            server
                .request(reqwest::Method::POST, path)
                .raw_json(body)
                .send()
                .await
                .expect_error(400, "bad_request", None);
        }
    }
    // A well-formed body followed by anything else is refused whole: nothing is created.
    let before = server.events().await.len();
    server
        .request(reqwest::Method::POST, "/api/v1/organisations/")
        .raw_json("{\"name\": \"o\"} {\"name\": \"p\"}")
        .send()
        .await
        .expect_error(400, "bad_request", Some("body"));
    assert_eq!(server.events().await.len(), before);
    server
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
        )
        .raw_json("{\"enabled\": tru")
        .send()
        .await
        .expect_error(400, "bad_request", None);
    // A body that is not JSON at all.
    server
        .request(reqwest::Method::POST, "/api/v1/organisations/")
        .header("content-type", "text/plain")
        .send()
        .await
        .expect_error(400, "bad_request", None);
}

async fn a_field_of_the_wrong_type_is_refused_naming_it(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    server
        .put(
            &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
            json!({"enabled": "yes"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("enabled"));
    server
        .post(
            "/api/v1/environments/env-key/identity-overrides/",
            json!({"identifier": "u", "feature": feature, "enabled": 1}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("enabled"));
    server
        .post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": 5}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("name"));
    server
        .post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": "g", "type": "FANCY"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("type"));
    server
        .post(
            "/api/v1/projects/",
            json!({"organisation": "one", "name": "p"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("organisation"));
    // A value that is not a scalar.
    server
        .put(
            &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
            json!({"enabled": true, "feature_state_value": {"nested": 1}}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("feature_state_value"));
    server
        .post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": "h", "initial_value": [1, 2]}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("initial_value"));
    // A missing required field.
    server
        .put(
            &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
            json!({"feature_state_value": 1}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", None);
    // A path parameter that is not a number.
    server
        .get(&format!("/api/v1/projects/{project}/features/abc/"))
        .send()
        .await
        .expect_error(400, "bad_request", None);
}

/// Bodies whose fields the API shares between types (a segment override is a feature state plus
/// a priority; a new project is its settings plus an organisation) name fields the same way.
async fn a_field_of_the_wrong_type_in_a_composed_body_is_refused_naming_it(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let segment = server
        .segment(project, json!({"name": "s", "rules": []}))
        .await;
    server
        .put(
            &format!("/api/v1/environments/env-key/segment-overrides/{feature}/{segment}/"),
            json!({"enabled": "yes"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("enabled"));
    server
        .put(
            &format!("/api/v1/environments/env-key/segment-overrides/{feature}/{segment}/"),
            json!({"enabled": true, "priority": "first"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("priority"));
    server
        .post("/api/v1/projects/", json!({"organisation": 1, "name": 5}))
        .send()
        .await
        .expect_error(400, "bad_request", Some("name"));
    server
        .post(
            "/api/v1/projects/",
            json!({"organisation": 1, "name": "q", "hide_disabled_flags": "no"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("hide_disabled_flags"));
}

async fn an_identifier_over_two_thousand_characters_is_refused(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let path = "/api/v1/environments/env-key/identity-overrides/";
    let before = server.events().await.len();
    server
        .post(
            path,
            json!({"identifier": "x".repeat(2001), "feature": feature, "enabled": true}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("identifier"));
    server
        .post(
            path,
            json!({"identifier": "", "feature": feature, "enabled": true}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("identifier"));
    assert_eq!(server.events().await.len(), before);
}

/// Exactly 2,000 characters is fine, multi-byte ones too (6,000 bytes of varied CJK here: the
/// identifier becomes part of a stream id, which the storage must hold whatever its size).
async fn an_identifier_of_two_thousand_characters_is_accepted_and_stored(backend: Backend) {
    let (server, project) = with_project(backend, json!({"name": "p"})).await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let path = "/api/v1/environments/env-key/identity-overrides/";
    for longest in ["x".repeat(2000), varied_cjk(2000)] {
        server
            .post(
                path,
                json!({"identifier": longest, "feature": feature, "enabled": true}),
            )
            .send()
            .await
            .expect_status(204);
        let overrides = server
            .get(&format!("{path}?identifier={}", percent_encode(&longest)))
            .send()
            .await
            .expect_status(200);
        assert_eq!(overrides.body.as_array().unwrap().len(), 1);
    }
}

/// `count` CJK characters in a pseudo-random order (so they do not compress away).
fn varied_cjk(count: usize) -> String {
    let mut state: u32 = 0x2545_f491;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            char::from_u32(0x4e00 + (state >> 8) % 0x5000).unwrap()
        })
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn environment_keys_and_names_are_checked(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    for key in ["ser.sneaky", "has space", "slash/key", &"k".repeat(201), ""] {
        server
            .post(
                "/api/v1/environments/",
                json!({"project": project, "name": "e", "api_key": key}),
            )
            .send()
            .await
            .expect_error(400, "bad_request", Some("api_key"));
    }
    server.environment(project, "taken").await;
    server
        .post(
            "/api/v1/environments/",
            json!({"project": project, "name": "again", "api_key": "taken"}),
        )
        .send()
        .await
        .expect_error(409, "conflict", Some("api_key"));
    // A generated key when none is given.
    let generated = server
        .post(
            "/api/v1/environments/",
            json!({"project": project, "name": "generated"}),
        )
        .send()
        .await
        .expect_status(201);
    assert!(!generated.str("api_key").is_empty());
    server
        .post(
            "/api/v1/environments/taken/api-keys/",
            json!({"name": "  "}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("name"));
}

on_both_backends!(
    a_feature_name_against_the_project_pattern_is_refused_naming_name,
    an_invalid_project_pattern_is_refused,
    a_duplicate_feature_name_ignoring_case_is_a_conflict,
    a_case_sensitive_project_allows_names_differing_in_case,
    unknown_projects_features_segments_and_environments_are_not_found,
    an_unknown_operator_is_refused_naming_its_place,
    bad_condition_values_are_refused_naming_the_value,
    multivariate_allocations_over_one_hundred_are_refused,
    malformed_json_is_a_bad_request,
    a_field_of_the_wrong_type_is_refused_naming_it,
    a_field_of_the_wrong_type_in_a_composed_body_is_refused_naming_it,
    an_identifier_over_two_thousand_characters_is_refused,
    an_identifier_of_two_thousand_characters_is_accepted_and_stored,
    environment_keys_and_names_are_checked,
);

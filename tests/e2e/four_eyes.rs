//! Four-eyes on: no route changes what an environment or project serves directly, whoever asks;
//! the refusal points to change requests. An admin may still apply a change with a break-glass
//! reason: it is recorded as such and listed as applied without review.

use std::collections::BTreeSet;

use flaglog_tests::{Backend, Server, User, on_both_backends};
use serde_json::{Value, json};

/// A project and environment with a feature of each kind, a segment, a segment override and an
/// identity override, and four-eyes on for both, plus an editor of the project.
struct Guarded {
    server: Server,
    project: u64,
    environment: u64,
    key: &'static str,
    feature: u64,
    option: u64,
    segment: u64,
    editor: User,
}

async fn guarded(backend: Backend) -> Guarded {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "guarded"})).await;
    let key = "guarded-key";
    server.environment(project, key).await;
    let colour = server
        .post(
            &format!("/api/v1/projects/{project}/features/"),
            json!({"name": "colour", "type": "MULTIVARIATE", "initial_value": "red",
                   "multivariate_options": [{"value": "blue", "default_percentage_allocation": 10}]}),
        )
        .send()
        .await
        .expect_status(201);
    let feature = colour.u64("id");
    let option = colour.body["multivariate_options"][0]["id"]
        .as_u64()
        .expect("option id");
    let segment = server
        .segment(project, json!({"name": "beta", "rules": []}))
        .await;
    server
        .put(
            &format!("/api/v1/environments/{key}/segment-overrides/{feature}/{segment}/"),
            json!({"enabled": true}),
        )
        .send()
        .await
        .expect_status(204);
    server
        .post(
            &format!("/api/v1/environments/{key}/identity-overrides/"),
            json!({"identifier": "ann", "feature": feature, "enabled": true}),
        )
        .send()
        .await
        .expect_status(204);
    let environment = server
        .patch(
            &format!("/api/v1/environments/{key}/"),
            json!({"minimum_change_request_approvals": 1}),
        )
        .send()
        .await
        .expect_status(200);
    assert_eq!(environment.body["minimum_change_request_approvals"], 1);
    let environment = environment.u64("id");
    server
        .put(
            &format!("/api/v1/projects/{project}/"),
            json!({"name": "guarded", "minimum_change_request_approvals": 1}),
        )
        .send()
        .await
        .expect_status(200);
    let editor = server.member(project, "editor@example.com", "editor").await;
    Guarded {
        server,
        project,
        environment,
        key,
        feature,
        option,
        segment,
        editor,
    }
}

/// Mutating routes of the spec that do not change what an environment or project serves, and
/// why; every other mutating route must be refused with four-eyes on.
const NOT_GUARDED: &[(&str, &str, &str)] = &[
    ("post", "/api/v1/users/config/init/", "the first user"),
    (
        "delete",
        "/api/v1/environments/{api_key}/identities/{identifier}",
        "an erasure: a person's request, not a flag change",
    ),
    ("post", "/api/v1/users/", "users"),
    ("post", "/api/v1/organisations/", "organisations"),
    ("post", "/api/v1/projects/", "a new project"),
    ("put", "/api/v1/projects/{project_id}/", "settings"),
    (
        "put",
        "/api/v1/projects/{project_id}/roles/{user_id}/",
        "roles",
    ),
    (
        "post",
        "/api/v1/environments/{api_key}/integrations/",
        "integrations (they send, not serve)",
    ),
    (
        "put",
        "/api/v1/environments/{api_key}/integrations/{id}/",
        "integrations (they send, not serve)",
    ),
    (
        "delete",
        "/api/v1/environments/{api_key}/integrations/{id}/",
        "integrations (they send, not serve)",
    ),
    (
        "post",
        "/api/v1/environments/{api_key}/integrations/{id}/replay",
        "integrations (they send, not serve)",
    ),
    (
        "post",
        "/api/v1/projects/{project_id}/integrations/",
        "integrations (they send, not serve)",
    ),
    (
        "put",
        "/api/v1/projects/{project_id}/integrations/{id}/",
        "integrations (they send, not serve)",
    ),
    (
        "delete",
        "/api/v1/projects/{project_id}/integrations/{id}/",
        "integrations (they send, not serve)",
    ),
    (
        "post",
        "/api/v1/projects/{project_id}/integrations/{id}/replay",
        "integrations (they send, not serve)",
    ),
    (
        "post",
        "/api/v1/organisations/{organisation_id}/integrations/",
        "integrations (they send, not serve)",
    ),
    (
        "put",
        "/api/v1/organisations/{organisation_id}/integrations/{id}/",
        "integrations (they send, not serve)",
    ),
    (
        "delete",
        "/api/v1/organisations/{organisation_id}/integrations/{id}/",
        "integrations (they send, not serve)",
    ),
    (
        "post",
        "/api/v1/organisations/{organisation_id}/integrations/{id}/replay",
        "integrations (they send, not serve)",
    ),
    ("post", "/api/v1/tokens/", "API tokens"),
    ("post", "/api/v1/tokens/{token_id}/rotate/", "API tokens"),
    ("delete", "/api/v1/tokens/{token_id}/", "API tokens"),
    (
        "post",
        "/api/v1/projects/{project_id}/service-tokens/",
        "API tokens",
    ),
    ("post", "/api/v1/environments/", "a new environment"),
    ("patch", "/api/v1/environments/{api_key}/", "settings"),
    (
        "post",
        "/api/v1/environments/{api_key}/api-keys/",
        "SDK keys",
    ),
    (
        "post",
        "/api/v1/environment-document/import/",
        "new projects",
    ),
    (
        "post",
        "/api/v1/environments/{api_key}/features/{feature_id}/versions/{number}/restore/",
        "proposes a change request when four-eyes is on (tests/e2e/versions.rs)",
    ),
];

fn is_change_request_route(path: &str) -> bool {
    path.contains("change-requests") || path.contains("applied-without-review")
}

/// The mutating routes of the OpenAPI spec, as `(method, path template)`.
async fn mutating_routes(server: &Server) -> BTreeSet<(String, String)> {
    let spec = server
        .get("/api/v1/openapi.json")
        .send()
        .await
        .expect_status(200)
        .body;
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["post", "put", "patch", "delete"] {
            if item.get(method).is_some() && !is_change_request_route(path) {
                routes.insert((method.to_string(), path.clone()));
            }
        }
    }
    routes
}

/// A well-formed request for each guarded route: `(method, template, concrete path, body)`.
fn guarded_requests(g: &Guarded) -> Vec<(&'static str, &'static str, String, Option<Value>)> {
    let (key, p, f, s) = (g.key, g.project, g.feature, g.segment);
    let allocation =
        json!([{"multivariate_feature_option": g.option, "percentage_allocation": 30}]);
    vec![
        (
            "put",
            "/api/v1/environments/{api_key}/featurestates/{feature_id}/",
            format!("/api/v1/environments/{key}/featurestates/{f}/"),
            Some(json!({"enabled": true, "multivariate_feature_state_values": allocation})),
        ),
        (
            "put",
            "/api/v1/environments/{api_key}/segment-overrides/{feature_id}/{segment_id}/",
            format!("/api/v1/environments/{key}/segment-overrides/{f}/{s}/"),
            Some(json!({"enabled": false})),
        ),
        (
            "delete",
            "/api/v1/environments/{api_key}/segment-overrides/{feature_id}/{segment_id}/",
            format!("/api/v1/environments/{key}/segment-overrides/{f}/{s}/"),
            None,
        ),
        (
            "post",
            "/api/v1/environments/{api_key}/identity-overrides/",
            format!("/api/v1/environments/{key}/identity-overrides/"),
            Some(json!({"identifier": "bob", "feature": f, "enabled": false})),
        ),
        (
            "delete",
            "/api/v1/environments/{api_key}/identity-overrides/",
            format!("/api/v1/environments/{key}/identity-overrides/?identifier=ann&feature={f}"),
            None,
        ),
        (
            "post",
            "/api/v1/projects/{project_id}/features/",
            format!("/api/v1/projects/{p}/features/"),
            Some(json!({"name": "new_one"})),
        ),
        (
            "patch",
            "/api/v1/projects/{project_id}/features/{feature_id}/",
            format!("/api/v1/projects/{p}/features/{f}/"),
            Some(
                json!({"multivariate_options": [{"id": g.option, "value": "green",
                                               "default_percentage_allocation": 10}]}),
            ),
        ),
        (
            "delete",
            "/api/v1/projects/{project_id}/features/{feature_id}/",
            format!("/api/v1/projects/{p}/features/{f}/"),
            None,
        ),
        (
            "post",
            "/api/v1/projects/{project_id}/segments/",
            format!("/api/v1/projects/{p}/segments/"),
            Some(json!({"name": "other", "rules": []})),
        ),
        (
            "put",
            "/api/v1/projects/{project_id}/segments/{segment_id}/",
            format!("/api/v1/projects/{p}/segments/{s}/"),
            Some(json!({"name": "beta2", "rules": []})),
        ),
        (
            "delete",
            "/api/v1/projects/{project_id}/segments/{segment_id}/",
            format!("/api/v1/projects/{p}/segments/{s}/"),
            None,
        ),
    ]
}

/// Every command that changes what is served, in the JSON of `POST /api/v1/commands/`.
fn guarded_commands(g: &Guarded) -> Vec<Value> {
    let (e, p, f, s) = (g.environment, g.project, g.feature, g.segment);
    vec![
        json!({"type": "set_feature_state", "environment_id": e, "feature_id": f, "enabled": true}),
        json!({"type": "set_segment_override", "environment_id": e, "feature_id": f, "segment_id": s, "enabled": false}),
        json!({"type": "remove_segment_override", "environment_id": e, "feature_id": f, "segment_id": s}),
        json!({"type": "set_identity_override", "environment_id": e, "identifier": "bob", "feature_id": f, "enabled": true}),
        json!({"type": "remove_identity_override", "environment_id": e, "identifier": "ann", "feature_id": f}),
        json!({"type": "create_feature", "project_id": p, "feature": {"name": "by_command"}}),
        json!({"type": "update_feature", "project_id": p, "feature_id": f, "changes": {"default_enabled": true}}),
        json!({"type": "delete_feature", "project_id": p, "feature_id": f}),
        json!({"type": "create_segment", "project_id": p, "segment": {"name": "s2", "rules": []}}),
        json!({"type": "update_segment", "project_id": p, "segment_id": s, "segment": {"name": "s3", "rules": []}}),
        json!({"type": "delete_segment", "project_id": p, "segment_id": s}),
    ]
}

fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> flaglog_tests::Call {
    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let call = server.request(method, path);
    match body {
        Some(body) => call.json(&body),
        None => call,
    }
}

async fn every_mutating_route_refuses_direct_changes_of_what_is_served(backend: Backend) {
    let g = guarded(backend).await;
    let server = &g.server;
    let requests = guarded_requests(&g);

    // Every mutating route of the spec is either guarded here or listed as not guarded.
    let classified: BTreeSet<(String, String)> = requests
        .iter()
        .map(|(m, t, _, _)| (m.to_string(), t.to_string()))
        .chain(
            NOT_GUARDED
                .iter()
                .map(|(m, t, _)| (m.to_string(), t.to_string())),
        )
        .chain([("post".to_string(), "/api/v1/commands/".to_string())])
        .collect();
    assert_eq!(
        mutating_routes(server).await,
        classified,
        "a mutating route must be placed: guarded by four-eyes or not"
    );

    let before = server.events().await.len();
    for (method, _, path, body) in &requests {
        for (who, token) in [
            ("editor", g.editor.token.as_str()),
            ("admin", server.token()),
        ] {
            let refused = call(server, method, path, body.clone())
                .token(token)
                .send()
                .await
                .expect_error(403, "forbidden", None);
            let message = refused.str("message");
            assert!(
                message.contains("change request") && message.contains("/change-requests/"),
                "{who} {method} {path}: {message}"
            );
        }
    }
    for command in guarded_commands(&g) {
        let refused = server
            .post("/api/v1/commands/", command.clone())
            .token(&g.editor.token)
            .send()
            .await
            .expect_error(403, "forbidden", None);
        assert!(
            refused.str("message").contains("change request"),
            "{command}: {}",
            refused.str("message")
        );
    }
    assert_eq!(
        server.events().await.len(),
        before,
        "a refused change writes nothing"
    );

    // What four-eyes does not guard still works for whom the role allows.
    server
        .post(
            &format!("/api/v1/environments/{}/api-keys/", g.key),
            json!({"name": "backend"}),
        )
        .send()
        .await
        .expect_status(201);
    // Turning four-eyes off lets the editor change the environment directly again.
    server
        .patch(
            &format!("/api/v1/environments/{}/", g.key),
            json!({"minimum_change_request_approvals": 0}),
        )
        .send()
        .await
        .expect_status(200);
    call(server, requests[0].0, &requests[0].2, requests[0].3.clone())
        .token(&g.editor.token)
        .send()
        .await
        .expect_status(200);
}

async fn break_glass_is_an_admins_with_a_reason_recorded_and_listed(backend: Backend) {
    let g = guarded(backend).await;
    let server = &g.server;
    let path = format!(
        "/api/v1/environments/{}/featurestates/{}/",
        g.key, g.feature
    );
    let change = json!({"enabled": true, "feature_state_value": "hotfix"});

    let refused = server
        .put(&path, change.clone())
        .token(&g.editor.token)
        .header("X-Break-Glass-Reason", "incident 42")
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(
        refused.str("message").contains("admin"),
        "{}",
        refused.str("message")
    );
    server
        .put(&path, change.clone())
        .header("X-Break-Glass-Reason", "   ")
        .send()
        .await
        .expect_error(403, "forbidden", None);

    let before = server.events().await.len();
    server
        .put(&path, change.clone())
        .header("X-Break-Glass-Reason", "incident 42")
        .send()
        .await
        .expect_status(200);
    let events = server.events().await;
    let applied = &events[before..];
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0].event_type, "FeatureStateSet");
    assert!(applied[0].metadata.break_glass);
    assert_eq!(applied[0].metadata.reason.as_deref(), Some("incident 42"));

    let listed = server
        .get(&format!(
            "/api/v1/environments/{}/applied-without-review/",
            g.key
        ))
        .send()
        .await
        .expect_status(200);
    let listed = listed.body.as_array().expect("a list").clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["position"], applied[0].position);
    assert_eq!(listed[0]["event_type"], "FeatureStateSet");
    assert_eq!(listed[0]["reason"], "incident 42");
    assert_eq!(listed[0]["actor"], applied[0].metadata.actor);
    // Changes made while four-eyes was off, or through a change request, are not listed.
    assert!(
        events[..before].iter().all(|e| !e.metadata.break_glass),
        "only the break-glass change is marked"
    );
}

on_both_backends!(
    every_mutating_route_refuses_direct_changes_of_what_is_served,
    break_glass_is_an_admins_with_a_reason_recorded_and_listed,
);

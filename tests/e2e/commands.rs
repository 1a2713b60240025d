//! `POST /api/v1/commands/`: a command in its JSON form goes through the same path as the admin
//! route that builds it, and the OpenAPI document describes every command type.

use std::collections::BTreeSet;

use domain::command::Command;
use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::{Value, json};

async fn commands_in_their_json_form_change_what_the_admin_api_shows(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, "env-key").await;

    let created = server
        .post(
            "/api/v1/commands/",
            json!({"type": "create_feature", "project_id": project,
                   "feature": {"name": "checkout", "initial_value": "old"}}),
        )
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        created.body["created"]["kind"], "feature",
        "{}",
        created.text
    );
    let feature = created.body["created"]["feature"]["id"].as_u64().unwrap();
    let position = created.u64("position");

    let set = server
        .post(
            "/api/v1/commands/",
            json!({"type": "set_feature_state", "environment_id": 1, "feature_id": feature,
                   "enabled": true, "feature_state_value": "blue"}),
        )
        .send()
        .await
        .expect_status(200);
    assert!(set.u64("position") > position);
    let states = server
        .get("/api/v1/environments/env-key/featurestates/")
        .send()
        .await
        .expect_status(200);
    let state = &states.body[0];
    assert_eq!(
        (
            state["enabled"].clone(),
            state["feature_state_value"].clone()
        ),
        (json!(true), json!("blue"))
    );

    // Setting the same state again changes nothing and appends nothing.
    let again = server
        .post(
            "/api/v1/commands/",
            json!({"type": "set_feature_state", "environment_id": 1, "feature_id": feature,
                   "enabled": true, "feature_state_value": "blue"}),
        )
        .send()
        .await
        .expect_status(200);
    assert_eq!(again.body["position"], Value::Null, "{}", again.text);

    server
        .post(
            "/api/v1/commands/",
            json!({"type": "delete_feature", "project_id": project, "feature_id": 999}),
        )
        .send()
        .await
        .expect_error(404, "not_found", None);
    let unknown = server
        .post("/api/v1/commands/", json!({"type": "launch_rocket"}))
        .send()
        .await
        .expect_error(400, "bad_request", None);
    assert!(
        unknown.text.contains("set_feature_state"),
        "{}",
        unknown.text
    );
}

/// Every `"type"` value the OpenAPI document allows for a command.
fn described_types(schemas: &Value, name: &str, seen: &mut BTreeSet<String>) {
    fn walk(schemas: &Value, value: &Value, seen: &mut BTreeSet<String>, depth: usize) {
        if depth > 8 {
            return;
        }
        let Value::Object(map) = value else {
            return;
        };
        if let Some(types) = map
            .get("properties")
            .and_then(|p| p.get("type"))
            .and_then(|t| t.get("enum"))
            .and_then(Value::as_array)
        {
            seen.extend(types.iter().filter_map(Value::as_str).map(String::from));
        }
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or("");
            walk(schemas, &schemas[name], seen, depth + 1);
        }
        for key in ["oneOf", "allOf", "anyOf"] {
            if let Some(items) = map.get(key).and_then(Value::as_array) {
                for item in items {
                    walk(schemas, item, seen, depth + 1);
                }
            }
        }
    }
    walk(schemas, &schemas[name], seen, 0);
}

async fn the_openapi_document_describes_every_command_type(backend: Backend) {
    let server = Server::start(backend).await;
    let document = server
        .get("/api/v1/openapi.json")
        .without_token()
        .send()
        .await
        .expect_status(200)
        .body;
    let schemas = &document["components"]["schemas"];
    let mut described = BTreeSet::new();
    described_types(schemas, "Command", &mut described);
    let all: BTreeSet<String> = Command::types().map(String::from).collect();
    assert_eq!(described, all, "{}", schemas["Command"]);
    assert_eq!(
        document["paths"]["/api/v1/commands/"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Command"
    );
}

/// Every mutation is checked against `domain::access` on the one command path: a user without a
/// role is refused with a 403 that names the role needed and where.
async fn a_user_without_a_role_is_refused_naming_the_role_needed(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, "env-key").await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let token = "plain-user-token-0123456789";
    server
        .post(
            "/api/v1/commands/",
            json!({"type": "create_user", "email": "viewer@example.com", "is_admin": false,
                   "token_hash": commands::secrets::sha256_hex(token)}),
        )
        .send()
        .await
        .expect_status(200);
    let cases = [
        (
            server.put(
                &format!("/api/v1/environments/env-key/featurestates/{feature}/"),
                json!({"enabled": true}),
            ),
            "editor role on the project of environment 1".to_string(),
        ),
        (
            server.post(
                &format!("/api/v1/projects/{project}/features/"),
                json!({"name": "g"}),
            ),
            format!("editor role on project {project}"),
        ),
        (
            server.put(
                &format!("/api/v1/projects/{project}/"),
                json!({"name": "renamed"}),
            ),
            format!("admin role on project {project}"),
        ),
        (
            server.post("/api/v1/organisations/", json!({"name": "o"})),
            "organisation administrator".to_string(),
        ),
        (
            server.post(
                "/api/v1/commands/",
                json!({"type": "delete_feature", "project_id": project, "feature_id": feature}),
            ),
            format!("editor role on project {project}"),
        ),
    ];
    let before = server.events().await.len();
    for (call, needed) in cases {
        let reply = call
            .token(token)
            .send()
            .await
            .expect_error(403, "forbidden", None);
        let message = reply.body["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&needed),
            "{message} should name {needed:?}"
        );
    }
    assert_eq!(
        server.events().await.len(),
        before,
        "a refused command writes nothing"
    );
}

on_both_backends!(
    a_user_without_a_role_is_refused_naming_the_role_needed,
    commands_in_their_json_form_change_what_the_admin_api_shows,
    the_openapi_document_describes_every_command_type,
);

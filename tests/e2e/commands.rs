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

on_both_backends!(
    commands_in_their_json_form_change_what_the_admin_api_shows,
    the_openapi_document_describes_every_command_type,
);

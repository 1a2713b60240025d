//! Feature versions and reverts: every published state of a feature in an environment is a
//! version (who, when, which request), two versions and two environments compare field by field
//! and override by override, restoring an old version publishes a new one equal to it (through a
//! change request when four-eyes is on), and a committed request reverts to the state before it.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::{Value, json};

use crate::change_requests::review;

async fn versions(server: &Server, key: &str, feature: u64) -> Vec<Value> {
    server
        .get(&format!(
            "/api/v1/environments/{key}/features/{feature}/versions/"
        ))
        .send()
        .await
        .expect_status(200)
        .body
        .as_array()
        .expect("a list")
        .clone()
}

async fn every_published_state_is_a_version_comparable_and_restorable(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "versioned"})).await;
    server.environment(project, "prod-key").await;
    server.environment(project, "dev-key").await;
    let feature = server.feature(project, json!({"name": "banner"})).await;
    let segment = server
        .segment(project, json!({"name": "beta", "rules": []}))
        .await;
    let state = format!("/api/v1/environments/prod-key/featurestates/{feature}/");
    let segment_override =
        format!("/api/v1/environments/prod-key/segment-overrides/{feature}/{segment}/");
    let put = async |path: &str, body: Value, status: u16| {
        server.put(path, body).send().await.expect_status(status);
    };
    put(
        &state,
        json!({"enabled": true, "feature_state_value": "a"}),
        200,
    )
    .await;
    put(
        &segment_override,
        json!({"enabled": false, "priority": 1}),
        204,
    )
    .await;
    put(
        &state,
        json!({"enabled": true, "feature_state_value": "b"}),
        200,
    )
    .await;
    server
        .delete(&segment_override)
        .send()
        .await
        .expect_status(204);
    // The same state again publishes nothing new.
    put(
        &state,
        json!({"enabled": true, "feature_state_value": "b"}),
        200,
    )
    .await;

    let all = versions(&server, "prod-key", feature).await;
    let numbers: Vec<u64> = all.iter().map(|v| v["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4], "{all:?}");
    let values: Vec<&Value> = all
        .iter()
        .map(|v| &v["state"]["feature_state_value"])
        .collect();
    assert_eq!(values, [&json!("a"), &json!("a"), &json!("b"), &json!("b")]);
    assert_eq!(
        all[1]["state"]["segment_overrides"][0]["segment_id"],
        segment
    );
    assert_eq!(all[3]["state"]["segment_overrides"], json!([]));
    assert!(
        all.iter()
            .all(|v| v["published_by"].as_str().is_some_and(|a| !a.is_empty()))
    );

    let compared = server
        .get(&format!(
            "/api/v1/environments/prod-key/features/{feature}/versions/compare/?from=1&to=3"
        ))
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(compared["identical"], false);
    assert_eq!(
        compared["differences"]["changes"],
        json!([{"field": "feature_state_value", "from": "a", "to": "b"}])
    );
    assert_eq!(
        compared["differences"]["segment_overrides_added"][0]["segment_id"],
        segment
    );
    let removed = server
        .get(&format!(
            "/api/v1/environments/prod-key/features/{feature}/versions/compare/?from=2&to=4"
        ))
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(
        removed["differences"]["segment_overrides_removed"][0]["segment_id"],
        segment
    );

    // Restoring version 2 publishes version 5, equal to it, and serves it.
    let restored = server
        .post(
            &format!("/api/v1/environments/prod-key/features/{feature}/versions/2/restore/"),
            json!({}),
        )
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(restored["number"], 5);
    assert_eq!(restored["state"], all[1]["state"]);
    let served = server
        .get("/api/v1/environments/prod-key/featurestates/")
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(served[0]["feature_state_value"], "a", "{served}");
    server
        .post(
            &format!("/api/v1/environments/prod-key/features/{feature}/versions/5/restore/"),
            json!({}),
        )
        .send()
        .await
        .expect_error(409, "conflict", None);
    server
        .get(&format!(
            "/api/v1/environments/prod-key/features/{feature}/versions/9/"
        ))
        .send()
        .await
        .expect_error(404, "not_found", None);

    // The same feature in two environments.
    let across = |from: &str, to: &str| {
        server.get(&format!(
            "/api/v1/projects/{project}/features/{feature}/compare-environments/?from={from}&to={to}"
        ))
    };
    let differs = across("prod-key", "dev-key")
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(differs["identical"], false);
    let fields: Vec<&Value> = differs["differences"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["field"])
        .collect();
    assert!(fields.contains(&&json!("feature_state_value")), "{differs}");
    assert_eq!(
        differs["differences"]["segment_overrides_removed"][0]["segment_id"],
        segment
    );
    let same = across("dev-key", "dev-key")
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(same["identical"], true);
}

async fn with_four_eyes_restore_proposes_and_revert_undoes_a_request(backend: Backend) {
    let r = review(backend, 1).await;
    let approver = &r.approvers[0];
    let commit = async |commands: Vec<Value>| -> Value {
        let id = r.open(commands, &[]).await["id"].clone();
        r.act(&id, "approve", approver)
            .send()
            .await
            .expect_status(200);
        r.act(&id, "commit", &r.author)
            .send()
            .await
            .expect_status(200);
        id
    };
    commit(vec![r.set_state("first")]).await;
    let ann = json!({"type": "set_identity_override", "environment_id": r.environment,
                     "identifier": "ann", "feature_id": r.feature, "enabled": true,
                     "feature_state_value": "for ann"});
    let second = commit(vec![r.set_state("second"), ann]).await;
    assert_eq!(r.served_value().await, "second");

    let all = versions(&r.server, r.key, r.feature).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["change_request"], format!("change-request-{second}"));
    assert_eq!(
        all[1]["approvers"],
        json!([format!("user:{}", approver.id)])
    );

    // Revert: a new request that puts back what was there before `second`.
    let revert = r
        .act(&second, "revert", &r.author)
        .send()
        .await
        .expect_status(201)
        .body;
    assert_eq!(revert["status"], "open");
    // Undone last change first.
    let types: Vec<&Value> = revert["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["type"])
        .collect();
    assert_eq!(
        types,
        [
            &json!("remove_identity_override"),
            &json!("set_feature_state")
        ]
    );
    r.act(&revert["id"], "approve", approver)
        .send()
        .await
        .expect_status(200);
    r.act(&revert["id"], "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(r.served_value().await, "first");
    let overrides = r
        .server
        .get(&format!(
            "/api/v1/environments/{}/identity-overrides/?identifier=ann",
            r.key
        ))
        .send()
        .await
        .expect_status(200)
        .body;
    assert_eq!(overrides, json!([]));
    let all = versions(&r.server, r.key, r.feature).await;
    assert_eq!(
        all[2]["state"], all[0]["state"],
        "the revert restored version 1"
    );
    // A revert is a committed request like any other: it can be reverted too.
    r.act(&revert["id"], "revert", &r.author)
        .send()
        .await
        .expect_status(201);

    // With four-eyes on, a restore proposes the change instead of applying it.
    let proposed = r
        .server
        .post(
            &format!(
                "/api/v1/environments/{}/features/{}/versions/2/restore/",
                r.key, r.feature
            ),
            json!({}),
        )
        .token(&r.author.token)
        .send()
        .await
        .expect_status(201)
        .body;
    assert_eq!(proposed["status"], "open");
    assert_eq!(proposed["commands"][0]["feature_state_value"], "second");
    assert_eq!(r.served_value().await, "first", "nothing applied yet");
    // Only a committed request can be reverted.
    r.act(&proposed["id"], "revert", &r.author)
        .send()
        .await
        .expect_error(409, "conflict", None);
}

async fn reverting_a_project_request_puts_every_definition_back(backend: Backend) {
    let r = review(backend, 1).await;
    let approver = &r.approvers[0];
    let (project, server) = (r.project, &r.server);
    let segment = server
        .segment(
            project,
            json!({"name": "beta", "rules": [{"type": "ALL", "rules": [], "conditions":
                   [{"operator": "EQUAL", "property_": "plan", "value": "pro"}]}]}),
        )
        .await;
    server
        .put(
            &format!(
                "/api/v1/environments/{}/featurestates/{}/",
                r.key, r.feature
            ),
            json!({"enabled": true, "feature_state_value": "blue"}),
        )
        .header("X-Break-Glass-Reason", "setting up the test")
        .send()
        .await
        .expect_status(200);
    server
        .put(
            &format!("/api/v1/projects/{project}/"),
            json!({"name": "reviewed", "minimum_change_request_approvals": 1}),
        )
        .send()
        .await
        .expect_status(200);
    let definitions = async || {
        let get =
            |path: String| async move { server.get(&path).send().await.expect_status(200).body };
        (
            get(format!("/api/v1/projects/{project}/features/")).await,
            get(format!("/api/v1/projects/{project}/segments/")).await,
        )
    };
    let before = definitions().await;
    let commit = async |path: String, commands: Value| -> Value {
        let opened = server
            .post(&path, json!({"title": "definitions", "commands": commands}))
            .token(&r.author.token)
            .send()
            .await
            .expect_status(201)
            .body;
        r.act(&opened["id"], "approve", approver)
            .send()
            .await
            .expect_status(200);
        r.act(&opened["id"], "commit", &r.author)
            .send()
            .await
            .expect_status(200)
            .body
    };
    let requests = format!("/api/v1/projects/{project}/change-requests/");
    let committed = commit(
        requests.clone(),
        json!([
            {"type": "create_feature", "project_id": project, "feature": {"name": "new_flag"}},
            {"type": "delete_feature", "project_id": project, "feature_id": r.feature},
            {"type": "update_segment", "project_id": project, "segment_id": segment,
             "segment": {"name": "beta", "description": "everyone", "rules": []}},
        ]),
    )
    .await;
    assert_ne!(definitions().await, before);

    let revert = r
        .act(&committed["id"], "revert", &r.author)
        .send()
        .await
        .expect_status(201)
        .body;
    let types: Vec<&str> = revert["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["update_segment", "create_feature", "delete_feature"],
        "{revert}"
    );
    r.act(&revert["id"], "approve", approver)
        .send()
        .await
        .expect_status(200);
    r.act(&revert["id"], "commit", &r.author)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        definitions().await,
        before,
        "the definitions are as they were"
    );
    assert_eq!(
        r.served_value().await,
        "blue",
        "the feature is back under its own id, with the state environments had for it"
    );
}

on_both_backends!(
    every_published_state_is_a_version_comparable_and_restorable,
    with_four_eyes_restore_proposes_and_revert_undoes_a_request,
    reverting_a_project_request_puts_every_definition_back,
);

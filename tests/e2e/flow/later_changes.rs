//! After the flow: updates and deletions are events too and reads follow them; request ids are
//! echoed (or made) and reach the events.

use super::*;

async fn updates_and_deletions_are_events_and_reads_follow(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "Shop"})).await;
    server.environment(project, "staging-key").await;
    let feature = server
        .feature(
            project,
            json!({"name": "checkout", "initial_value": "v1",
                   "multivariate_options": [{"value": "a", "default_percentage_allocation": 10}]}),
        )
        .await;
    let segment = server
        .segment(
            project,
            json!({"name": "beta", "rules": [{"type": "ALL", "conditions": [
                {"operator": "EQUAL", "property_": "beta", "value": "true"}]}]}),
        )
        .await;
    let env_path = "/api/v1/environments/staging-key";
    server
        .put(
            &format!("{env_path}/segment-overrides/{feature}/{segment}/"),
            json!({"enabled": true, "feature_state_value": "seg"}),
        )
        .send()
        .await
        .expect_status(204);
    server
        .post(
            &format!("{env_path}/identity-overrides/"),
            json!({"identifier": "ann", "feature": feature, "enabled": true}),
        )
        .send()
        .await
        .expect_status(204);
    let start = server.events().await.len();

    // Project settings.
    let updated = server
        .put(
            &format!("/api/v1/projects/{project}/"),
            json!({"name": "Shop 2", "feature_name_regex": "[a-z_]+",
                   "case_sensitive_feature_names": true}),
        )
        .send()
        .await
        .expect_status(200);
    assert_eq!(updated.body["name"], "Shop 2");
    assert_eq!(updated.body["feature_name_regex"], "[a-z_]+");
    assert_eq!(updated.body["case_sensitive_feature_names"], true);
    let shown = server
        .get(&format!("/api/v1/projects/{project}/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(shown.body, updated.body);

    // A feature's changes, keeping an option by id and adding one.
    let before = server
        .get(&format!("/api/v1/projects/{project}/features/{feature}/"))
        .send()
        .await
        .expect_status(200);
    let kept = before.body["multivariate_options"][0]["id"]
        .as_u64()
        .unwrap();
    let patched = server
        .patch(
            &format!("/api/v1/projects/{project}/features/{feature}/"),
            json!({"default_enabled": true, "initial_value": 3, "description": "new",
                   "tags": ["x"], "multivariate_options": [
                       {"id": kept, "value": "a", "default_percentage_allocation": 10},
                       {"value": "b", "default_percentage_allocation": 20}]}),
        )
        .send()
        .await
        .expect_status(200);
    assert_eq!(patched.body["name"], "checkout", "the name cannot change");
    assert_eq!(patched.body["initial_value"], 3);
    assert_eq!(patched.body["default_enabled"], true);
    assert_eq!(patched.body["multivariate_options"][0]["id"], kept);
    assert_eq!(
        patched.body["multivariate_options"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let shown = server
        .get(&format!("/api/v1/projects/{project}/features/{feature}/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(shown.body, patched.body);

    // A segment's new rules.
    let new_rules = json!([{"type": "ANY", "conditions": [
        {"operator": "IN", "property_": "country", "value": "GB,IE"}], "rules": []}]);
    let replaced = server
        .put(
            &format!("/api/v1/projects/{project}/segments/{segment}/"),
            json!({"name": "beta testers", "rules": new_rules}),
        )
        .send()
        .await
        .expect_status(200);
    assert_eq!(replaced.body["name"], "beta testers");
    assert_eq!(replaced.body["rules"], new_rules);

    // The environment's name.
    let renamed = server
        .patch(&format!("{env_path}/"), json!({"name": "Staging EU"}))
        .send()
        .await
        .expect_status(200);
    assert_eq!(renamed.body["name"], "Staging EU");
    assert_eq!(renamed.body["api_key"], "staging-key");

    // Setting the same feature state twice appends once.
    for _ in 0..2 {
        server
            .put(
                &format!("{env_path}/featurestates/{feature}/"),
                json!({"enabled": false, "feature_state_value": "same"}),
            )
            .send()
            .await
            .expect_status(200);
    }

    // Removals.
    server
        .delete(&format!(
            "{env_path}/segment-overrides/{feature}/{segment}/"
        ))
        .send()
        .await
        .expect_status(204);
    server
        .delete(&format!(
            "{env_path}/segment-overrides/{feature}/{segment}/"
        ))
        .send()
        .await
        .expect_error(404, "not_found", None);
    server
        .delete(&format!(
            "{env_path}/identity-overrides/?identifier=ann&feature={feature}"
        ))
        .send()
        .await
        .expect_status(204);
    let overrides = server
        .get(&format!("{env_path}/identity-overrides/?identifier=ann"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(overrides.body, json!([]));
    server
        .delete(&format!("{env_path}/identity-overrides/?identifier=ann"))
        .send()
        .await
        .expect_error(400, "bad_request", Some("feature"));

    server
        .delete(&format!("/api/v1/projects/{project}/segments/{segment}/"))
        .send()
        .await
        .expect_status(204);
    server
        .get(&format!("/api/v1/projects/{project}/segments/{segment}/"))
        .send()
        .await
        .expect_error(404, "not_found", None);
    server
        .delete(&format!("/api/v1/projects/{project}/features/{feature}/"))
        .send()
        .await
        .expect_status(204);
    server
        .get(&format!("/api/v1/projects/{project}/features/{feature}/"))
        .send()
        .await
        .expect_error(404, "not_found", None);
    let states = server
        .get(&format!("{env_path}/featurestates/"))
        .send()
        .await
        .expect_status(200);
    assert_eq!(states.body, json!([]), "a deleted feature has no state");

    // A deleted feature's name is free again, with a new id.
    let again = server.feature(project, json!({"name": "checkout"})).await;
    assert!(again > feature, "ids are not reused");

    let types: Vec<String> = server.events().await[start..]
        .iter()
        .map(|e| e.event_type.clone())
        .collect();
    assert_eq!(
        types,
        [
            "ProjectUpdated",
            "FeatureUpdated",
            "SegmentUpdated",
            "EnvironmentRenamed",
            "FeatureStateSet",
            "SegmentOverrideRemoved",
            "IdentityOverrideRemoved",
            "SegmentDeleted",
            "FeatureDeleted",
            "FeatureCreated",
        ]
    );
}

async fn request_ids_are_echoed_or_made_and_reach_the_events(backend: Backend) {
    let server = Server::start(backend).await;
    // Without an id, the server makes one, answers with it and stores it.
    let reply = server
        .post("/api/v1/organisations/", json!({"name": "made-id"}))
        .send()
        .await
        .expect_status(201);
    let made = reply
        .header("x-request-id")
        .expect("an x-request-id")
        .to_string();
    assert!(!made.is_empty());
    let event = server.events().await.pop().unwrap();
    assert_eq!(event.metadata.request_id.as_deref(), Some(made.as_str()));
    assert_eq!(event.metadata.reason, None);

    // An id that is not safe to log or echo is replaced, not echoed.
    for unsafe_id in ["has space", "semi;colon", &"x".repeat(129)] {
        let reply = server
            .post("/api/v1/organisations/", json!({"name": "replaced-id"}))
            .header("x-request-id", unsafe_id)
            .send()
            .await
            .expect_status(201);
        let answered = reply.header("x-request-id").unwrap().to_string();
        assert_ne!(answered, unsafe_id);
        let event = server.events().await.pop().unwrap();
        assert_eq!(
            event.metadata.request_id.as_deref(),
            Some(answered.as_str())
        );
    }

    // Errors and reads carry the id too.
    let reply = server
        .get("/api/v1/projects/999/")
        .header("x-request-id", "read-404")
        .send()
        .await
        .expect_status(404);
    assert_eq!(reply.header("x-request-id"), Some("read-404"));
    let reply = server
        .get("/api/v1/projects/")
        .without_token()
        .header("x-request-id", "unauthorised-1")
        .send()
        .await
        .expect_status(401);
    assert_eq!(reply.header("x-request-id"), Some("unauthorised-1"));
}

on_both_backends!(
    updates_and_deletions_are_events_and_reads_follow,
    request_ids_are_echoed_or_made_and_reach_the_events,
);

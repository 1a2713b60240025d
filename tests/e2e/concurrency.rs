//! Concurrent requests: uniqueness holds under races (one winner, the others a 409 and nothing
//! half-written), and changes that do not collide all go through even when they share a stream.

use flaglog_tests::{Backend, Reply, Server, on_both_backends, race};
use serde_json::json;
use std::collections::BTreeSet;

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status).collect()
}

/// The 16 spellings of "checkout" whose first four letters vary in case.
fn case_variants() -> Vec<String> {
    (0..16u32)
        .map(|bits| {
            "checkout"
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i < 4 && bits & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
        .collect()
}

async fn concurrent_creations_of_one_feature_name_leave_exactly_one(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    let path = format!("/api/v1/projects/{project}/features/");
    let names = case_variants();
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 16);
    let replies = race(
        names
            .iter()
            .map(|name| server.post(&path, json!({"name": name})))
            .collect(),
    )
    .await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(
        created,
        1,
        "exactly one creation wins: {:?}",
        statuses(&replies)
    );
    for reply in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(
            reply.status, 409,
            "the others are conflicts: {}",
            reply.text
        );
        assert_eq!(
            reply.body["field"], "name",
            "refused for the name, not for giving up on retries: {}",
            reply.text
        );
    }
    let created_events: Vec<_> = server
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "FeatureCreated")
        .collect();
    assert_eq!(created_events.len(), 1, "one FeatureCreated in the log");
    let listed = server.get(&path).send().await.expect_status(200);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(
        listed.body[0]["name"],
        created_events[0].payload["feature"]["name"]
    );
}

async fn concurrent_creations_of_different_features_all_succeed(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    let path = format!("/api/v1/projects/{project}/features/");
    let replies = race(
        (0..16)
            .map(|i| server.post(&path, json!({"name": format!("feature_{i}")})))
            .collect(),
    )
    .await;
    assert_eq!(statuses(&replies), vec![201; 16], "{replies:#?}");
    let ids: BTreeSet<u64> = replies.iter().map(|r| r.u64("id")).collect();
    assert_eq!(ids.len(), 16, "distinct ids: {ids:?}");
    let created = server
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "FeatureCreated")
        .count();
    assert_eq!(created, 16);
    let listed = server.get(&path).send().await.expect_status(200);
    assert_eq!(listed.body.as_array().unwrap().len(), 16);
}

async fn concurrent_environments_with_one_api_key_leave_exactly_one(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    for round in 0..4 {
        let key = format!("race-key-{round}");
        let replies = race(
            (0..2)
                .map(|i| {
                    server.post(
                        "/api/v1/environments/",
                        json!({"project": project, "name": format!("env {i}"), "api_key": key}),
                    )
                })
                .collect(),
        )
        .await;
        let mut got = statuses(&replies);
        got.sort_unstable();
        assert_eq!(got, [201, 409], "round {round}: {replies:#?}");
        let conflict = replies.iter().find(|r| r.status == 409).unwrap();
        assert_eq!(conflict.body["field"], "api_key", "{}", conflict.text);
        let registered = server
            .events()
            .await
            .into_iter()
            .filter(|e| {
                e.event_type == "EnvironmentRegistered" && e.payload["client_key"] == key.as_str()
            })
            .count();
        assert_eq!(registered, 1, "round {round}");
    }
    let listed = server
        .get("/api/v1/environments/")
        .send()
        .await
        .expect_status(200);
    assert_eq!(listed.body.as_array().unwrap().len(), 4);
}

async fn concurrent_environments_with_different_keys_all_succeed(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    let replies = race(
        (0..8)
            .map(|i| {
                server.post(
                    "/api/v1/environments/",
                    json!({"project": project, "name": format!("env {i}"),
                           "api_key": format!("key-{i}")}),
                )
            })
            .collect(),
    )
    .await;
    assert_eq!(statuses(&replies), vec![201; 8], "{replies:#?}");
    let ids: BTreeSet<u64> = replies.iter().map(|r| r.u64("id")).collect();
    assert_eq!(ids.len(), 8);
}

async fn concurrent_feature_states_of_one_environment_all_apply(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server.environment(project, "env-key").await;
    let mut features = Vec::new();
    for i in 0..16 {
        features.push(
            server
                .feature(project, json!({"name": format!("f{i}")}))
                .await,
        );
    }
    let replies = race(
        features
            .iter()
            .map(|id| {
                server.put(
                    &format!("/api/v1/environments/env-key/featurestates/{id}/"),
                    json!({"enabled": true, "feature_state_value": id}),
                )
            })
            .collect(),
    )
    .await;
    assert_eq!(statuses(&replies), vec![200; 16], "{replies:#?}");
    let states = server
        .get("/api/v1/environments/env-key/featurestates/")
        .send()
        .await
        .expect_status(200);
    for state in states.body.as_array().unwrap() {
        assert_eq!(state["enabled"], true, "{state}");
        assert_eq!(
            state["feature_state_value"], state["feature"]["id"],
            "{state}"
        );
    }
}

on_both_backends!(
    concurrent_creations_of_one_feature_name_leave_exactly_one,
    concurrent_creations_of_different_features_all_succeed,
    concurrent_environments_with_one_api_key_leave_exactly_one,
    concurrent_environments_with_different_keys_all_succeed,
    concurrent_feature_states_of_one_environment_all_apply,
);

//! The impact preview of a change request counts exactly the identities whose flags change when
//! it is committed: every known identity is asked for its flags before and after the commit,
//! and the identities whose answers differ are the ones the preview named.

use std::collections::BTreeSet;

use flaglog_tests::{Backend, on_both_backends};
use serde_json::{Value, json};

use crate::{SdkCall, start};

async fn flags_of(sdk: &crate::Sdk, key: &str, identifier: &str, plan: &str) -> Value {
    sdk.post(
        "/api/v1/identities/",
        json!({"identifier": identifier,
               "traits": [{"trait_key": "plan", "trait_value": plan}]}),
    )
    .environment_key(key)
    .send()
    .await
    .expect_status(200)
    .body["flags"]
        .clone()
}

async fn the_preview_names_exactly_the_identities_a_commit_changes(backend: Backend) {
    let sdk = start(backend).await;
    let project = sdk.project(json!({"name": "impact"})).await;
    let key = "impact-key";
    sdk.environment(project, key).await;
    let feature = sdk.feature(project, json!({"name": "checkout"})).await;
    sdk.feature(project, json!({"name": "untouched"})).await;
    let segment = sdk
        .segment(
            project,
            json!({"name": "pro", "rules": [{"type": "ALL", "rules": [], "conditions": [
                {"operator": "EQUAL", "property_": "plan", "value": "pro"}]}]}),
        )
        .await;
    let environment = sdk
        .patch(
            &format!("/api/v1/environments/{key}/"),
            json!({"minimum_change_request_approvals": 1}),
        )
        .send()
        .await
        .expect_status(200)
        .u64("id");
    let author = sdk.member(project, "author@example.com", "editor").await;
    let approver = sdk
        .member(project, "approver@example.com", "approver")
        .await;
    sdk.projected().await;

    let identities = [
        ("ann", "pro"),
        ("bob", "free"),
        ("cid", "pro"),
        ("dee", "free"),
        ("eve", "pro"),
    ];
    let mut before = Vec::new();
    for (identifier, plan) in identities {
        before.push(flags_of(&sdk, key, identifier, plan).await);
    }

    // Pro users get the feature on; and one free user gets it through an identity override.
    let commands = json!([
        {"type": "set_segment_override", "environment_id": environment, "feature_id": feature,
         "segment_id": segment, "enabled": true, "feature_state_value": "for pros"},
        {"type": "set_identity_override", "environment_id": environment, "identifier": "bob",
         "feature_id": feature, "enabled": true},
    ]);
    let id = sdk
        .post(
            &format!("/api/v1/environments/{key}/change-requests/"),
            json!({"title": "pros first", "commands": commands}),
        )
        .token(&author.token)
        .send()
        .await
        .expect_status(201)
        .u64("id");
    let preview = sdk
        .get(&format!("/api/v1/change-requests/{id}/impact/"))
        .token(&author.token)
        .send()
        .await
        .expect_status(200)
        .body;
    let preview = &preview[0];
    assert_eq!(preview["environment_id"], environment);
    assert_eq!(preview["identities_evaluated"], 5);
    let named: BTreeSet<String> = preview["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identifier"].as_str().unwrap().to_string())
        .collect();
    for affected in preview["sample"].as_array().unwrap() {
        let features: Vec<&Value> = affected["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["feature"])
            .collect();
        assert_eq!(features, [&json!("checkout")], "{affected}");
    }

    sdk.post(&format!("/api/v1/change-requests/{id}/approve/"), json!({}))
        .token(&approver.token)
        .send()
        .await
        .expect_status(200);
    sdk.post(&format!("/api/v1/change-requests/{id}/commit/"), json!({}))
        .token(&author.token)
        .send()
        .await
        .expect_status(200);
    sdk.projected().await;
    let mut changed = BTreeSet::new();
    for ((identifier, plan), was) in identities.iter().zip(&before) {
        if flags_of(&sdk, key, identifier, plan).await != *was {
            changed.insert(identifier.to_string());
        }
    }
    assert_eq!(
        changed,
        BTreeSet::from(["ann", "bob", "cid", "eve"].map(String::from)),
        "what the commit changed"
    );
    assert_eq!(preview["identities_affected"], changed.len());
    assert_eq!(named, changed, "the preview named exactly those");

    // A committed request changes nothing any more.
    sdk.get(&format!("/api/v1/change-requests/{id}/impact/"))
        .send()
        .await
        .expect_error(409, "conflict", None);
}

on_both_backends!(the_preview_names_exactly_the_identities_a_commit_changes);

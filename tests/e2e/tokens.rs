//! API tokens: a user holds several personal tokens (each the same person), service tokens act
//! with one role on one project and are nobody's (they neither open nor approve change requests), and any token can be
//! rotated (the old secret stops working at once) or revoked, each an event naming who did it.
//! No list answers a secret, and the log holds only hashes.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

async fn personal_tokens_rotate_and_revoke_and_only_their_owner_manages_them(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    let alice = server.member(project, "alice@example.com", "editor").await;
    let bob = server.member(project, "bob@example.com", "editor").await;
    let laptop = server.personal_token(&alice, "laptop").await;
    let whoami = |token: &str| {
        server
            .get(&format!("/api/v1/projects/{project}/"))
            .token(token)
    };
    whoami(&laptop.token).send().await.expect_status(200);
    whoami(&alice.token).send().await.expect_status(200);

    let listed = server
        .get("/api/v1/tokens/")
        .token(&alice.token)
        .send()
        .await
        .expect_status(200);
    let names: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(
        names,
        [json!("API token"), json!("laptop")],
        "{}",
        listed.text
    );
    assert!(
        !listed.text.contains(&alice.token) && !listed.text.contains(&laptop.token),
        "a list never answers a secret"
    );
    let laptop_id = listed.body[1]["id"].as_u64().unwrap();

    // Bob can neither see nor touch Alice's tokens.
    let bobs = server
        .get("/api/v1/tokens/")
        .token(&bob.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(bobs.body.as_array().unwrap().len(), 1, "{}", bobs.text);
    let refused = server
        .delete(&format!("/api/v1/tokens/{laptop_id}/"))
        .token(&bob.token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(refused.str("message").contains("owner"), "{}", refused.text);

    // Rotation: the old secret stops working at once, the new one works.
    let rotated = server
        .post(&format!("/api/v1/tokens/{laptop_id}/rotate/"), json!({}))
        .token(&laptop.token)
        .send()
        .await
        .expect_status(200);
    let new_secret = rotated.str("token").to_string();
    assert_ne!(new_secret, laptop.token);
    whoami(&laptop.token)
        .send()
        .await
        .expect_error(401, "unauthorized", None);
    whoami(&new_secret).send().await.expect_status(200);

    // Revocation by the owner through another of their tokens.
    server
        .delete(&format!("/api/v1/tokens/{laptop_id}/"))
        .token(&alice.token)
        .send()
        .await
        .expect_status(204);
    whoami(&new_secret)
        .send()
        .await
        .expect_error(401, "unauthorized", None);
    server
        .delete(&format!("/api/v1/tokens/{laptop_id}/"))
        .token(&alice.token)
        .send()
        .await
        .expect_error(404, "not_found", None);

    let events = server.events().await;
    let by = |event_type: &str| {
        events
            .iter()
            .filter(|e| e.event_type == event_type)
            .map(|e| e.metadata.actor.clone())
            .collect::<Vec<_>>()
    };
    let alice_actor = format!("user:{}", alice.id);
    for event_type in ["ApiTokenRotated", "ApiTokenRevoked"] {
        assert_eq!(by(event_type), [alice_actor.as_str()], "{event_type}");
    }
    let log = server.log_text().await;
    for secret in [&alice.token, &laptop.token, &new_secret] {
        assert!(
            !log.contains(secret.as_str()),
            "a token secret is in the log"
        );
    }
}

async fn a_service_token_acts_with_its_role_on_its_project_and_never_approves(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "ci"})).await;
    let other = server.project(json!({"name": "other"})).await;
    server.environment(project, "ci-key").await;
    server.environment(other, "other-key").await;
    let feature = server.feature(project, json!({"name": "f"})).await;
    let elsewhere = server.feature(other, json!({"name": "g"})).await;
    let (token_id, token) = server.service_token(project, "deploy", "editor").await;

    // An editor on its project, nothing elsewhere, and no organisation admin.
    server
        .put(
            &format!("/api/v1/environments/ci-key/featurestates/{feature}/"),
            json!({"enabled": true}),
        )
        .token(&token)
        .send()
        .await
        .expect_status(200);
    server
        .put(
            &format!("/api/v1/environments/other-key/featurestates/{elsewhere}/"),
            json!({"enabled": true}),
        )
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    server
        .patch(
            "/api/v1/environments/ci-key/",
            json!({"minimum_change_request_approvals": 1}),
        )
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    server
        .post("/api/v1/organisations/", json!({"name": "mine"}))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    server
        .post("/api/v1/tokens/", json!({"name": "x"}))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    let projects = server
        .get("/api/v1/projects/")
        .token(&token)
        .send()
        .await
        .expect_status(200);
    let ids: Vec<_> = projects
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, [json!(project)]);
    let actor = format!("service-token:{token_id}");
    let set = server
        .events()
        .await
        .into_iter()
        .rfind(|e| e.event_type == "FeatureStateSet")
        .expect("the state was set");
    assert_eq!(set.metadata.actor, actor);

    // With four-eyes on, change requests are people's: it neither opens nor approves one, even
    // holding the approver role.
    server
        .patch(
            "/api/v1/environments/ci-key/",
            json!({"minimum_change_request_approvals": 1}),
        )
        .send()
        .await
        .expect_status(200);
    let environment = server
        .get("/api/v1/environments/ci-key/")
        .send()
        .await
        .expect_status(200);
    let proposal = json!({"title": "from CI", "commands": [{"type": "set_feature_state",
        "environment_id": environment.u64("id"), "feature_id": feature, "enabled": false}]});
    let path = "/api/v1/environments/ci-key/change-requests/";
    server
        .post(path, proposal.clone())
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    let proposed = server.post(path, proposal).send().await.expect_status(201);
    let (_, approver) = server.service_token(project, "robot", "approver").await;
    let refused = server
        .post(
            &format!("/api/v1/change-requests/{}/approve/", proposed.u64("id")),
            json!({}),
        )
        .token(&approver)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(
        refused.str("message").contains("person"),
        "{}",
        refused.text
    );

    // A project admin (not only the organisation admin) rotates and revokes it.
    let admin = server
        .member(project, "project-admin@example.com", "admin")
        .await;
    let rotated = server
        .post(&format!("/api/v1/tokens/{token_id}/rotate/"), json!({}))
        .token(&admin.token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(rotated.body["kind"], "service");
    assert_eq!(rotated.body["role"], "editor");
    server
        .get("/api/v1/projects/")
        .token(&token)
        .send()
        .await
        .expect_error(401, "unauthorized", None);
    let fresh = rotated.str("token").to_string();
    server
        .delete(&format!("/api/v1/tokens/{token_id}/"))
        .token(&admin.token)
        .send()
        .await
        .expect_status(204);
    server
        .get("/api/v1/projects/")
        .token(&fresh)
        .send()
        .await
        .expect_error(401, "unauthorized", None);
}

on_both_backends!(
    personal_tokens_rotate_and_revoke_and_only_their_owner_manages_them,
    a_service_token_acts_with_its_role_on_its_project_and_never_approves,
);

//! Roles per project: an administrator creates a user and gives them a role on one project; the
//! role allows what it names there (a viewer reads, an editor also changes flags, an admin also
//! settings and roles) and nothing elsewhere; taking it away takes that away.

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

async fn a_role_on_a_project_allows_what_it_names_there_and_nothing_elsewhere(backend: Backend) {
    let server = Server::start(backend).await;
    let mine = server.project(json!({"name": "mine"})).await;
    let other = server.project(json!({"name": "other"})).await;
    server.environment(mine, "mine-key").await;
    server.environment(other, "other-key").await;
    let feature = server.feature(mine, json!({"name": "f"})).await;
    let elsewhere = server.feature(other, json!({"name": "g"})).await;

    let user = server
        .post(
            "/api/v1/users/",
            json!({"email": "editor@example.com", "password": "a long secret"}),
        )
        .send()
        .await
        .expect_status(201);
    let (id, token) = (user.u64("id"), user.str("token").to_string());
    let set_state = |key: &str, feature: u64| {
        server
            .put(
                &format!("/api/v1/environments/{key}/featurestates/{feature}/"),
                json!({"enabled": true}),
            )
            .token(&token)
    };
    set_state("mine-key", feature)
        .send()
        .await
        .expect_error(403, "forbidden", None);

    let read = |path: String| server.get(&path).token(&token);
    read(format!("/api/v1/projects/{mine}/features/"))
        .send()
        .await
        .expect_error(403, "forbidden", None);
    let listed = read("/api/v1/projects/".into())
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        listed.body,
        json!([]),
        "a user without roles sees no project"
    );

    let role_path = format!("/api/v1/projects/{mine}/roles/{id}/");
    server
        .put(&role_path, json!({"role": "viewer"}))
        .send()
        .await
        .expect_status(200);
    // A viewer reads the project, and only it; writing needs more.
    for path in [
        format!("/api/v1/projects/{mine}/"),
        format!("/api/v1/projects/{mine}/features/{feature}/"),
        format!("/api/v1/projects/{mine}/segments/"),
        "/api/v1/environments/mine-key/featurestates/".to_string(),
        "/api/v1/environments/mine-key/identity-overrides/?identifier=u".to_string(),
    ] {
        read(path).send().await.expect_status(200);
    }
    for path in [
        format!("/api/v1/projects/{other}/features/"),
        "/api/v1/environments/other-key/".to_string(),
    ] {
        read(path).send().await.expect_error(403, "forbidden", None);
    }
    let projects = read("/api/v1/projects/".into())
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
    assert_eq!(ids, [json!(mine)]);
    let environments = read("/api/v1/environments/".into())
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        environments.body.as_array().unwrap().len(),
        1,
        "{}",
        environments.text
    );
    let refused = set_state("mine-key", feature)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(refused.text.contains("editor role"), "{}", refused.text);

    server
        .put(&role_path, json!({"role": "editor"}))
        .send()
        .await
        .expect_status(200);
    set_state("mine-key", feature)
        .send()
        .await
        .expect_status(200);
    server
        .post(
            &format!("/api/v1/projects/{mine}/features/"),
            json!({"name": "new"}),
        )
        .token(&token)
        .send()
        .await
        .expect_status(201);
    // Settings and roles need the admin role; another project needs a role of its own.
    let settings = server
        .put(
            &format!("/api/v1/projects/{mine}/"),
            json!({"name": "renamed"}),
        )
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    assert!(settings.text.contains("admin role"), "{}", settings.text);
    server
        .put(&role_path, json!({"role": "admin"}))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    set_state("other-key", elsewhere)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    server
        .post("/api/v1/users/", json!({"email": "x@example.com"}))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);

    // A project admin manages the project's roles, not more.
    server
        .put(&role_path, json!({"role": "admin"}))
        .send()
        .await
        .expect_status(200);
    server
        .put(
            &format!("/api/v1/projects/{mine}/"),
            json!({"name": "renamed"}),
        )
        .token(&token)
        .send()
        .await
        .expect_status(200);
    server
        .post("/api/v1/organisations/", json!({"name": "o"}))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden", None);

    server
        .put(&role_path, json!({"role": null}))
        .send()
        .await
        .expect_status(200);
    set_state("mine-key", feature)
        .send()
        .await
        .expect_error(403, "forbidden", None);
    let roles: Vec<_> = server
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "ProjectRoleSet")
        .map(|e| e.payload["role"].clone())
        .collect();
    assert_eq!(
        roles,
        [
            json!("viewer"),
            json!("editor"),
            json!("admin"),
            json!(null)
        ]
    );
}

async fn roles_are_checked_for_users_and_projects_that_exist(backend: Backend) {
    let server = Server::start(backend).await;
    let project = server.project(json!({"name": "p"})).await;
    server
        .put(
            &format!("/api/v1/projects/{project}/roles/999/"),
            json!({"role": "viewer"}),
        )
        .send()
        .await
        .expect_error(404, "not_found", None);
    server
        .put("/api/v1/projects/999/roles/1/", json!({"role": "viewer"}))
        .send()
        .await
        .expect_error(404, "not_found", None);
    server
        .put(
            &format!("/api/v1/projects/{project}/roles/1/"),
            json!({"role": "owner"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("role"));
}

on_both_backends!(
    a_role_on_a_project_allows_what_it_names_there_and_nothing_elsewhere,
    roles_are_checked_for_users_and_projects_that_exist,
);

//! Bootstrap and authentication: the one unauthenticated route creates the first administrator
//! and only the first; every admin route wants a valid `Authorization: Token <token>`.

use flaglog_tests::{ADMIN_ROUTES, Backend, Server, join_all, on_both_backends};
use reqwest::Method;
use serde_json::json;

async fn bootstrap_creates_the_first_admin_then_refuses(backend: Backend) {
    let server = Server::start_without_user(backend).await;
    let first = server
        .post(
            "/api/v1/users/config/init/",
            json!({"email": "  first@example.com "}),
        )
        .send()
        .await
        .expect_status(201);
    let token = first.str("token").to_string();
    assert!(token.len() >= 32, "a token worth the name: {token:?}");
    assert_eq!(first.str("email"), "first@example.com");

    // The token works: the bootstrap also made the default organisation.
    let organisations = server
        .get("/api/v1/organisations/")
        .token(&token)
        .send()
        .await
        .expect_status(200);
    assert_eq!(
        organisations.body,
        json!([{"id": 1, "name": "Default organisation"}])
    );

    for email in ["second@example.com", "first@example.com"] {
        server
            .post("/api/v1/users/config/init/", json!({"email": email}))
            .send()
            .await
            .expect_error(409, "conflict", None);
    }
    let users: Vec<_> = server
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "UserCreated")
        .collect();
    assert_eq!(users.len(), 1, "only the first bootstrap creates a user");
    assert_eq!(users[0].metadata.actor, "system:init");
}

async fn bootstrap_refuses_an_invalid_email_and_stays_open(backend: Backend) {
    let server = Server::start_without_user(backend).await;
    server
        .post(
            "/api/v1/users/config/init/",
            json!({"email": "not-an-email"}),
        )
        .send()
        .await
        .expect_error(400, "bad_request", Some("email"));
    server
        .post("/api/v1/users/config/init/", json!({"email": "a@b.c"}))
        .send()
        .await
        .expect_status(201);
}

async fn concurrent_bootstraps_create_exactly_one_admin(backend: Backend) {
    let server = Server::start_without_user(backend).await;
    let requests = (0..8).map(|i| {
        server
            .post(
                "/api/v1/users/config/init/",
                json!({"email": format!("racer{i}@example.com")}),
            )
            .send()
    });
    let replies = join_all(requests).await;
    let created = replies.iter().filter(|r| r.status == 201).count();
    let refused = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!((created, refused), (1, 7), "{replies:#?}");
    let users = server
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == "UserCreated")
        .count();
    assert_eq!(users, 1);
}

async fn every_admin_route_refuses_a_request_without_a_token(backend: Backend) {
    let server = Server::start(backend).await;
    for (method, template, path) in ADMIN_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = server
            .request(method.clone(), path)
            .without_token()
            .json(&json!({}))
            .send()
            .await;
        assert_eq!(
            reply.status, 401,
            "{method} {template} without a token: {}",
            reply.text
        );
        assert_eq!(reply.body["error"], "unauthorized", "{method} {template}");
    }
}

async fn a_wrong_or_malformed_token_is_refused(backend: Backend) {
    let server = Server::start(backend).await;
    let wrong = format!("{}0", &server.token()[1..]);
    for (method, _, path) in ADMIN_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        server
            .request(method, path)
            .token(&wrong)
            .json(&json!({}))
            .send()
            .await
            .expect_error(401, "unauthorized", None);
    }
    let token = server.token().to_string();
    for authorization in [
        format!("Bearer {token}"),
        token.clone(),
        "Token ".to_string(),
        "Token".to_string(),
        format!("Token {token}x"),
    ] {
        server
            .get("/api/v1/projects/")
            .without_token()
            .header("authorization", &authorization)
            .send()
            .await
            .expect_error(401, "unauthorized", None);
    }
    // The right token, for contrast.
    server
        .get("/api/v1/projects/")
        .send()
        .await
        .expect_status(200);
}

async fn a_refused_request_appends_nothing(backend: Backend) {
    let server = Server::start(backend).await;
    let before = server.events().await.len();
    server
        .post("/api/v1/organisations/", json!({"name": "sneaky"}))
        .without_token()
        .send()
        .await
        .expect_status(401);
    server
        .post("/api/v1/organisations/", json!({"name": "sneaky"}))
        .token("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .expect_status(401);
    assert_eq!(server.events().await.len(), before);
}

on_both_backends!(
    bootstrap_creates_the_first_admin_then_refuses,
    bootstrap_refuses_an_invalid_email_and_stays_open,
    concurrent_bootstraps_create_exactly_one_admin,
    every_admin_route_refuses_a_request_without_a_token,
    a_wrong_or_malformed_token_is_refused,
    a_refused_request_appends_nothing,
);

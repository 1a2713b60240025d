//! What a client or an operator discovers without a token: the health check, the OpenAPI
//! document (which must describe every admin route), and JSON answers for routes that do not
//! exist.

use std::collections::BTreeSet;

use flaglog_tests::{ADMIN_ROUTES, Backend, Server, on_both_backends};
use reqwest::Method;
use serde_json::json;

/// The routes that need no token, as (method, path template).
const OPEN_ROUTES: &[(&str, &str)] = &[("GET", "/health"), ("POST", "/api/v1/users/config/init/")];

/// Routes being written elsewhere, which this suite does not pin.
const NOT_PINNED: &[&str] = &["/api/v1/environment-document/import/"];

async fn health_answers_200_json_with_the_log_position(backend: Backend) {
    let server = Server::start(backend).await;
    let reply = server
        .get("/health")
        .without_token()
        .send()
        .await
        .expect_status(200);
    assert!(
        reply
            .header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    assert_eq!(reply.body["status"], "ok");
    let head = server.log.head().await.unwrap();
    assert_eq!(reply.body["log_position"], head);
    assert!(head >= 3, "the bootstrap's events are in the log");
    assert_eq!(reply.body["database"], "ok");
    let node = reply.body["node"].as_str().unwrap_or_default().to_string();
    assert!(!node.is_empty(), "{}", reply.body);
    // One node: it leads, once the worker has started (it may still be starting at first).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut reply = reply;
    let workers = loop {
        let workers = reply.body["workers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let projection = workers
            .iter()
            .find(|w| w["name"] == "environment_documents")
            .unwrap_or_else(|| panic!("the projection is a worker: {}", reply.body));
        if projection["state"] != "starting" {
            assert_eq!(projection["leader"], node.as_str(), "{}", reply.body);
            break workers;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still starting: {}",
            reply.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        reply = server
            .get("/health")
            .without_token()
            .send()
            .await
            .expect_status(200);
    };
    assert!(
        workers.iter().any(|w| w["name"] == "sdk_cache"),
        "{}",
        reply.body
    );
}

async fn the_openapi_document_describes_every_admin_route(backend: Backend) {
    let server = Server::start(backend).await;
    let reply = server
        .get("/api/v1/openapi.json")
        .without_token()
        .send()
        .await
        .expect_status(200);
    let document = &reply.body;
    assert!(
        document["openapi"].as_str().unwrap_or("").starts_with("3."),
        "an OpenAPI 3 document: {}",
        reply.text
    );
    let paths = document["paths"].as_object().expect("paths");

    let described: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let served: BTreeSet<(String, String)> = ADMIN_ROUTES
        .iter()
        .map(|(method, template, _)| (method.to_string(), template.to_string()))
        .chain(
            OPEN_ROUTES
                .iter()
                .map(|(method, path)| (method.to_string(), path.to_string())),
        )
        .collect();
    let missing: Vec<_> = served.difference(&described).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    let unknown: Vec<_> = described
        .difference(&served)
        .filter(|(_, path)| !NOT_PINNED.contains(&path.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the OpenAPI document describes routes the server does not serve: {unknown:?}"
    );

    // Operation ids: present and unique.
    let mut ids = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                let id = operation["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                ids.push(id.to_string());
            }
        }
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate operationIds: {ids:?}");

    // The token scheme is described.
    assert!(
        document["components"]["securitySchemes"]
            .as_object()
            .is_some_and(|schemes| !schemes.is_empty()),
        "no security scheme"
    );
}

async fn an_unknown_route_is_a_json_404(backend: Backend) {
    let server = Server::start(backend).await;
    for path in [
        "/nope",
        "/api/v1/nope/",
        "/api/v1/projects/1/unknown/",
        "/api/v1/projects",
        "/projects/1/nope",
    ] {
        for with_token in [true, false] {
            let call = server.get(path);
            let call = if with_token {
                call
            } else {
                call.without_token()
            };
            call.send().await.expect_error(404, "not_found", None);
        }
    }
    server
        .post("/api/v2/projects/", json!({}))
        .send()
        .await
        .expect_error(404, "not_found", None);
}

async fn a_wrong_method_on_a_known_route_is_a_json_405(backend: Backend) {
    let server = Server::start(backend).await;
    for (method, path) in [
        (Method::DELETE, "/api/v1/organisations/"),
        (Method::PUT, "/api/v1/environments/"),
        (Method::GET, "/api/v1/users/config/init/"),
        (Method::POST, "/health"),
    ] {
        let reply = server.request(method.clone(), path).send().await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
    }
}

on_both_backends!(
    health_answers_200_json_with_the_log_position,
    the_openapi_document_describes_every_admin_route,
    an_unknown_route_is_a_json_404,
    a_wrong_method_on_a_known_route_is_a_json_405,
);

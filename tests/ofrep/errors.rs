//! The protocol's errors: each answered with its status and OpenFeature error code, in OFREP's
//! shape (`{"key", "errorCode", "errorDetails"}`, without `key` on the bulk endpoint), and never
//! a server error (the client in `fixture` checks both on every answer).

use flaglog_tests::{Backend, Server, on_both_backends};
use serde_json::json;

use crate::fixture::{CLIENT_KEY, Ofrep, Request, shop};

/// The same request to one flag (`max_items`) and to the bulk endpoint.
fn both(ofrep: &Ofrep, build: impl Fn(Request) -> Request) -> [Request; 2] {
    [build(ofrep.flag("max_items")), build(ofrep.flags())]
}

async fn an_unknown_flag_is_flag_not_found(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    shop(&server, &ofrep).await;

    for key in ["no_such_flag", "MAX_ITEMS", "max items"] {
        let answer = ofrep
            .flag(key)
            .key(CLIENT_KEY)
            .context(json!({"targetingKey": "user-1"}))
            .send()
            .await
            .expect_error(404, "FLAG_NOT_FOUND");
        assert!(
            answer.body["errorDetails"]
                .as_str()
                .is_some_and(|d| d.contains(key)),
            "{}",
            answer.text
        );
    }
}

async fn a_missing_or_unknown_key_is_unauthorized(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    shop(&server, &ofrep).await;

    let token = format!("Token {}", server.token());
    let basic = format!("Basic {CLIENT_KEY}");
    // (what, the header sent, if any)
    let cases = [
        ("no key", None),
        (
            "an unknown client key",
            Some(("x-environment-key", "no-such-key")),
        ),
        (
            "an unknown server-side key",
            Some(("authorization", "Bearer ser.no-such-key")),
        ),
        (
            "an unknown key as X-API-Key",
            Some(("x-api-key", "no-such-key")),
        ),
        ("an empty bearer", Some(("authorization", "Bearer "))),
        ("an admin token", Some(("authorization", token.as_str()))),
        (
            "the key in another scheme",
            Some(("authorization", basic.as_str())),
        ),
        ("a blank header", Some(("x-environment-key", "  "))),
    ];
    for (what, header) in cases {
        let requests = both(&ofrep, |request| match header {
            Some((name, value)) => request.header(name, value),
            None => request,
        });
        for request in requests {
            let answer = request.send().await;
            assert_eq!(answer.status, 401, "{what}: {}", answer.text);
            assert_eq!(answer.body["errorCode"], "GENERAL", "{what}");
        }
    }
}

async fn a_malformed_body_is_a_parse_error(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    shop(&server, &ofrep).await;

    let bodies = [
        ("application/json", "not json"),
        ("application/json", "{\"context\": {"),
        ("application/json", ""),
        ("application/json", "[{\"context\": {}}]"),
        ("application/json", "\"context\""),
        ("text/plain", "{\"context\": {}}"),
    ];
    for (content_type, text) in bodies {
        for request in both(&ofrep, |r| r.key(CLIENT_KEY).raw(content_type, text)) {
            let answer = request.send().await.expect_error(400, "PARSE_ERROR");
            if answer.description.ends_with("/flags") {
                assert!(answer.body.get("key").is_none(), "{}", answer.text);
            }
        }
    }
}

async fn an_invalid_context_is_invalid_context(backend: Backend) {
    let server = Server::start(backend).await;
    let ofrep = Ofrep::new(&server);
    shop(&server, &ofrep).await;

    let bodies = [
        json!({"context": "user-1"}),
        json!({"context": ["user-1"]}),
        json!({"context": {"targetingKey": 42}}),
        json!({"context": {"targetingKey": true}}),
        json!({"context": {"targetingKey": {"id": "user-1"}}}),
        json!({"context": {"targetingKey": "x".repeat(2001)}}),
    ];
    for body in bodies {
        for request in both(&ofrep, |r| r.key(CLIENT_KEY).body(body.clone())) {
            request.send().await.expect_error(400, "INVALID_CONTEXT");
        }
    }
    // The longest identifier there may be is fine.
    ofrep
        .flag("max_items")
        .key(CLIENT_KEY)
        .context(json!({"targetingKey": "x".repeat(2000)}))
        .send()
        .await
        .expect_status(200);
}

on_both_backends!(
    an_unknown_flag_is_flag_not_found,
    a_missing_or_unknown_key_is_unauthorized,
    a_malformed_body_is_a_parse_error,
    an_invalid_context_is_invalid_context,
);

//! What the OFREP tests share: an environment with one flag of each kind (built through the admin
//! API), and a small OFREP client that holds every answer to the protocol's error contract.
//!
//! The SDK read path serves the projection, which follows the log a moment behind the admin API:
//! [`eventually`] polls until an answer shows what the test just wrote.

use std::time::{Duration, Instant};

use flaglog_tests::{REQUEST_TIMEOUT, Server};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// The shop environment's client key.
pub const CLIENT_KEY: &str = "ofrep-shop-client";

/// The value of the `layout` flag: JSON text, as Flagsmith stores structured values.
pub const LAYOUT: &str = r#"{"columns": 3, "theme": "compact"}"#;

/// An environment with one flag of each kind; feature ids by name.
pub struct Shop {
    pub server_key: String,
    pub features: Vec<(&'static str, u64)>,
}

impl Shop {
    pub fn feature(&self, name: &str) -> u64 {
        self.features
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, id)| *id)
            .unwrap_or_else(|| panic!("no feature {name}"))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.features.iter().map(|(name, _)| *name).collect()
    }

    /// The admin path of the shop environment.
    pub fn env_path(&self) -> String {
        format!("/api/v1/environments/{CLIENT_KEY}")
    }
}

/// Builds the shop, in this order:
///
/// - `dark_mode`: a toggle (no value), on; `maintenance`: a toggle, off;
/// - `banner`: `"hello"`, on, overridden for the identity `vip` (`"hello, vip"`);
/// - `max_items`: `42`; `ratio`: `0.25`; `layout`: [`LAYOUT`]; all on;
/// - `legacy_text`: `"old"`, off;
/// - `welcome`: `"generic"`, on; the segment `pro users` (trait `plan` EQUAL `pro`) overrides
///   it with `"welcome, pro"`;
/// - `colour`: multivariate, control value `"grey"`, with `"red"` taking 100% and `"blue"` 0%.
///
/// Returns once the projection serves all of it.
pub async fn shop(server: &Server, ofrep: &Ofrep) -> Shop {
    let project = server.project(json!({"name": "Shop"})).await;
    server.environment(project, CLIENT_KEY).await;
    let server_key = server
        .post(
            &format!("/api/v1/environments/{CLIENT_KEY}/api-keys/"),
            json!({"name": "backend"}),
        )
        .send()
        .await
        .expect_status(201)
        .str("key")
        .to_string();

    let definitions = [
        ("dark_mode", json!({"default_enabled": true})),
        ("maintenance", json!({"default_enabled": false})),
        (
            "banner",
            json!({"default_enabled": true, "initial_value": "hello"}),
        ),
        (
            "max_items",
            json!({"default_enabled": true, "initial_value": 42}),
        ),
        (
            "ratio",
            json!({"default_enabled": true, "initial_value": 0.25}),
        ),
        (
            "layout",
            json!({"default_enabled": true, "initial_value": LAYOUT}),
        ),
        (
            "legacy_text",
            json!({"default_enabled": false, "initial_value": "old"}),
        ),
        (
            "welcome",
            json!({"default_enabled": true, "initial_value": "generic"}),
        ),
        (
            "colour",
            json!({"type": "MULTIVARIATE", "default_enabled": true, "initial_value": "grey",
                   "multivariate_options": [
                       {"value": "red", "default_percentage_allocation": 100},
                       {"value": "blue", "default_percentage_allocation": 0}]}),
        ),
    ];
    let mut features = Vec::new();
    for (name, mut body) in definitions {
        body["name"] = json!(name);
        features.push((name, server.feature(project, body).await));
    }
    let shop = Shop {
        server_key,
        features,
    };

    let segment = server
        .segment(
            project,
            json!({"name": "pro users", "rules": [{"type": "ALL", "rules": [], "conditions": [
                {"operator": "EQUAL", "property_": "plan", "value": "pro"}]}]}),
        )
        .await;
    server
        .put(
            &format!(
                "{}/segment-overrides/{}/{segment}/",
                shop.env_path(),
                shop.feature("welcome")
            ),
            json!({"priority": 1, "enabled": true, "feature_state_value": "welcome, pro"}),
        )
        .send()
        .await
        .expect_status(204);
    server
        .post(
            &format!("{}/identity-overrides/", shop.env_path()),
            json!({"identifier": "vip", "feature": shop.feature("banner"), "enabled": true,
                   "feature_state_value": "hello, vip"}),
        )
        .send()
        .await
        .expect_status(204);

    // The identity override was the last write: once it is served, everything is.
    eventually("the shop is served", || {
        ofrep
            .flag("banner")
            .key(CLIENT_KEY)
            .context(json!({"targetingKey": "vip"}))
    })
    .until(|answer| answer.status == 200 && answer.body["value"] == "hello, vip")
    .await;
    shop
}

/// A client of the OFREP endpoints of one server.
pub struct Ofrep {
    base: String,
    client: reqwest::Client,
}

impl Ofrep {
    pub fn new(server: &Server) -> Ofrep {
        Ofrep {
            base: server.base.clone(),
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap(),
        }
    }

    /// `POST /ofrep/v1/evaluate/flags/{key}`.
    pub fn flag(&self, key: &str) -> Request {
        self.request(&format!("/ofrep/v1/evaluate/flags/{key}"), Some(key))
    }

    /// `POST /ofrep/v1/evaluate/flags`.
    pub fn flags(&self) -> Request {
        self.request("/ofrep/v1/evaluate/flags", None)
    }

    fn request(&self, path: &str, key: Option<&str>) -> Request {
        Request {
            client: self.client.clone(),
            url: format!("{}{path}", self.base),
            description: format!("POST {path}"),
            flag: key.map(str::to_string),
            headers: Vec::new(),
            body: Some((
                "application/json".into(),
                json!({"context": {}}).to_string(),
            )),
        }
    }
}

/// An OFREP request being built; by default its body is `{"context": {}}` and it sends no key.
#[derive(Clone)]
pub struct Request {
    client: reqwest::Client,
    url: String,
    description: String,
    /// The flag of a single-flag request, which every error must name.
    flag: Option<String>,
    headers: Vec<(String, String)>,
    /// (content type, text).
    body: Option<(String, String)>,
}

impl Request {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Names the environment with `X-Environment-Key`.
    pub fn key(self, key: &str) -> Self {
        self.header("x-environment-key", key)
    }

    /// Names the environment with `Authorization: Bearer`.
    pub fn bearer(self, key: &str) -> Self {
        self.header("authorization", &format!("Bearer {key}"))
    }

    pub fn if_none_match(self, etag: &str) -> Self {
        self.header("if-none-match", etag)
    }

    /// Sends `{"context": context}`.
    pub fn context(self, context: Value) -> Self {
        self.body(json!({ "context": context }))
    }

    /// Sends `body` as JSON.
    pub fn body(self, body: Value) -> Self {
        self.raw("application/json", &body.to_string())
    }

    /// Sends `text` labelled `content_type`.
    pub fn raw(mut self, content_type: &str, text: &str) -> Self {
        self.body = Some((content_type.to_string(), text.to_string()));
        self
    }

    /// Sends the request and checks the protocol's contract: never a 5xx; every 4xx is JSON
    /// `{"errorCode", "errorDetails"}`, naming the flag on the single-flag endpoint.
    pub async fn send(self) -> Answer {
        let mut builder = self.client.post(&self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some((content_type, text)) = self.body {
            builder = builder.header("content-type", content_type).body(text);
        }
        let response = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", self.description));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let answer = Answer {
            description: self.description,
            status,
            headers,
            text,
            body,
        };
        assert!(
            status < 500,
            "{}: answered {status}, a server error: {}",
            answer.description,
            answer.text
        );
        if status >= 400 {
            let shaped = answer.body["errorCode"].is_string()
                && answer.body["errorDetails"].is_string()
                && answer.header("content-type") == Some("application/json");
            assert!(
                shaped,
                "{}: answered {status} without an OFREP error body: {:?} {:?}",
                answer.description,
                answer.header("content-type"),
                answer.text
            );
            if let Some(flag) = &self.flag {
                assert_eq!(
                    answer.body["key"], *flag,
                    "{}: the error names the flag: {}",
                    answer.description, answer.text
                );
            }
        }
        answer
    }
}

/// An answer: status, headers and body (parsed when it is JSON, else `null`).
#[derive(Debug)]
pub struct Answer {
    pub description: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Answer {
    pub fn expect_status(self, status: u16) -> Answer {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.description, self.status, self.text
        );
        self
    }

    /// Checks this is an OFREP error with `status` and `error_code`.
    pub fn expect_error(self, status: u16, error_code: &str) -> Answer {
        let answer = self.expect_status(status);
        assert_eq!(
            answer.body["errorCode"], error_code,
            "{}: {}",
            answer.description, answer.text
        );
        answer
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `ETag` header; panics without one.
    pub fn etag(&self) -> String {
        self.header("etag")
            .unwrap_or_else(|| panic!("{}: no ETag", self.description))
            .to_string()
    }

    /// The bulk answer's item for `key`.
    pub fn flag(&self, key: &str) -> &Value {
        self.body["flags"]
            .as_array()
            .and_then(|flags| flags.iter().find(|flag| flag["key"] == key))
            .unwrap_or_else(|| panic!("{}: no flag {key} in {}", self.description, self.text))
    }

    /// The keys of the bulk answer, in order.
    pub fn keys(&self) -> Vec<String> {
        self.body["flags"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no flags in {}", self.description, self.text))
            .iter()
            .map(|flag| flag["key"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Polls a request (rebuilt by `request` each time) until its answer satisfies a condition.
pub fn eventually<F: Fn() -> Request>(what: &'static str, request: F) -> Eventually<F> {
    Eventually { what, request }
}

pub struct Eventually<F> {
    what: &'static str,
    request: F,
}

impl<F: Fn() -> Request> Eventually<F> {
    /// The first answer satisfying `done`; fails the test after 20 seconds.
    pub async fn until(self, done: impl Fn(&Answer) -> bool) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = (self.request)().send().await;
            if done(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{} never happened; last answer {}: {}",
                self.what,
                answer.status,
                answer.text
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

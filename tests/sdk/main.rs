//! End-to-end tests of the SDK-facing API (`/api/v1/flags/`, `/api/v1/identities/`,
//! `/api/v1/environment-document/`, `/api/v1/analytics/flags/` and the realtime stream): a real
//! flaglog server on loopback over a real database, every behaviour on both backends.
//!
//! Data reaches the server the way operators put it there: through the admin API, or by
//! importing one of Flagsmith's conformance documents. Whatever an SDK then reads must equal what
//! Flagsmith's own engine computed for that document (`conformance/documents/seed-*.json`).

mod analytics;
mod document;
mod erasure;
mod flags;
mod identities;
mod impact;
mod metrics;
mod realtime;
mod time_travel;
mod validation;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use api::http::AppState;
use flaglog_tests::{Backend, Call, Server};
use serde_json::{Value, json};

pub use flaglog_tests::{SEEDS, seed};

/// How long the read side may take to reflect a write before a test fails.
pub const PROJECTION_DEADLINE: Duration = Duration::from_secs(10);

/// A server (with an administrator) and the running state behind it.
pub struct Sdk {
    pub server: Server,
    pub state: AppState,
}

impl Deref for Sdk {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

/// A server on a fresh database of `backend`, keeping its state.
pub async fn start(backend: Backend) -> Sdk {
    let (server, state) = Server::start_with_state(backend).await;
    Sdk { server, state }
}

/// [`start`], keeping no evaluation context cached: every identity request rebuilds its
/// environment's from the projected read model.
pub async fn start_without_cached_contexts(backend: Backend) -> Sdk {
    let bounds = api::sdk_cache::CacheBounds {
        evaluables: 0,
        ..Default::default()
    };
    let (server, state) = Server::start_with_cache(backend, bounds).await;
    Sdk { server, state }
}

impl Sdk {
    /// Waits until the environment-documents projection has applied everything in the log, so
    /// the SDK endpoints know about what the test set up. (Tests of how fast a change shows
    /// poll the endpoints instead.)
    pub async fn projected(&self) {
        let head = self.server.log.head().await.unwrap();
        let mut progress = self.state.projection_progress.clone();
        tokio::time::timeout(PROJECTION_DEADLINE, progress.wait_for(|p| *p >= head))
            .await
            .unwrap_or_else(|_| {
                panic!("the projection did not reach position {head} in {PROJECTION_DEADLINE:?}")
            })
            .unwrap();
    }
}

/// What `POST /api/v1/environment-document/import/` answered.
pub struct Imported {
    pub environment_id: u64,
    pub client_key: String,
    pub server_side_key: String,
}

/// Imports a Flagsmith environment document through the admin API, and waits until the SDK
/// endpoints serve it.
pub async fn import(sdk: &Sdk, document: &Value) -> Imported {
    let reply = sdk
        .post("/api/v1/environment-document/import/", document.clone())
        .send()
        .await
        .expect_status(201);
    sdk.projected().await;
    Imported {
        environment_id: reply.u64("environment_id"),
        client_key: reply.str("client_key").to_string(),
        server_side_key: reply.str("server_side_key").to_string(),
    }
}

/// An SDK's request: no admin token, the environment named by `X-Environment-Key`.
pub trait SdkCall {
    fn environment_key(self, key: &str) -> Call;
}

impl SdkCall for Call {
    fn environment_key(self, key: &str) -> Call {
        self.without_token().header("x-environment-key", key)
    }
}

/// A flag as SDKs read it: enabled and value.
pub type Flag = (bool, Value);

/// Flags in Flagsmith's API shape (`[{"feature": {"name"}, "enabled", "feature_state_value"}]`)
/// by feature name, checking the shape on the way.
pub fn api_flags(flags: &Value) -> BTreeMap<String, Flag> {
    let list = flags
        .as_array()
        .unwrap_or_else(|| panic!("flags are a list: {flags}"));
    let mut by_name = BTreeMap::new();
    for flag in list {
        let feature = &flag["feature"];
        assert!(
            feature["id"].is_u64() && feature["name"].is_string() && feature["type"].is_string(),
            "a flag's feature has an id, a name and a type: {flag}"
        );
        assert!(flag["enabled"].is_boolean(), "enabled is a boolean: {flag}");
        assert!(
            flag.as_object()
                .unwrap()
                .contains_key("feature_state_value"),
            "a flag has a feature_state_value: {flag}"
        );
        let name = feature["name"].as_str().unwrap().to_string();
        let previous = by_name.insert(
            name.clone(),
            (
                flag["enabled"].as_bool().unwrap(),
                flag["feature_state_value"].clone(),
            ),
        );
        assert!(previous.is_none(), "{name} is listed once: {flags}");
    }
    by_name
}

/// The flags of an engine result (`{"flags": {NAME: {"enabled", "value", ...}}}`) by name.
pub fn engine_flags(result: &Value) -> BTreeMap<String, Flag> {
    result["flags"]
        .as_object()
        .unwrap_or_else(|| panic!("a result has flags: {result}"))
        .iter()
        .map(|(name, flag)| {
            (
                name.clone(),
                (flag["enabled"].as_bool().unwrap(), flag["value"].clone()),
            )
        })
        .collect()
}

/// A trait list as `POST /api/v1/identities/` takes it, from `{key: value}`.
pub fn trait_list(traits: &Value) -> Value {
    let traits = traits.as_object().cloned().unwrap_or_default();
    Value::Array(
        traits
            .into_iter()
            .map(|(key, value)| json!({"trait_key": key, "trait_value": value}))
            .collect(),
    )
}

/// Checks `actual` against `expected` flag by flag, naming every difference.
pub fn assert_same_flags(
    actual: &BTreeMap<String, Flag>,
    expected: &BTreeMap<String, Flag>,
    what: &str,
) {
    let mut differences = Vec::new();
    for (name, want) in expected {
        match actual.get(name) {
            Some(got) if got == want => {}
            Some(got) => differences.push(format!("{name}: got {got:?}, want {want:?}")),
            None => differences.push(format!("{name}: missing")),
        }
    }
    for name in actual.keys().filter(|name| !expected.contains_key(*name)) {
        differences.push(format!("{name}: not expected"));
    }
    assert!(
        differences.is_empty(),
        "{what}: {} flag(s) differ:\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
}

/// A segment `gold` of `project`: the identities whose trait `plan` is "gold".
pub async fn gold_segment_of(server: &Server, project: u64) -> u64 {
    server
        .segment(
            project,
            json!({"name": "gold", "rules": [{"type": "ALL", "conditions": [], "rules": [
                {"type": "ANY", "rules": [], "conditions": [
                    {"operator": "EQUAL", "property_": "plan", "value": "gold"}]}]}]}),
        )
        .await
}

/// A project with an environment whose client key is `client_key`, and a server-side key of it;
/// returns (project id, environment id, server-side key). The caller adds features and waits
/// for [`Sdk::projected`].
pub async fn environment_with_server_key(server: &Server, client_key: &str) -> (u64, u64, String) {
    let project = server.project(json!({"name": "sdk"})).await;
    let environment = server
        .post(
            "/api/v1/environments/",
            json!({"project": project, "name": "production", "api_key": client_key}),
        )
        .send()
        .await
        .expect_status(201)
        .u64("id");
    let key = server
        .post(
            &format!("/api/v1/environments/{client_key}/api-keys/"),
            json!({"name": "backend"}),
        )
        .send()
        .await
        .expect_status(201)
        .str("key")
        .to_string();
    (project, environment, key)
}

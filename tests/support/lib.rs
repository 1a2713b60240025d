//! Support for the end-to-end tests: a real flaglog server on a loopback port over a fresh
//! database of either backend, and a small HTTP client that holds every answer to the error
//! contract.
//!
//! Each test gets its own database ([`TestDatabase`]) and its own server, so tests are
//! independent and run in parallel. The server runs in the test's process (the same router the
//! binary serves), so the test can also read the event log behind it and check what each request
//! appended. Every behaviour test runs on both backends through [`on_both_backends!`].
//!
//! Two checks apply to every answer without the test asking: no 5xx (a request the API cannot
//! handle is a bug, whatever the test is about), and every 4xx is a JSON
//! `{"error": code, "message": ...}` body.

pub mod receiver;
mod routes;
mod test_log;

pub use routes::ADMIN_ROUTES;

use std::sync::Arc;
use std::time::Duration;

use commands::log::testing::TestDatabase;
use domain::log::{EventLog, RecordedEvent};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use commands::log::Backend;
pub use team::User;

mod team;

/// How long one HTTP request may take before the test fails instead of hanging.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one whole test may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The organisation the bootstrap creates with the first user.
pub const DEFAULT_ORGANISATION: u64 = 1;

/// Instantiates each named `async fn name(backend: Backend)` once per backend, as
/// `sqlite::name` and `postgres::name`, each bounded by [`TEST_TIMEOUT`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::bounded(super::$name($crate::Backend::Sqlite)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::bounded(super::$name($crate::Backend::Postgres)).await;
                }
            )*
        }
    };
}

/// Runs a test body, failing it if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded(body: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("the test did not finish within {TEST_TIMEOUT:?}");
    }
}

/// Runs the futures concurrently, each on a task of its own, and returns their outputs in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}

/// Sends all calls at once: each on its own task, released together by a barrier.
pub async fn race(calls: Vec<Call>) -> Vec<Reply> {
    let barrier = Arc::new(tokio::sync::Barrier::new(calls.len()));
    join_all(calls.into_iter().map(|call| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            call.send().await
        }
    }))
    .await
}

/// A fresh, migrated database of `backend`. PostgreSQL being unreachable fails the test.
pub async fn database(backend: Backend) -> TestDatabase {
    match backend {
        Backend::Sqlite => TestDatabase::sqlite().await,
        Backend::Postgres => TestDatabase::postgres().await,
    }
}

/// How test servers run: as `flaglog serve` does by default, except that integrations may
/// reach loopback (where the tests' receivers listen), and that identity analytics do not
/// yield to load (what a test counts must not depend on the machine running it).
pub fn test_node() -> api::NodeOptions {
    api::NodeOptions {
        integration_networks: projections::integrations::network::PrivateNetworks::Allowed,
        analytics_shed_above: 1.0,
        ..api::NodeOptions::default()
    }
}

/// A flaglog server listening on a loopback port, over its own database.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The event log the server writes to, for reading what requests appended.
    pub log: Arc<dyn EventLog>,
    /// The API token requests send unless told otherwise (set by [`Server::start`]).
    pub token: Option<String>,
    /// The id of the administrator [`Server::start`] created.
    pub admin_id: u64,
    client: reqwest::Client,
    task: JoinHandle<()>,
    // Last, so the server and the log go before their database does.
    db: TestDatabase,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// A server on a fresh database with no user yet.
    pub async fn start_without_user(backend: Backend) -> Server {
        test_log::install();
        let db = database(backend).await;
        let state = api::start_node(db.url(), test_node())
            .await
            .unwrap_or_else(|e| panic!("starting flaglog on {}: {e}", db.url()));
        let log = state.log.clone();
        let router = api::http::router(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Server {
            base: format!("http://{address}"),
            log,
            token: None,
            admin_id: 0,
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap(),
            task,
            db,
        }
    }

    /// A server on a fresh database whose first administrator was created through
    /// `POST /api/v1/users/config/init/`; requests send that administrator's token.
    pub async fn start(backend: Backend) -> Server {
        let mut server = Server::start_without_user(backend).await;
        let reply = server
            .post(
                "/api/v1/users/config/init/",
                json!({"email": "admin@example.com"}),
            )
            .send()
            .await
            .expect_status(201);
        server.token = Some(reply.str("token").to_string());
        server.admin_id = reply.u64("id");
        server
    }

    /// The admin token; panics on a server started without a user.
    pub fn token(&self) -> &str {
        self.token
            .as_deref()
            .expect("the server has an administrator")
    }

    /// A request to `path`, carrying the administrator's token if there is one.
    pub fn request(&self, method: Method, path: &str) -> Call {
        Call {
            builder: self
                .client
                .request(method.clone(), format!("{}{path}", self.base)),
            token: self.token.clone(),
            description: format!("{method} {path}"),
        }
    }

    pub fn get(&self, path: &str) -> Call {
        self.request(Method::GET, path)
    }

    pub fn delete(&self, path: &str) -> Call {
        self.request(Method::DELETE, path)
    }

    pub fn post(&self, path: &str, body: Value) -> Call {
        self.request(Method::POST, path).json(&body)
    }

    pub fn put(&self, path: &str, body: Value) -> Call {
        self.request(Method::PUT, path).json(&body)
    }

    pub fn patch(&self, path: &str, body: Value) -> Call {
        self.request(Method::PATCH, path).json(&body)
    }

    /// The URL of the server's database (for tests that reach behind the server's back).
    pub fn database_url(&self) -> &str {
        self.db.url()
    }

    /// Every event in the log, in position order.
    pub async fn events(&self) -> Vec<RecordedEvent> {
        self.log.read_all(0, 10_000).await.unwrap()
    }

    /// The stream of the identity `identifier` names in the environment (it must have a
    /// reference: an override was set for it).
    pub async fn identity_stream(&self, environment_id: u64, identifier: &str) -> String {
        let reference = self
            .log
            .identity_reference(environment_id, identifier, None)
            .await
            .unwrap()
            .expect("the identity has a reference");
        domain::identity::stream(environment_id, &reference)
    }

    /// The log serialised as JSON text: what to search for secrets that must not be there.
    pub async fn log_text(&self) -> String {
        serde_json::to_string(&self.events().await).unwrap()
    }

    /// Creates a project in the default organisation with `settings` (at least a name); returns
    /// its id.
    pub async fn project(&self, settings: Value) -> u64 {
        let mut body = settings;
        body["organisation"] = json!(DEFAULT_ORGANISATION);
        self.post("/api/v1/projects/", body)
            .send()
            .await
            .expect_status(201)
            .u64("id")
    }

    /// Creates an environment of `project` whose client key is `api_key`.
    pub async fn environment(&self, project: u64, api_key: &str) {
        self.post(
            "/api/v1/environments/",
            json!({"project": project, "name": format!("env {api_key}"), "api_key": api_key}),
        )
        .send()
        .await
        .expect_status(201);
    }

    /// Creates a feature of `project` from `body` (at least a name); returns its id.
    pub async fn feature(&self, project: u64, body: Value) -> u64 {
        self.post(&format!("/api/v1/projects/{project}/features/"), body)
            .send()
            .await
            .expect_status(201)
            .u64("id")
    }

    /// Creates a segment of `project` from `body`; returns its id.
    pub async fn segment(&self, project: u64, body: Value) -> u64 {
        self.post(&format!("/api/v1/projects/{project}/segments/"), body)
            .send()
            .await
            .expect_status(201)
            .u64("id")
    }
}

/// A request being built.
pub struct Call {
    builder: reqwest::RequestBuilder,
    token: Option<String>,
    description: String,
}

impl Call {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.builder = self.builder.header(name, value);
        self
    }

    /// Sends this token instead of the administrator's.
    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    /// Sends no `Authorization` header.
    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.builder = self.builder.json(body);
        self
    }

    /// A body sent as is, labelled `application/json` whatever it holds.
    pub fn raw_json(mut self, body: impl Into<String>) -> Self {
        self.builder = self
            .builder
            .header("content-type", "application/json")
            .body(body.into());
        self
    }

    /// Sends the request and checks the error contract: never a 5xx; every 4xx a JSON
    /// `{"error", "message"}` body.
    pub async fn send(self) -> Reply {
        let mut builder = self.builder;
        if let Some(token) = &self.token {
            builder = builder.header("authorization", format!("Token {token}"));
        }
        let response = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", self.description));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        let reply = Reply {
            description: self.description,
            status,
            headers,
            text,
            body,
        };
        assert!(
            status < 500,
            "{}: answered {status}, a server error: {}",
            reply.description,
            reply.text
        );
        if status >= 400 {
            reply.assert_error_shape();
        }
        reply
    }
}

/// An answer: status, headers and body (parsed as JSON when it is JSON, else `null`).
#[derive(Debug)]
pub struct Reply {
    pub description: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    /// Panics, showing the body, unless the status is `status`.
    pub fn expect_status(self, status: u16) -> Reply {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {}: {}",
            self.description, self.status, self.text
        );
        self
    }

    /// Checks this is an error answer with `status`, error code `code` and, when given,
    /// naming `field`.
    pub fn expect_error(self, status: u16, code: &str, field: Option<&str>) -> Reply {
        let reply = self.expect_status(status);
        assert_eq!(
            reply.body["error"], code,
            "{}: error code in {}",
            reply.description, reply.text
        );
        if let Some(field) = field {
            assert_eq!(
                reply.body["field"], field,
                "{}: the error should name the field {field:?}: {}",
                reply.description, reply.text
            );
        }
        reply
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn str(&self, key: &str) -> &str {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no string {key:?} in {}", self.description, self.text))
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.body[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no integer {key:?} in {}", self.description, self.text))
    }

    fn assert_error_shape(&self) {
        let shaped = self.body["error"].is_string() && self.body["message"].is_string();
        assert!(
            shaped,
            "{}: answered {} without a JSON {{\"error\", \"message\"}} body: {:?}",
            self.description, self.status, self.text
        );
        let content_type = self.header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{}: error answered with content-type {content_type:?}",
            self.description
        );
    }
}

impl Server {
    /// A server as [`Server::start`] makes it (an administrator's token included), with the
    /// running state behind it, for what the HTTP API does not show (the SDK store's analytics
    /// counts, stored traits).
    pub async fn start_with_state(backend: Backend) -> (Server, api::http::AppState) {
        Self::start_with_cache(backend, api::sdk_cache::CacheBounds::default()).await
    }

    /// [`Server::start_with_state`], with the SDK cache's tiers bounded to `bounds`.
    pub async fn start_with_cache(
        backend: Backend,
        bounds: api::sdk_cache::CacheBounds,
    ) -> (Server, api::http::AppState) {
        let options = api::NodeOptions {
            bounds,
            ..test_node()
        };
        Self::start_with_options(backend, options).await
    }

    /// [`Server::start_with_state`], the node run as `options` say.
    pub async fn start_with_options(
        backend: Backend,
        options: api::NodeOptions,
    ) -> (Server, api::http::AppState) {
        test_log::install();
        let db = database(backend).await;
        let state = api::start_node(db.url(), options)
            .await
            .unwrap_or_else(|e| panic!("starting flaglog on {}: {e}", db.url()));
        let kept = state.clone();
        let log = state.log.clone();
        let router = api::http::router(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let mut server = Server {
            base: format!("http://{address}"),
            log,
            token: None,
            admin_id: 0,
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap(),
            task,
            db,
        };
        let reply = server
            .post(
                "/api/v1/users/config/init/",
                json!({"email": "admin@example.com"}),
            )
            .send()
            .await
            .expect_status(201);
        server.token = Some(reply.str("token").to_string());
        server.admin_id = reply.u64("id");
        (server, kept)
    }
}

/// How many generated conformance documents there are (`seed-1.json` … `seed-8.json`).
pub const SEEDS: u32 = 8;

/// The folder holding `conformance/`: `FLAGLOG_REFERENCE_DIR`, or `shared/reference/flagsmith`
/// beside the repository. Missing data fails the test: a conformance test that skips proves
/// nothing.
pub fn reference_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("FLAGLOG_REFERENCE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/reference/flagsmith"
            ))
        });
    assert!(
        dir.join("conformance").is_dir(),
        "Flagsmith conformance data not found at {} (set FLAGLOG_REFERENCE_DIR to the folder \
         holding conformance/)",
        dir.display()
    );
    dir
}

/// `conformance/documents/seed-{n}.json`: `{environment_document, environment_result,
/// identities: [{identifier, traits, result}]}`.
pub fn seed(n: u32) -> Value {
    let path = reference_dir().join(format!("conformance/documents/seed-{n}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

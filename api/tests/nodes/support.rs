//! Running several `flaglog serve` processes (nodes) on one database: starting the real binary
//! on a free loopback port with a node id, asking it over HTTP, reading its realtime stream, and
//! ending it by SIGKILL or SIGTERM. A node is killed when dropped, even by a panic; every wait
//! is bounded by a deadline.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const FLAGLOG: &str = env!("CARGO_BIN_EXE_flaglog");

/// How long a node may take to answer `/health`, a command to finish, a state to be reached.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// `flaglog` on `database_url`, with `info` logs and nothing inherited that changes it.
pub fn flaglog(database_url: &str) -> Command {
    let mut command = Command::new(FLAGLOG);
    command
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .env_remove("FLAGLOG_LOG_FORMAT")
        .env_remove("FLAGLOG_BIND")
        .env_remove("FLAGLOG_NODE_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn drain(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buffer = Arc::new(Mutex::new(String::new()));
    let sink = buffer.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buffer
}

/// Runs `flaglog ARGS` to its end; returns (success, stdout, stderr).
pub async fn run(database_url: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = flaglog(database_url);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("flaglog runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `flaglog admin create`; returns the token.
pub async fn create_admin(database_url: &str) -> String {
    let (ok, stdout, stderr) = run(database_url, &["admin", "create", "--email", "a@b.c"]).await;
    assert!(ok, "admin create: {stderr}");
    stdout.lines().last().unwrap_or("").trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 20 ms until it is true; panics past `within`, naming `what`.
pub async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `flaglog serve` process.
pub struct Node {
    pub id: String,
    pub base: String,
    child: Child,
    stderr: Arc<Mutex<String>>,
    client: reqwest::Client,
    pub token: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts node `id` on `database_url` and waits until it answers `/health`.
    pub async fn start(database_url: &str, id: &str, token: &str) -> Node {
        let port = free_port();
        let mut command = flaglog(database_url);
        command
            .env("FLAGLOG_NODE_ID", id)
            // The tests' webhook receivers listen on loopback.
            .env("FLAGLOG_ALLOW_PRIVATE_INTEGRATION_URLS", "true")
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")]);
        let mut child = command.spawn().expect("flaglog serve starts");
        let _ = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let mut node = Node {
            id: id.to_string(),
            base: format!("http://127.0.0.1:{port}"),
            child,
            stderr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            token: token.to_string(),
        };
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("node {id} exited with {status}: {}", node.stderr());
            }
            let answer = node
                .client
                .get(format!("{}/health", node.base))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} never healthy: {}",
                node.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM; returns how the process exited (bounded by [`DEADLINE`]).
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not exit within {DEADLINE:?} of SIGTERM: {}",
                self.id,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A request with the admin token; returns (status, JSON body or null).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Token {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A request that must answer `expected`; returns its body.
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        let (status, reply) = self
            .send(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on {}: {e}", self.id));
        assert_eq!(status, expected, "{method} {path} on {}: {reply}", self.id);
        reply
    }

    /// An SDK request with `X-Environment-Key: key`; returns (status, body).
    pub async fn sdk(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-environment-key", key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("SDK request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /health`'s status and body (0 and null if it does not answer).
    pub async fn health_status(&self) -> (u16, Value) {
        match self
            .client
            .get(format!("{}/health", self.base))
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// `GET /health`'s body (null if it does not answer).
    pub async fn health(&self) -> Value {
        match self
            .client
            .get(format!("{}/health", self.base))
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// The worker `name` as `/health` shows it (null if absent).
    pub async fn worker(&self, name: &str) -> Value {
        self.health().await["workers"]
            .as_array()
            .and_then(|workers| workers.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// The value of feature `feature` on `GET /api/v1/flags/` for client key `key` (null if
    /// the environment is not served, e.g. not projected yet).
    pub async fn flag_value(&self, key: &str, feature: &str) -> Value {
        let (status, flags) = self
            .sdk(reqwest::Method::GET, "/api/v1/flags/", key, None)
            .await;
        if status != 200 {
            return Value::Null;
        }
        flags
            .as_array()
            .and_then(|flags| flags.iter().find(|f| f["feature"]["name"] == feature))
            .map_or(Value::Null, |f| f["feature_state_value"].clone())
    }
}

/// A project, an environment with client key `key` and a feature `banner` with value "v0", made
/// through `node`; returns the feature's id.
pub async fn environment_with_banner(node: &Node, key: &str) -> u64 {
    use reqwest::Method;
    let project = node
        .expect(
            Method::POST,
            "/api/v1/projects/",
            Some(json!({"organisation": 1, "name": "p"})),
            201,
        )
        .await["id"]
        .as_u64()
        .unwrap();
    node.expect(
        Method::POST,
        "/api/v1/environments/",
        Some(json!({"project": project, "name": "e", "api_key": key})),
        201,
    )
    .await;
    node.expect(
        Method::POST,
        &format!("/api/v1/projects/{project}/features/"),
        Some(json!({"name": "banner", "default_enabled": true, "initial_value": "v0"})),
        201,
    )
    .await["id"]
        .as_u64()
        .unwrap()
}

/// Sets `banner`'s value in environment `key` through `node`.
pub async fn set_banner(node: &Node, key: &str, banner: u64, value: &str) {
    node.expect(
        reqwest::Method::PUT,
        &format!("/api/v1/environments/{key}/featurestates/{banner}/"),
        Some(json!({"enabled": true, "feature_state_value": value})),
        200,
    )
    .await;
}

/// A Server-Sent Events stream, read event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub async fn open(node: &Node, key: &str) -> EventStream {
        let url = format!("{}/sse/environments/{key}/stream", node.base);
        let response = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "GET {url}");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's data as JSON (keep-alive comments skipped), within `within`.
    pub async fn next(&mut self, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    return serde_json::from_str(data.trim()).expect("event data is JSON");
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {within:?}"))
                .expect("the stream reads")
                .expect("the stream stays open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Nodes tests run one at a time: each runs two or three `flaglog serve` processes, each with
/// its pools and a session per worker lock, and two such tests at once came near PostgreSQL's
/// default `max_connections` (100), which refused some ("too many clients already").
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Held for a whole test: see [`ONE_AT_A_TIME`].
pub async fn one_at_a_time() -> tokio::sync::SemaphorePermit<'static> {
    ONE_AT_A_TIME
        .acquire()
        .await
        .expect("the semaphore is never closed")
}

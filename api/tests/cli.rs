//! The `flaglog` command line, end to end: the real binary, run as a child process on a fresh
//! database of each backend (`DATABASE_URL`), including `flaglog serve` answering HTTP on a
//! loopback port and logging each request as one JSON line.
//!
//! Every wait is bounded: a command that does not finish, or a server that does not come up,
//! fails the test instead of hanging it, and a server is killed when its test ends, even by a
//! panic.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use commands::log::testing::TestDatabase;
use serde_json::{Value, json};

const FLAGLOG: &str = env!("CARGO_BIN_EXE_flaglog");

/// How long a command that should finish by itself may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `flaglog serve` may take to answer its health check, or to log a request.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Instantiates each `async fn name(db: TestDatabase)` once per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(commands::log::testing::TestDatabase::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(commands::log::testing::TestDatabase::postgres().await).await;
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// `flaglog` with a clean environment for what it reads: this database, `info` logs, no
/// inherited log format or bind address.
fn flaglog(database_url: &str) -> Command {
    let mut command = Command::new(FLAGLOG);
    command
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .env_remove("FLAGLOG_LOG_FORMAT")
        .env_remove("FLAGLOG_BIND")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Collects everything a pipe yields, on a thread, into a shared buffer.
fn drain(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(String::new()));
    let sink = buffer.clone();
    let thread = std::thread::spawn(move || {
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
    (buffer, thread)
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }

    fn expect_success(self) -> Output {
        assert!(
            self.status.success(),
            "expected success: {}",
            self.describe()
        );
        self
    }

    fn expect_failure(self) -> Output {
        assert!(
            !self.status.success(),
            "expected failure: {}",
            self.describe()
        );
        self
    }

    fn last_stdout_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// Runs a command to its end (at most [`COMMAND_TIMEOUT`]).
async fn run(command: Command) -> Output {
    tokio::task::spawn_blocking(move || run_blocking(command))
        .await
        .unwrap()
}

fn run_blocking(mut command: Command) -> Output {
    let mut child = command.spawn().expect("flaglog starts");
    let (stdout, out_thread) = drain(child.stdout.take().unwrap());
    let (stderr, err_thread) = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {COMMAND_TIMEOUT:?}; stderr: {}",
                stderr.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    out_thread.join().unwrap();
    err_thread.join().unwrap();
    let stdout = stdout.lock().unwrap().clone();
    let stderr = stderr.lock().unwrap().clone();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `flaglog serve`, killed when dropped.
struct Served {
    child: Child,
    base: String,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    client: reqwest::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts `command` (a `flaglog ... serve` without `--bind`) on a free port and waits until
    /// `/health` answers 200.
    async fn start(mut command: Command) -> Served {
        let port = free_port();
        command.args(["--bind", &format!("127.0.0.1:{port}")]);
        let mut child = command.spawn().expect("flaglog serve starts");
        let (stdout, _) = drain(child.stdout.take().unwrap());
        let (stderr, _) = drain(child.stderr.take().unwrap());
        let mut served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stdout,
            stderr,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        served.wait_until_healthy().await;
        served
    }

    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "flaglog serve exited with {status} before serving: {}",
                    self.stderr()
                );
            }
            let answer = self
                .client
                .get(format!("{}/health", self.base))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "flaglog serve did not answer /health within {SERVER_TIMEOUT:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends a request and returns the status and the JSON body (`null` if none).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        request_id: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Token {token}"));
        }
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Waits until stderr holds a JSON line whose `request_id` is `request_id`; returns every
    /// such line.
    async fn log_lines_of(&self, request_id: &str) -> Vec<Value> {
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            let lines: Vec<Value> = json_lines(&self.stderr())
                .into_iter()
                .filter(|line| line["request_id"] == request_id)
                .collect();
            if !lines.is_empty() {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "no log line for request {request_id} within {SERVER_TIMEOUT:?}: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Every complete line of `text`, each of which must be a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line:?}"));
            assert!(
                value.is_object(),
                "a log line that is not an object: {line}"
            );
            value
        })
        .collect()
}

/// `flaglog admin create --email EMAIL` on `database_url`; returns the token it printed.
async fn create_admin(database_url: &str, email: &str) -> String {
    let mut command = flaglog(database_url);
    command.args(["admin", "create", "--email", email]);
    let output = run(command).await.expect_success();
    let token = output.last_stdout_line().trim().to_string();
    assert!(
        token.len() >= 32 && token.chars().all(|c| c.is_ascii_alphanumeric()),
        "the last line of stdout is the token: {}",
        output.describe()
    );
    token
}

// ---------------------------------------------------------------------------------------------
// Behaviours on both backends

async fn migrate_applies_the_schema_and_exits_zero(db: TestDatabase) {
    let mut command = flaglog(db.url());
    command.arg("migrate");
    let first = run(command).await.expect_success();
    assert!(
        first.stdout.contains("schema is up to date"),
        "{}",
        first.describe()
    );
    // Idempotent.
    let mut command = flaglog(db.url());
    command.arg("migrate");
    run(command).await.expect_success();
}

async fn admin_create_prints_a_token_that_authenticates_against_serve(db: TestDatabase) {
    let mut command = flaglog(db.url());
    command.arg("migrate");
    run(command).await.expect_success();
    let token = create_admin(db.url(), "a@b.c").await;

    let mut command = flaglog(db.url());
    command.arg("serve");
    let served = Served::start(command).await;
    assert!(
        served
            .stdout()
            .contains("flaglog listening on http://127.0.0.1:"),
        "{}",
        served.stdout()
    );
    let (status, body) = served
        .send(
            reqwest::Method::GET,
            "/api/v1/organisations/",
            Some(&token),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!([{"id": 1, "name": "Default organisation"}]));
    let (status, body) = served
        .send(
            reqwest::Method::POST,
            "/api/v1/projects/",
            Some(&token),
            None,
            Some(json!({"organisation": 1, "name": "from the cli test"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let (status, _) = served
        .send(
            reqwest::Method::GET,
            "/api/v1/organisations/",
            Some(&format!("{token}0")),
            None,
            None,
        )
        .await;
    assert_eq!(status, 401, "another token does not authenticate");
    // The administrator exists, so the bootstrap route is closed.
    let (status, _) = served
        .send(
            reqwest::Method::POST,
            "/api/v1/users/config/init/",
            None,
            None,
            Some(json!({"email": "late@example.com"})),
        )
        .await;
    assert_eq!(status, 409);

    // Text logs written to a pipe, not a terminal, carry no colour codes.
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    while !served.stderr().contains("/api/v1/users/config/init/") {
        assert!(
            Instant::now() < deadline,
            "no log line of the last request: {}",
            served.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!served.stderr().contains('\u{1b}'), "{}", served.stderr());
}

async fn admin_create_with_a_taken_email_fails_saying_why(db: TestDatabase) {
    create_admin(db.url(), "a@b.c").await;
    for email in ["a@b.c", "A@B.C"] {
        let mut command = flaglog(db.url());
        command.args(["admin", "create", "--email", email]);
        let output = run(command).await.expect_failure();
        assert!(
            output.stderr.contains("e-mail"),
            "stderr says what is wrong: {}",
            output.describe()
        );
        assert!(
            output.stdout.trim().is_empty(),
            "no token on failure: {}",
            output.describe()
        );
    }
    let mut command = flaglog(db.url());
    command.args(["admin", "create", "--email", "not an email"]);
    let output = run(command).await.expect_failure();
    assert!(output.stderr.contains("email"), "{}", output.describe());
    let mut command = flaglog(db.url());
    command.args(["admin", "create", "--email", "c@d.e", "--password", "short"]);
    let output = run(command).await.expect_failure();
    assert!(output.stderr.contains("password"), "{}", output.describe());
}

/// How a test asks `flaglog serve` for JSON logs.
#[derive(Clone, Copy)]
enum JsonSwitch {
    Flag,
    Environment,
}

async fn serve_logs_each_request_as_one_json_line_without_secrets(
    db: &TestDatabase,
    switch: JsonSwitch,
) {
    let token = create_admin(db.url(), "ops@example.com").await;
    let mut command = flaglog(db.url());
    match switch {
        JsonSwitch::Flag => {
            command.args(["serve", "--log-format", "json"]);
        }
        JsonSwitch::Environment => {
            command.env("FLAGLOG_LOG_FORMAT", "json").arg("serve");
        }
    }
    let served = Served::start(command).await;
    let api_key = "client-key-for-logging-4711";
    let (status, project) = served
        .send(
            reqwest::Method::POST,
            "/api/v1/projects/",
            Some(&token),
            Some("log-project"),
            Some(json!({"organisation": 1, "name": "p"})),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    let (status, body) = served
        .send(
            reqwest::Method::POST,
            "/api/v1/environments/",
            Some(&token),
            Some("log-environment"),
            Some(json!({"project": project["id"], "name": "e", "api_key": api_key})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, issued) = served
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/environments/{api_key}/api-keys/"),
            Some(&token),
            Some("log-server-key"),
            Some(json!({"name": "backend"})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let server_key = issued["key"].as_str().unwrap().to_string();

    // The request this test looks at.
    let (status, _) = served
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/environments/{api_key}/"),
            Some(&token),
            Some("log-check-1"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let lines = served.log_lines_of("log-check-1").await;
    assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
    let line = &lines[0];
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["route"], "/api/v1/environments/{api_key}/", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(line["latency_ms"].is_number(), "{line}");
    assert!(line["latency_ms"].as_f64().unwrap() >= 0.0, "{line}");

    // Refused and unrouted requests are logged the same way, without their paths.
    let (status, _) = served
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/environments/{api_key}/featurestates/"),
            Some(&server_key),
            Some("log-check-401"),
            None,
        )
        .await;
    assert_eq!(status, 401);
    let line = &served.log_lines_of("log-check-401").await[0];
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(
        line["route"], "/api/v1/environments/{api_key}/featurestates/",
        "{line}"
    );
    let (status, _) = served
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/environments/{api_key}/no-such-thing/{token}"),
            Some(&token),
            Some("log-check-404"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let line = &served.log_lines_of("log-check-404").await[0];
    assert_eq!(line["status"], 404, "{line}");

    let log = served.stderr();
    for (secret, what) in [
        (token.as_str(), "the API token"),
        (api_key, "the environment's client key"),
        (server_key.as_str(), "the server-side key"),
    ] {
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
    // Every line of the log is JSON (json_lines panics otherwise).
    assert!(json_lines(&log).len() >= 5);
}

async fn serve_with_log_format_json_flag_logs_json(db: TestDatabase) {
    serve_logs_each_request_as_one_json_line_without_secrets(&db, JsonSwitch::Flag).await;
}

async fn serve_with_log_format_json_from_the_environment_logs_json(db: TestDatabase) {
    serve_logs_each_request_as_one_json_line_without_secrets(&db, JsonSwitch::Environment).await;
}

/// `GET path` as an SDK sends it (the environment key in `X-Environment-Key`), with a request
/// id; returns the status once the response's head has arrived (a stream is not read).
async fn sdk_get(served: &Served, path: &str, key: &str, request_id: &str) -> u16 {
    served
        .client
        .get(format!("{}{path}", served.base))
        .header("x-environment-key", key)
        .header("x-request-id", request_id)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// At the default level (`info`) SDK requests, far the most numerous, write no access line;
/// admin requests do. With `api::http=debug` the SDK lines are there, with the route template
/// and without the key (which the realtime stream's path carries).
async fn sdk_requests_log_at_debug_and_admin_requests_at_info(db: TestDatabase) {
    let token = create_admin(db.url(), "quiet@example.com").await;
    let api_key = "client-key-for-quiet-logs-1234";
    let mut command = flaglog(db.url());
    command.args(["serve", "--log-format", "json"]);
    let served = Served::start(command).await;
    let (status, project) = served
        .send(
            reqwest::Method::POST,
            "/api/v1/projects/",
            Some(&token),
            None,
            Some(json!({"organisation": 1, "name": "p"})),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    let (status, body) = served
        .send(
            reqwest::Method::POST,
            "/api/v1/environments/",
            Some(&token),
            None,
            Some(json!({"project": project["id"], "name": "e", "api_key": api_key})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    sdk_get(&served, "/api/v1/flags/", api_key, "sdk-quiet-1").await;
    sdk_get(&served, "/api/v1/flags/", "no-such-key", "sdk-quiet-2").await;
    // Lines are written in order: once the admin request's is there, the SDK ones would be.
    let (status, _) = served
        .send(
            reqwest::Method::GET,
            &format!("/api/v1/environments/{api_key}/"),
            Some(&token),
            Some("admin-loud-1"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let admin = served.log_lines_of("admin-loud-1").await;
    assert_eq!(admin[0]["level"], "INFO", "{admin:?}");
    let log = served.stderr();
    for quiet in ["sdk-quiet-1", "sdk-quiet-2"] {
        assert!(!log.contains(quiet), "{quiet} is logged at info:\n{log}");
    }
    drop(served);

    let mut command = flaglog(db.url());
    command
        .env("RUST_LOG", "info,api::http=debug")
        .args(["serve", "--log-format", "json"]);
    let served = Served::start(command).await;
    let deadline = Instant::now() + SERVER_TIMEOUT;
    while sdk_get(&served, "/api/v1/flags/", api_key, "sdk-debug-poll").await != 200 {
        assert!(Instant::now() < deadline, "{api_key} is never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stream = format!("/sse/environments/{api_key}/stream");
    for (path, request_id, route) in [
        ("/api/v1/flags/", "sdk-debug-1", "/api/v1/flags/"),
        (
            stream.as_str(),
            "sdk-debug-2",
            "/sse/environments/{environment_key}/stream",
        ),
    ] {
        assert_eq!(sdk_get(&served, path, api_key, request_id).await, 200);
        let lines = served.log_lines_of(request_id).await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "DEBUG", "{}", lines[0]);
        assert_eq!(lines[0]["route"], route, "{}", lines[0]);
        assert_eq!(lines[0]["status"], 200, "{}", lines[0]);
    }
    let log = served.stderr();
    assert!(
        !log.contains(api_key),
        "the client key is in the log:\n{log}"
    );
}

async fn verify_exits_zero_on_an_intact_log_and_names_a_changed_event(db: TestDatabase) {
    create_admin(db.url(), "a@example.com").await;
    create_admin(db.url(), "b@example.com").await;
    let mut command = flaglog(db.url());
    command.arg("verify");
    let intact = run(command).await.expect_success();
    assert!(
        intact.stdout.contains("intact: positions 1..") && intact.stdout.contains("head hash"),
        "{}",
        intact.describe()
    );
    // Change the second event behind the database's back (as its owner can).
    let pool = projections::connect(db.url()).await.unwrap();
    let unguard = match db.backend() {
        commands::log::Backend::Postgres => "ALTER TABLE events DISABLE TRIGGER events_append_only",
        commands::log::Backend::Sqlite => "DROP TRIGGER events_no_update",
    };
    for sql in [
        unguard,
        "UPDATE events SET payload = '{}' WHERE position = 2",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let mut command = flaglog(db.url());
    command.arg("verify");
    let broken = run(command).await.expect_failure();
    assert!(
        broken.stderr.contains("NOT intact at position 2")
            && broken.stderr.contains("expected hash"),
        "{}",
        broken.describe()
    );
}

async fn verify_checks_an_export_offline_against_a_signed_checkpoint(db: TestDatabase) {
    create_admin(db.url(), "a@example.com").await;
    create_admin(db.url(), "b@example.com").await;
    let events = db.event_log().await.read_all(0, 1000).await.unwrap();
    let dir = std::env::temp_dir().join(format!("flaglog-export-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let export: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    let key = domain::checkpoint::SigningKey::from_bytes(&[9; 32]);
    let public = hex::encode(key.verifying_key().as_bytes());
    let last = events.last().unwrap();
    let checkpoint =
        domain::checkpoint::sign(&key, last.position, last.hash, "2026-12-04T00:00:00Z");
    let (export_file, checkpoint_file) = (dir.join("log.ndjson"), dir.join("checkpoint.json"));
    std::fs::write(
        &checkpoint_file,
        serde_json::to_string(&checkpoint).unwrap(),
    )
    .unwrap();
    let offline = |export: &str, public_key: &str| {
        std::fs::write(&export_file, export).unwrap();
        // No database: the URL names none that exists.
        let mut command = flaglog("sqlite:///nonexistent-dir/never-opened.db");
        command.arg("verify").arg("--export").arg(&export_file);
        command.arg("--checkpoint").arg(&checkpoint_file);
        command.args(["--public-key", public_key]);
        run(command)
    };
    let intact = offline(&export, &public).await.expect_success();
    assert!(
        intact.stdout.contains("extends the checkpoint"),
        "{}",
        intact.describe()
    );
    let changed = export.replacen("a@example.com", "x@example.com", 1);
    let refused = offline(&changed, &public).await.expect_failure();
    assert!(
        refused.stderr.contains("NOT intact"),
        "{}",
        refused.describe()
    );
    let refused = offline(&export, &"22".repeat(32)).await.expect_failure();
    assert!(
        refused.stderr.contains("checkpoint"),
        "{}",
        refused.describe()
    );
    std::fs::remove_dir_all(&dir).ok();
}

on_both_backends!(
    verify_checks_an_export_offline_against_a_signed_checkpoint,
    verify_exits_zero_on_an_intact_log_and_names_a_changed_event,
    sdk_requests_log_at_debug_and_admin_requests_at_info,
    migrate_applies_the_schema_and_exits_zero,
    admin_create_prints_a_token_that_authenticates_against_serve,
    admin_create_with_a_taken_email_fails_saying_why,
    serve_with_log_format_json_flag_logs_json,
    serve_with_log_format_json_from_the_environment_logs_json,
);

// ---------------------------------------------------------------------------------------------
// Behaviours that need no database

#[tokio::test]
async fn help_works_for_every_command() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["admin", "--help"],
        &["admin", "create", "--help"],
        &["import", "--help"],
        &["workers", "status", "--help"],
        &["verify", "--help"],
        &["help", "serve"],
    ] {
        let mut command = flaglog("sqlite:///nonexistent-dir/never-opened.db");
        command.args(args);
        let output = run(command).await.expect_success();
        assert!(
            output.stdout.contains("Usage:"),
            "{args:?}: {}",
            output.describe()
        );
    }
    let mut command = flaglog("sqlite:///nonexistent-dir/never-opened.db");
    command.args(["admin", "create", "--help"]);
    let output = run(command).await;
    assert!(output.stdout.contains("--email"), "{}", output.describe());
    let mut command = flaglog("sqlite:///nonexistent-dir/never-opened.db");
    command.args(["serve", "--help"]);
    let output = run(command).await;
    assert!(output.stdout.contains("--bind"), "{}", output.describe());
    assert!(
        output.stdout.contains("--log-format"),
        "{}",
        output.describe()
    );
}

#[tokio::test]
async fn a_missing_or_unknown_command_fails_with_usage_on_stderr() {
    for args in [&[][..], &["frobnicate"], &["admin"], &["admin", "create"]] {
        let mut command = flaglog("sqlite:///nonexistent-dir/never-opened.db");
        command.args(args);
        let output = run(command).await.expect_failure();
        assert!(
            output.stderr.contains("Usage"),
            "{args:?}: {}",
            output.describe()
        );
    }
}

#[tokio::test]
async fn an_unknown_database_url_scheme_fails_with_a_message() {
    for args in [
        &["migrate"][..],
        &["serve", "--bind", "127.0.0.1:0"],
        &["admin", "create", "--email", "a@b.c"],
    ] {
        let mut command = flaglog("mysql://root@127.0.0.1/flaglog");
        command.args(args);
        let output = run(command).await.expect_failure();
        assert!(
            output.stderr.contains("unsupported database URL"),
            "{args:?}: {}",
            output.describe()
        );
    }
    // Given as a flag, too.
    let mut command = flaglog("sqlite:///unused.db");
    command.args(["--database-url", "redis://127.0.0.1", "migrate"]);
    let output = run(command).await.expect_failure();
    assert!(
        output.stderr.contains("unsupported database URL"),
        "{}",
        output.describe()
    );
}

#[tokio::test]
async fn migrate_creates_a_missing_sqlite_database() {
    let path = std::env::temp_dir().join(format!(
        "flaglog-cli-test-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let url = format!("sqlite://{}", path.display());
    let mut command = flaglog(&url);
    command.arg("migrate");
    let output = run(command).await;
    let exists = path.exists();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    output.expect_success();
    assert!(exists, "migrate created {}", path.display());
}

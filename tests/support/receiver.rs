//! A real HTTP receiver on loopback for integration tests: it records every request (path,
//! query, headers, body, the status it answered) and answers with the status its script says:
//! failing the first N requests, failing until told otherwise, or always succeeding.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Script {
    /// Requests still to fail before answering 200.
    fail_next: u32,
    /// Fail every request while set.
    failing: bool,
    /// The status failures answer.
    failure: u16,
    /// The body of a success (Slack's `{"ok": true}`, Mixpanel's `1`); empty by default.
    success_body: String,
    /// Failures answer with the request's headers (as some receivers do).
    echo_failures: bool,
    /// Requests get no answer (until the sender gives up).
    stalled: bool,
    received: Vec<Received>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Script>>);

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Receiver {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shared: Shared,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(shared): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let stalled = {
        let mut script = shared.lock();
        if script.stalled {
            script.received.push(Received {
                path: uri.path().to_string(),
                query: uri.query().map(String::from),
                headers: Vec::new(),
                body: body.to_vec(),
                answered: 0,
            });
        }
        script.stalled
    };
    if stalled {
        std::future::pending::<()>().await;
    }
    let mut script = shared.lock();
    let fail = script.failing || script.fail_next > 0;
    script.fail_next = script.fail_next.saturating_sub(1);
    let status = if fail { script.failure.max(400) } else { 200 };
    script.received.push(Received {
        path: uri.path().to_string(),
        query: uri.query().map(String::from),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
        answered: status,
    });
    let echoed;
    let answer = if fail && script.echo_failures {
        echoed = format!("{:?}", script.received.last().map(|r| &r.headers));
        &echoed
    } else if fail {
        ""
    } else {
        &script.success_body
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        answer.to_string(),
    )
}

impl Receiver {
    pub async fn start() -> Receiver {
        let shared = Shared::default();
        shared.lock().failure = 500;
        let router = Router::new().fallback(receive).with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Receiver {
            base: format!("http://{address}"),
            shared,
            task,
        }
    }

    /// Answers `status` to the next `count` requests, then 200.
    pub fn fail_next(&self, count: u32, status: u16) {
        let mut script = self.shared.lock();
        script.fail_next = count;
        script.failure = status;
    }

    /// Answers `status` to every request until [`Self::recover`].
    pub fn fail_always(&self, status: u16) {
        let mut script = self.shared.lock();
        script.failing = true;
        script.failure = status;
    }

    pub fn recover(&self) {
        self.shared.lock().failing = false;
    }

    /// Answers `{"ok": true}` as Slack does.
    pub fn answer_like_slack(&self) {
        self.answer_with(r#"{"ok": true}"#);
    }

    /// Never answers: the receiver is hung.
    pub fn stall(&self) {
        self.shared.lock().stalled = true;
    }

    /// Answers failures with the request's headers, credentials included.
    pub fn echo_failures(&self) {
        self.shared.lock().echo_failures = true;
    }

    /// Answers `body` to every request it takes.
    pub fn answer_with(&self, body: &str) {
        self.shared.lock().success_body = body.to_string();
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// The requests it answered 200.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect()
    }

    /// Waits (up to 30 s) until `done` holds of what was delivered; returns it.
    pub async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let delivered = self.delivered();
            if done(&delivered) {
                return delivered;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 30 s; received {:#?}",
                self.received()
                    .iter()
                    .map(|r| (
                        r.path.clone(),
                        r.answered,
                        String::from_utf8_lossy(&r.body).to_string()
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

//! The layer every request passes: it gives the request an id (the caller's `X-Request-Id` when
//! sane, else a new one), and when the response is ready counts and times it on `/metrics` and
//! logs it once, answering the id in the response's `X-Request-Id`.
//!
//! It is a tower service with its own future rather than `axum::middleware::from_fn`: on
//! `GET /api/v1/flags/` the boxed future and the services `from_fn` clones per request were a
//! tenth of the server's CPU. For the same reason the SDK routes ([`SDK_ROUTES`]) take no
//! reference-counted copy of their route template (it is one of the static strings below), and
//! carry no [`RequestId`] extension (nothing they run appends events).

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use tower::{Layer, Service};

use crate::http::extract::RequestId;
use crate::http::metrics;

/// The route templates whose requests are logged at `debug` (see the module documentation of
/// `http`): the Flagsmith SDK endpoints, OFREP, the realtime stream, and the scraper's
/// `/metrics`. Exact templates, not prefixes: `/api/v1/environment-document/import/` is an
/// admin route.
pub const SDK_ROUTES: &[&str] = &[
    "/api/v1/flags/",
    "/api/v1/identities/",
    "/api/v1/environment-document/",
    "/api/v1/analytics/flags/",
    "/sse/environments/{environment_key}/stream",
    "/ofrep/v1/evaluate/flags",
    "/ofrep/v1/evaluate/flags/{key}",
    "/metrics",
];

/// `X-Request-Id`, a constant so that no request parses the name.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// [`RequestContext`] around every route.
#[derive(Clone, Copy, Default)]
pub struct RequestContextLayer;

impl<S> Layer<S> for RequestContextLayer {
    type Service = RequestContext<S>;

    fn layer(&self, inner: S) -> RequestContext<S> {
        RequestContext { inner }
    }
}

#[derive(Clone)]
pub struct RequestContext<S> {
    inner: S,
}

/// The route a request matched, as its metrics and log line name it.
enum RouteLabel {
    Sdk(&'static str),
    Other(MatchedPath),
    Unmatched,
}

impl RouteLabel {
    fn of(request: &Request) -> Self {
        match request.extensions().get::<MatchedPath>() {
            None => RouteLabel::Unmatched,
            Some(path) => match SDK_ROUTES.iter().find(|r| **r == path.as_str()) {
                Some(route) => RouteLabel::Sdk(route),
                None => RouteLabel::Other(path.clone()),
            },
        }
    }

    fn as_str(&self) -> &str {
        match self {
            RouteLabel::Sdk(route) => route,
            RouteLabel::Other(path) => path.as_str(),
            RouteLabel::Unmatched => "<unmatched>",
        }
    }
}

/// The caller's request id when it is sane (the same header value, shared), else a new one.
fn request_id(request: &Request) -> HeaderValue {
    request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty()
                && v.len() <= 128
                && v.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

impl<S> Service<Request> for RequestContext<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RequestContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let started = Instant::now();
        let id = request_id(&request);
        let method = request.method().clone();
        let route = RouteLabel::of(&request);
        if !matches!(route, RouteLabel::Sdk(_)) {
            request.extensions_mut().insert(RequestId(id.clone()));
        }
        RequestContextFuture {
            inner: self.inner.call(request),
            done: Some(Done {
                started,
                id,
                method,
                route,
            }),
        }
    }
}

/// What the response is counted, logged and marked with.
struct Done {
    started: Instant,
    id: HeaderValue,
    method: Method,
    route: RouteLabel,
}

impl Done {
    fn finish(self, mut response: Response) -> Response {
        let elapsed = self.started.elapsed();
        let status = response.status();
        let route = self.route.as_str();
        metrics::record_request(&self.method, route, status, elapsed);
        let request_id = self.id.to_str().unwrap_or_default();
        // One call site per level: each is checked against the filter once, then costs a load.
        let latency_ms = || (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
        if matches!(self.route, RouteLabel::Sdk(_)) {
            tracing::debug!(
                method = %self.method,
                route = %route,
                status = status.as_u16(),
                latency_ms = latency_ms(),
                request_id = %request_id,
                "request"
            );
        } else {
            tracing::info!(
                method = %self.method,
                route = %route,
                status = status.as_u16(),
                latency_ms = latency_ms(),
                request_id = %request_id,
                "request"
            );
        }
        response.headers_mut().insert(REQUEST_ID, self.id);
        response
    }
}

pin_project_lite::pin_project! {
    pub struct RequestContextFuture<F> {
        #[pin]
        inner: F,
        done: Option<Done>,
    }
}

impl<F> Future for RequestContextFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
        Poll::Ready(Ok(match this.done.take() {
            Some(done) => done.finish(response),
            None => response,
        }))
    }
}

/// A new request id, `<16 hex digits>-<8 or more hex digits>`: a random prefix per thread and
/// that thread's counter, unique without asking the operating system for randomness, or
/// another core's cache line, on every request. Written as a header value directly (the
/// response carries it; the log and events read it back from there).
fn new_request_id() -> HeaderValue {
    thread_local! {
        static PREFIX: u64 = uuid::Uuid::new_v4().as_u64_pair().0;
        static COUNTER: Cell<u64> = const { Cell::new(0) };
    }
    let prefix = PREFIX.with(|p| *p);
    let counter = COUNTER.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    let counter_digits = (16 - (counter.leading_zeros() / 4) as usize).max(8);
    let mut text = [0u8; 33];
    let len = 17 + counter_digits;
    write_hex(prefix, &mut text[..16]);
    text[16] = b'-';
    write_hex(counter, &mut text[17..len]);
    // Hex digits and a dash: always a valid header value.
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static("-"))
}

/// `value`'s last `out.len()` hex digits, zero-padded, into `out`.
fn write_hex(mut value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_across_threads_and_valid_header_text() {
        let ids: Vec<String> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..1000)
                        .map(|_| new_request_id().to_str().unwrap().to_string())
                        .collect::<Vec<_>>()
                })
            })
            .flat_map(|t| t.join().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(
            ids.iter()
                .all(|id| id.len() >= 25 && id.as_bytes()[16] == b'-')
        );
    }
}

//! The baseline `scripts/bench-sdk` measures flaglog's SDK endpoints against: a bare axum server
//! on the same runtime (tokio multi-threaded, as `flaglog serve`) answering the same paths and
//! methods with the same response bytes, taken from files, with no lookup, no evaluation, no
//! logging. The ratio flaglog ÷ bare is then what flaglog's own work costs, with HTTP, axum and
//! the load generator's share the same on both sides. It also takes Segment's batches
//! (`POST /v1/batch`) when flaglog is measured with an analytics integration sending to it.
//!
//! Usage: bare_server ADDR FLAGS_BODY_FILE IDENTITIES_BODY_FILE
//! Prints `listening on http://ADDR` once it accepts connections.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// A JSON response with the given bytes (a `Bytes` clone: a reference count, no copy).
fn json(body: Bytes) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// As the `flaglog` binary (api/src/main.rs), so the allocator is not part of the ratio.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, address, flags_file, identities_file] = args.as_slice() else {
        eprintln!("usage: bare_server ADDR FLAGS_BODY_FILE IDENTITIES_BODY_FILE");
        std::process::exit(2);
    };
    let address: SocketAddr = address.parse().expect("ADDR is host:port");
    let read =
        |path: &str| Bytes::from(std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}")));
    let flags = read(flags_file);
    let identities = read(identities_file);

    let app = Router::new()
        .route(
            "/api/v1/flags/",
            get(move || async move { json(flags.clone()) }),
        )
        .route(
            "/api/v1/identities/",
            // The request body is read (as flaglog must), not parsed.
            axum::routing::post(move |body: Bytes| async move {
                drop(body);
                json(identities.clone()).into_response()
            }),
        )
        // A vendor for flaglog's analytics (Segment's path) while flaglog is measured with one.
        .route(
            "/v1/batch",
            axum::routing::post(|body: Bytes| async move {
                drop(body);
                ""
            }),
        );
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {address}: {e}"));
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    axum::serve(listener, app).await.expect("serve");
}

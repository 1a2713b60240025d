//! The EventStoreDB-compatible gRPC read API (feature `eventstore-grpc`): flaglog serves the
//! `Streams` service of EventStoreDB's client protocol, read-only, on its own port
//! (`flaglog serve --eventstore-bind ADDR`), so that any EventStoreDB/KurrentDB client library
//! reads and subscribes to flaglog's log as if it were an EventStoreDB ([`read`] says how the
//! log maps onto EventStoreDB's streams and positions).
//!
//! Calls authenticate with Basic credentials whose password is the API token of an
//! organisation administrator (the user name is not checked): the API shows every event of
//! every project. Appends, deletes and tombstones are refused with FAILED_PRECONDITION and a
//! message saying the API is read-only. Other services (gossip, server features, persistent
//! subscriptions, …) answer UNIMPLEMENTED, which clients take as "default server".

mod read;

use std::pin::Pin;

use base64::Engine;
use futures_util::Stream;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

use crate::http::AppState;
use pb::event_store::client::streams::{self as s, streams_server};

pub use read::event_id;

/// The code generated from `protos/eventstore/` (by `build.rs`).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    pub mod event_store {
        pub mod client {
            include!(concat!(env!("OUT_DIR"), "/event_store.client.rs"));
            pub mod streams {
                include!(concat!(env!("OUT_DIR"), "/event_store.client.streams.rs"));
            }
        }
    }
    pub mod google {
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        }
    }
}

const READ_ONLY: &str = "flaglog's EventStoreDB API is read-only: change flaglog through its \
                         HTTP API (appends, deletes and tombstones are refused)";

type ReadStream = Pin<Box<dyn Stream<Item = Result<s::ReadResp, Status>> + Send>>;
type BatchAppendStream = Pin<Box<dyn Stream<Item = Result<s::BatchAppendResp, Status>> + Send>>;

struct Streams {
    state: AppState,
}

impl Streams {
    /// The caller, if its Basic credentials' password is an organisation administrator's token.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(_, password)| password.to_string())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "send Basic credentials whose password is an organisation administrator's \
                     API token (esdb://any:TOKEN@host:port)",
                )
            })?;
        let principal = self
            .state
            .commands
            .principal_for_token(&token)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the EventStoreDB API could not check a token");
                Status::internal("flaglog could not check the token")
            })?
            .ok_or_else(|| Status::unauthenticated("the API token is not valid"))?;
        if !principal.is_organisation_admin() {
            return Err(Status::permission_denied(
                "reading the whole log needs an organisation administrator's token",
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl streams_server::Streams for Streams {
    type ReadStream = ReadStream;
    type BatchAppendStream = BatchAppendStream;

    async fn read(&self, request: Request<s::ReadReq>) -> Result<Response<ReadStream>, Status> {
        self.authenticate(&request).await?;
        let parsed = read::Request::parse(request.into_inner())?;
        let reader = read::Reader::new(
            self.state.log.clone(),
            parsed,
            self.state.shutdown.child_token(),
        )
        .await?;
        let responses = futures_util::stream::unfold(reader, |mut reader| async move {
            let next = reader.next().await?;
            Some((next, reader))
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn append(
        &self,
        _: Request<Streaming<s::AppendReq>>,
    ) -> Result<Response<s::AppendResp>, Status> {
        Err(Status::failed_precondition(READ_ONLY))
    }

    async fn delete(&self, _: Request<s::DeleteReq>) -> Result<Response<s::DeleteResp>, Status> {
        Err(Status::failed_precondition(READ_ONLY))
    }

    async fn tombstone(
        &self,
        _: Request<s::TombstoneReq>,
    ) -> Result<Response<s::TombstoneResp>, Status> {
        Err(Status::failed_precondition(READ_ONLY))
    }

    async fn batch_append(
        &self,
        _: Request<Streaming<s::BatchAppendReq>>,
    ) -> Result<Response<BatchAppendStream>, Status> {
        Err(Status::failed_precondition(READ_ONLY))
    }
}

/// Serves the API on `listener` until the server shuts down (`state.shutdown`: subscriptions
/// then end with UNAVAILABLE, and the calls in flight finish).
pub async fn serve(state: AppState, listener: TcpListener) -> Result<(), String> {
    let shutdown = state.shutdown.clone();
    tonic::transport::Server::builder()
        .add_service(streams_server::StreamsServer::new(Streams { state }))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(|e| format!("the EventStoreDB API stopped: {e}"))
}

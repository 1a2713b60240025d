//! Live pages: `GET /live` is a Server-Sent Events stream (signed-in visitors) with a `change`
//! event whenever the log grows; `live.js`, on the pages that ask for it (`main[data-live]`:
//! the inbox, a change request, the audit log, a feature), fetches the page again and swaps its
//! content, unless the visitor is typing in one of its forms. Without JavaScript the pages are
//! the same, reloaded by hand.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::PageError;
use super::session::Visitor;
use crate::http::AppState;

/// How long one wait for the log lasts before it is renewed (the backend's polling fallback).
const WAIT: Duration = Duration::from_secs(20);

pub async fn live(
    State(state): State<AppState>,
    visitor: Visitor,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    visitor.require()?;
    let head = state
        .log
        .head()
        .await
        .map_err(|e| crate::http::error::Error::Internal(e.to_string()))?;
    let shutdown = state.shutdown.clone();
    let changes = futures_util::stream::unfold((state, head), move |(state, seen)| {
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    waited = state.log.wait_for_events(seen, WAIT) => {
                        if waited.is_err() {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    () = shutdown.cancelled() => return None,
                }
                match state.log.head().await {
                    Ok(head) if head > seen => {
                        let event = Event::default().event("change").data(head.to_string());
                        return Some((Ok(event), (state, head)));
                    }
                    _ => continue,
                }
            }
        }
    });
    Ok(Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

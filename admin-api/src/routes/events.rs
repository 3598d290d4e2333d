//! Owns `/api/events`: the registry and worker events as Server-Sent Events for the
//! dashboard, secrets masked. A `reload` event tells the client to refetch everything
//! (first connection, Redis reconnect, missed events).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use mcp_core::subscription::Update;

use crate::AppState;

/// Live registry and worker events (`text/event-stream`).
#[utoipa::path(get, path = "/api/events", operation_id = "streamEvents", tag = "runtime",
    responses((status = 200, description = "event stream: `reload`, then one SSE event per registry or worker event", content_type = "text/event-stream")))]
pub async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut subscription = state.registry.subscribe();
    let events = async_stream(move |tx| async move {
        while let Some(update) = subscription.next().await {
            let event = match update {
                Update::Reload(reason) => SseEvent::default()
                    .event("reload")
                    .data(format!("{reason:?}")),
                Update::Event(event) => {
                    let masked = mcp_core::events::Event {
                        version: event.version,
                        kind: event.kind.masked(),
                    };
                    let data = serde_json::to_string(&masked).unwrap_or_default();
                    SseEvent::default()
                        .event(event.kind.name())
                        .id(event.version.to_string())
                        .data(data)
                }
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream fed by a task; the task ends when the client goes away.
fn async_stream<T, F, Fut>(producer: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

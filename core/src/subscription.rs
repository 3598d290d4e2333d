//! Owns the consumer side of `mcp:events`: a typed stream that also says when the
//! consumer must reload its state in full (first subscription, every reconnect, and a gap
//! in the registry version). Pub/sub alone is never trusted: consumers load a snapshot on
//! every [`Update::Reload`] and reconcile on a timer besides.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::events::Event;
use crate::registry::RedisRegistry;

// Events pass one at a time through a channel; boxing would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Load the whole state now: events before this point may have been missed.
    Reload(ReloadReason),
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadReason {
    /// The first subscription is in place.
    Subscribed,
    /// The pub/sub connection was lost and is back, or moved to a new master.
    Reconnected,
    /// An event arrived whose version is not the next one.
    Gap { expected: u64, got: u64 },
}

/// A live subscription. The background task stops when this is dropped.
pub struct Subscription {
    updates: mpsc::Receiver<Update>,
    _stop: DropGuard,
}

impl Subscription {
    /// The next update; `None` only once the subscription has been stopped.
    pub async fn next(&mut self) -> Option<Update> {
        self.updates.recv().await
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl RedisRegistry {
    /// Subscribes to the events channel. The first update is always
    /// `Reload(Subscribed)`, sent once the subscription is in place, so a snapshot loaded
    /// after it misses nothing.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mpsc::channel(1024);
        let stop = CancellationToken::new();
        let registry = self.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = token.cancelled() => {}
                () = run(registry, tx) => {}
            }
        });
        Subscription {
            updates: rx,
            _stop: stop.drop_guard(),
        }
    }
}

async fn run(registry: RedisRegistry, tx: mpsc::Sender<Update>) {
    let channel = registry.keys().events();
    // The node the registry's calls go to: when it changes (a failover), the
    // subscription moves there too, or it would hear only the demoted master.
    let mut changes = registry.connection().changes();
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        match connect(&registry, &channel).await {
            Ok((stream, version)) => {
                backoff = MIN_BACKOFF;
                let reason = if first {
                    ReloadReason::Subscribed
                } else {
                    ReloadReason::Reconnected
                };
                first = false;
                tracing::debug!(event = "events.subscribed", channel = %channel, version);
                if tx.send(Update::Reload(reason)).await.is_err() {
                    return;
                }
                tokio::select! {
                    result = forward(stream, version, &tx) => {
                        if result.is_err() {
                            return;
                        }
                        tracing::warn!(event = "events.disconnected", channel = %channel, "pub/sub connection lost, reconnecting");
                    }
                    _ = changes.changed() => {
                        tracing::warn!(event = "events.disconnected", channel = %channel, "the master changed, subscribing there");
                        backoff = MIN_BACKOFF;
                        // At once: the new master is known (or about to be).
                        continue;
                    }
                }
            }
            Err(err) => {
                tracing::warn!(event = "events.connect_failed", channel = %channel, error = %err, retry_ms = backoff.as_millis() as u64);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(
    registry: &RedisRegistry,
    channel: &str,
) -> redis::RedisResult<(redis::aio::PubSubStream, u64)> {
    let timeout = registry.timeouts().connect + registry.timeouts().response;
    let attempt = async {
        let mut pubsub = registry.connection().pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    let stream = tokio::time::timeout(timeout, attempt).await.map_err(|_| {
        redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
    })??;
    // Read after subscribing: every event published from here on reaches the stream.
    let version = registry.version().await.map_err(|err| match err {
        crate::registry::Error::Unavailable(e) | crate::registry::Error::Redis(e) => e,
        other => redis::RedisError::from(std::io::Error::other(other.to_string())),
    })?;
    Ok((stream, version))
}

/// Forwards events until the stream ends (`Ok`) or the consumer is gone (`Err`).
async fn forward(
    mut stream: redis::aio::PubSubStream,
    mut last: u64,
    tx: &mpsc::Sender<Update>,
) -> Result<(), ()> {
    while let Some(msg) = stream.next().await {
        let event: Event = match serde_json::from_slice(msg.get_payload_bytes()) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(event = "events.malformed", error = %err, "ignoring malformed event");
                continue;
            }
        };
        if event.version <= last {
            continue;
        }
        if event.version > last + 1 {
            let gap = ReloadReason::Gap {
                expected: last + 1,
                got: event.version,
            };
            tx.send(Update::Reload(gap)).await.map_err(drop)?;
        }
        last = event.version;
        tx.send(Update::Event(event)).await.map_err(drop)?;
    }
    Ok(())
}

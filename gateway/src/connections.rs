//! Owns the cap on open client connections (`MCP_GATEWAY_MAX_CONNECTIONS`) and the
//! first-byte timeout (`MCP_GATEWAY_FIRST_BYTE_TIMEOUT`): [`Capped`] wraps the proxy's
//! Pingora app, takes a slot for each accepted connection before Pingora reads from it,
//! and frees the slot when the connection ends. It never parses HTTP: the one answer it
//! writes itself is the fixed 503 `too_many_connections`.
//!
//! Rule at the cap: the oldest connection that has not sent a byte yet is closed and its
//! slot goes to the newcomer (clients that connect early and reuse, like a keep-alive
//! pool reconnecting, keep being served); only when every slot has sent data is the
//! newcomer refused. Each accepted connection holds its buffers (a 4 KiB read and an
//! 8 KiB write buffer, `CLIENT_READ_BUFFER` and `CLIENT_WRITE_BUFFER` in `lib.rs`) and
//! its task from the accept on, so the cap bounds that memory (the chaos suite's flood
//! fault reports the gateway's resident memory with 10,000 connections at the default
//! cap). With Pingora's 64 KiB read buffer, the buffers of evicted connections, reused
//! zeroed for the next ones, made the capped gateway larger than an uncapped one.
//! A kept-alive connection between two requests is not evicted: a client may be sending
//! its next request on it as it closes, and lose that request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::errors::GatewayError;
use crate::metrics::METRICS;

/// How long a refused connection may take to read its 503 and close: the gateway drains
/// what the client sent meanwhile (so the close is a FIN, not a reset that could
/// discard the answer), but never longer than this.
const REFUSED_LINGER: Duration = Duration::from_secs(1);

/// At most this much of a refused connection's request is read and thrown away.
const REFUSED_DRAIN_BYTES: usize = 64 * 1024;

/// Why a connection was shed: the `reason` label of `mcp_gateway_connections_shed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// Closed before sending a byte, its slot given to a newer connection at the cap.
    EvictedIdle,
    /// Answered 503 `too_many_connections`: every slot had sent data.
    Refused,
    /// Sent nothing within `MCP_GATEWAY_FIRST_BYTE_TIMEOUT`.
    FirstByteTimeout,
}

impl Shed {
    pub const ALL: [Shed; 3] = [Shed::EvictedIdle, Shed::Refused, Shed::FirstByteTimeout];

    pub fn reason(self) -> &'static str {
        match self {
            Shed::EvictedIdle => "evicted_idle",
            Shed::Refused => "refused",
            Shed::FirstByteTimeout => "first_byte_timeout",
        }
    }
}

/// The connection slots of one gateway process (shared by all Pingora threads).
pub struct Slots {
    /// 0 = no cap (connections are still counted).
    max: usize,
    /// A std `Mutex`: held for a map insert or removal, never across an `.await`.
    state: Mutex<State>,
    log: ShedLog,
}

#[derive(Default)]
struct State {
    /// Slots held (idle and active).
    open: usize,
    /// Increases with each accepted connection, so the map below is oldest first.
    next_id: u64,
    /// Connections that have not sent a byte yet: the sender closes one.
    idle: BTreeMap<u64, oneshot::Sender<()>>,
}

impl State {
    /// Called under the lock after each change, so the gauges never go backwards.
    fn publish(&self) {
        METRICS.connections_open.set(self.open as i64);
        METRICS.connections_idle.set(self.idle.len() as i64);
    }
}

/// What [`Slots::admit`] decided for a new connection.
pub enum Admission {
    /// A slot, and the signal that closes the connection while it is still idle.
    Admitted(Slot, oneshot::Receiver<()>),
    Refused,
}

/// A connection's slot, freed on drop (also when the connection's task is dropped).
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// Sent its first byte: the slot is no longer the evictor's to give away.
    active: bool,
}

impl Slot {
    /// The connection sent its first byte. `false`: it was evicted just before, and
    /// its slot already belongs to another connection.
    pub fn activate(&mut self) -> bool {
        let mut state = self.slots.lock();
        self.active = state.idle.remove(&self.id).is_some();
        state.publish();
        self.active
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        // An evicted slot (neither idle nor active) was handed over: nothing to free.
        if state.idle.remove(&self.id).is_some() || self.active {
            state.open -= 1;
        }
        state.publish();
    }
}

impl Slots {
    pub fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max,
            state: Mutex::new(State::default()),
            log: ShedLog::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a slot for a new connection: a free one, else the oldest idle
    /// connection's (which is told to close), else none.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let mut state = self.lock();
        let mut evicted = false;
        if self.max != 0 && state.open >= self.max {
            let Some((_, evict)) = state.idle.pop_first() else {
                drop(state);
                self.shed(Shed::Refused);
                return Admission::Refused;
            };
            // Its slot changes hands: `open` stays. (Its receiver is gone only if it
            // sent its first byte meanwhile; its `activate` then finds it evicted.)
            let _ = evict.send(());
            evicted = true;
        } else {
            state.open += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        let (tx, rx) = oneshot::channel();
        state.idle.insert(id, tx);
        state.publish();
        drop(state);
        if evicted {
            self.shed(Shed::EvictedIdle);
        }
        let slot = Slot {
            slots: Arc::clone(self),
            id,
            active: false,
        };
        Admission::Admitted(slot, rx)
    }

    /// Slots held now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn shed(&self, why: Shed) {
        METRICS
            .connections_shed
            .with_label_values(&[why.reason()])
            .inc();
        self.log.count(why, self.max);
    }
}

/// The `gateway.connections.shed` warning, at most one a second, with the counts since
/// the last one (the metric has every shed at once).
#[derive(Default)]
struct ShedLog {
    state: Mutex<ShedLogState>,
}

#[derive(Default)]
struct ShedLogState {
    last: Option<Instant>,
    counts: [u64; 3],
}

impl ShedLog {
    fn count(&self, why: Shed, max: usize) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let idx = Shed::ALL.iter().position(|s| *s == why).unwrap_or(0);
        state.counts[idx] += 1;
        let now = Instant::now();
        if state
            .last
            .is_some_and(|last| now.duration_since(last) < Duration::from_secs(1))
        {
            return;
        }
        let [evicted_idle, refused, first_byte_timeout] = std::mem::take(&mut state.counts);
        state.last = Some(now);
        drop(state);
        tracing::warn!(
            event = "gateway.connections.shed",
            evicted_idle,
            refused,
            first_byte_timeout,
            max_connections = max,
            "connections shed since the last line"
        );
    }
}

/// The proxy's Pingora app behind the connection cap; hosted with Pingora's
/// `Service::new` like the app itself.
pub struct Capped<A> {
    inner: Arc<A>,
    slots: Arc<Slots>,
    /// `None`: only Pingora's own 60 s limit on a silent connection.
    first_byte_timeout: Option<Duration>,
}

impl<A> Capped<A> {
    /// `max_connections` 0 = no cap; a zero `first_byte_timeout` = none.
    pub fn new(inner: A, max_connections: usize, first_byte_timeout: Duration) -> Capped<A> {
        Capped {
            inner: Arc::new(inner),
            slots: Slots::new(max_connections),
            first_byte_timeout: (!first_byte_timeout.is_zero()).then_some(first_byte_timeout),
        }
    }
}

/// How the wait for a connection's first byte ended.
enum FirstByte {
    Arrived,
    /// Closed, failed, evicted, timed out or shutting down: drop the connection.
    Gone,
}

impl<A: ServerApp + Send + Sync + 'static> Capped<A> {
    async fn first_byte(
        &self,
        stream: &mut Stream,
        evicted: oneshot::Receiver<()>,
        shutdown: &ShutdownWatch,
    ) -> FirstByte {
        let timeout = async {
            match self.first_byte_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let mut shutdown = shutdown.clone();
        let stopping = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        // One byte, put back for Pingora (`try_peek` rewinds what it read).
        let mut byte = [0u8; 1];
        tokio::select! {
            peeked = stream.try_peek(&mut byte) => match peeked {
                Ok(_) => FirstByte::Arrived,
                Err(_) => FirstByte::Gone,
            },
            // Sent when evicted; an error only if the slot's sender was dropped, which
            // is also an eviction.
            _ = evicted => FirstByte::Gone,
            () = timeout => {
                self.slots.shed(Shed::FirstByteTimeout);
                FirstByte::Gone
            }
            () = stopping => FirstByte::Gone,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Capped<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let (mut slot, evicted) = match self.slots.admit() {
            Admission::Admitted(slot, evicted) => (slot, evicted),
            Admission::Refused => {
                refuse(stream).await;
                return None;
            }
        };
        match self.first_byte(&mut stream, evicted, shutdown).await {
            FirstByte::Arrived if slot.activate() => {}
            _ => return None,
        }
        // The slot is held for the connection's whole life: its keep-alive requests are
        // served here rather than handed back to Pingora's loop without a slot.
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        drop(slot);
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// The 503 `too_many_connections` answer, with `Connection: close`.
fn refusal(request_id: &str) -> Vec<u8> {
    let mut error = GatewayError::new(
        503,
        "too_many_connections",
        "the gateway is at MCP_GATEWAY_MAX_CONNECTIONS open connections, all of them busy; \
retry shortly",
    );
    error.retry_after_secs = Some(1);
    let body = error.body(request_id).to_string();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
content-length: {}\r\nretry-after: 1\r\n{}: {request_id}\r\nconnection: close\r\n\r\n",
        body.len(),
        mcp_core::request_id::HEADER,
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Writes the refusal, closes the write side and drains the request until the client
/// closes (at most [`REFUSED_LINGER`] and [`REFUSED_DRAIN_BYTES`]).
async fn refuse(mut stream: Stream) {
    let answer = refusal(&mcp_core::request_id::generate());
    let _ = tokio::time::timeout(REFUSED_LINGER, async {
        stream.write_all(&answer).await?;
        stream.flush().await?;
        AsyncWriteExt::shutdown(&mut stream).await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSED_DRAIN_BYTES {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        std::io::Result::Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(slots: &Arc<Slots>) -> (Slot, oneshot::Receiver<()>) {
        match slots.admit() {
            Admission::Admitted(slot, evicted) => (slot, evicted),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connection_gives_up_its_slot() {
        let slots = Slots::new(3);
        let (mut a, mut a_evicted) = admitted(&slots);
        let (_b, mut b_evicted) = admitted(&slots);
        let (mut c, _c_evicted) = admitted(&slots);
        assert!(a.activate());
        assert_eq!(slots.open(), 3);
        // b is the oldest idle one: evicted, its slot handed over.
        let (_d, _d_evicted) = admitted(&slots);
        assert!(b_evicted.try_recv().is_ok());
        assert!(a_evicted.try_recv().is_err());
        assert_eq!(slots.open(), 3);
        // An evicted connection's first byte does not take the slot back.
        let mut b = _b;
        assert!(!b.activate());
        drop(b);
        assert_eq!(slots.open(), 3);
        assert!(c.activate());
        // a and c active, d idle: d goes.
        let (_e, _) = admitted(&slots);
        // Every slot active: refused.
        let mut e = _e;
        assert!(e.activate());
        assert!(matches!(slots.admit(), Admission::Refused));
        drop(a);
        assert_eq!(slots.open(), 2);
        let (_f, _) = admitted(&slots);
        assert_eq!(slots.open(), 3);
        drop((c, e, _f));
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn no_cap_only_counts() {
        let slots = Slots::new(0);
        let held: Vec<_> = (0..100).map(|_| admitted(&slots)).collect();
        assert_eq!(slots.open(), 100);
        drop(held);
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn the_refusal_is_the_gateways_json_error_and_closes() {
        let text = String::from_utf8(refusal("req-1")).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(body["error"]["code"], "too_many_connections");
        assert_eq!(body["error"]["request_id"], "req-1");
        assert!(body["error"]["message"].is_string());
    }
}

//! Owns the idle connections [`forward`](super::forward) keeps to workers. Pingora's
//! pool watches each idle connection from a task of its own: every release spawns one,
//! and every reuse wakes it and waits for it to hand the connection back, a trip through
//! the scheduler (and a `getpeername`) between a validated call and its write to the
//! worker. Here a connection waits in a list instead. A connection the worker closed
//! while it waited is found when it is taken: its socket has turned readable (the
//! reactor saw the FIN), which costs no system call to ask; one that closes in the
//! instant between that check and the write fails like any lost connection, and
//! `error_while_proxy` retries it on a fresh one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

/// Idle connections by worker address: the most recently released is taken first (its
/// buffers are the likeliest to be warm).
pub(super) struct Pool {
    idle: Mutex<Idle>,
    capacity: usize,
    idle_timeout: Duration,
}

#[derive(Default)]
struct Idle {
    by_addr: HashMap<SocketAddr, Vec<(Stream, Instant)>>,
    count: usize,
    /// Last pass that dropped connections idle past the timeout.
    swept: Option<Instant>,
}

impl Pool {
    /// A pool of at most `capacity` idle connections, each kept up to `idle_timeout`.
    pub(super) fn new(capacity: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Idle::default()),
            capacity,
            idle_timeout,
        }
    }

    /// An idle connection to `addr` that is still open, if there is one.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<Stream> {
        self.take_at(addr, Instant::now())
    }

    fn take_at(&self, addr: SocketAddr, now: Instant) -> Option<Stream> {
        let mut dropped = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let list = idle.by_addr.get_mut(&addr)?;
            let mut found = None;
            while let Some((mut stream, since)) = list.pop() {
                if now.saturating_duration_since(since) < self.idle_timeout
                    && still_open(&mut stream)
                {
                    found = Some(stream);
                    break;
                }
                dropped.push(stream);
            }
            let taken = dropped.len() + usize::from(found.is_some());
            if list.is_empty() {
                idle.by_addr.remove(&addr);
            }
            idle.count -= taken;
            found
        };
        // Closed outside the lock (each close is a system call).
        drop(dropped);
        found
    }

    /// Keeps `stream` for the next call to `addr`; a full pool closes it instead.
    pub(super) fn put(&self, addr: SocketAddr, stream: Stream) {
        self.put_at(addr, stream, Instant::now());
    }

    fn put_at(&self, addr: SocketAddr, stream: Stream, now: Instant) {
        let (refused, expired) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let expired = match idle.swept {
                Some(at) if now.saturating_duration_since(at) < self.idle_timeout / 4 => Vec::new(),
                _ => {
                    idle.swept = Some(now);
                    idle.sweep(now, self.idle_timeout)
                }
            };
            let refused = if idle.count < self.capacity {
                idle.by_addr.entry(addr).or_default().push((stream, now));
                idle.count += 1;
                None
            } else {
                Some(stream)
            };
            (refused, expired)
        };
        drop((refused, expired));
    }

    /// Idle connections held now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).count
    }
}

impl Idle {
    /// Removes and returns the connections idle for `timeout` or longer (those of
    /// workers no call goes to any more would otherwise stay until the pool is full).
    fn sweep(&mut self, now: Instant, timeout: Duration) -> Vec<Stream> {
        let mut expired = Vec::new();
        self.by_addr.retain(|_, list| {
            // Oldest first: released in order.
            let keep_from = list
                .iter()
                .position(|(_, since)| now.saturating_duration_since(*since) < timeout)
                .unwrap_or(list.len());
            expired.extend(list.drain(..keep_from).map(|(stream, _)| stream));
            !list.is_empty()
        });
        self.count -= expired.len();
        expired
    }
}

/// Whether an idle connection can carry a request: the worker has neither closed it nor
/// sent anything unasked. Asks the reactor's readiness, without a system call while the
/// socket has not turned readable.
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    tokio::task::unconstrained(stream.read(&mut byte))
        .now_or_never()
        .is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the pool's side (as Pingora wraps it) and the worker's side.
    async fn pair(listener: &TcpListener) -> (Stream, TcpStream) {
        let addr = listener.local_addr().expect("local addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = client.expect("connect");
        let (server, _) = accepted.expect("accept");
        let stream: pingora::protocols::l4::stream::Stream = client.into();
        (Box::new(stream), server)
    }

    async fn bound() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        (listener, addr)
    }

    /// Waits (with a deadline) until the reactor has seen the peer's close or data.
    async fn until_readable(stream: &mut Stream) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while still_open(stream) {
            assert!(Instant::now() < deadline, "the close never showed up");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_released_connection_is_taken_again_by_its_address_only() {
        let (listener, addr) = bound().await;
        let (other_listener, other) = bound().await;
        let pool = Pool::new(8, Duration::from_secs(60));
        let (stream, _worker) = pair(&listener).await;
        let id = stream.id();
        pool.put(addr, stream);
        assert_eq!(pool.len(), 1);
        assert!(pool.take(other).is_none());
        let taken = pool.take(addr).expect("the pooled connection");
        assert_eq!(taken.id(), id);
        assert!(pool.take(addr).is_none());
        assert_eq!(pool.len(), 0);
        drop(other_listener);
    }

    #[tokio::test]
    async fn the_most_recently_released_connection_is_taken_first() {
        let (listener, addr) = bound().await;
        let pool = Pool::new(8, Duration::from_secs(60));
        let (first, _w1) = pair(&listener).await;
        let (second, _w2) = pair(&listener).await;
        let (first_id, second_id) = (first.id(), second.id());
        pool.put(addr, first);
        pool.put(addr, second);
        assert_eq!(pool.take(addr).map(|s| s.id()), Some(second_id));
        assert_eq!(pool.take(addr).map(|s| s.id()), Some(first_id));
    }

    #[tokio::test]
    async fn a_connection_the_worker_closed_while_idle_is_dropped_not_taken() {
        let (listener, addr) = bound().await;
        let pool = Pool::new(8, Duration::from_secs(60));
        let (open, _worker) = pair(&listener).await;
        let open_id = open.id();
        let (mut closed, worker) = pair(&listener).await;
        drop(worker);
        until_readable(&mut closed).await;
        pool.put(addr, open);
        pool.put(addr, closed);
        // The closed one was released last, so it is looked at first, and skipped.
        assert_eq!(pool.take(addr).map(|s| s.id()), Some(open_id));
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn a_connection_with_unasked_bytes_waiting_is_not_reused() {
        let (listener, addr) = bound().await;
        let pool = Pool::new(8, Duration::from_secs(60));
        let (mut stream, mut worker) = pair(&listener).await;
        worker
            .write_all(b"HTTP/1.1 200 OK\r\n")
            .await
            .expect("write");
        until_readable(&mut stream).await;
        pool.put(addr, stream);
        assert!(pool.take(addr).is_none());
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn a_full_pool_closes_what_it_cannot_keep() {
        let (listener, addr) = bound().await;
        let pool = Pool::new(2, Duration::from_secs(60));
        let mut workers = Vec::new();
        for _ in 0..3 {
            let (stream, worker) = pair(&listener).await;
            pool.put(addr, stream);
            workers.push(worker);
        }
        assert_eq!(pool.len(), 2);
        // The third was closed: its worker side reads the end of the stream.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), workers[2].read(&mut byte))
            .await
            .expect("the refused connection is closed");
        assert_eq!(read.expect("read"), 0);
    }

    #[tokio::test]
    async fn connections_idle_past_the_timeout_are_neither_taken_nor_kept() {
        let (listener, addr) = bound().await;
        let (other_listener, other) = bound().await;
        let pool = Pool::new(8, Duration::from_secs(60));
        let start = Instant::now();
        let (stale, _w1) = pair(&listener).await;
        let (forgotten, _w2) = pair(&other_listener).await;
        pool.put_at(addr, stale, start);
        pool.put_at(other, forgotten, start);
        let later = start + Duration::from_secs(61);
        assert!(
            pool.take_at(addr, later).is_none(),
            "an expired connection was reused"
        );
        // Releasing any connection sweeps the expired ones of every address.
        let (fresh, _w3) = pair(&listener).await;
        pool.put_at(addr, fresh, later);
        assert_eq!(pool.len(), 1);
        assert!(pool.take_at(other, later).is_none());
        assert_eq!(pool.len(), 1);
    }

    #[tokio::test]
    async fn a_connection_idle_just_under_the_timeout_is_reused() {
        let (listener, addr) = bound().await;
        let pool = Pool::new(8, Duration::from_secs(60));
        let start = Instant::now();
        let (stream, _worker) = pair(&listener).await;
        pool.put_at(addr, stream, start);
        assert!(pool
            .take_at(addr, start + Duration::from_secs(59))
            .is_some());
    }
}

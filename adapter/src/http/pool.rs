//! Owns the adapter's keep-alive connections to REST APIs: HTTP/1.1 connections made
//! with hyper's connection-level API (through the same connector: TCP, then TLS for
//! `https`) and kept in one idle stack per origin, most recent on top. It replaces
//! hyper-util's legacy client pool, whose checkout and return hashed the origin with
//! SipHash a byte at a time, five times per call: 11k of a worker call's 88k
//! instructions went to `send_request` (callgrind, docs/BENCHMARKS.md).
//!
//! A connection is lent to one request ([`Lease`]) and comes back only once its
//! response has been read to the end ([`Lease::release`]); one dropped before that
//! closes. A pooled connection the server closed while it sat idle is skipped when
//! taken, and a request it refused before reading anything (hyper's "canceled") is sent
//! again on another one, as the legacy client did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use tower::ServiceExt;

use super::{BoxError, Connector};

/// A connection's handle for sending requests.
type Sender = SendRequest<Full<Bytes>>;

/// How long a connection may sit idle before it is closed instead of reused (hyper-util's
/// default, which the adapter had before): a REST API's own keep-alive timeout is
/// usually shorter and closes it first, which the pool sees.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// An idle connection and when it was given back.
struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by origin (`scheme://host:port`). Cheap to clone; clones share
/// the stacks.
#[derive(Clone)]
pub struct Pool {
    connector: Connector,
    /// A std Mutex: held to push or pop, never across an await.
    idle: Arc<Mutex<HashMap<String, Vec<Idle>>>>,
    max_idle_per_origin: usize,
}

/// Why a request got no response head.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connecting (TCP, TLS or the HTTP/1.1 handshake) failed.
    #[error("connecting")]
    Connect(#[source] BoxError),
    /// The request failed on its connection.
    #[error("sending the request")]
    Send(#[source] hyper::Error),
}

/// A connection lent to one request.
pub struct Lease {
    pool: Pool,
    origin: String,
    sender: Sender,
}

impl Lease {
    /// Gives the connection back for the next request; call it once the response
    /// has been read to its end. A closed connection or a full stack drops it.
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.pool.idle);
        let stack = idle.entry(self.origin).or_default();
        if stack.len() < self.pool.max_idle_per_origin {
            stack.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

impl Pool {
    pub fn new(connector: Connector, max_idle_per_origin: usize) -> Pool {
        Pool {
            connector,
            idle: Arc::default(),
            max_idle_per_origin,
        }
    }

    /// Sends `request` (origin-form URI, `Host` set) to `origin` (`scheme://authority`)
    /// at `uri` (absolute, for the connector), on an idle connection or a new one. The
    /// lease keeps `origin` to return the connection to its stack.
    pub async fn send(
        &self,
        origin: String,
        uri: &http::Uri,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<hyper::body::Incoming>, Lease), SendError> {
        loop {
            let (mut sender, pooled) = match self.take_idle(&origin, Instant::now()) {
                Some(sender) => (sender, true),
                None => (self.connect(uri).await?, false),
            };
            if pooled {
                // A connection comes back once its response has ended, which is
                // normally when it is ready for the next request; one still busy (say,
                // writing the rest of a request body the server stopped reading) is
                // not waited for: it goes back to the pool when it is ready, and this
                // request takes another.
                match futures::FutureExt::now_or_never(sender.ready()) {
                    Some(Ok(())) => {}
                    Some(Err(_)) => continue,
                    None => {
                        self.release_when_ready(origin.clone(), sender);
                        continue;
                    }
                }
            } else if sender.ready().await.is_err() {
                // A new connection closed before the request: reported like any
                // connection the server refused.
                return Err(SendError::Connect(
                    "the connection closed before the request".into(),
                ));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        pool: self.clone(),
                        origin,
                        sender,
                    };
                    return Ok((response, lease));
                }
                Err(mut failed) => {
                    // The server closed a kept-alive connection before the request
                    // was written (nothing was processed): hyper hands the request
                    // back and another connection may carry it.
                    match failed.take_message() {
                        Some(unsent) if pooled => request = unsent,
                        _ => return Err(SendError::Send(failed.into_error())),
                    }
                }
            }
        }
    }

    /// Returns a busy connection to the pool once it is ready (as hyper-util's client
    /// did with every connection), or drops it if that takes longer than
    /// [`IDLE_TIMEOUT`].
    fn release_when_ready(&self, origin: String, sender: Sender) {
        let mut lease = Lease {
            pool: self.clone(),
            origin,
            sender,
        };
        tokio::spawn(async move {
            if let Ok(Ok(())) = tokio::time::timeout(IDLE_TIMEOUT, lease.sender.ready()).await {
                lease.release();
            }
        });
    }

    /// The most recently released connection to `origin` that is still open and has
    /// not been idle past [`IDLE_TIMEOUT`] at `now`. The stack is newest on top, so
    /// once one has expired every one below it has too: they are all dropped.
    fn take_idle(&self, origin: &str, now: Instant) -> Option<Sender> {
        let mut idle = lock(&self.idle);
        let stack = idle.get_mut(origin)?;
        while let Some(Idle { sender, since }) = stack.pop() {
            if now.saturating_duration_since(since) >= IDLE_TIMEOUT {
                stack.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Sender, SendError> {
        let stream = self
            .connector
            .clone()
            .oneshot(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|err| SendError::Connect(Box::new(err)))?;
        // Ends when the server closes or the last handle to the connection is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a free port that counts its connections and hands each to `serve`.
    async fn counting_server<F, Fut>(serve: F) -> (u16, Arc<std::sync::atomic::AtomicUsize>)
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        (port, connections)
    }

    /// A pool over plain TCP, and a server that answers every request on a connection
    /// with an empty 200 and counts its connections.
    async fn pool_and_server() -> (Pool, http::Uri, Arc<std::sync::atomic::AtomicUsize>) {
        let (port, connections) = counting_server(|stream| async move {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        })
        .await;
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let uri: http::Uri = format!("http://127.0.0.1:{port}/x").parse().expect("uri");
        (Pool::new(connector, 4), uri, connections)
    }

    async fn get(pool: &Pool, uri: &http::Uri) -> Lease {
        let request = http::Request::builder()
            .uri("/x")
            .header(
                http::header::HOST,
                uri.authority().expect("authority").as_str(),
            )
            .body(Full::new(Bytes::new()))
            .expect("request");
        let origin = format!("http://{}", uri.authority().expect("authority"));
        let (response, lease) = pool.send(origin, uri, request).await.expect("answered");
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
        lease
    }

    #[tokio::test]
    async fn a_released_connection_is_reused_and_one_idle_past_the_timeout_is_not() {
        use std::sync::atomic::Ordering;
        let (pool, uri, connections) = pool_and_server().await;
        let origin = format!("http://{}", uri.authority().expect("authority"));
        get(&pool, &uri).await.release();
        get(&pool, &uri).await.release();
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "the second request reused it"
        );

        // Not released (its response not read to the end): never reused.
        drop(get(&pool, &uri).await);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        get(&pool, &uri).await.release();
        assert_eq!(
            connections.load(Ordering::SeqCst),
            2,
            "the dropped one was closed"
        );

        let now = Instant::now();
        assert!(pool
            .take_idle(&origin, now + IDLE_TIMEOUT - Duration::from_secs(1))
            .is_some());
        get(&pool, &uri).await.release();
        assert!(
            pool.take_idle(&origin, now + IDLE_TIMEOUT + Duration::from_secs(1))
                .is_none(),
            "a connection idle past the timeout is dropped"
        );
        assert!(lock(&pool.idle)[&origin].is_empty());
    }

    #[tokio::test]
    async fn a_connection_still_writing_a_body_the_server_stopped_reading_is_not_waited_for() {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Answers every request as soon as its head has arrived; after answering one
        // with a body, it never reads from that connection again (but keeps it open).
        let (port, connections) = counting_server(|mut stream| async move {
            loop {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                if String::from_utf8_lossy(&head).contains("content-length") {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        let (pool, _, _) = pool_and_server().await;
        let uri: http::Uri = format!("http://127.0.0.1:{port}/x").parse().expect("uri");
        let origin = format!("http://127.0.0.1:{port}");
        let big = http::Request::post("/x")
            .header(http::header::HOST, format!("127.0.0.1:{port}"))
            .body(Full::new(Bytes::from(vec![b'x'; 64 * 1024 * 1024])))
            .expect("request");
        let (response, lease) = pool.send(origin, &uri, big).await.expect("answered");
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
        lease.release();

        // The next request must not queue behind the stuck body.
        let next = tokio::time::timeout(Duration::from_secs(10), get(&pool, &uri))
            .await
            .expect("the next request went out on another connection");
        next.release();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_full_stack_keeps_no_more_than_its_cap() {
        let (pool, uri, _) = pool_and_server().await;
        let origin = format!("http://{}", uri.authority().expect("authority"));
        let mut leases = Vec::new();
        for _ in 0..6 {
            leases.push(get(&pool, &uri).await);
        }
        for lease in leases {
            lease.release();
        }
        assert_eq!(lock(&pool.idle)[&origin].len(), 4);
    }
}

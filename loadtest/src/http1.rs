//! Owns the generator's own HTTP/1.1 client for hub calls: keep-alive connections made
//! with hyper's connection-level API and kept in one idle stack per origin. Nothing else
//! sits on a call's path: no redirect layer, no retry layer, no URL parsed again per
//! request. With `reqwest`, the client's own work was about 40% of the generator's
//! instructions per call (URLs alone, parsed three times: 13k of 80k), and the
//! generator shares the machine with the hub it measures.
//! MCP sessions and the suite's setup calls still use `reqwest`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;

/// Where one kind of call goes, worked out once before the clock starts.
#[derive(Clone, Debug)]
pub struct CallTarget {
    /// `host:port`, what a connection is made to and the idle stack it returns to.
    authority: Arc<str>,
    host: HeaderValue,
    /// Origin form: path and query.
    path: hyper::Uri,
}

impl CallTarget {
    pub fn new(url: &reqwest::Url) -> anyhow::Result<CallTarget> {
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| anyhow::anyhow!("{url}: no port"))?;
        if url.scheme() != "http" {
            anyhow::bail!("{url}: the call client speaks plain HTTP only");
        }
        let authority = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        Ok(CallTarget {
            host: HeaderValue::from_str(&authority)?,
            authority: authority.into(),
            path: path.parse()?,
        })
    }
}

/// Why a call got no response head.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to {0}")]
    Connect(Arc<str>, #[source] std::io::Error),
    #[error("HTTP/1.1 handshake")]
    Handshake(#[source] hyper::Error),
    #[error("sending the request")]
    Send(#[source] hyper::Error),
    #[error("{0} closed a new connection before the request")]
    Closed(Arc<str>),
    #[error("building the request")]
    Build(#[source] hyper::http::Error),
}

/// A connection's handle for sending requests.
type Sender = SendRequest<Full<Bytes>>;

/// Idle keep-alive connections by origin. Cheap to clone; clones share the stacks.
#[derive(Clone, Default)]
pub struct Pool {
    /// A std Mutex: held to push or pop, never across an await.
    idle: Arc<Mutex<HashMap<Arc<str>, Vec<Sender>>>>,
}

/// A connection lent to one call. Give it back with [`Lease::release`] once the
/// response has been read to its end; dropped instead, it closes.
pub struct Lease {
    pool: Pool,
    authority: Arc<str>,
    sender: Sender,
}

impl Lease {
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut idle = lock(&self.pool.idle);
        idle.entry(self.authority).or_default().push(self.sender);
    }
}

impl Pool {
    /// POSTs `body` as JSON, asking for an event stream, on an idle connection to the
    /// target's origin or a new one. A pooled connection the server closed meanwhile
    /// is dropped and the next one tried.
    pub async fn post_json(
        &self,
        target: &CallTarget,
        body: Bytes,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, Lease), Error> {
        loop {
            let (mut sender, pooled) = match self.take_idle(&target.authority) {
                Some(sender) => (sender, true),
                None => (self.connect(&target.authority).await?, false),
            };
            if sender.ready().await.is_err() {
                if pooled {
                    continue;
                }
                return Err(Error::Closed(target.authority.clone()));
            }
            let request = hyper::Request::post(target.path.clone())
                .header(HOST, target.host.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
                .body(Full::new(body.clone()))
                .map_err(Error::Build)?;
            match sender.send_request(request).await {
                Ok(response) => {
                    let lease = Lease {
                        pool: self.clone(),
                        authority: target.authority.clone(),
                        sender,
                    };
                    return Ok((response, lease));
                }
                // The server closed a kept-alive connection before reading the
                // request (nothing was processed): another connection may carry it.
                Err(err) if pooled && err.is_canceled() => continue,
                Err(err) => return Err(Error::Send(err)),
            }
        }
    }

    fn take_idle(&self, authority: &str) -> Option<Sender> {
        let mut idle = lock(&self.idle);
        let stack = idle.get_mut(authority)?;
        while let Some(sender) = stack.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self, authority: &Arc<str>) -> Result<Sender, Error> {
        let stream = tokio::net::TcpStream::connect(&**authority)
            .await
            .map_err(|err| Error::Connect(authority.clone(), err))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(Error::Handshake)?;
        // Ends when the server closes or the last handle to the connection is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! Owns the generator's client for hub calls: the REST adapter's keep-alive pool
//! (hyper's connection-level HTTP/1.1, one idle stack per origin; one pool in the
//! workspace), with each call's target worked out once before the clock starts. Nothing
//! else sits on a call's path: no redirect layer, no retry layer, no URL parsed again per
//! request. With `reqwest`, the client's own work was about 40% of the generator's
//! instructions per call (URLs alone, parsed three times: 13k of 80k), and the
//! generator shares the machine with the hub it measures.
//! MCP sessions and the suite's setup calls still use `reqwest`.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use mcp_adapter::http::pool;
pub use mcp_adapter::http::pool::Lease;

/// Where one kind of call goes, worked out once before the clock starts.
#[derive(Clone, Debug)]
pub struct CallTarget {
    /// `http://host:port`, the idle stack its connections return to.
    origin: Arc<str>,
    /// The absolute URL, what a connection is made to.
    uri: hyper::Uri,
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
            origin: format!("http://{authority}").into(),
            uri: format!("http://{authority}{path}").parse()?,
            path: path.parse()?,
        })
    }
}

/// Why a call got no response head.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting or sending")]
    Send(#[source] pool::SendError),
    #[error("building the request")]
    Build(#[source] hyper::http::Error),
}

/// Keep-alive connections by origin: the REST adapter's pool ([`mcp_adapter::http::pool`]),
/// over plain TCP. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct Pool {
    pool: pool::Pool,
}

impl Pool {
    /// A pool that keeps up to `max_idle` connections per origin (the generator's
    /// connection budget bounds how many there are).
    pub fn new(max_idle: usize) -> anyhow::Result<Pool> {
        let connector = mcp_adapter::http::connector(std::time::Duration::from_secs(10))?;
        Ok(Pool {
            pool: pool::Pool::new(connector, max_idle),
        })
    }

    /// POSTs `body` as JSON, asking for an event stream, on an idle connection to the
    /// target's origin or a new one (a pooled one the server closed meanwhile is
    /// skipped). Give the lease back with [`Lease::release`] once the response has been
    /// read to its end; dropped instead, the connection closes.
    pub async fn post_json(
        &self,
        target: &CallTarget,
        body: Bytes,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, Lease), Error> {
        let request = hyper::Request::post(target.path.clone())
            .header(HOST, target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .body(Full::new(body))
            .map_err(Error::Build)?;
        self.pool
            .send(target.origin.to_string(), &target.uri, request)
            .await
            .map_err(Error::Send)
    }
}

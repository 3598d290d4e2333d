//! Owns the HTTP adapter: the one place that calls a registered REST API. It builds the
//! request ([`request`]), sends it with one pooled `reqwest` client, and turns the
//! response into output deltas ([`response`]) pushed into a bounded channel as they
//! arrive, so a slow consumer slows the read instead of growing memory. Shared by the
//! worker and by the gateway's rollback mode.

pub mod request;
pub mod response;

pub use response::Delta;

use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use mcp_core::model::{ServerConfig, ToolBinding};

/// A failed call. A variant that wraps a cause returns it from `source()` and does not
/// repeat it in its own text, so each cause appears once: in [`Error::message`] (one line,
/// for the caller) and in the `traceback` log field (one line per cause).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Request(#[from] request::Error),
    /// The REST API answered with a status >= 400.
    #[error("the REST API answered HTTP {status}")]
    Status { status: u16, body: Value },
    #[error("the REST API did not answer within {0} ms")]
    Timeout(u64),
    #[error("could not reach the REST API")]
    Connect(#[source] reqwest::Error),
    #[error("the REST API call failed")]
    Transport(#[source] reqwest::Error),
    #[error("the REST API connection broke mid-response")]
    Body(#[source] reqwest::Error),
    #[error("the REST API response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the REST API declared JSON but sent something else")]
    InvalidJson(#[source] serde_json::Error),
    /// The consumer of the deltas went away (the caller disconnected).
    #[error("the caller went away")]
    Cancelled,
}

impl Error {
    /// Stable code for `tool_call.error` and MCP error results.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Request(_) => "invalid_arguments",
            Error::Status { .. } => "upstream_status",
            Error::Timeout(_) => "upstream_timeout",
            Error::Connect(_) => "upstream_unreachable",
            Error::Transport(_) | Error::Body(_) => "upstream_failed",
            Error::TooLarge(_) => "upstream_too_large",
            Error::InvalidJson(_) => "upstream_invalid_json",
            Error::Cancelled => "cancelled",
        }
    }

    /// The error and its causes on one line (`outer: cause: root cause`): the message of
    /// `tool_call.error` and of MCP error results.
    pub fn message(&self) -> String {
        mcp_core::log::error_chain(self)
    }

    /// The REST API's own status, when it answered one.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Tuning of the adapter, from the worker's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub connect_timeout: Duration,
    /// Largest response body read into memory (streamed responses: per delta).
    pub max_response_bytes: usize,
    pub pool_max_idle_per_host: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 16 * 1024 * 1024,
            pool_max_idle_per_host: 64,
        }
    }
}

/// What a finished call reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The REST API's status.
    pub status: u16,
    pub n_deltas: usize,
    pub streamed: bool,
}

/// What one call goes to: the server (its id for the logs) and the tool.
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    pub server_id: &'a str,
    pub server: &'a ServerConfig,
    pub tool: &'a ToolBinding,
    /// The tool's compiled `responseMapping.pick`.
    pub pick: Option<&'a serde_json_path::JsonPath>,
}

/// Follows at most 5 redirects, and only within the origin of the first request: the
/// server's `auth` and `defaultHeaders` (a custom auth header included, which reqwest
/// does not strip) must never be sent to another host. A redirect elsewhere is returned
/// to the tool as the REST API's answer.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.follow();
        };
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if attempt.url().origin() == first.origin() {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// One pooled HTTP client per process. Cheap to clone.
#[derive(Clone)]
pub struct HttpAdapter {
    /// `reqwest::Client` is an `Arc` inside: clones share the connection pool.
    client: reqwest::Client,
    settings: Settings,
}

impl HttpAdapter {
    pub fn new(settings: Settings) -> anyhow::Result<HttpAdapter> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .redirect(same_origin_redirects())
            .user_agent(concat!("mcp-hub/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpAdapter { client, settings })
    }

    /// Calls the tool's endpoint and pushes each output delta into `deltas` as it is
    /// produced. Logs `tool.http.request` and `tool.http.response`.
    pub async fn call(
        &self,
        endpoint: Endpoint<'_>,
        args: &Map<String, Value>,
        request_id: &str,
        deltas: &mpsc::Sender<Delta>,
    ) -> Result<Outcome, Error> {
        let Endpoint {
            server_id,
            server,
            tool,
            pick,
        } = endpoint;
        let built = request::build(server, tool, args, request_id)?;
        let url_for_log = request::redacted_url(&built.url, server);
        let method = built.method;
        let timeout_ms = server.timeout_ms();
        let log_success = mcp_core::log::sampled();
        if log_success {
            tracing::info!(event = "tool.http.request", request_id, server = server_id, tool = %tool.name, method = %method, url = %url_for_log);
        }
        let started = Instant::now();
        let result = self.send_and_read(built, pick, timeout_ms, deltas).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(outcome) if log_success => {
                tracing::info!(event = "tool.http.response", request_id, server = server_id, tool = %tool.name, method = %method, url = %url_for_log,
                    status = outcome.status, latency = latency_ms, deltas = outcome.n_deltas, streamed = outcome.streamed);
            }
            Ok(_) => {}
            Err(err) => {
                let status = err.upstream_status();
                tracing::warn!(event = "tool.http.response", request_id, server = server_id, tool = %tool.name, method = %method, url = %url_for_log,
                    status, latency = latency_ms, error = err as &dyn std::error::Error, code = err.code());
            }
        }
        result
    }

    async fn send_and_read(
        &self,
        built: request::Built,
        pick: Option<&serde_json_path::JsonPath>,
        timeout_ms: u64,
        deltas: &mpsc::Sender<Delta>,
    ) -> Result<Outcome, Error> {
        let method = reqwest::Method::from_bytes(built.method.as_str().as_bytes())
            .unwrap_or(reqwest::Method::GET);
        let mut request = self
            .client
            .request(method, built.url)
            .timeout(Duration::from_millis(timeout_ms));
        for (name, value) in &built.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request = match built.body {
            Some(request::Body::Json(value)) => request.json(&value),
            Some(request::Body::Text(text)) => request
                .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(text),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|err| classify(err, timeout_ms, false))?;
        response::read(
            response,
            pick,
            self.settings.max_response_bytes,
            timeout_ms,
            deltas,
        )
        .await
    }
}

/// Maps a reqwest error to ours; `in_body` says whether the status line had arrived.
pub(crate) fn classify(err: reqwest::Error, timeout_ms: u64, in_body: bool) -> Error {
    if err.is_timeout() {
        Error::Timeout(timeout_ms)
    } else if err.is_connect() {
        Error::Connect(err)
    } else if in_body || err.is_body() || err.is_decode() {
        Error::Body(err)
    } else {
        Error::Transport(err)
    }
}

//! Owns the HTTP adapter: the one place that calls a registered REST API. It builds the
//! request ([`request`]), sends it on a pooled keep-alive connection ([`pool`]: hyper's
//! HTTP/1.1 connections, TLS by rustls with the platform's roots), follows redirects
//! within the origin, and turns the response into output deltas ([`response`]) pushed
//! into a bounded channel as they arrive, so a slow consumer slows the read instead of
//! growing memory. Shared by the worker and by the gateway's rollback mode; its
//! connection [`pool`] is the load generator's client too.
//!
//! hyper rather than `reqwest`: reqwest's layers (redirects, retries, the URL parsed
//! twice more per request) were a fifth of a worker's instructions per call (124k ->
//! 101k by callgrind, about 10% less CPU per call under load).

pub mod pool;
pub mod request;
pub mod response;

pub use response::Delta;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, HOST, LOCATION, USER_AGENT,
};
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use mcp_core::model::{CircuitBreakerConfig, ServerConfig, ToolBinding};
use std::sync::atomic::Ordering;

use crate::resilience::{
    Admission, Breaker, BreakerState, Failure, Guard, Guards, NoRetry, Reason, RetryPolicy,
    Transition,
};

/// The cause of a transport failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    Connect(#[source] BoxError),
    #[error("the REST API call failed")]
    Transport(#[source] BoxError),
    #[error("the REST API connection broke mid-response")]
    Body(#[source] BoxError),
    #[error("the REST API response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the REST API declared JSON but sent something else")]
    InvalidJson(#[source] serde_json::Error),
    /// The consumer of the deltas went away (the caller disconnected).
    #[error("the caller went away")]
    Cancelled,
    /// The server's circuit breaker is open: the call failed fast, without a request.
    /// The message says why it opened (consecutive failures, the error rate, a failed
    /// probe).
    #[error("the circuit breaker of this REST API is open {}; calls fail fast for {retry_in_ms} ms more", opened_by.describe_open(*failures))]
    CircuitOpen {
        retry_in_ms: u64,
        failures: u32,
        opened_by: Reason,
    },
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
            Error::CircuitOpen { .. } => "circuit_open",
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

/// Where a call's deltas go: the transport's channel and, for an audited call, the
/// count of their bytes (its audit entry's `result_bytes`), kept as they are sent, so a
/// call that fails midway still counts what went out.
#[derive(Clone, Copy)]
pub struct Deltas<'a> {
    pub tx: &'a mpsc::Sender<Delta>,
    pub bytes: Option<&'a std::sync::atomic::AtomicU64>,
}

impl Deltas<'_> {
    /// Sends one delta; `Cancelled` when the consumer went away.
    pub async fn send(&self, delta: Delta) -> Result<(), Error> {
        if let Some(bytes) = self.bytes {
            bytes.fetch_add(
                crate::audit::delta_len(&delta),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        self.tx.send(delta).await.map_err(|_| Error::Cancelled)
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

/// Redirects followed at most, and only within the origin of the first request: the
/// server's `auth` and `defaultHeaders` (a custom auth header included) must never be
/// sent to another host. A redirect elsewhere is returned to the tool as the REST API's
/// answer.
const MAX_REDIRECTS: usize = 5;

/// TCP, then TLS for `https` ([`connector`]).
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Why the client could not be built (the platform's certificate verifier or TLS
/// protocol versions).
#[derive(Debug, thiserror::Error)]
#[error("building the TLS client configuration")]
pub struct BuildError(#[source] rustls::Error);

/// The connector of every REST call and of the load generator: TCP (no Nagle delay,
/// `connect_timeout`), then TLS by rustls with the platform's roots for `https`.
pub fn connector(connect_timeout: Duration) -> Result<Connector, BuildError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone()).map_err(BuildError)?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(BuildError)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// One pooled HTTP client per process. Cheap to clone.
#[derive(Clone)]
pub struct HttpAdapter {
    /// An `Arc` inside: clones share the idle connections.
    pool: pool::Pool,
    settings: Settings,
    /// Each server's retry budget and circuit breaker, shared by clones.
    guards: Arc<Guards>,
}

impl HttpAdapter {
    pub fn new(settings: Settings) -> Result<HttpAdapter, BuildError> {
        let pool = pool::Pool::new(
            connector(settings.connect_timeout)?,
            settings.pool_max_idle_per_host,
        );
        Ok(HttpAdapter {
            pool,
            settings,
            guards: Arc::default(),
        })
    }

    /// The retry budget, breaker and counters of `server_id` (created on first use).
    pub fn guard(&self, server_id: &str) -> Arc<Guard> {
        self.guards.get(server_id)
    }

    /// The guard of `server_id`, once a call with `retry` or `circuitBreaker` made it.
    pub fn find_guard(&self, server_id: &str) -> Option<Arc<Guard>> {
        self.guards.find(server_id)
    }

    /// Calls the tool's endpoint and pushes each output delta into `deltas` as it is
    /// produced. Logs `tool.http.request` and `tool.http.response`.
    pub async fn call(
        &self,
        endpoint: Endpoint<'_>,
        args: &Map<String, Value>,
        request_id: &str,
        deltas: Deltas<'_>,
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
            tracing::info!(
                event = "tool.http.request",
                request_id,
                server = server_id,
                tool = tool.name.as_str(),
                method = method.as_str(),
                url = url_for_log.as_str()
            );
        }
        let started = Instant::now();
        let policy = RetryPolicy::of(server, tool);
        let result = match (policy, server.circuit_breaker.as_ref()) {
            // Neither configured: the call as it always was.
            (None, None) => self.send_and_read(built, pick, timeout_ms, deltas).await,
            (policy, breaker) => {
                let ids = CallIds {
                    request_id,
                    server_id,
                    tool: tool.name.as_str(),
                    method: method.as_str(),
                };
                self.guarded(built, pick, timeout_ms, deltas, policy, breaker, ids)
                    .await
            }
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(outcome) if log_success => {
                tracing::info!(
                    event = "tool.http.response",
                    request_id,
                    server = server_id,
                    tool = tool.name.as_str(),
                    method = method.as_str(),
                    url = url_for_log.as_str(),
                    status = outcome.status,
                    latency = latency_ms,
                    deltas = outcome.n_deltas,
                    streamed = outcome.streamed
                );
            }
            Ok(_) => {}
            Err(err) => {
                let status = err.upstream_status();
                tracing::warn!(
                    event = "tool.http.response",
                    request_id,
                    server = server_id,
                    tool = tool.name.as_str(),
                    method = method.as_str(),
                    url = url_for_log.as_str(),
                    status,
                    latency = latency_ms,
                    error = err as &dyn std::error::Error,
                    code = err.code()
                );
            }
        }
        result
    }

    /// One call with retries (`policy`) and the breaker (`breaker`), either optional:
    /// every attempt asks the breaker first and reports to it after; a failed attempt
    /// is tried again while [`RetryPolicy::decide`] and the budget allow, all within
    /// the call's `timeout_ms`. Logs `tool.http.retry`, `tool.http.retry.skipped` and the
    /// breaker's `tool.circuit.open|half_open|closed`.
    #[allow(clippy::too_many_arguments)]
    async fn guarded(
        &self,
        built: request::Built,
        pick: Option<&serde_json_path::JsonPath>,
        timeout_ms: u64,
        deltas: Deltas<'_>,
        policy: Option<RetryPolicy>,
        breaker: Option<&CircuitBreakerConfig>,
        ids: CallIds<'_>,
    ) -> Result<Outcome, Error> {
        let guard = self.guards.get(ids.server_id);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        if let Some(policy) = &policy {
            guard.budget.deposit(policy.budget_percent);
        }
        let mut built = Some(built);
        let mut last_error: Option<Error> = None;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let mut probe = None;
            if let Some(config) = breaker {
                match guard.breaker.admit(config, Instant::now()) {
                    Admission::Pass => {}
                    Admission::Probe(transition) => {
                        log_transition(transition, &ids);
                        probe = Some(ProbeToken {
                            breaker: &guard.breaker,
                            config,
                        });
                    }
                    Admission::Reject {
                        retry_in,
                        failures,
                        opened_by,
                    } => {
                        guard.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(last_error.unwrap_or(Error::CircuitOpen {
                            retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                            failures,
                            opened_by,
                        }));
                    }
                }
            }
            let more = policy.is_some_and(|p| p.repeatable && attempts < p.max_attempts);
            let request = if more { built.clone() } else { built.take() };
            let Some(request) = request else {
                return Err(last_error.unwrap_or(Error::Cancelled));
            };
            let (attempt_deadline, attempt_ms) = match policy.and_then(|p| p.attempt_timeout) {
                Some(limit) => {
                    let ends = (tokio::time::Instant::now() + limit).min(deadline);
                    (
                        ends,
                        u64::try_from(limit.as_millis())
                            .unwrap_or(timeout_ms)
                            .min(timeout_ms),
                    )
                }
                None => (deadline, timeout_ms),
            };
            let answer = self.send(request, attempt_deadline, attempt_ms).await;
            let (result, retry_after, before_output) = match answer {
                Err(err) => (Err(err), None, true),
                Ok(answer) => {
                    let retry_after = answer.retry_after();
                    let status = answer.status();
                    let read =
                        response::read(answer, pick, self.settings.max_response_bytes, deltas)
                            .await;
                    // An error status is read before any delta goes out.
                    (read, retry_after, status >= 400)
                }
            };
            let failure = result.as_ref().err().and_then(failure_of);
            if let Some(config) = breaker {
                match (&result, probe.take()) {
                    // No verdict on the REST API: a probe lets the next call probe.
                    (Err(Error::Cancelled | Error::Request(_)), Some(token)) => drop(token),
                    (_, token) => {
                        let was_probe = token.is_some();
                        if let Some(token) = token {
                            std::mem::forget(token);
                        }
                        let transition =
                            guard
                                .breaker
                                .record(config, failure, was_probe, Instant::now());
                        if let Some(transition) = transition {
                            if transition.to == BreakerState::Open {
                                guard.opened.fetch_add(1, Ordering::Relaxed);
                            }
                            log_transition(transition, &ids);
                        }
                    }
                }
            }
            let err = match result {
                Ok(outcome) => return Ok(outcome),
                Err(err) => err,
            };
            let (Some(policy), Some(failure), true) = (policy, failure, before_output) else {
                return Err(err);
            };
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let jitter = std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                (ids.request_id, attempts),
            );
            let breaker_open = breaker.is_some() && guard.breaker.state() != BreakerState::Closed;
            let decision = policy
                .decide(attempts, failure, retry_after, remaining, jitter)
                .and_then(|wait| {
                    if breaker_open {
                        Err(NoRetry::CircuitOpen)
                    } else if guard.budget.try_spend() {
                        Ok(wait)
                    } else {
                        Err(NoRetry::Budget)
                    }
                });
            match decision {
                Ok(wait) => {
                    guard.count_retry(failure);
                    tracing::warn!(
                        event = "tool.http.retry",
                        request_id = ids.request_id,
                        server = ids.server_id,
                        tool = ids.tool,
                        method = ids.method,
                        attempt = attempts + 1,
                        max_attempts = policy.max_attempts,
                        failure = failure.as_str(),
                        status = err.upstream_status(),
                        code = err.code(),
                        delay = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        retry_after = retry_after.map(|d| d.as_secs())
                    );
                    tokio::time::sleep(wait).await;
                    last_error = Some(err);
                }
                Err(NoRetry::NotRetryable) => return Err(err),
                Err(reason) => {
                    if reason == NoRetry::Budget {
                        guard.budget_refusals.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(
                        event = "tool.http.retry.skipped",
                        request_id = ids.request_id,
                        server = ids.server_id,
                        tool = ids.tool,
                        method = ids.method,
                        attempts,
                        reason = reason.as_str(),
                        failure = failure.as_str(),
                        code = err.code()
                    );
                    return Err(err);
                }
            }
        }
    }

    async fn send_and_read(
        &self,
        built: request::Built,
        pick: Option<&serde_json_path::JsonPath>,
        timeout_ms: u64,
        deltas: Deltas<'_>,
    ) -> Result<Outcome, Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let answer = self.send(built, deadline, timeout_ms).await?;
        response::read(answer, pick, self.settings.max_response_bytes, deltas).await
    }

    /// Sends the request and follows redirects within its origin, all before
    /// `deadline`; the answer's body is read under the same deadline.
    async fn send(
        &self,
        built: request::Built,
        deadline: tokio::time::Instant,
        timeout_ms: u64,
    ) -> Result<response::Answer, Error> {
        let mut method = http_method(built.method);
        let mut headers = HeaderMap::with_capacity(built.headers.len() + 3);
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        for (name, value) in &built.headers {
            // Argument values were checked when the request was built; a configured
            // name or value HTTP cannot carry fails the call, as it did under reqwest.
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => {
                    headers.append(name, value);
                }
                _ => {
                    return Err(Error::Transport(
                        format!("header {name:?} is not valid in HTTP").into(),
                    ))
                }
            }
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        let mut body = match built.body {
            Some(request::Body::Json(value)) => {
                if !headers.contains_key(CONTENT_TYPE) {
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                Some(Bytes::from(serde_json::to_vec(&value).unwrap_or_default()))
            }
            Some(request::Body::Text(text)) => {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Some(Bytes::from(text))
            }
            None => None,
        };
        let first = built.url;
        let mut url = first.clone();
        let mut followed = 0;
        loop {
            let uri: http::Uri = url
                .as_str()
                .parse()
                .map_err(|err| Error::Transport(Box::new(err)))?;
            let target = Target::of(&uri).map_err(Error::Transport)?;
            let mut request = http::Request::new(Full::new(body.clone().unwrap_or_default()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = target.path;
            *request.headers_mut() = headers.clone();
            if !request.headers().contains_key(HOST) {
                request.headers_mut().insert(HOST, target.host);
            }
            let sent = self.pool.send(target.origin, &uri, request);
            let (response, lease) = match tokio::time::timeout_at(deadline, sent).await {
                Ok(Ok(answered)) => answered,
                Ok(Err(err)) => return Err(classify(err, timeout_ms)),
                Err(_) => return Err(Error::Timeout(timeout_ms)),
            };
            let status = response.status();
            let next = status
                .is_redirection()
                .then(|| response.headers().get(LOCATION))
                .flatten()
                .and_then(|location| location.to_str().ok())
                .and_then(|location| url.join(location).ok())
                .filter(|next| next.origin() == first.origin());
            let Some(next) = next else {
                return Ok(response::Answer::new(response, lease, deadline, timeout_ms));
            };
            // The redirect's own body is not read: its connection closes.
            drop(lease);
            if followed >= MAX_REDIRECTS {
                return Err(Error::Transport(
                    format!("more than {MAX_REDIRECTS} redirects").into(),
                ));
            }
            // 303, and 301/302 after a POST, turn into a GET without a body (as
            // browsers and reqwest do); 307 and 308 repeat the request as it was.
            let to_get = status == StatusCode::SEE_OTHER && method != Method::HEAD
                || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method == Method::POST;
            if to_get {
                method = Method::GET;
                body = None;
                headers.remove(CONTENT_TYPE);
            }
            url = next;
            followed += 1;
        }
    }
}

/// Who a guarded call is, for its log events.
struct CallIds<'a> {
    request_id: &'a str,
    server_id: &'a str,
    tool: &'a str,
    method: &'a str,
}

/// The half-open probe in flight: dropped without a verdict (the call's future dropped
/// when the caller went away), it lets the next call probe instead of leaving the
/// breaker half-open for good.
struct ProbeToken<'a> {
    breaker: &'a Breaker,
    config: &'a CircuitBreakerConfig,
}

impl Drop for ProbeToken<'_> {
    fn drop(&mut self) {
        self.breaker.abandon_probe(self.config, Instant::now());
    }
}

/// `tool.circuit.open|half_open|closed` with why (`reason`: `consecutive_failures`,
/// `error_rate` with the window's `window_calls` and `window_failures`, `probe_failed`,
/// `cool_down_over`, `probe_succeeded`).
fn log_transition(transition: Transition, ids: &CallIds<'_>) {
    let window = match transition.reason {
        Reason::ErrorRate { failed, calls } => Some((calls, failed)),
        _ => None,
    };
    let event = match transition.to {
        BreakerState::Open => "tool.circuit.open",
        BreakerState::HalfOpen => "tool.circuit.half_open",
        BreakerState::Closed => "tool.circuit.closed",
    };
    tracing::warn!(
        event,
        request_id = ids.request_id,
        server = ids.server_id,
        tool = ids.tool,
        from = transition.from.as_str(),
        to = transition.to.as_str(),
        reason = transition.reason.as_str(),
        failures = transition.failures,
        window_calls = window.map(|(calls, _)| calls),
        window_failures = window.map(|(_, failed)| failed)
    );
}

/// How the retry and breaker decisions see an error; `None`: not the REST API's doing.
fn failure_of(err: &Error) -> Option<Failure> {
    match err {
        Error::Connect(_) => Some(Failure::Connect),
        Error::Timeout(_) => Some(Failure::Timeout),
        Error::Status { status, .. } => Some(Failure::Status(*status)),
        Error::Transport(_) | Error::Body(_) | Error::InvalidJson(_) => Some(Failure::Other),
        Error::Request(_) | Error::TooLarge(_) | Error::Cancelled | Error::CircuitOpen { .. } => {
            None
        }
    }
}

/// The registry's method as HTTP's: every method registration accepts has its own.
fn http_method(method: mcp_core::model::HttpMethod) -> Method {
    use mcp_core::model::HttpMethod;
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

const USER_AGENT_VALUE: &str = concat!("mcp-hub/", env!("CARGO_PKG_VERSION"));

/// Where one request goes: its pool origin, its `Host` and its origin-form target.
struct Target {
    /// `scheme://host:port` (the port always written): the idle stack it uses.
    origin: String,
    host: HeaderValue,
    path: http::Uri,
}

impl Target {
    fn of(uri: &http::Uri) -> Result<Target, BoxError> {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(format!("{uri} is not an absolute URL").into());
        };
        let default_port = match scheme {
            "https" => 443,
            _ => 80,
        };
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(default_port);
        // `Host` carries the port only when it is not the scheme's default, as
        // hyper-util's client (and reqwest before it) wrote it.
        let host_header = if port == default_port {
            HeaderValue::from_str(host)?
        } else {
            HeaderValue::from_str(&format!("{host}:{port}"))?
        };
        let path = match uri.path_and_query() {
            Some(path) => http::Uri::from(path.clone()),
            None => http::Uri::from_static("/"),
        };
        Ok(Target {
            origin: format!("{scheme}://{host}:{port}"),
            host: host_header,
            path,
        })
    }
}

/// Maps a pool error to ours: anything that timed out is a timeout, a failed
/// connect `upstream_unreachable`, the rest a failed call.
fn classify(err: pool::SendError, timeout_ms: u64) -> Error {
    let (connect, err): (bool, BoxError) = match err {
        pool::SendError::Connect(err) => (true, err),
        pool::SendError::Send(err) => (false, Box::new(err)),
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*err);
    while let Some(current) = cause {
        if current
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return Error::Timeout(timeout_ms);
        }
        cause = current.source();
    }
    if connect {
        Error::Connect(err)
    } else {
        Error::Transport(err)
    }
}

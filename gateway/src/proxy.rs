//! Owns the request path of the gateway (Pingora `ProxyHttp`). Order for a tool call:
//! route -> 404/403 from the in-memory table -> 413 on Content-Length -> the whole body
//! read (413 past `MCP_MAX_BODY_BYTES`, chunked or not) and validated against the tool's
//! schema (400) -> request id -> pick a routable worker (waking an idle server, waiting
//! for a restarting one) -> proxy. So invalid arguments never wake a server, wait for a
//! worker or reach a worker's REST call. A checked body (a tool call, a JSON-RPC POST)
//! is then sent by [`forward`]; Pingora proxies the rest (admin calls, GET streams).
//! Responses stream through unbuffered.

mod forward;
mod pool;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use mcp_adapter::tool::ServedTool;
use mcp_core::request_id;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use serde_json::{json, Value};

use crate::errors::GatewayError;
use crate::metrics::METRICS;
use crate::routes::Route;
use crate::table::{Endpoint, Routes, Table};

/// Settings the request path needs, fixed at start-up.
pub struct Settings {
    pub admin_addr: SocketAddr,
    pub max_body_bytes: usize,
    pub worker_wait: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub allowed_origins: Vec<String>,
    /// `Some` in rollback mode (`MCP_SUPERVISOR_ENABLED=false`): calls run here.
    pub rollback: Option<mcp_adapter::http::HttpAdapter>,
}

pub struct Gateway {
    pub routes: Arc<Routes>,
    pub registry: mcp_core::RedisRegistry,
    pub settings: Settings,
    /// Round-robin position over replicas; relaxed, only spreads load.
    next_replica: AtomicUsize,
    /// New connections of [`forward`]; Pingora's own connector is not reachable from here.
    transport: pingora::connectors::TransportConnector,
    /// Idle connections of [`forward`], as many as Pingora's pool keeps
    /// (`upstream_keepalive_pool_size`).
    pool: pool::Pool,
}

impl Gateway {
    pub fn new(
        routes: Arc<Routes>,
        registry: mcp_core::RedisRegistry,
        settings: Settings,
        server_conf: &pingora::server::configuration::ServerConf,
    ) -> Gateway {
        Gateway {
            routes,
            registry,
            settings,
            next_replica: AtomicUsize::new(0),
            transport: pingora::connectors::TransportConnector::new(Some(
                pingora::connectors::ConnectorOptions::from_server_conf(server_conf),
            )),
            pool: pool::Pool::new(
                server_conf.upstream_keepalive_pool_size,
                UPSTREAM_IDLE_TIMEOUT,
            ),
        }
    }
}

/// What the request body must satisfy before it is released to the worker.
#[derive(Clone, Default)]
pub enum BodyCheck {
    #[default]
    None,
    /// `{"args": {...}}` for a known tool.
    Args(Arc<ServedTool>),
    /// `{"name", "args"}` (or `{"method"}`), tool looked up at the end of the body.
    Named,
    /// JSON-RPC: every `tools/call` is validated.
    JsonRpc,
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    request_id: String,
    route: Route,
    server_id: String,
    tool: String,
    check: BodyCheck,
    /// Written by `fail_to_proxy` when the request fails after routing.
    pending_error: Option<GatewayError>,
    /// Chosen upstream of the current attempt.
    endpoint: Option<Endpoint>,
    /// Path and query sent to the upstream.
    upstream_path: String,
    /// Replica pinned by an MCP session id or a legacy-SSE message URL.
    pinned_replica: Option<u32>,
    /// Session id to send upstream (the gateway's `r{n}.` prefix removed).
    upstream_session: Option<String>,
    /// Workers that failed this request (a restarted one is a new endpoint).
    failed: Vec<Endpoint>,
    attempts: u32,
    /// Pooled connections that turned out closed; the first such failure does not
    /// count against the worker (it may have closed an idle connection and live on).
    stale_reuses: u32,
    /// Where `tool.call.accepted` stands: the arguments passed (`Due`), it was written.
    accepted: Accepted,
    args_size: usize,
    /// The validated body of a checked route, which [`forward`] sends.
    held_body: Option<Bytes>,
    /// Body bytes passed through unchecked so far (routes without a body check).
    passed_bytes: usize,
    status: u16,
    /// One sampling decision per request (taken on first use), so the success-path
    /// events of a request (`accepted`, `proxy.start`, `proxy.done`) come together.
    sampled: Option<bool>,
    /// The request's metrics and `tool.call.proxy.done` line are written (by `forward`,
    /// before the answer's last bytes; otherwise by `logging`).
    recorded: bool,
}

/// `tool.call.accepted` of a request: not (yet) earned, due, written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Accepted {
    No,
    Due,
    Written,
}

const SESSION_HEADER: &str = "mcp-session-id";
const FORWARDED_PREFIX_HEADER: &str = "x-forwarded-prefix";

/// Sets `name` to `value` in a response header unless it already holds exactly that.
fn set_header(header: &mut ResponseHeader, name: &'static str, value: &str) -> Result<()> {
    if header.headers.get(name).map(|v| v.as_bytes()) != Some(value.as_bytes()) {
        header.insert_header(name, value)?;
    }
    Ok(())
}

/// The fields the gateway sets on a request to an upstream, replacing the client's: the
/// same on both ways out (Pingora's `upstream_request_filter` and [`forward`]).
struct UpstreamFields<'a> {
    request_id: &'a str,
    /// The worker's address: a worker checks the Host it is called by.
    host: Option<&'a str>,
    /// Where a legacy SSE stream's message URLs must point (through the gateway, to
    /// the same replica).
    forwarded_prefix: Option<String>,
    /// The worker's own MCP session id (the gateway's `r{n}.` prefix removed).
    session: Option<&'a str>,
}

/// Oversized bodies up to this size are read and dropped before the 413 answer.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Attempts per request (connects and connections lost before an answer).
const MAX_ATTEMPTS: u32 = 16;

/// How long an idle connection to a worker stays pooled.
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the rest of the request body, whatever its framing; `None` once it outgrows
/// `limit` (the rest is then unread). Read errors are the client's.
async fn read_whole_body(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    let mut whole = BytesMut::new();
    while let Some(chunk) = session
        .read_request_body()
        .await
        .map_err(|e| e.into_down())?
    {
        if whole.len() + chunk.len() > limit {
            return Ok(None);
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(Some(whole.freeze()))
}

/// Reads and drops the rest of an oversized body (at most `DRAIN_LIMIT` bytes, within
/// 5 s), so a client still sending it gets the 413 instead of a broken pipe; the rest
/// of a huge one is cut off with the connection.
async fn drain_body(session: &mut Session) {
    let drain = async {
        let mut drained = 0;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            drained += chunk.len();
            if drained > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let header = session.req_header();
        ctx.request_id = request_id::keep_or_generate(
            header
                .headers
                .get(request_id::HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        ctx.route = Route::parse(&header.method, header.uri.path());
        let query = header
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let content_length = header
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let origin = header
            .headers
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let expects_continue = header.version == http::Version::HTTP_11
            && header
                .headers
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let session_id = header
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let method = header.method.clone();

        let table = self.routes.load();
        match ctx.route.clone() {
            Route::Health => {
                let body = json!({
                    "status": if self.routes.is_loaded() { "ok" } else { "starting" },
                    "version": table.version,
                    "servers": table.servers.len(),
                    "mode": if self.settings.rollback.is_some() { "rollback" } else { "workers" },
                });
                return respond_json(session, ctx, 200, &body).await;
            }
            Route::Admin => {
                ctx.upstream_path = format!("{}{query}", session.req_header().uri.path());
                return Ok(false);
            }
            Route::NotFound => {
                return reject(
                    session,
                    ctx,
                    GatewayError::not_found("no such route".into()),
                )
                .await
            }
            Route::MethodNotAllowed => {
                return reject(
                    session,
                    ctx,
                    GatewayError::new(
                        405,
                        "method_not_allowed",
                        "method not allowed on this route",
                    ),
                )
                .await
            }
            Route::HubInitialize => {
                let body = json!({
                    "protocolVersion": "2024-11-05",
                    "serverInfo": {"name": "mcp-hub", "version": env!("CARGO_PKG_VERSION")},
                    "capabilities": {"tools": {"listChanged": true}},
                    "servers": sorted_ids(&table),
                });
                return respond_json(session, ctx, 200, &body).await;
            }
            _ => {}
        }

        // Routes of one server: it must exist and be active.
        ctx.server_id = ctx.route.server_id().unwrap_or_default().to_owned();
        if !self.routes.is_loaded() {
            let mut err = GatewayError::new(
                503,
                "gateway_starting",
                "the routing table is not loaded yet",
            );
            err.retry_after_secs = Some(1);
            return reject(session, ctx, err).await;
        }
        let Some(server) = table
            .servers
            .get(&ctx.server_id)
            .filter(|s| s.config.is_some())
        else {
            // Not kept in ctx: metrics are labelled by server, and ids that are not
            // registered would grow the label set without bound.
            let unknown = std::mem::take(&mut ctx.server_id);
            let msg = format!("server {unknown:?} is not registered");
            return reject(session, ctx, GatewayError::not_found(msg)).await;
        };
        let active = server.config.as_ref().is_some_and(|c| c.active);
        if !active {
            let msg = format!("server {:?} is inactive", ctx.server_id);
            return reject(session, ctx, GatewayError::new(403, "server_inactive", msg)).await;
        }
        if ctx.route.is_mcp_protocol() {
            if let Some(origin) = origin.as_deref() {
                if !origin_allowed(origin, &self.settings.allowed_origins) {
                    let msg = format!("origin {origin:?} is not allowed");
                    return reject(
                        session,
                        ctx,
                        GatewayError::new(403, "origin_forbidden", msg),
                    )
                    .await;
                }
            }
        }
        if content_length.is_some_and(|len| len > self.settings.max_body_bytes) {
            // A moderately oversized body is drained so the client gets the 413.
            if content_length.is_some_and(|len| len <= DRAIN_LIMIT) {
                drain_body(session).await;
            }
            return reject(session, ctx, self.payload_too_large()).await;
        }

        match ctx.route.clone() {
            Route::ServerInfo { .. } => {
                let body = json!({
                    "id": ctx.server_id,
                    "name": server.config.as_ref().map(|c| c.name.clone()),
                    "active": active,
                    "tools": server.tools.values().filter(|t| t.binding.active).count(),
                    "workers": server.workers.len(),
                    "transport": {"streamableHttp": format!("/mcp-servers/{}/mcp", ctx.server_id), "sse": format!("/mcp-servers/{}/sse", ctx.server_id)},
                });
                if method == Method::HEAD {
                    return respond_head(session, ctx).await;
                }
                return respond_json(session, ctx, 200, &body).await;
            }
            Route::ServerInitialize { .. } => {
                let body = mcp_adapter::events::server_info(&ctx.server_id);
                return respond_json(session, ctx, 200, &body).await;
            }
            Route::ToolsList { .. } => {
                let mut tools: Vec<&Arc<ServedTool>> =
                    server.tools.values().filter(|t| t.binding.active).collect();
                tools.sort_by(|a, b| a.binding.name.cmp(&b.binding.name));
                let tools: Vec<Value> = tools
                    .iter()
                    .map(|t| json!({"name": t.binding.name, "description": t.binding.description, "inputSchema": t.binding.input_schema}))
                    .collect();
                return respond_json(session, ctx, 200, &json!({"tools": tools})).await;
            }
            Route::ToolCall { tool, .. } => {
                ctx.tool = tool.clone();
                let Some(served) = server.tools.get(&tool) else {
                    let msg = format!(
                        "tool {tool:?} of server {:?} is not registered",
                        ctx.server_id
                    );
                    return reject(session, ctx, GatewayError::not_found(msg)).await;
                };
                if !served.binding.active {
                    let msg = format!("tool {tool:?} is inactive");
                    return reject(session, ctx, GatewayError::new(403, "tool_inactive", msg))
                        .await;
                }
                ctx.check = BodyCheck::Args(served.clone());
                ctx.upstream_path = format!("/call/{tool}");
            }
            Route::NamedCall { .. } | Route::ServerCompat { .. } => {
                ctx.check = BodyCheck::Named;
                ctx.upstream_path = "/call".into();
            }
            Route::McpStreamable { .. } => {
                if method == Method::POST {
                    ctx.check = BodyCheck::JsonRpc;
                }
                if let Some((replica, inner)) = session_id.as_deref().and_then(split_session) {
                    ctx.pinned_replica = Some(replica);
                    ctx.upstream_session = Some(inner.to_owned());
                }
                ctx.upstream_path = format!("/mcp{query}");
            }
            Route::LegacySse { .. } => ctx.upstream_path = format!("/sse{query}"),
            Route::LegacyMessages { replica, .. } => {
                ctx.pinned_replica = replica;
                ctx.check = BodyCheck::JsonRpc;
                ctx.upstream_path = format!("/messages{query}");
            }
            _ => {}
        }

        if let Some(adapter) = &self.settings.rollback {
            if ctx.route.is_call() {
                return crate::rollback::serve(self, adapter, session, ctx).await;
            }
            let msg = "MCP transports need workers; the hub runs in rollback mode (MCP_SUPERVISOR_ENABLED=false)";
            return reject(session, ctx, GatewayError::new(503, "rollback_mode", msg)).await;
        }

        if !matches!(ctx.check, BodyCheck::None) {
            // The whole body is read and validated now, before a worker is woken, waited
            // for or connected to, whatever its size or framing; it is held here (so a
            // failed connect can be retried) and sent by `forward`.
            // A client that waits for `100 Continue` before sending its body (curl does
            // past 1 KiB) gets it here: no worker sees the request before its body.
            if expects_continue {
                session
                    .as_downstream_mut()
                    .write_continue_response()
                    .await?;
            }
            let Some(whole) = read_whole_body(session, self.settings.max_body_bytes).await? else {
                drain_body(session).await;
                return reject(session, ctx, self.payload_too_large()).await;
            };
            ctx.args_size = whole.len();
            if let Err(err) = self.check_body(&whole, ctx) {
                // A batch's earlier calls may have passed.
                ctx.log_accepted();
                tracing::info!(event = "gateway.request.refused", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool, status = err.status, code = err.code);
                return reject(session, ctx, err).await;
            }
            ctx.held_body = Some(whole);
        }
        // A server with no routable worker: wake it when idle, wait when one is coming.
        if server.workers.is_empty() {
            ctx.log_accepted();
            if server.is_idle() {
                tracing::info!(event = "gateway.wake", request_id = %ctx.request_id, server = %ctx.server_id);
                if let Err(err) = self.registry.request_wake(&ctx.server_id).await {
                    tracing::warn!(event = "gateway.wake.failed", server = %ctx.server_id, error = %err);
                }
            }
            if server.records.is_empty()
                || self
                    .wait_for_worker(&ctx.server_id, ctx.pinned_replica, &[])
                    .await
                    .is_none()
            {
                let traceback = format!(
                    "gateway.route: no routable worker of server {:?} within {:?} (MCP_GATEWAY_WORKER_WAIT)",
                    ctx.server_id, self.settings.worker_wait
                );
                tracing::warn!(event = "tool.call.failed", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool,
                    error = "no running worker", code = "no_worker", status = 503, stage = "gateway.route", traceback);
                return reject(session, ctx, GatewayError::no_worker(&ctx.server_id)).await;
            }
        }
        if let Some(body) = ctx.held_body.clone() {
            return forward::forward(self, session, ctx, body).await;
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.attempts += 1;
        let addr = if ctx.route == Route::Admin {
            self.settings.admin_addr
        } else {
            self.choose_worker(ctx).await?
        };
        Ok(Box::new(self.peer(addr)))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Ok(uri) = ctx.upstream_path.parse::<http::Uri>() {
            upstream.set_uri(uri);
        }
        let fields = ctx.upstream_fields();
        upstream.insert_header(request_id::HEADER, fields.request_id)?;
        if ctx.route == Route::Admin {
            return Ok(());
        }
        if let Some(host) = fields.host {
            upstream.insert_header(http::header::HOST, host)?;
        }
        if let Some(prefix) = fields.forwarded_prefix {
            upstream.insert_header(FORWARDED_PREFIX_HEADER, prefix)?;
        }
        if let Some(inner) = fields.session {
            upstream.insert_header(SESSION_HEADER, inner)?;
        }
        // Origin was checked here; the worker sees the gateway as a same-host client.
        upstream.remove_header(&http::header::ORIGIN);
        // `forward` logs its own once the request is on its way.
        if ctx.held_body.is_none() {
            ctx.log_proxy_start();
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Checked bodies never come here (`forward` sends them). Admin bodies pass as
        // they are.
        if ctx.route == Route::Admin {
            return Ok(());
        }
        // Passed through as it comes, but never more than the limit (a chunked body has
        // no Content-Length to refuse up front).
        ctx.passed_bytes += body.as_ref().map_or(0, Bytes::len);
        if ctx.passed_bytes > self.settings.max_body_bytes {
            return Err(self.too_large(ctx));
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.status = upstream.status.as_u16();
        // A worker already sends both (the request id is the one it was given); a field
        // that is right as it is costs a lookup rather than a rewrite.
        set_header(upstream, request_id::HEADER, &ctx.request_id)?;
        if ctx.route == Route::Admin {
            return Ok(());
        }
        set_header(upstream, "x-accel-buffering", "no")?;
        if let (Some(endpoint), Some(session_id)) = (
            &ctx.endpoint,
            upstream
                .headers
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok()),
        ) {
            let pinned = format!("r{}.{session_id}", endpoint.replica_idx);
            upstream.insert_header(SESSION_HEADER, pinned)?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.log_accepted();
        if ctx.route != Route::Admin {
            // The worker may be restarting on a new port: re-resolve and try again
            // (`upstream_peer` waits for a routable worker within the bound).
            if let Some(endpoint) = ctx.endpoint.clone() {
                ctx.failed.push(endpoint);
            }
            let _ = peer;
            let deadline_left = self
                .settings
                .worker_wait
                .saturating_sub(ctx.started.elapsed());
            e.set_retry(!deadline_left.is_zero() && ctx.attempts < MAX_ATTEMPTS);
            tracing::warn!(event = "gateway.connect.failed", request_id = %ctx.request_id, server = %ctx.server_id, error = %e, attempt = ctx.attempts, retry = e.retry());
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        ctx.log_accepted();
        let mut e = e.more_context(format!("peer: {peer}"));
        // A connection that broke before any response byte (a worker killed while the
        // request sat in its backlog, or a pooled connection it had closed) means the
        // worker is gone: retry on a live one when the whole body is still at hand (the
        // body `forward` holds; Pingora's routes keep no copy of a body they stream, so
        // only a request without one can be sent again).
        // A worker killed in the middle of a call may have begun its REST call, so such
        // a call can run twice; it was lost with the worker anyway.
        let broken = matches!(
            e.etype(),
            ConnectionClosed | ReadError | WriteError | ConnectError | ConnectRefused
        );
        let retry = ctx.pending_error.is_none()
            && broken
            && ctx.status == 0
            && (ctx.held_body.is_some() || session.as_mut().is_body_empty())
            && ctx.attempts < MAX_ATTEMPTS
            && ctx.started.elapsed() < self.settings.worker_wait;
        if retry {
            // A pooled connection the worker had closed says nothing about the worker
            // the first time: try it again on a fresh connection. A second broken
            // connection (or a fresh one) marks it failed for this request.
            let stale = client_reused && ctx.stale_reuses == 0;
            if stale {
                ctx.stale_reuses += 1;
            } else if let Some(endpoint) = ctx.endpoint.clone() {
                ctx.failed.push(endpoint);
            }
            tracing::warn!(event = "gateway.worker.lost", stale_connection = stale, request_id = %ctx.request_id, server = %ctx.server_id, error = %e, attempt = ctx.attempts);
        }
        e.set_retry(retry);
        e
    }

    fn suppress_error_log(&self, session: &Session, ctx: &Ctx, error: &Error) -> bool {
        // Refusals the gateway chose (400, 413, JSON-RPC errors) are not proxy failures,
        // nor is a client hanging up on a stream (`fail_to_proxy` logs that at info).
        ctx.pending_error.as_ref().is_some_and(|e| e.status < 500)
            || (session.response_written().is_some() && error.esource() == &ErrorSource::Downstream)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        ctx.log_accepted();
        if session.response_written().is_some() && e.esource() == &ErrorSource::Downstream {
            // The client hung up (a closed listen or session stream, a reader gone):
            // nothing failed on the worker's side, and there is nobody to tell.
            tracing::info!(event = "gateway.client.closed", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool,
                error = %e, latency = ctx.started.elapsed().as_secs_f64() * 1000.0);
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if session.response_written().is_some() {
            // The worker failed mid-stream: tell SSE readers why with an error event,
            // then cut the stream without the chunked terminator. A client then knows
            // the response is incomplete and drops the connection; a clean end followed
            // by a close would race its pool, which could send the next call on this
            // dying connection (Pingora never reuses a downstream whose upstream failed).
            tracing::error!(event = "tool.call.failed", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool,
                error = %e, code = "worker_failed", stage = "gateway.stream", traceback = %traceback(e),
                target_url = %ctx.target_url(), worker_pid = ctx.endpoint.as_ref().and_then(|w| w.pid));
            if ctx.route.is_call() {
                let data = json!({"request_id": ctx.request_id, "error": {"code": "worker_failed", "message": "the worker failed during the call"}});
                let frame = Bytes::from(format!("event: tool_call.error\ndata: {data}\n\n"));
                let _ = session.write_response_body(Some(frame), false).await;
            }
            session.as_downstream_mut().shutdown().await;
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let error = ctx
            .pending_error
            .take()
            .unwrap_or_else(|| classify(e, &ctx.route, &ctx.server_id));
        if error.status >= 500 && ctx.route == Route::Admin {
            tracing::error!(event = "gateway.admin.failed", request_id = %ctx.request_id,
                error = %e, code = error.code, status = error.status, traceback = %traceback(e));
        } else if error.status >= 500 {
            tracing::error!(event = "tool.call.failed", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool,
                error = %e, code = error.code, status = error.status, stage = "gateway.proxy", traceback = %traceback(e),
                target_url = %ctx.target_url(), worker_pid = ctx.endpoint.as_ref().and_then(|w| w.pid));
        }
        let status = error.status;
        if write_error(session, ctx, &error).await.is_err() {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        if ctx.recorded {
            // `forward` recorded the call before its last bytes went out; what is left
            // to count is a failure after that (the client gone while they were written).
            if e.is_some() {
                ctx.count_error(ctx.status);
            }
            return;
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(ctx.status);
        ctx.record(status, e.is_some());
    }
}

impl Gateway {
    /// The worker for this attempt (kept in `ctx.endpoint`): a routable one that has not
    /// failed this request, waited for within `worker_wait`; else the 503 to answer.
    async fn choose_worker(&self, ctx: &mut Ctx) -> Result<SocketAddr> {
        let endpoint = match self.pick(&ctx.server_id, ctx.pinned_replica, &ctx.failed) {
            Some(endpoint) => endpoint,
            None => match self
                .wait_for_worker(&ctx.server_id, ctx.pinned_replica, &ctx.failed)
                .await
            {
                Some(endpoint) => endpoint,
                None => {
                    ctx.pending_error = Some(GatewayError::no_worker(&ctx.server_id));
                    return Err(Error::explain(HTTPStatus(503), "no running worker"));
                }
            },
        };
        let addr = endpoint.addr;
        ctx.endpoint = Some(endpoint);
        Ok(addr)
    }

    fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.settings.connect_timeout);
        peer.options.read_timeout = Some(self.settings.read_timeout);
        peer.options.write_timeout = Some(self.settings.read_timeout);
        peer.options.idle_timeout = Some(UPSTREAM_IDLE_TIMEOUT);
        peer
    }

    fn payload_too_large(&self) -> GatewayError {
        let msg = format!(
            "the body is larger than {} bytes",
            self.settings.max_body_bytes
        );
        GatewayError::new(413, "payload_too_large", msg)
    }

    /// A routable worker of the server, avoiding ones that just failed.
    fn pick(&self, server_id: &str, pinned: Option<u32>, failed: &[Endpoint]) -> Option<Endpoint> {
        pick_from(
            &self.routes.load(),
            server_id,
            pinned,
            failed,
            &self.next_replica,
        )
    }

    /// Waits (up to `worker_wait`) for a routable worker to appear in the table: a
    /// restarting one (a new pid, maybe on the same port) or a waking one.
    async fn wait_for_worker(
        &self,
        server_id: &str,
        pinned: Option<u32>,
        failed: &[Endpoint],
    ) -> Option<Endpoint> {
        let mut changes = self.routes.subscribe();
        let deadline = tokio::time::Instant::now() + self.settings.worker_wait;
        loop {
            if let Some(endpoint) = self.pick(server_id, pinned, failed) {
                return Some(endpoint);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.pick(server_id, pinned, failed),
            }
        }
    }

    /// The 413 for a body that grew past `MCP_MAX_BODY_BYTES` while streaming.
    fn too_large(&self, ctx: &mut Ctx) -> Box<Error> {
        ctx.pending_error = Some(self.payload_too_large());
        Error::explain(HTTPStatus(413), "body too large")
    }

    /// Validates a complete body; `Err` is the answer to send instead of proxying.
    fn check_body(&self, whole: &[u8], ctx: &mut Ctx) -> Result<(), GatewayError> {
        match ctx.check.clone() {
            BodyCheck::None => Ok(()),
            BodyCheck::Args(tool) => {
                let value = parse_object(whole)?;
                self.check_args(&tool, value.get("args"), ctx)
            }
            BodyCheck::Named => {
                let value = parse_object(whole)?;
                if value.get("method").is_some() {
                    return Ok(());
                }
                let Some(name) = value.get("name").and_then(Value::as_str) else {
                    return Err(GatewayError::new(
                        400,
                        "bad_request",
                        "the body needs a tool \"name\" and \"args\"",
                    ));
                };
                ctx.tool = name.to_owned();
                let tool = self.lookup_tool(&ctx.server_id, name)?;
                let args = value.get("args").or_else(|| value.get("arguments"));
                self.check_args(&tool, args, ctx)
            }
            BodyCheck::JsonRpc => {
                // Not JSON: the worker answers the JSON-RPC parse error itself.
                let Ok(value) = serde_json::from_slice::<Value>(whole) else {
                    return Ok(());
                };
                let messages: Vec<&Value> = match &value {
                    Value::Array(batch) => batch.iter().collect(),
                    single => vec![single],
                };
                for message in messages {
                    if message.get("method").and_then(Value::as_str) != Some("tools/call") {
                        continue;
                    }
                    let Some(params) = message.get("params") else {
                        continue;
                    };
                    let Some(name) = params.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    ctx.tool = name.to_owned();
                    // Unknown tools are the worker's to answer (a JSON-RPC error).
                    let Ok(tool) = self.lookup_tool(&ctx.server_id, name) else {
                        continue;
                    };
                    if let Err(mut err) = self.check_args(&tool, params.get("arguments"), ctx) {
                        let id = message.get("id").cloned().unwrap_or(Value::Null);
                        err.jsonrpc_id = Some(Box::new(id));
                        err.status = 200;
                        return Err(err);
                    }
                }
                Ok(())
            }
        }
    }

    pub(crate) fn lookup_tool(
        &self,
        server_id: &str,
        name: &str,
    ) -> Result<Arc<ServedTool>, GatewayError> {
        let table = self.routes.load();
        let tool = table
            .servers
            .get(server_id)
            .and_then(|s| s.tools.get(name))
            .cloned()
            .ok_or_else(|| {
                GatewayError::not_found(format!(
                    "tool {name:?} of server {server_id:?} is not registered"
                ))
            })?;
        if !tool.binding.active {
            return Err(GatewayError::new(
                403,
                "tool_inactive",
                format!("tool {name:?} is inactive"),
            ));
        }
        Ok(tool)
    }

    /// Validates `args` (absent or `null` = `{}`) against the tool's schema, by
    /// reference: the body is not copied.
    pub(crate) fn check_args(
        &self,
        tool: &ServedTool,
        args: Option<&Value>,
        ctx: &mut Ctx,
    ) -> Result<(), GatewayError> {
        static EMPTY: std::sync::LazyLock<Value> =
            std::sync::LazyLock::new(|| Value::Object(Default::default()));
        let args = match args {
            None | Some(Value::Null) => &*EMPTY,
            Some(obj @ Value::Object(_)) => obj,
            _ => {
                return Err(GatewayError::new(
                    400,
                    "invalid_arguments",
                    "arguments must be a JSON object",
                ))
            }
        };
        let violations = mcp_core::validate::check_arguments(&tool.validator, args);
        if !violations.is_empty() {
            let details = serde_json::to_value(&violations).unwrap_or(Value::Null);
            return Err(GatewayError::new(
                400,
                "invalid_arguments",
                "arguments do not match the tool's inputSchema",
            )
            .with_details(details));
        }
        if ctx.accepted == Accepted::No {
            ctx.accepted = Accepted::Due;
        }
        Ok(())
    }
}

pub(crate) fn pick_from(
    table: &Table,
    server_id: &str,
    pinned: Option<u32>,
    failed: &[Endpoint],
    counter: &AtomicUsize,
) -> Option<Endpoint> {
    let workers = &table.servers.get(server_id)?.workers;
    if let Some(replica) = pinned {
        return workers
            .iter()
            .find(|w| w.replica_idx == replica && !failed.contains(w))
            .cloned();
    }
    let candidates: Vec<&Endpoint> = workers.iter().filter(|w| !failed.contains(w)).collect();
    if candidates.is_empty() {
        return None;
    }
    let n = counter.fetch_add(1, Ordering::Relaxed);
    Some(candidates[n % candidates.len()].clone())
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Value, GatewayError> {
    if body.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(GatewayError::new(
            400,
            "bad_request",
            "the body must be a JSON object",
        )),
        Err(err) => Err(GatewayError::new(
            400,
            "bad_request",
            format!("the body is not valid JSON: {err}"),
        )),
    }
}

/// `r{replica}.{worker session id}` -> (replica, worker session id).
fn split_session(session_id: &str) -> Option<(u32, &str)> {
    let rest = session_id.strip_prefix('r')?;
    let (replica, inner) = rest.split_once('.')?;
    Some((replica.parse().ok()?, inner))
}

fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    allowed.iter().any(|a| {
        let a = a.trim_end_matches('/');
        // An entry without a port allows every port of that scheme and host.
        a == "*"
            || a == origin
            || origin.strip_prefix(a).is_some_and(|rest| {
                rest.starts_with(':') && rest[1..].bytes().all(|b| b.is_ascii_digit())
            })
    })
}

fn sorted_ids(table: &Table) -> Vec<String> {
    let mut ids: Vec<String> = table
        .servers
        .iter()
        .filter(|(_, s)| s.config.is_some())
        .map(|(id, _)| id.clone())
        .collect();
    ids.sort();
    ids
}

fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

/// Maps a proxy error to the answer: worker timeouts 504, unreachable workers 503,
/// other worker failures 502; the admin API's own (`admin_*`) on the admin route.
fn classify(e: &Error, route: &Route, server_id: &str) -> GatewayError {
    if e.esource() == &ErrorSource::Downstream && !matches!(e.etype(), HTTPStatus(_)) {
        // The client's side failed (a body that stopped coming or was malformed).
        return match e.etype() {
            ReadTimedout => GatewayError::new(
                408,
                "request_timeout",
                "the request body did not arrive in time",
            ),
            _ => GatewayError::new(400, "bad_request", e.to_string()),
        };
    }
    if *route == Route::Admin {
        // The admin API's failures are its own, not a worker's.
        return match e.etype() {
            HTTPStatus(code) => GatewayError::new(*code, "error", format!("HTTP {code}")),
            ReadTimedout | WriteTimedout => {
                GatewayError::new(504, "admin_timeout", "the admin API did not answer in time")
            }
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError => {
                GatewayError::new(503, "admin_unavailable", "the admin API is not reachable")
            }
            _ => GatewayError::new(502, "admin_failed", "the admin API failed to answer"),
        };
    }
    match e.etype() {
        HTTPStatus(code) => GatewayError::new(*code, "error", format!("HTTP {code}")),
        ReadTimedout | WriteTimedout => {
            GatewayError::new(504, "worker_timeout", "the worker did not answer in time")
        }
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError => {
            GatewayError::no_worker(server_id)
        }
        _ => GatewayError::new(502, "worker_failed", "the worker failed to answer"),
    }
}

/// The PRD's `traceback` of a failed call, in the shape of `mcp_core::log::traceback`:
/// the error, then one `caused by:` line per cause, outermost first. Pingora chains its
/// errors through `cause` rather than `source()`, so its links are walked here (each shows
/// where it came from, upstream, downstream or internal, its kind and its context); the
/// first foreign cause (e.g. the `io::Error` of a refused connect) goes to the shared
/// helper with its own `source()` chain.
pub(crate) fn traceback(e: &Error) -> String {
    let mut links = Vec::new();
    let mut pingora_link: Option<&Error> = Some(e);
    while let Some(link) = pingora_link.take() {
        let mut line = match link.esource().as_str() {
            "" => link.etype().as_str().to_owned(),
            source => format!("{source} {}", link.etype().as_str()),
        };
        if let Some(context) = &link.context {
            line.push_str(&format!(": {context}"));
        }
        links.push(line);
        let Some(cause) = link.cause.as_deref() else {
            break;
        };
        // Pingora boxes the errors it chains (`BError`).
        match cause
            .downcast_ref::<Box<Error>>()
            .map(|boxed| &**boxed)
            .or_else(|| cause.downcast_ref::<Error>())
        {
            Some(inner) => pingora_link = Some(inner),
            None => links.push(mcp_core::log::traceback(cause)),
        }
    }
    links.join("\ncaused by: ")
}

/// Answers with a gateway error and ends the request (`Ok(true)` for `request_filter`).
pub(crate) async fn reject(
    session: &mut Session,
    ctx: &mut Ctx,
    error: GatewayError,
) -> Result<bool> {
    write_error(session, ctx, &error).await?;
    Ok(true)
}

async fn write_error(session: &mut Session, ctx: &mut Ctx, error: &GatewayError) -> Result<()> {
    let body = Bytes::from(error.body(&ctx.request_id).to_string());
    let mut header = ResponseHeader::build(
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY),
        Some(4),
    )?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    header.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
    if let Some(secs) = error.retry_after_secs {
        header.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    }
    ctx.status = error.status;
    session.set_keepalive(None);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

pub(crate) async fn respond_json(
    session: &mut Session,
    ctx: &mut Ctx,
    status: u16,
    body: &Value,
) -> Result<bool> {
    let body = Bytes::from(body.to_string());
    let mut header = ResponseHeader::build(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Some(3),
    )?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    header.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
    ctx.status = status;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await?;
    Ok(true)
}

async fn respond_head(session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let mut header = ResponseHeader::build(StatusCode::OK, Some(2))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
    ctx.status = 200;
    session
        .write_response_header(Box::new(header), true)
        .await?;
    Ok(true)
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: String::new(),
            route: Route::NotFound,
            server_id: String::new(),
            tool: String::new(),
            check: BodyCheck::None,
            pending_error: None,
            endpoint: None,
            upstream_path: String::new(),
            pinned_replica: None,
            upstream_session: None,
            failed: Vec::new(),
            attempts: 0,
            stale_reuses: 0,
            accepted: Accepted::No,
            args_size: 0,
            held_body: None,
            passed_bytes: 0,
            status: 0,
            sampled: None,
            recorded: false,
        }
    }

    /// The worker URL of the current attempt, for logs (empty before one is chosen).
    fn target_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => {
                let mut url =
                    String::with_capacity(7 + endpoint.host.len() + self.upstream_path.len());
                url.push_str("http://");
                url.push_str(&endpoint.host);
                url.push_str(&self.upstream_path);
                url
            }
            None => String::new(),
        }
    }
    /// Whether this request's success-path events are logged: decided once, on first use.
    fn sampled(&mut self) -> bool {
        *self.sampled.get_or_insert_with(mcp_core::log::sampled)
    }
    /// Writes `tool.call.accepted` if it is due. A forwarded call writes it once its
    /// request has left for the worker, so the line's formatting is not on the call's
    /// path; every other event of the request that can come before that calls this first,
    /// so the lines keep their order.
    pub(crate) fn log_accepted(&mut self) {
        if self.accepted != Accepted::Due {
            return;
        }
        self.accepted = Accepted::Written;
        if self.sampled() {
            tracing::info!(
                event = "tool.call.accepted",
                request_id = self.request_id.as_str(),
                server = self.server_id.as_str(),
                tool = self.tool.as_str(),
                args_size = self.args_size
            );
        }
    }

    /// What [`UpstreamFields`] this request's upstream gets (an admin call only its id).
    fn upstream_fields(&self) -> UpstreamFields<'_> {
        let mut fields = UpstreamFields {
            request_id: &self.request_id,
            host: None,
            forwarded_prefix: None,
            session: None,
        };
        if self.route == Route::Admin {
            return fields;
        }
        if let Some(endpoint) = &self.endpoint {
            fields.host = Some(&endpoint.host);
            if let Route::LegacySse { server_id } = &self.route {
                fields.forwarded_prefix = Some(format!(
                    "/mcp-servers/{server_id}/r{}",
                    endpoint.replica_idx
                ));
            }
        }
        fields.session = self.upstream_session.as_deref();
        fields
    }

    fn log_proxy_start(&mut self) {
        self.log_accepted();
        if self.sampled() {
            tracing::info!(
                event = "tool.call.proxy.start",
                request_id = self.request_id.as_str(),
                server = self.server_id.as_str(),
                tool = self.tool.as_str(),
                target_url = self.target_url().as_str(),
                attempt = self.attempts
            );
        }
    }

    fn server_label(&self) -> &str {
        if self.server_id.is_empty() {
            "-"
        } else {
            self.server_id.as_str()
        }
    }

    fn count_error(&self, status: u16) {
        METRICS
            .errors
            .with_label_values(&[&status.to_string(), self.server_label()])
            .inc();
    }

    /// Counts the finished request in the metrics and writes its `tool.call.proxy.done`
    /// line (sampled with its `proxy.start`, one decision per request; failures always).
    pub(crate) fn record(&mut self, status: u16, failed: bool) {
        self.log_accepted();
        self.recorded = true;
        self.status = status;
        let latency = self.started.elapsed();
        let server = self.server_label();
        let label = self.route.label();
        METRICS
            .requests
            .with_label_values(&[label, server, status_label(status)])
            .inc();
        METRICS
            .latency
            .with_label_values(&[label, server])
            .observe(latency.as_secs_f64());
        if status >= 400 || failed {
            self.count_error(status);
        }
        if self.endpoint.is_some() && (status >= 500 || self.sampled == Some(true)) {
            tracing::info!(
                event = "tool.call.proxy.done",
                request_id = self.request_id.as_str(),
                server = self.server_id.as_str(),
                tool = self.tool.as_str(),
                target_url = self.target_url().as_str(),
                status,
                latency = latency.as_secs_f64() * 1000.0,
                attempts = self.attempts
            );
        }
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }
    pub fn server_id(&self) -> &str {
        &self.server_id
    }
    pub fn route(&self) -> &Route {
        &self.route
    }
    pub fn tool(&self) -> &str {
        &self.tool
    }
    pub fn set_tool(&mut self, tool: &str) {
        self.tool = tool.to_owned();
    }
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }
    pub fn set_args_size(&mut self, size: usize) {
        self.args_size = size;
    }
    pub fn check(&self) -> BodyCheck {
        self.check.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let allowed = vec![
            "http://localhost".to_owned(),
            "https://app.example.com:8443".to_owned(),
        ];
        assert!(origin_allowed("http://localhost", &allowed));
        assert!(origin_allowed("http://localhost:3000", &allowed));
        assert!(origin_allowed("https://app.example.com:8443", &allowed));
        assert!(!origin_allowed("https://app.example.com", &allowed));
        assert!(!origin_allowed("http://localhost.evil.com", &allowed));
        assert!(!origin_allowed("http://evil.com", &allowed));
        assert!(origin_allowed("http://evil.com", &["*".to_owned()]));
    }

    #[test]
    fn a_traceback_has_one_line_per_cause() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let connect = Error::because(ConnectRefused, "connecting", refused).into_up();
        let e = connect.more_context("peer: 127.0.0.1:1");
        assert_eq!(
            traceback(&e),
            "Upstream ConnectRefused: peer: 127.0.0.1:1\ncaused by: Upstream ConnectRefused: connecting\ncaused by: refused"
        );
        let alone = Error::explain(HTTPStatus(503), "no running worker");
        assert_eq!(traceback(&alone), "HTTPStatus: no running worker");
    }

    #[test]
    fn sessions_carry_their_replica() {
        assert_eq!(split_session("r1.abc-def"), Some((1, "abc-def")));
        assert_eq!(split_session("abc"), None);
        assert_eq!(split_session("rx.abc"), None);
    }
}

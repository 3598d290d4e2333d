//! Owns the request path of the gateway (Pingora `ProxyHttp`). Order for a tool call:
//! route -> 404/403 from the in-memory table -> 413 on Content-Length -> the whole body
//! read (413 past `MCP_MAX_BODY_BYTES`, chunked or not) and validated against the tool's
//! schema (400) -> request id -> pick a routable worker (waking an idle server, waiting
//! for a restarting one) -> proxy. So invalid arguments never wake a server, wait for a
//! worker or reach a worker's REST call. A checked body (a tool call, a JSON-RPC POST)
//! is then sent by [`forward`]; Pingora proxies the rest (admin calls, GET streams).
//! Responses stream through unbuffered.

mod admission;
mod body;
mod ctx;
mod forward;
mod local;
mod pool;
mod upstream;

pub use body::{BodyCheck, Checked};
pub use ctx::Ctx;
pub(crate) use local::{reject, respond_json};

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use mcp_core::request_id;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use serde_json::json;

use local::write_error;
use upstream::{classify, traceback, MAX_ATTEMPTS, UPSTREAM_IDLE_TIMEOUT};

use crate::routes::Route;
use crate::table::Routes;

/// Settings the request path needs, fixed at start-up.
pub struct Settings {
    pub admin_addr: SocketAddr,
    pub max_body_bytes: usize,
    pub worker_wait: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub allowed_origins: Vec<String>,
    pub allowed_hosts: crate::guard::HostList,
    /// `Some` in rollback mode (`MCP_SUPERVISOR_ENABLED=false`): calls run here.
    pub rollback: Option<mcp_adapter::http::HttpAdapter>,
    /// Audit entries of the calls rollback mode runs (disabled with workers).
    pub audit: mcp_core::audit::Sink,
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

const SESSION_HEADER: &str = "mcp-session-id";
const FORWARDED_PREFIX_HEADER: &str = "x-forwarded-prefix";
/// The client's address, for the worker's audit entries (always the gateway's view).
const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// Sets `name` to `value` in a response header unless it already holds exactly that.
fn set_header(header: &mut ResponseHeader, name: &'static str, value: &str) -> Result<()> {
    if header.headers.get(name).map(|v| v.as_bytes()) != Some(value.as_bytes()) {
        header.insert_header(name, value)?;
    }
    Ok(())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::new()
    }

    /// The request path, phase by phase: the head's Host, Origin and content type
    /// ([`crate::guard`]), admission (route, table checks, declared size), the gateway's own answers, the body check (read whole and
    /// validated, `100 Continue` first when asked), then the backend: workers (wake or
    /// wait, then [`forward`] or Pingora) or, in rollback mode, the call run here.
    /// Both backends share every phase before them, and the metrics and logs after.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let request = admission::Request::read(session.req_header(), ctx);
        let header = session.req_header();
        if let Err(err) = crate::guard::check(
            &ctx.route,
            &header.method,
            &header.headers,
            &self.settings.allowed_hosts,
            &self.settings.allowed_origins,
        ) {
            tracing::info!(event = "gateway.request.refused", request_id = %ctx.request_id, status = err.status, code = err.code, reason = %err.message);
            return reject(session, ctx, err).await;
        }
        let table = self.routes.load();
        if let Some(done) = self
            .answer_hub_route(session, ctx, &table, &request)
            .await?
        {
            return Ok(done);
        }
        let server = match self.admit(session, ctx, &table, &request).await {
            Ok(server) => server,
            Err(err) => return reject(session, ctx, err).await,
        };
        ctx.client_addr = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .map(|addr| addr.ip().to_string());
        if let Some(done) = local::answer_server_route(session, ctx, server, &request).await? {
            return Ok(done);
        }
        if let Err(err) = self.plan(ctx, server, &request) {
            return reject(session, ctx, err).await;
        }
        let checked = match self
            .read_and_check(session, ctx, request.expects_continue)
            .await?
        {
            Ok(checked) => checked,
            Err(err) => return reject(session, ctx, err).await,
        };
        if let Some(adapter) = &self.settings.rollback {
            let audit = &self.settings.audit;
            return crate::rollback::serve(adapter, audit, session, ctx, server, checked).await;
        }
        if let Err(err) = self.await_worker(ctx, server).await {
            return reject(session, ctx, err).await;
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
        match fields.forwarded_for {
            Some(addr) => upstream.insert_header(FORWARDED_FOR_HEADER, addr)?,
            None => {
                upstream.remove_header(FORWARDED_FOR_HEADER);
            }
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

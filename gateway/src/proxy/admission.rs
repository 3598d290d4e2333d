//! Owns the admission phase of the request path: the facts of a request read once from
//! its head ([`Request`]: request id, route, framing, session), whether this
//! gateway takes a server's request at all (table loaded, server registered and active,
//! a declared body within the limit; Host and Origin were checked before, by
//! [`crate::guard`]) and what the request is for the
//! phases after it ([`Gateway::plan`]: the body check, the upstream path, a pinned
//! replica). Nothing here reads a body or picks a worker.

use http::Method;
use mcp_core::request_id;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::body::{drain_body, BodyCheck, DRAIN_LIMIT};
use super::upstream::split_session;
use super::{Ctx, Gateway, SESSION_HEADER};
use crate::errors::GatewayError;
use crate::routes::Route;
use crate::table::{ServerRoute, Table};

/// What the phases after admission need from the request head, read once.
pub(super) struct Request {
    pub(super) method: Method,
    /// `?query`, or empty.
    pub(super) query: String,
    pub(super) content_length: Option<usize>,
    /// HTTP/1.1 with `Expect: 100-continue`: the client waits before its body.
    pub(super) expects_continue: bool,
    /// `Mcp-Session-Id` as the client sent it (the gateway's `r{n}.` form).
    pub(super) session_id: Option<String>,
}

impl Request {
    /// Reads the head; sets the request id (a valid incoming one is kept) and the route.
    pub(super) fn read(header: &RequestHeader, ctx: &mut Ctx) -> Request {
        ctx.request_id = request_id::keep_or_generate(
            header
                .headers
                .get(request_id::HEADER)
                .and_then(|v| v.to_str().ok()),
        );
        ctx.route = Route::parse(&header.method, header.uri.path());
        let text = |name: &http::header::HeaderName| {
            header.headers.get(name).and_then(|v| v.to_str().ok())
        };
        Request {
            method: header.method.clone(),
            query: header
                .uri
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default(),
            content_length: text(&http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            expects_continue: header.version == http::Version::HTTP_11
                && header
                    .headers
                    .get(http::header::EXPECT)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
            session_id: header
                .headers
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

impl Gateway {
    /// Admits a request to one server's route: the table is loaded, the server is
    /// registered and active, and a
    /// declared body is within `MCP_MAX_BODY_BYTES` (a moderately oversized one is
    /// drained, so the client reads the 413). `Err` is the answer.
    pub(super) async fn admit<'t>(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        table: &'t Table,
        request: &Request,
    ) -> Result<&'t ServerRoute, GatewayError> {
        ctx.server_id = ctx.route.server_id().unwrap_or_default().to_owned();
        if !self.routes.is_loaded() {
            let mut err = GatewayError::new(
                503,
                "gateway_starting",
                "the routing table is not loaded yet",
            );
            err.retry_after_secs = Some(1);
            return Err(err);
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
            return Err(GatewayError::not_found(msg));
        };
        if !server.config.as_ref().is_some_and(|c| c.active) {
            let msg = format!("server {:?} is inactive", ctx.server_id);
            return Err(GatewayError::new(403, "server_inactive", msg));
        }
        if let Some(len) = request.content_length {
            if len > self.settings.max_body_bytes {
                if len <= DRAIN_LIMIT {
                    drain_body(session).await;
                }
                return Err(self.payload_too_large());
            }
        }
        Ok(server)
    }

    /// What an admitted request is for: its body check, the path it gets upstream and
    /// the replica a session pins. A tool call's tool must be registered and active.
    pub(super) fn plan(
        &self,
        ctx: &mut Ctx,
        server: &ServerRoute,
        request: &Request,
    ) -> Result<(), GatewayError> {
        let query = &request.query;
        match ctx.route.clone() {
            Route::ToolCall { tool, .. } => {
                let Some(served) = server.tools.get(&tool) else {
                    let msg = format!(
                        "tool {tool:?} of server {:?} is not registered",
                        ctx.server_id
                    );
                    ctx.tool = tool;
                    return Err(GatewayError::not_found(msg));
                };
                if !served.binding.active {
                    let msg = format!("tool {tool:?} is inactive");
                    ctx.tool = tool;
                    return Err(GatewayError::new(403, "tool_inactive", msg));
                }
                ctx.check = BodyCheck::Args(served.clone());
                ctx.upstream_path = format!("/call/{tool}");
                ctx.tool = tool;
            }
            Route::NamedCall { .. } | Route::ServerCompat { .. } => {
                ctx.check = BodyCheck::Named;
                ctx.upstream_path = "/call".into();
            }
            Route::McpStreamable { .. } => {
                if request.method == Method::POST {
                    ctx.check = BodyCheck::JsonRpc;
                }
                if let Some((replica, inner)) =
                    request.session_id.as_deref().and_then(split_session)
                {
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
        Ok(())
    }
}

//! Owns the answers the gateway writes itself, with no backend: its health, the hub's
//! `initialize`, a server's info and tool list from the routing table, route errors
//! (404/405), and every JSON error of the request path (`reject`, `write_error`).

use bytes::Bytes;
use http::{Method, StatusCode};
use mcp_core::request_id;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};

use super::admission::Request;
use super::{Ctx, Gateway};
use crate::errors::GatewayError;
use crate::routes::Route;
use crate::table::{ServerRoute, Table};

impl Gateway {
    /// Routes that need no registered server: the gateway's health, the admin API's
    /// (whose path is set for Pingora to proxy: `Some(false)`), the hub's `initialize`,
    /// and unknown routes or methods. `Some(done)` ends `request_filter` with `done`;
    /// `None` goes on with a server's route.
    pub(super) async fn answer_hub_route(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        table: &Table,
        request: &Request,
    ) -> Result<Option<bool>> {
        let done = match ctx.route {
            Route::Health => {
                let body = json!({
                    "status": if self.routes.is_loaded() { "ok" } else { "starting" },
                    "version": table.version,
                    "servers": table.servers.len(),
                    "mode": if self.settings.rollback.is_some() { "rollback" } else { "workers" },
                });
                respond_json(session, ctx, 200, &body).await?
            }
            Route::Admin => {
                ctx.upstream_path = format!("{}{}", session.req_header().uri.path(), request.query);
                false
            }
            Route::NotFound => {
                reject(
                    session,
                    ctx,
                    GatewayError::not_found("no such route".into()),
                )
                .await?
            }
            Route::MethodNotAllowed => {
                let err = GatewayError::new(
                    405,
                    "method_not_allowed",
                    "method not allowed on this route",
                );
                reject(session, ctx, err).await?
            }
            Route::HubInitialize => {
                let body = json!({
                    "protocolVersion": "2024-11-05",
                    "serverInfo": {"name": "mcp-hub", "version": env!("CARGO_PKG_VERSION")},
                    "capabilities": {"tools": {"listChanged": true}},
                    "servers": sorted_ids(table),
                });
                respond_json(session, ctx, 200, &body).await?
            }
            _ => return Ok(None),
        };
        Ok(Some(done))
    }
}

/// Routes of an admitted server answered from the routing table: its info, the old
/// hub's `initialize` and its tool list. `Some(done)` ends `request_filter`.
pub(super) async fn answer_server_route(
    session: &mut Session,
    ctx: &mut Ctx,
    server: &ServerRoute,
    request: &Request,
) -> Result<Option<bool>> {
    let done = match ctx.route {
        Route::ServerInfo { .. } => {
            if request.method == Method::HEAD {
                return respond_head(session, ctx).await.map(Some);
            }
            let body = json!({
                "id": ctx.server_id,
                "name": server.config.as_ref().map(|c| c.name.clone()),
                "active": true,
                "tools": server.tools.values().filter(|t| t.binding.active).count(),
                "workers": server.workers.len(),
                "transport": {"streamableHttp": format!("/mcp-servers/{}/mcp", ctx.server_id), "sse": format!("/mcp-servers/{}/sse", ctx.server_id)},
            });
            respond_json(session, ctx, 200, &body).await?
        }
        Route::ServerInitialize { .. } => {
            let body = mcp_adapter::events::server_info(&ctx.server_id);
            respond_json(session, ctx, 200, &body).await?
        }
        Route::ToolsList { .. } => {
            let tools = mcp_adapter::tool::active_listing(&server.tools);
            respond_json(session, ctx, 200, &json!({"tools": tools})).await?
        }
        _ => return Ok(None),
    };
    Ok(Some(done))
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

/// Answers with a gateway error and ends the request (`Ok(true)` for `request_filter`).
pub(crate) async fn reject(
    session: &mut Session,
    ctx: &mut Ctx,
    error: GatewayError,
) -> Result<bool> {
    write_error(session, ctx, &error).await?;
    Ok(true)
}

pub(super) async fn write_error(
    session: &mut Session,
    ctx: &mut Ctx,
    error: &GatewayError,
) -> Result<()> {
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

pub(super) async fn respond_head(session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
    let mut header = ResponseHeader::build(StatusCode::OK, Some(2))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(request_id::HEADER, ctx.request_id.as_str())?;
    ctx.status = 200;
    session
        .write_response_header(Box::new(header), true)
        .await?;
    Ok(true)
}

//! Owns rollback mode (`MCP_SUPERVISOR_ENABLED=false`, the PRD's rollback path): a
//! backend chosen after admission and the body check, so both modes share those phases,
//! the request id, `100 Continue`, metrics and logs. Tool calls run here on the workers'
//! own call engine (`mcp_adapter`: the same adapter and the same event stream, not a
//! copy), so clients see the same SSE events with no workers at all, and
//! the same audit entries (transport `rollback`). The MCP transports
//! need a worker's sessions: they get 503 `rollback_mode`.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use mcp_adapter::http::HttpAdapter;
use mcp_adapter::invoke::Prepared;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Map, Value};

use crate::errors::GatewayError;
use crate::proxy::{reject, respond_json, Checked, Ctx};
use crate::table::ServerRoute;

/// Serves an admitted, checked request in the gateway (`Ok(true)`: answered).
pub async fn serve(
    adapter: &HttpAdapter,
    audit: &mcp_core::audit::Sink,
    session: &mut Session,
    ctx: &mut Ctx,
    server: &ServerRoute,
    checked: Checked,
) -> Result<bool> {
    if !ctx.route().is_call() {
        let msg = "MCP transports need workers; the hub runs in rollback mode (MCP_SUPERVISOR_ENABLED=false)";
        return reject(session, ctx, GatewayError::new(503, "rollback_mode", msg)).await;
    }
    let (tool, args) = match checked {
        Checked::Call { tool, args } => (tool, args),
        Checked::Method(method) => return answer_method(session, ctx, server, &method).await,
        // A call route always has a body check.
        Checked::Unchecked | Checked::JsonRpc => {
            return reject(
                session,
                ctx,
                GatewayError::not_found("no such route".into()),
            )
            .await
        }
    };
    // Admission found the server registered and active, and the body check the tool
    // active and the arguments valid: what `invoke::prepare` would check again.
    let Some(config) = server.config.clone() else {
        let msg = format!("server {:?} is not registered", ctx.server_id());
        return reject(session, ctx, GatewayError::not_found(msg)).await;
    };
    let args = match args {
        Some(Value::Object(args)) => args,
        _ => Map::new(),
    };
    let caller = mcp_adapter::audit::Caller {
        transport: "rollback",
        addr: ctx.client_addr.clone(),
        session: None,
    };
    let prepared = Prepared {
        server: config,
        tool: Arc::clone(&tool),
        args,
        audit: audit.is_enabled().then(|| mcp_adapter::audit::Ticket {
            sink: audit.clone(),
            caller,
        }),
    };
    ctx.log_accepted();

    let mut header = ResponseHeader::build(StatusCode::OK, Some(4))?;
    header.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    header.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    header.insert_header("x-accel-buffering", "no")?;
    header.insert_header(mcp_core::request_id::HEADER, ctx.request_id())?;
    ctx.set_status(200);
    session
        .write_response_header(Box::new(header), false)
        .await?;
    let frames = mcp_adapter::events::event_stream(
        adapter.clone(),
        ctx.server_id().to_owned(),
        prepared,
        ctx.request_id().to_owned(),
    );
    futures::pin_mut!(frames);
    while let Some(frame) = frames.next().await {
        session.write_response_body(Some(frame), false).await?;
    }
    session
        .write_response_body(Some(Bytes::new()), true)
        .await?;
    Ok(true)
}

/// `{"method": ...}` on `POST /mcp/{id}`, answered as a worker answers it.
async fn answer_method(
    session: &mut Session,
    ctx: &mut Ctx,
    server: &ServerRoute,
    method: &str,
) -> Result<bool> {
    match method {
        "initialize" => {
            let body = mcp_adapter::events::server_info(ctx.server_id());
            respond_json(session, ctx, 200, &body).await
        }
        "tools.list" | "tools/list" => {
            let tools = mcp_adapter::tool::active_listing(&server.tools);
            respond_json(session, ctx, 200, &json!({"tools": tools})).await
        }
        other => {
            let err = GatewayError::new(400, "bad_request", format!("unknown method {other:?}"));
            reject(session, ctx, err).await
        }
    }
}

//! Owns rollback mode (`MCP_SUPERVISOR_ENABLED=false`, the PRD's rollback path): tool
//! calls run inside the gateway with the worker's own HTTP adapter and event stream
//! (shared code, not a copy), so clients see the same SSE events with no workers at all.

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use mcp_adapter::http::HttpAdapter;
use mcp_adapter::invoke::Rejection;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};

use crate::errors::GatewayError;
use crate::proxy::{parse_object, reject, respond_json, BodyCheck, Ctx, Gateway};

pub async fn serve(
    gateway: &Gateway,
    adapter: &HttpAdapter,
    session: &mut Session,
    ctx: &mut Ctx,
) -> Result<bool> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > gateway.settings.max_body_bytes {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                session.as_downstream_mut().drain_request_body(),
            )
            .await;
            let msg = format!(
                "the body is larger than {} bytes",
                gateway.settings.max_body_bytes
            );
            return reject(
                session,
                ctx,
                GatewayError::new(413, "payload_too_large", msg),
            )
            .await;
        }
        body.extend_from_slice(&chunk);
    }
    ctx.set_args_size(body.len());
    let value = match parse_object(&body) {
        Ok(value) => value,
        Err(err) => return reject(session, ctx, err).await,
    };
    let (tool, args) = match ctx.check() {
        BodyCheck::Args(tool) => (tool, value.get("args").cloned().unwrap_or(Value::Null)),
        BodyCheck::Named => {
            match value.get("method").and_then(Value::as_str) {
                Some("initialize") => {
                    return respond_json(
                        session,
                        ctx,
                        200,
                        &mcp_adapter::events::server_info(ctx.server_id()),
                    )
                    .await
                }
                Some("tools.list" | "tools/list") => {
                    let table = gateway.routes.load();
                    let tools: Vec<Value> = table
                        .servers
                        .get(ctx.server_id())
                        .map(|s| {
                            let mut tools: Vec<_> = s.tools.values().filter(|t| t.binding.active).collect();
                            tools.sort_by(|a, b| a.binding.name.cmp(&b.binding.name));
                            tools.iter().map(|t| json!({"name": t.binding.name, "description": t.binding.description, "inputSchema": t.binding.input_schema})).collect()
                        })
                        .unwrap_or_default();
                    return respond_json(session, ctx, 200, &json!({"tools": tools})).await;
                }
                Some(other) => {
                    return reject(
                        session,
                        ctx,
                        GatewayError::new(400, "bad_request", format!("unknown method {other:?}")),
                    )
                    .await
                }
                None => {}
            }
            let Some(name) = value.get("name").and_then(Value::as_str) else {
                return reject(
                    session,
                    ctx,
                    GatewayError::new(
                        400,
                        "bad_request",
                        "the body needs a tool \"name\" and \"args\"",
                    ),
                )
                .await;
            };
            ctx.set_tool(name);
            match gateway.lookup_tool(ctx.server_id(), name) {
                Ok(tool) => (
                    tool,
                    value
                        .get("args")
                        .or_else(|| value.get("arguments"))
                        .cloned()
                        .unwrap_or(Value::Null),
                ),
                Err(err) => return reject(session, ctx, err).await,
            }
        }
        BodyCheck::None | BodyCheck::JsonRpc => {
            return reject(
                session,
                ctx,
                GatewayError::not_found("no such route".into()),
            )
            .await
        }
    };
    if let Err(err) = gateway.check_args(&tool, Some(&args), ctx) {
        return reject(session, ctx, err).await;
    }
    ctx.log_accepted();
    let Some(server) = gateway
        .routes
        .load()
        .servers
        .get(ctx.server_id())
        .and_then(|s| s.config.clone())
    else {
        return reject(
            session,
            ctx,
            GatewayError::not_found(format!("server {:?} is not registered", ctx.server_id())),
        )
        .await;
    };
    let prepared = match mcp_adapter::invoke::prepare(ctx.server_id(), server, tool, args) {
        Ok(prepared) => prepared,
        Err(rejection) => return reject(session, ctx, from_rejection(&rejection)).await,
    };

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
    use futures::StreamExt;
    while let Some(frame) = frames.next().await {
        session.write_response_body(Some(frame), false).await?;
    }
    session
        .write_response_body(Some(Bytes::new()), true)
        .await?;
    Ok(true)
}

fn from_rejection(rejection: &Rejection) -> GatewayError {
    let mut err = GatewayError::new(
        rejection.http_status(),
        rejection.code(),
        rejection.to_string(),
    );
    if let Rejection::InvalidArguments(violations) = rejection {
        err.details = serde_json::to_value(violations).ok().map(Box::new);
    }
    err
}

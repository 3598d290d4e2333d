//! Owns the body phase of the request path: what a route's body must satisfy
//! ([`BodyCheck`]), reading it whole under `MCP_MAX_BODY_BYTES` (chunked or not, 413
//! past it, the rest drained so the client sees the answer), and validating it against
//! the tool's compiled schema (400 with each violation's JSON pointer). An MCP message
//! is read and held but answered by the worker, refusals included. Both backends get
//! the result, [`Checked`]; nothing here picks a worker or runs a call.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mcp_adapter::tool::ServedTool;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::Value;

use super::ctx::Accepted;
use super::{Ctx, Gateway};
use crate::errors::GatewayError;

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

/// What a checked body turned out to be, for the backend that serves it.
pub enum Checked {
    /// The route has no body check (its body, if any, streams through unread).
    Unchecked,
    /// A hub call: the tool and its arguments, valid against the tool's schema
    /// (`None` when absent: `{}`).
    Call {
        tool: Arc<ServedTool>,
        args: Option<Value>,
    },
    /// `POST /mcp/{id}` with `{"method": ...}`: the server's own answer, not a call.
    Method(String),
    /// JSON-RPC messages whose `tools/call`s all passed.
    JsonRpc,
}

/// Oversized bodies up to this size are read and dropped before the 413 answer.
pub(super) const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads the rest of the request body, whatever its framing; `None` once it outgrows
/// `limit` (the rest is then unread). Read errors are the client's.
pub(super) async fn read_whole_body(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
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
pub(super) async fn drain_body(session: &mut Session) {
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

impl Gateway {
    /// The body phase: on a route with a body check, the whole body is read and
    /// validated now, before any backend sees the request (a worker woken, waited for or
    /// connected to, or a call run here in rollback mode), whatever its size or framing.
    /// It is then held in `ctx.held_body` (so a failed connect can be retried) for
    /// [`super::forward`]. A client that waits for `100 Continue` before sending its body
    /// (curl does past 1 KiB) gets it here. `Ok(Err(..))` is the refusal to answer.
    pub(super) async fn read_and_check(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        expects_continue: bool,
    ) -> Result<Result<Checked, GatewayError>> {
        if matches!(ctx.check, BodyCheck::None) {
            return Ok(Ok(Checked::Unchecked));
        }
        if expects_continue {
            session
                .as_downstream_mut()
                .write_continue_response()
                .await?;
        }
        let Some(whole) = read_whole_body(session, self.settings.max_body_bytes).await? else {
            drain_body(session).await;
            return Ok(Err(self.payload_too_large()));
        };
        ctx.args_size = whole.len();
        match self.check_body(&whole, ctx) {
            Ok(checked) => {
                ctx.held_body = Some(whole);
                Ok(Ok(checked))
            }
            Err(err) => {
                // A batch's earlier calls may have passed.
                ctx.log_accepted();
                tracing::info!(event = "gateway.request.refused", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool, status = err.status, code = err.code);
                Ok(Err(err))
            }
        }
    }

    pub(super) fn payload_too_large(&self) -> GatewayError {
        let msg = format!(
            "the body is larger than {} bytes",
            self.settings.max_body_bytes
        );
        GatewayError::new(413, "payload_too_large", msg)
    }

    /// The 413 for a body that grew past `MCP_MAX_BODY_BYTES` while streaming.
    pub(super) fn too_large(&self, ctx: &mut Ctx) -> Box<Error> {
        ctx.pending_error = Some(self.payload_too_large());
        Error::explain(HTTPStatus(413), "body too large")
    }

    /// Validates a complete body; `Err` is the answer to send instead of proxying.
    fn check_body(&self, whole: &[u8], ctx: &mut Ctx) -> Result<Checked, GatewayError> {
        match ctx.check.clone() {
            BodyCheck::None => Ok(Checked::Unchecked),
            BodyCheck::Args(tool) => {
                let mut value = parse_object(whole)?;
                let args = take_args(&mut value, "args");
                self.check_args(&tool, args.as_ref(), ctx)?;
                Ok(Checked::Call { tool, args })
            }
            BodyCheck::Named => {
                let mut value = parse_object(whole)?;
                if value.get("jsonrpc").is_some() {
                    return Err(not_the_mcp_endpoint(&ctx.server_id, &value));
                }
                if let Some(method) = value.get("method") {
                    return Ok(Checked::Method(
                        method.as_str().unwrap_or_default().to_owned(),
                    ));
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
                let args =
                    take_args(&mut value, "args").or_else(|| take_args(&mut value, "arguments"));
                self.check_args(&tool, args.as_ref(), ctx)?;
                Ok(Checked::Call { tool, args })
            }
            BodyCheck::JsonRpc => {
                // Held, not refused: the worker answers every MCP message, since only it
                // knows the session (an unknown one is a 404 before anything else), the
                // version it negotiated (a JSON-RPC error -32602, or from 2025-11-25 a
                // tool result with isError) and, on the old transport, the stream the
                // answer must go to. A valid `tools/call` is `accepted` here as on the
                // hub's routes; an invalid one never reaches the REST API, which the
                // worker's own check keeps from it.
                if let Ok(value) = serde_json::from_slice::<Value>(whole) {
                    if value.get("method").and_then(Value::as_str) == Some("tools/call") {
                        let params = value.get("params");
                        if let Some(name) =
                            params.and_then(|p| p.get("name")).and_then(Value::as_str)
                        {
                            ctx.tool = name.to_owned();
                            if let Ok(tool) = self.lookup_tool(&ctx.server_id, name) {
                                let args = params.and_then(|p| p.get("arguments"));
                                if self.check_args(&tool, args, ctx).is_err() {
                                    tracing::info!(event = "gateway.request.invalid_arguments", request_id = %ctx.request_id, server = %ctx.server_id, tool = %ctx.tool, answered_by = "worker");
                                }
                            }
                        }
                    }
                }
                Ok(Checked::JsonRpc)
            }
        }
    }

    pub(super) fn lookup_tool(
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
    pub(super) fn check_args(
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

/// A JSON-RPC message (an MCP client pointed at the hub's call API): a JSON-RPC error
/// that names the server's MCP endpoints, instead of the compatibility answer that
/// would look like success.
fn not_the_mcp_endpoint(server_id: &str, message: &Value) -> GatewayError {
    let mut err = GatewayError::new(
        400,
        "not_mcp_endpoint",
        format!(
            "this is the hub's call API, not an MCP endpoint: connect MCP clients to /mcp-servers/{server_id}/mcp (Streamable HTTP) or /mcp-servers/{server_id}/sse (HTTP+SSE)"
        ),
    );
    let id = match message.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    err.jsonrpc_id = Some(Box::new(id));
    err.jsonrpc_code = -32600;
    err
}

/// Moves `key` out of a parsed body object (`parse_object` gives only objects).
fn take_args(value: &mut Value, key: &str) -> Option<Value> {
    value.as_object_mut()?.remove(key)
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

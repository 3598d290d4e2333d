//! Owns one tool call from arguments to deltas, shared by every transport (the hub call
//! protocol, MCP Streamable HTTP, the old HTTP+SSE transport) and by the gateway's
//! rollback mode: check that the server and tool are active, validate the arguments
//! ([`prepare`]), then run the HTTP adapter ([`execute`]). Transports only translate.

use std::sync::Arc;
use std::time::Instant;

use mcp_core::model::ServerConfig;
use mcp_core::validate::ArgumentViolation;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::http as adapter;
use crate::tool::ServedTool;

/// Why a call was refused before any REST call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("server {0:?} is not registered")]
    UnknownServer(String),
    #[error("tool {0:?} is not registered")]
    UnknownTool(String),
    #[error("server {0:?} is inactive")]
    InactiveServer(String),
    #[error("tool {0:?} is inactive")]
    InactiveTool(String),
    #[error("arguments must be a JSON object")]
    ArgsNotObject,
    #[error("arguments do not match the tool's inputSchema")]
    InvalidArguments(Vec<ArgumentViolation>),
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::UnknownServer(_) => "server_not_found",
            Rejection::UnknownTool(_) => "tool_not_found",
            Rejection::InactiveServer(_) => "server_inactive",
            Rejection::InactiveTool(_) => "tool_inactive",
            Rejection::ArgsNotObject | Rejection::InvalidArguments(_) => "invalid_arguments",
        }
    }

    /// HTTP status of the hub call protocol for this rejection.
    pub fn http_status(&self) -> u16 {
        match self {
            Rejection::UnknownServer(_) | Rejection::UnknownTool(_) => 404,
            Rejection::InactiveServer(_) | Rejection::InactiveTool(_) => 403,
            Rejection::ArgsNotObject | Rejection::InvalidArguments(_) => 400,
        }
    }
}

/// A call that passed every check.
pub struct Prepared {
    pub server: Arc<ServerConfig>,
    pub tool: Arc<ServedTool>,
    pub args: Map<String, Value>,
    /// Where [`execute`] records the call's audit entry (`None`: not audited); the
    /// transport sets it with who called.
    pub audit: Option<crate::audit::Ticket>,
}

/// Checks a call to `tool` of `server`: both active, arguments (`null` counts as `{}`)
/// an object that matches the tool's schema.
pub fn prepare(
    server_id: &str,
    server: Arc<ServerConfig>,
    tool: Arc<ServedTool>,
    args: Value,
) -> Result<Prepared, Rejection> {
    let tool_name = tool.binding.name.as_str();
    if !server.active {
        return Err(Rejection::InactiveServer(server_id.to_owned()));
    }
    if !tool.binding.active {
        return Err(Rejection::InactiveTool(tool_name.to_owned()));
    }
    let args = match args {
        Value::Null => Value::Object(Map::new()),
        obj @ Value::Object(_) => obj,
        _ => return Err(Rejection::ArgsNotObject),
    };
    let violations = mcp_core::validate::check_arguments(&tool.validator, &args);
    if !violations.is_empty() {
        return Err(Rejection::InvalidArguments(violations));
    }
    let Value::Object(args) = args else {
        return Err(Rejection::ArgsNotObject);
    };
    Ok(Prepared {
        server,
        tool,
        args,
        audit: None,
    })
}

/// Runs a prepared call with `adapter` (the worker's, or the gateway's in rollback
/// mode). Logs `tool.call.failed` when the adapter fails: `error` (the chain on one line)
/// and `traceback` (one `caused by:` line per cause, [`mcp_core::log::traceback`]).
pub async fn execute(
    adapter: &adapter::HttpAdapter,
    server_id: &str,
    prepared: &Prepared,
    request_id: &str,
    deltas: &mpsc::Sender<adapter::Delta>,
) -> Result<(adapter::Outcome, f64), adapter::Error> {
    let started = Instant::now();
    let endpoint = adapter::Endpoint {
        server_id,
        server: &prepared.server,
        tool: &prepared.tool.binding,
        pick: prepared.tool.pick.as_ref(),
    };
    let result = match &prepared.audit {
        None => {
            let sink = adapter::Deltas {
                tx: deltas,
                bytes: None,
            };
            adapter
                .call(endpoint, &prepared.args, request_id, sink)
                .await
        }
        Some(ticket) => {
            // Recorded when the call ends, or (status `cancelled`) when this future is
            // dropped first: every call through here leaves exactly one entry.
            let mut recording = crate::audit::Recording::start(
                ticket,
                server_id,
                &prepared.server,
                &prepared.tool.binding,
                &prepared.args,
                request_id,
            );
            let result =
                audited_call(adapter, endpoint, prepared, request_id, deltas, &recording).await;
            match &result {
                Ok(outcome) => recording.finish(Some(outcome.status), None),
                Err(err) => recording.finish(err.upstream_status(), Some(err.code())),
            }
            result
        }
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(outcome) => Ok((outcome, latency_ms)),
        Err(err) => {
            if !matches!(err, adapter::Error::Cancelled) {
                let traceback = mcp_core::log::traceback(&err);
                tracing::error!(event = "tool.call.failed", request_id, server = %server_id, tool = %prepared.tool.binding.name,
                    error = &err as &dyn std::error::Error, code = err.code(), stage = "http_adapter", latency = latency_ms,
                    traceback = %traceback);
            }
            Err(err)
        }
    }
}

/// The call with its deltas' bytes counted into the recording as they go out (the
/// entry's `result_bytes`, also when the call fails midway).
async fn audited_call(
    adapter: &adapter::HttpAdapter,
    endpoint: adapter::Endpoint<'_>,
    prepared: &Prepared,
    request_id: &str,
    deltas: &mpsc::Sender<adapter::Delta>,
    recording: &crate::audit::Recording,
) -> Result<adapter::Outcome, adapter::Error> {
    let sink = adapter::Deltas {
        tx: deltas,
        bytes: Some(&recording.result_bytes),
    };
    adapter
        .call(endpoint, &prepared.args, request_id, sink)
        .await
}

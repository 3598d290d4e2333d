//! Owns MCP itself for the worker: the `ServerHandler` whose tool list is this server's
//! registry tools (dynamic, so `list_tools`/`call_tool` are written by hand), and the
//! Streamable HTTP endpoint at `/mcp` (rmcp, sessions kept in memory, both the
//! 2025-11-25 `initialize` handshake and the stateless 2026-07-28 `server/discover`).
//! `notifications/tools/list_changed` when the tool list changes reaches every session
//! (2025-11-25) and every open `subscriptions/listen` stream (2026-07-28).
//! A POST's message passes [`crate::jsonrpc`]'s checks before rmcp sees it ([`precheck`]).
//! Arguments that fail a tool's schema are a JSON-RPC error -32602 for a session that
//! negotiated a version before 2025-11-25, and a tool result with `isError: true` from
//! 2025-11-25 on (that version asks for it, so a model can correct its call).

use std::sync::Arc;

use axum::Router;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig as McpServerInfo,
    SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::WorkerState;
use mcp_adapter::http::Delta;
use mcp_adapter::invoke::{self, Rejection};

/// One per session (rmcp builds one per session through the factory); cheap to clone.
#[derive(Clone)]
pub struct McpHandler {
    pub state: Arc<WorkerState>,
    /// Cancelled on shutdown: stops the per-session notification tasks and listen streams.
    pub shutdown: CancellationToken,
    /// Set for a session of the old HTTP+SSE transport: its audit caller (session id and
    /// the address that opened it). `None`: Streamable HTTP, read from each request.
    pub legacy_caller: Option<mcp_adapter::audit::Caller>,
}

impl McpHandler {
    fn tools(&self) -> Vec<Tool> {
        let served = self.state.current();
        if !served.config.as_ref().is_some_and(|c| c.active) {
            return Vec::new();
        }
        served
            .tools
            .values()
            .filter(|t| t.binding.active)
            .map(|t| {
                let schema = match &t.binding.input_schema {
                    Value::Object(obj) => obj.clone(),
                    _ => serde_json::Map::new(),
                };
                Tool::new(
                    t.binding.name.clone(),
                    t.binding.description.clone(),
                    Arc::new(schema),
                )
            })
            .collect()
    }
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> McpServerInfo {
        McpServerInfo::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(
            self.state.server_id.clone(),
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let request_id = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(mcp_core::request_id::HEADER))
            .and_then(|v| v.to_str().ok())
            .map(|id| mcp_core::request_id::keep_or_generate(Some(id)))
            .unwrap_or_else(mcp_core::request_id::generate);
        let args = request.arguments.map(Value::Object).unwrap_or(Value::Null);
        let caller = self.legacy_caller.clone().unwrap_or_else(|| {
            let headers = context
                .extensions
                .get::<http::request::Parts>()
                .map(|parts| &parts.headers);
            let header = |name: &str| {
                headers
                    .and_then(|h| h.get(name))
                    .and_then(|v| v.to_str().ok())
            };
            mcp_adapter::audit::Caller {
                transport: "mcp",
                addr: mcp_adapter::audit::Caller::forwarded_for(header("x-forwarded-for")),
                session: header(SESSION_HEADER).map(str::to_owned),
            }
        });
        let prepared = match self.state.prepare_from(caller, &request.name, args) {
            Ok(prepared) => prepared,
            Err(Rejection::UnknownTool(name)) => {
                return Err(McpError::invalid_params(
                    format!("unknown tool {name:?}"),
                    None,
                ));
            }
            Err(Rejection::InvalidArguments(violations)) => {
                let version = context.protocol_version();
                if !reports_input_errors_as_results(version.as_ref().map(|v| v.as_str())) {
                    let data =
                        serde_json::json!({"violations": violations, "request_id": request_id});
                    return Err(McpError::invalid_params(
                        "arguments do not match the tool's inputSchema",
                        Some(data),
                    ));
                }
                let lines: Vec<String> = violations
                    .iter()
                    .map(|v| {
                        format!(
                            "{}: {}",
                            if v.pointer.is_empty() {
                                "/"
                            } else {
                                &v.pointer
                            },
                            v.message
                        )
                    })
                    .collect();
                let text = format!(
                    "invalid_arguments: arguments do not match the tool's inputSchema\n{}",
                    lines.join("\n")
                );
                return Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into());
            }
            Err(rejection) => {
                return Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "{}: {rejection}",
                    rejection.code()
                ))])
                .into());
            }
        };
        let (tx, mut rx) = mpsc::channel::<Delta>(16);
        let collect = async move {
            let mut deltas = Vec::new();
            while let Some(delta) = rx.recv().await {
                deltas.push(delta.into_value());
            }
            deltas
        };
        let (result, deltas) = tokio::join!(
            async {
                let result = invoke::execute(
                    &self.state.adapter,
                    &self.state.server_id,
                    &prepared,
                    &request_id,
                    &tx,
                )
                .await;
                drop(tx);
                result
            },
            collect
        );
        match result {
            Ok(_) => Ok(success(deltas).into()),
            Err(err) => {
                let mut text = format!("{}: {}", err.code(), err.message());
                if let mcp_adapter::http::Error::Status { body, .. } = &err {
                    text.push('\n');
                    text.push_str(&match body {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                }
                Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into())
            }
        }
    }

    /// `subscriptions/listen` (2026-07-28): tool-list changes are the only notifications
    /// this server has. rmcp intersects this with the request and with the advertised
    /// capabilities (`tools.listChanged`), then acknowledges before calling [`Self::listen`].
    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    /// One listen stream: `notifications/tools/list_changed` on it each time the served
    /// tool list changes, until the client cancels or disconnects (rmcp cancels the
    /// request's token when the response stream is dropped) or the worker shuts down.
    /// Returning `Ok` sends the final result, the spec's graceful close; after a
    /// disconnect or at shutdown nobody is there to read it and the stream just ends.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let wants_tools = context.accepted().tools_list_changed == Some(true);
        let mut changes = self.state.watch_tools();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                () = self.shutdown.cancelled() => return Ok(()),
                changed = changes.changed(), if wants_tools => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if let Err(err) = context.sink().notify_tool_list_changed().await {
                        tracing::debug!(event = "worker.listen.closed", server = %self.state.server_id, error = %err);
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let peer = context.peer.clone();
        let mut changes = self.state.watch_tools();
        changes.mark_unchanged();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = changes.changed() => {
                        if changed.is_err() || peer.notify_tool_list_changed().await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// Whether a session of this protocol version gets input validation failures as a tool
/// result with `isError: true` (2025-11-25 and later: dates compare as text) rather
/// than a JSON-RPC error. Unknown (no version): the current behaviour, a result.
pub fn reports_input_errors_as_results(version: Option<&str>) -> bool {
    version.is_none_or(|v| v >= "2025-11-25")
}

/// Deltas as MCP content: one text block per delta; a single JSON object is also the
/// structured result (MCP's `structuredContent` is an object, so arrays and scalars
/// travel as text only).
fn success(deltas: Vec<Value>) -> CallToolResult {
    let structured = match deltas.as_slice() {
        [single] if single.is_object() => Some(single.clone()),
        _ => None,
    };
    let content = deltas
        .into_iter()
        .map(|delta| match delta {
            Value::String(text) => ContentBlock::text(text),
            other => ContentBlock::text(other.to_string()),
        })
        .collect();
    let mut result = CallToolResult::success(content);
    result.structured_content = structured;
    result
}

/// `/mcp`: MCP Streamable HTTP.
pub fn router(state: Arc<WorkerState>, config: &Config, shutdown: CancellationToken) -> Router {
    let handler = McpHandler {
        state,
        shutdown: shutdown.clone(),
        legacy_caller: None,
    };
    let mut http_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.allowed_hosts.clone())
        .with_cancellation_token(shutdown.child_token());
    if !config.allowed_origins.is_empty() {
        http_config = http_config.with_allowed_origins(config.allowed_origins.clone());
    }
    let sessions = Arc::new(LocalSessionManager::default());
    let service =
        StreamableHttpService::new(move || Ok(handler.clone()), sessions.clone(), http_config);
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(sessions, precheck))
        // Host and Origin before anything reads the body (rmcp checks them again).
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(crate::host_check::Allowed::new(
                &config.allowed_hosts,
                &config.allowed_origins,
            )),
            crate::host_check::guard,
        ))
}

/// Largest message read by [`precheck`] (the gateway's own limit is lower).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A POST's message checked before rmcp reads it ([`crate::jsonrpc`]): not JSON (400,
/// -32700), not one JSON-RPC message (400, -32600), then, once the session is known to
/// exist (rmcp answers 404 for one that does not, and "Session ID is required" for a
/// session request without one), params that name the wrong problem in rmcp (200 with
/// the request's -32602). Requests rmcp refuses on their headers (Accept, Content-Type)
/// pass to it untouched.
async fn precheck(
    axum::extract::State(sessions): axum::extract::State<Arc<LocalSessionManager>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use rmcp::transport::streamable_http_server::session::SessionManager;
    let headers = request.headers();
    let json_body = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        });
    if request.method() != http::Method::POST || !json_body {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": crate::jsonrpc::INVALID_REQUEST,
                "message": format!("the message is larger than {MAX_MESSAGE_BYTES} bytes, or its body broke off")}});
            return (http::StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
        }
    };
    let message = match crate::jsonrpc::envelope(&bytes) {
        Ok(message) => message,
        Err(refusal) => {
            return (http::StatusCode::BAD_REQUEST, axum::Json(refusal.body())).into_response()
        }
    };
    if let Err(refusal) = crate::jsonrpc::params(&message) {
        let session = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok());
        let answer_now = match session {
            Some(id) => sessions.has_session(&Arc::from(id)).await.unwrap_or(false),
            // No session: a handshake, or a stateless (2026-07-28) request that names its
            // version itself; any other request is rmcp's "Session ID is required".
            None => message.method() == Some("initialize") || names_its_version(&message),
        };
        if answer_now {
            return (http::StatusCode::OK, axum::Json(refusal.body())).into_response();
        }
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

const SESSION_HEADER: &str = "mcp-session-id";

/// A 2026-07-28 request: its `_meta` names the protocol version, no session needed.
fn names_its_version(message: &crate::jsonrpc::Message) -> bool {
    message
        .value
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .is_some()
}

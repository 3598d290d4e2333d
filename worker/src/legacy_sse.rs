//! Owns the older MCP HTTP+SSE transport (protocol 2024-11-05), which rmcp no longer
//! ships: `GET /sse` opens a session whose first event, `endpoint`, names the URL to
//! POST to (`{X-Forwarded-Prefix}/messages?session_id=...`, so it works through the
//! gateway); `POST /messages` carries one JSON-RPC message (202); answers and
//! notifications arrive on the SSE stream as `message` events, errors to a request
//! included (its params refused by [`crate::jsonrpc`], its arguments by the tool's
//! schema): old-transport clients read replies only there. Only a body that is not one
//! JSON-RPC message at all is refused in the POST's own answer (400, -32700 or -32600).
//! Each session runs the same [`McpHandler`] over an in-memory (Sink, Stream)
//! transport.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ErrorCode, ErrorData, RequestId, ServerJsonRpcMessage};
use rmcp::ServiceExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::mcp::McpHandler;
use crate::state::WorkerState;

/// One open session's two ends: into its server loop, and onto its SSE stream (for the
/// errors answered before the loop, which must reach the client where its replies do).
#[derive(Clone)]
struct SessionEnds {
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    to_client: mpsc::Sender<ServerJsonRpcMessage>,
}

/// Open sessions: id -> its ends. A std `Mutex`: held for a map operation, never
/// across an await.
#[derive(Clone, Default)]
struct Sessions(Arc<Mutex<HashMap<String, SessionEnds>>>);

impl Sessions {
    fn insert(&self, id: String, ends: SessionEnds) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(id, ends);
        }
    }
    fn get(&self, id: &str) -> Option<SessionEnds> {
        self.0.lock().ok()?.get(id).cloned()
    }
    fn remove(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(id);
        }
    }
}

#[derive(Clone)]
struct LegacyState {
    handler: McpHandler,
    sessions: Sessions,
    shutdown: CancellationToken,
}

/// `/sse` and `/messages`, behind the same Host/Origin checks as `/mcp`.
pub fn router(
    state: Arc<WorkerState>,
    allowed: crate::host_check::Allowed,
    shutdown: CancellationToken,
) -> Router {
    let legacy = LegacyState {
        handler: McpHandler {
            state,
            shutdown: shutdown.clone(),
            legacy_caller: None,
        },
        sessions: Sessions::default(),
        shutdown,
    };
    Router::new()
        .route("/sse", get(open))
        .route("/messages", post(message))
        .with_state(legacy)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(allowed),
            crate::host_check::guard,
        ))
}

/// Removes the session and stops its server loop when the SSE client goes away.
struct SessionGuard {
    id: String,
    sessions: Sessions,
    stop: CancellationToken,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.remove(&self.id);
        self.stop.cancel();
    }
}

fn prefix_of(headers: &HeaderMap) -> String {
    headers
        .get("x-forwarded-prefix")
        .and_then(|v| v.to_str().ok())
        // A path on this origin only: `//host` would make `endpoint` point elsewhere.
        .filter(|p| {
            p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains(['\r', '\n', '?', '#', ' ', '\\'])
        })
        .map(|p| p.trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

async fn open(State(legacy): State<LegacyState>, headers: HeaderMap) -> Response {
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let (to_server_tx, to_server_rx) = mpsc::channel::<ClientJsonRpcMessage>(64);
    let (to_client_tx, to_client_rx) = mpsc::channel::<ServerJsonRpcMessage>(64);
    legacy.sessions.insert(
        session_id.clone(),
        SessionEnds {
            to_server: to_server_tx,
            to_client: to_client_tx.clone(),
        },
    );
    let stop = legacy.shutdown.child_token();
    let mut handler = legacy.handler.clone();
    handler.legacy_caller = Some(mcp_adapter::audit::Caller {
        transport: "sse",
        addr: mcp_adapter::audit::Caller::forwarded_for(
            headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        ),
        session: Some(session_id.clone()),
    });
    let loop_stop = stop.clone();
    let loop_id = session_id.clone();
    let loop_sessions = legacy.sessions.clone();
    tokio::spawn(async move {
        match handler
            .serve_with_ct((to_client_tx, to_server_rx), loop_stop)
            .await
        {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(err) => {
                tracing::debug!(event = "worker.sse.session_failed", session_id = %loop_id, error = %err)
            }
        }
        // The map's ends keep the stream open: a loop that ended takes them along.
        loop_sessions.remove(&loop_id);
    });

    let endpoint = format!("{}/messages?session_id={session_id}", prefix_of(&headers));
    let guard = SessionGuard {
        id: session_id,
        sessions: legacy.sessions.clone(),
        stop,
    };
    let first = futures::stream::once(async move {
        Bytes::from(format!("event: endpoint\ndata: {endpoint}\n\n"))
    });
    let messages = to_client_rx.map(|message| {
        let data = serde_json::to_string(&message).unwrap_or_else(|_| "{}".into());
        Bytes::from(format!("event: message\ndata: {data}\n\n"))
    });
    let keep_alive = futures::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_secs(15)).await;
        Some((Bytes::from_static(b": keep-alive\n\n"), ()))
    });
    let shutdown = legacy.shutdown.clone();
    let body = first
        .chain(futures::stream::select(messages, keep_alive))
        .take_until(async move { shutdown.cancelled().await })
        .map(move |frame| {
            let _keep = &guard;
            Ok::<_, Infallible>(frame)
        });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[derive(Deserialize)]
struct MessageQuery {
    session_id: Option<String>,
    #[serde(rename = "sessionId")]
    session_id_camel: Option<String>,
}

async fn message(
    State(legacy): State<LegacyState>,
    Query(query): Query<MessageQuery>,
    body: Bytes,
) -> Response {
    let Some(session_id) = query.session_id.or(query.session_id_camel) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "session_id is required",
        );
    };
    let Some(mut ends) = legacy.sessions.get(&session_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "no such session (it may have ended)",
        );
    };
    let checked = match crate::jsonrpc::envelope(&body) {
        Ok(checked) => checked,
        Err(refusal) => {
            return (StatusCode::BAD_REQUEST, axum::Json(refusal.body())).into_response()
        }
    };
    if let Err(refusal) = crate::jsonrpc::params(&checked) {
        return answer_on_stream(&mut ends, &refusal).await;
    }
    let message: ClientJsonRpcMessage = match serde_json::from_value(Value::Object(checked.value)) {
        Ok(message) => message,
        Err(err) => {
            let refusal = crate::jsonrpc::Refusal {
                code: crate::jsonrpc::INVALID_REQUEST,
                message: format!("Invalid Request: not an MCP message: {err}"),
                id: Value::Null,
            };
            return (StatusCode::BAD_REQUEST, axum::Json(refusal.body())).into_response();
        }
    };
    if ends.to_server.send(message).await.is_err() {
        return error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "the session has ended",
        );
    }
    StatusCode::ACCEPTED.into_response()
}

/// Sends a refused request's JSON-RPC error on the session's stream, where the client
/// waits for its reply; the POST is accepted (202) like every other message.
async fn answer_on_stream(ends: &mut SessionEnds, refusal: &crate::jsonrpc::Refusal) -> Response {
    let id = serde_json::from_value::<RequestId>(refusal.id.clone()).ok();
    let error = ErrorData::new(ErrorCode(refusal.code), refusal.message.clone(), None);
    if ends
        .to_client
        .send(ServerJsonRpcMessage::error(error, id))
        .await
        .is_err()
    {
        return error_response_gone();
    }
    StatusCode::ACCEPTED.into_response()
}

fn error_response_gone() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "session_not_found",
        "the session has ended",
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

//! Owns the hub call protocol that the gateway proxies to: `POST /call/{tool}` with body
//! `{"args": {...}}`, answered as `text/event-stream`: `tool_call.started`, one or more
//! `output.delta`, then `tool_call.completed` or `tool_call.error`. Every event's data
//! carries the `request_id` (from `x-request-id`, made when missing). Events are written
//! as they happen ([`mcp_adapter::events`]); the channel between the REST call and the
//! client is bounded, so a slow client slows the REST read rather than growing memory.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use mcp_adapter::events::{batches, server_info};
use mcp_adapter::invoke::{self, Rejection};
use serde_json::{json, Value};

use crate::state::WorkerState;

/// A JSON error before the stream starts: `{"error": {code, message, request_id, details?}}`.
pub fn error_response(
    status: u16,
    code: &str,
    message: &str,
    request_id: &str,
    details: Option<Value>,
) -> Response {
    let mut error = json!({"code": code, "message": message, "request_id": request_id});
    if let Some(details) = details {
        error["details"] = details;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(json!({"error": error}))).into_response();
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(mcp_core::request_id::HEADER, value);
    }
    response
}

pub fn rejection_response(rejection: &Rejection, request_id: &str) -> Response {
    let details = match rejection {
        Rejection::InvalidArguments(violations) => serde_json::to_value(violations).ok(),
        _ => None,
    };
    error_response(
        rejection.http_status(),
        rejection.code(),
        &rejection.to_string(),
        request_id,
        details,
    )
}

/// The call's request id: the caller's `x-request-id`, or a new one. Reads that one
/// header; axum's `HeaderMap` extractor would copy them all on every call.
pub struct RequestId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<RequestId, Infallible> {
        Ok(RequestId(mcp_core::request_id::keep_or_generate(
            parts
                .headers
                .get(mcp_core::request_id::HEADER)
                .and_then(|v| v.to_str().ok()),
        )))
    }
}

/// Who sent a hub call, for its audit entry: the client address the gateway forwards
/// (`X-Forwarded-For`); the hub call protocol has no session.
pub struct HubCaller(pub mcp_adapter::audit::Caller);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for HubCaller {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<HubCaller, Infallible> {
        Ok(HubCaller(mcp_adapter::audit::Caller {
            transport: "hub",
            addr: mcp_adapter::audit::Caller::forwarded_for(
                parts
                    .headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok()),
            ),
            session: None,
        }))
    }
}

/// `POST /call/{tool}`.
pub async fn call(
    State(state): State<Arc<WorkerState>>,
    Path(tool_name): Path<String>,
    RequestId(request_id): RequestId,
    HubCaller(caller): HubCaller,
    body: Bytes,
) -> Response {
    let args = if body.is_empty() {
        Value::Null
    } else {
        match envelope(&body, &request_id) {
            Ok(mut envelope) => envelope.remove("args").unwrap_or(Value::Null),
            Err(response) => return *response,
        }
    };
    let prepared = match state.prepare_from(caller, &tool_name, args) {
        Ok(prepared) => prepared,
        Err(rejection) => return rejection_response(&rejection, &request_id),
    };
    stream(state, prepared, request_id).await
}

type Batches = std::pin::Pin<Box<dyn futures::Stream<Item = (Bytes, bool)> + Send>>;

/// Runs the call and streams its events. The response (head and
/// `tool_call.started`) waits up to `state.started_hold` for the first result, so a
/// quick REST answer leaves in the same write as `tool_call.started`; a call that is
/// over by then leaves whole, as a sized body (`Content-Length`), so no hop downstream
/// has chunks to frame, flush and end one by one.
pub async fn stream(
    state: Arc<WorkerState>,
    prepared: invoke::Prepared,
    request_id: String,
) -> Response {
    let batches = batches(
        state.adapter.clone(),
        state.server_id.clone(),
        prepared,
        request_id.clone(),
    );
    let body = match hold_started(Box::pin(batches), state.started_hold).await {
        Held::Whole(bytes) => axum::body::Body::from(bytes),
        Held::Streaming(batches) => axum::body::Body::new(EndAwareBody {
            batches,
            ended: false,
        }),
    };
    sse_response(body, &request_id)
}

/// What the hold of `tool_call.started` ended with.
enum Held {
    /// Every event of the call: it was over within the hold.
    Whole(Bytes),
    /// Batches still to come (the first may already hold `tool_call.started` and the
    /// first result).
    Streaming(Batches),
}

/// Joins `tool_call.started` (the first batch, always ready) with the next batch when
/// that one is ready within `hold`. Waiting here is cancel-safe: a batch not ready in
/// time stays in progress inside the stream and is polled again by the body.
async fn hold_started(mut batches: Batches, hold: std::time::Duration) -> Held {
    if hold.is_zero() {
        return Held::Streaming(batches);
    }
    // `tool_call.started` is never the last batch.
    let Some((started, _)) = batches.next().await else {
        return Held::Streaming(batches);
    };
    match tokio::time::timeout(hold, batches.next()).await {
        Ok(Some((batch, last))) => {
            let mut joined = Vec::with_capacity(started.len() + batch.len());
            joined.extend_from_slice(&started);
            joined.extend_from_slice(&batch);
            let joined = Bytes::from(joined);
            if last {
                Held::Whole(joined)
            } else {
                Held::Streaming(Box::pin(
                    futures::stream::once(async move { (joined, false) }).chain(batches),
                ))
            }
        }
        // The stream ended without a final frame (cannot happen: `batches` always
        // ends with one); what there is goes out.
        Ok(None) => Held::Whole(started),
        Err(_) => Held::Streaming(Box::pin(
            futures::stream::once(async move { (started, false) }).chain(batches),
        )),
    }
}

/// A response body of frame batches that says it has ended as soon as the last batch
/// is handed out, so hyper writes the chunked terminator in the same write as the
/// call's last events instead of one write (and one wake-up downstream) later.
struct EndAwareBody {
    batches: Batches,
    ended: bool,
}

impl http_body::Body for EndAwareBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        match futures::ready!(self.batches.as_mut().poll_next(cx)) {
            Some((bytes, last)) => {
                self.ended = last;
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(bytes))))
            }
            None => {
                self.ended = true;
                std::task::Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// A `text/event-stream` response, unbuffered.
pub fn sse_response(body: axum::body::Body, request_id: &str) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(mcp_core::request_id::HEADER, value);
    }
    response
}

/// `POST /call`: the existing hub's compatibility shapes. `{"name", "args"}` calls a
/// tool (as `/call/{name}`); `{"method": "initialize"}` and `{"method": "tools.list"}`
/// answer JSON.
pub async fn call_named(
    State(state): State<Arc<WorkerState>>,
    RequestId(request_id): RequestId,
    HubCaller(caller): HubCaller,
    body: Bytes,
) -> Response {
    let mut envelope = match envelope(&body, &request_id) {
        Ok(envelope) => envelope,
        Err(response) => return *response,
    };
    if let Some(method) = envelope.get("method").and_then(Value::as_str) {
        return match method {
            "initialize" => axum::Json(server_info(&state.server_id)).into_response(),
            "tools.list" | "tools/list" => {
                axum::Json(json!({"tools": tool_list(&state)})).into_response()
            }
            other => error_response(
                400,
                "bad_request",
                &format!("unknown method {other:?}"),
                &request_id,
                None,
            ),
        };
    }
    let Some(Value::String(tool_name)) = envelope.remove("name") else {
        return error_response(
            400,
            "bad_request",
            "the body needs a tool \"name\" (or a \"method\")",
            &request_id,
            None,
        );
    };
    let args = envelope
        .remove("args")
        .or_else(|| envelope.remove("arguments"))
        .unwrap_or(Value::Null);
    match state.prepare_from(caller, &tool_name, args) {
        Ok(prepared) => stream(state, prepared, request_id).await,
        Err(rejection) => rejection_response(&rejection, &request_id),
    }
}

/// The request body as a JSON object, or the 400 to answer (boxed: it is the rare path).
fn envelope(
    body: &[u8],
    request_id: &str,
) -> Result<serde_json::Map<String, Value>, Box<Response>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(envelope)) => Ok(envelope),
        Ok(_) => Err(Box::new(error_response(
            400,
            "bad_request",
            "the body must be a JSON object",
            request_id,
            None,
        ))),
        Err(err) => Err(Box::new(error_response(
            400,
            "bad_request",
            &format!("the body is not valid JSON: {err}"),
            request_id,
            None,
        ))),
    }
}

/// Active tools as `{name, description, inputSchema}`, none when the server is inactive.
pub fn tool_list(state: &WorkerState) -> Vec<Value> {
    let served = state.current();
    if !served.config.as_ref().is_some_and(|c| c.active) {
        return Vec::new();
    }
    mcp_adapter::tool::active_listing(&served.tools)
}

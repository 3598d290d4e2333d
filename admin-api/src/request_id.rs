//! Owns the per-request span and the request id of the admin API: an incoming valid
//! `X-Request-Id` is kept, otherwise one is made; it is returned as a header, put into
//! every error body, and carried by every log line of the request.

use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use mcp_core::request_id;
use tracing::Instrument;

use crate::error::ErrorBody;

pub async fn request_span(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id::keep_or_generate(
        request
            .headers()
            .get(request_id::HEADER)
            .and_then(|v| v.to_str().ok()),
    );
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(mut body) = response.extensions_mut().remove::<ErrorBody>() {
        body.error.request_id = Some(id.clone());
        *response.body_mut() = Body::from(serde_json::to_vec(&body).unwrap_or_default());
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(event = "admin.request", method = %method, path = %path, status, latency = latency_ms);
        } else if mcp_core::log::sampled() {
            tracing::info!(event = "admin.request", method = %method, path = %path, status, latency = latency_ms);
        }
    });
    response
}

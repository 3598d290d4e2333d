//! The admin API's router driven in-process with `oneshot` (no socket, no child
//! process) against a real `redis-server`: the routing, middleware and error mapping
//! beside the process-level tests in `tests/it/`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use mcp_admin::AppState;
use mcp_core::keys::Keys;
use mcp_core::RedisRegistry;
use serde_json::{json, Value};
use tower::ServiceExt;

const LIMIT: usize = 64 * 1024;

fn state(redis: &mcp_testkit::RedisServer, token: Option<&str>) -> AppState {
    let registry = RedisRegistry::new(
        &redis.url(),
        Keys::new(&mcp_testkit::unique_prefix()),
        Default::default(),
    )
    .expect("registry");
    AppState {
        registry,
        admin_token: token.map(Arc::from),
        dashboard: mcp_admin::routes::dashboard::Dashboard::new("/nonexistent/dist".into()),
        metrics: mcp_admin::routes::metrics::MetricsSource::new(
            url::Url::parse("http://127.0.0.1:9/metrics").expect("url"),
        )
        .expect("metrics source"),
    }
}

/// Sends one request through the router and returns its status, headers and JSON body
/// (`Value::Null` when the body is not JSON).
async fn send(
    state: &AppState,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Some(body) => request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .expect("request");
    let response = mcp_admin::app(state.clone(), LIMIT)
        .oneshot(request)
        .await
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");
}

#[tokio::test]
async fn errors_are_json_with_a_code_and_the_request_id() {
    let redis = mcp_testkit::RedisServer::start();
    let state = state(&redis, None);

    let (status, headers, body) = send(
        &state,
        Method::GET,
        "/api/nope",
        None,
        &[("x-request-id", "rid-1")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
    assert_eq!(body["error"]["request_id"], "rid-1");
    assert_eq!(headers["x-request-id"], "rid-1");

    let (status, _, body) = send(&state, Method::PATCH, "/healthz", None, &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&body, "method_not_allowed");

    let (status, _, body) = send(&state, Method::GET, "/api/servers/unknown", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");

    let big = json!({"baseUrl": "http://127.0.0.1:9", "description": "x".repeat(LIMIT)});
    let (status, _, body) = send(&state, Method::POST, "/api/servers/big", Some(big), &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "payload_too_large");
    let (status, _, list) = send(&state, Method::GET, "/api/servers", None, &[]).await;
    assert_eq!(
        (status, list),
        (StatusCode::OK, json!([])),
        "nothing was written"
    );
}

#[tokio::test]
async fn a_server_is_created_validated_and_listed() {
    let redis = mcp_testkit::RedisServer::start();
    let state = state(&redis, None);

    let (status, _, body) = send(
        &state,
        Method::POST,
        "/api/servers/bad",
        Some(json!({"baseUrl": "not a url"})),
        &[],
    )
    .await;
    assert!(status.is_client_error(), "{status}: {body}");
    assert!(body["error"]["code"].is_string(), "{body}");

    let (status, _, created) = send(
        &state,
        Method::POST,
        "/api/servers/good",
        Some(json!({"baseUrl": "http://127.0.0.1:9/v1"})),
        &[],
    )
    .await;
    assert!(status.is_success(), "{status}: {created}");
    let (status, _, list) = send(&state, Method::GET, "/api/servers", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["id"], "good", "{list}");
    assert_eq!(list[0]["baseUrl"], "http://127.0.0.1:9/v1");
}

#[tokio::test]
async fn the_token_guards_the_api_but_not_health() {
    let redis = mcp_testkit::RedisServer::start();
    let state = state(&redis, Some("s3cret"));

    let (status, _, body) = send(&state, Method::GET, "/api/servers", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let (status, _, _) = send(
        &state,
        Method::GET,
        "/api/servers",
        None,
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(
        &state,
        Method::GET,
        "/api/servers",
        None,
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&state, Method::GET, "/healthz", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
}

//! Cross-site requests and DNS rebinding: every route that runs a tool or reaches the
//! admin API refuses a foreign `Origin`, a `Host` off the allow-list and (where a tool
//! runs or the registry is written) a body that is not JSON, before anything runs.

use reqwest::header::{CONTENT_TYPE, HOST, ORIGIN};
use serde_json::{json, Value};

use crate::{Options, Stack};

/// Every route that runs a tool, with a body that would add a product (valid args).
fn tool_routes() -> Vec<(&'static str, Value)> {
    let args = json!({"title": "x", "price": 1});
    vec![
        (
            "/mcp/fakestore_api/add_product",
            json!({ "args": args.clone() }),
        ),
        (
            "/mcp/fakestore_api/tools/call",
            json!({"name": "add_product", "args": args.clone()}),
        ),
        (
            "/mcp/fakestore_api",
            json!({"name": "add_product", "args": args.clone()}),
        ),
        (
            "/mcp-servers/fakestore_api/mcp",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add_product", "arguments": args.clone()}}),
        ),
        (
            "/mcp-servers/fakestore_api/messages?session_id=x",
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add_product", "arguments": args}}),
        ),
    ]
}

/// Asserts a gateway refusal: status, stable code, a message, and the request id of
/// the `X-Request-Id` header.
async fn assert_refused(response: reqwest::Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status().as_u16(), status, "{what}");
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("x-request-id");
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["message"].is_string(), "{what}: {body}");
    assert_eq!(
        body["error"]["request_id"],
        header_id.as_str(),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn a_cross_site_request_never_runs_a_tool() {
    let stack = Stack::start(Options::default()).await;
    let evil = "http://evil.example.com";
    for (path, body) in tool_routes() {
        let text = body.to_string();
        let form = format!("args={}", urlencoding(&text));
        for (content_type, payload) in [
            ("text/plain", text.clone()),
            ("application/x-www-form-urlencoded", form),
            ("application/json", text.clone()),
        ] {
            let response = stack
                .client
                .post(format!("{}{path}", stack.base))
                .header(CONTENT_TYPE, content_type)
                .header(ORIGIN, evil)
                .header("accept", "application/json, text/event-stream")
                .body(payload)
                .send()
                .await
                .expect("sent");
            assert_refused(
                response,
                403,
                "origin_forbidden",
                &format!("{content_type} POST {path} from {evil}"),
            )
            .await;
        }
        // No Origin (not a browser), but not JSON: refused too.
        for content_type in Some("text/plain")
            .into_iter()
            .chain(Some("application/x-www-form-urlencoded"))
        {
            let response = stack
                .client
                .post(format!("{}{path}", stack.base))
                .header(CONTENT_TYPE, content_type)
                .header("accept", "application/json, text/event-stream")
                .body(text.clone())
                .send()
                .await
                .expect("sent");
            assert_refused(
                response,
                415,
                "unsupported_media_type",
                &format!("{content_type} POST {path}"),
            )
            .await;
        }
        let response = stack
            .client
            .post(format!("{}{path}", stack.base))
            .header("accept", "application/json, text/event-stream")
            .body(text.clone())
            .send()
            .await
            .expect("sent");
        assert_refused(
            response,
            415,
            "unsupported_media_type",
            &format!("POST {path} with no Content-Type"),
        )
        .await;
    }
    assert_eq!(
        stack.product_count().await,
        5,
        "no refused request reached the REST API"
    );

    // The same call from an allowed origin, as JSON, runs.
    let response = stack
        .client
        .post(format!("{}/mcp/fakestore_api/add_product", stack.base))
        .header(ORIGIN, "http://localhost:3000")
        .json(&json!({"args": {"title": "x", "price": 1}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.expect("body");
    assert!(text.contains("tool_call.completed"), "{text}");
    assert_eq!(stack.product_count().await, 6);
}

#[tokio::test]
async fn a_host_off_the_list_is_refused_on_every_route_but_health() {
    let stack = Stack::start(Options::default()).await;
    let get = |path: &str, host: &str| {
        stack
            .client
            .get(format!("{}{path}", stack.base))
            .header(HOST, host)
            .send()
    };
    for path in [
        "/mcp/fruits_api/tools/list",
        "/mcp/fruits_api",
        "/api/servers",
        "/api/stats",
        "/",
        "/dashboard/",
        "/mcp-servers/fruits_api/mcp",
        "/no/such/route",
    ] {
        let response = get(path, "evil.example.com").await.expect("sent");
        assert_refused(response, 403, "host_forbidden", &format!("GET {path}")).await;
    }
    let response = stack
        .client
        .post(format!("{}/mcp/fakestore_api/add_product", stack.base))
        .header(HOST, "evil.example.com:8080")
        .json(&json!({"args": {"title": "x", "price": 1}}))
        .send()
        .await
        .expect("sent");
    assert_refused(response, 403, "host_forbidden", "a call by a rebound name").await;
    assert_eq!(stack.product_count().await, 5);

    // Loopback names pass, with or without a port; health answers any name.
    for host in ["localhost", "127.0.0.1:8080", "[::1]:8080", "LocalHost:1"] {
        let response = get("/mcp/fruits_api/tools/list", host).await.expect("sent");
        assert_eq!(response.status().as_u16(), 200, "Host {host}");
    }
    let health = get("/healthz", "evil.example.com").await.expect("sent");
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test]
async fn the_admin_api_behind_the_gateway_refuses_cross_site_writes() {
    let stack = Stack::start(Options::default()).await;
    let server = json!({"baseUrl": "https://attacker.example.com"});
    let response = stack
        .client
        .post(format!("{}/api/servers/planted", stack.base))
        .header(ORIGIN, "https://evil.example.com")
        .header(CONTENT_TYPE, "text/plain")
        .body(server.to_string())
        .send()
        .await
        .expect("sent");
    assert_refused(response, 403, "origin_forbidden", "cross-site admin write").await;
    let response = stack
        .client
        .post(format!("{}/api/servers/planted", stack.base))
        .header(CONTENT_TYPE, "text/plain")
        .body(server.to_string())
        .send()
        .await
        .expect("sent");
    assert_refused(
        response,
        415,
        "unsupported_media_type",
        "text/plain admin write",
    )
    .await;
    let response = stack
        .client
        .delete(format!("{}/api/servers/fruits_api", stack.base))
        .header(ORIGIN, "https://evil.example.com")
        .send()
        .await
        .expect("sent");
    assert_refused(response, 403, "origin_forbidden", "cross-site admin delete").await;
    assert!(
        stack
            .registry
            .get_server("planted")
            .await
            .expect("get")
            .is_none(),
        "nothing was planted"
    );
    assert!(stack
        .registry
        .get_server("fruits_api")
        .await
        .expect("get")
        .is_some());

    // The dashboard's own requests: same origin as the gateway, JSON bodies.
    let port = stack.base.rsplit(':').next().expect("port");
    let response = stack
        .client
        .post(format!("{}/api/servers/planted", stack.base))
        .header(ORIGIN, format!("http://127.0.0.1:{port}"))
        .json(&server)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 201, "a same-origin JSON write");
}

#[tokio::test]
async fn configured_hosts_are_served_and_their_own_origin_allowed() {
    let stack = Stack::start(Options {
        workers: false,
        gateway_args: vec![
            "--allowed-hosts".into(),
            "localhost,127.0.0.1,hub.test".into(),
        ],
        ..Options::default()
    })
    .await;
    let post = |host: &str, origin: &str| {
        stack
            .client
            .post(format!("{}/mcp/fruits_api/get_fruit_by_id", stack.base))
            .header(HOST, host)
            .header(ORIGIN, origin)
            .json(&json!({"args": {"id": 1}}))
            .send()
    };
    let response = post("hub.test:8080", "http://hub.test:8080")
        .await
        .expect("sent");
    assert_eq!(
        response.status().as_u16(),
        200,
        "a configured name and its own origin"
    );
    let response = post("hub.test:8080", "http://other.test:8080")
        .await
        .expect("sent");
    assert_refused(response, 403, "origin_forbidden", "another origin").await;
    let response = post("other.test", "http://other.test").await.expect("sent");
    assert_refused(response, 403, "host_forbidden", "a name not configured").await;
}

/// `application/x-www-form-urlencoded` value encoding, enough for a JSON text.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

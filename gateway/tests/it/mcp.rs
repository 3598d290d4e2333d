use std::time::Duration;

use serde_json::{json, Value};

use crate::{Options, Stack};

fn run(venv: &str, name: &str, args: &[&str]) -> mcp_testkit::ChildProcess {
    mcp_testkit::python::run_client(venv, name, args)
}

fn summary(process: &mcp_testkit::ChildProcess, name: &str) -> Value {
    mcp_testkit::python::summary(process, name)
}

const DEMO_TOOLS: [&str; 5] = [
    "create_fruit",
    "delete_fruit",
    "get_fruit_by_id",
    "get_fruits",
    "update_fruit",
];

#[tokio::test]
async fn official_sdks_work_through_the_gateway() {
    let stack = Stack::start(Options::default()).await;
    let url = format!("{}/mcp-servers/fruits_api/mcp", stack.base);
    for (venv, name) in [("venv-mcp2", "client_v2.py"), ("venv-mcp1", "client_v1.py")] {
        let url = url.clone();
        let result = tokio::task::spawn_blocking(move || {
            summary(
                &run(venv, name, &[&url, "get_fruit_by_id", r#"{"id": 2}"#]),
                name,
            )
        })
        .await
        .expect("join");
        assert_eq!(result["tools"], json!(DEMO_TOOLS), "{name}: {result}");
        assert_eq!(result["isError"], false, "{name}: {result}");
        assert_eq!(result["structured"]["name"], "Banana", "{name}: {result}");
    }
    // The old HTTP+SSE transport: its endpoint event names a URL that works through the gateway.
    let sse_url = format!("{}/mcp-servers/fruits_api/sse", stack.base);
    let result = tokio::task::spawn_blocking(move || {
        summary(
            &run(
                "venv-mcp1",
                "client_sse.py",
                &[&sse_url, "get_fruits", "{}"],
            ),
            "client_sse.py",
        )
    })
    .await
    .expect("join");
    assert_eq!(result["tools"], json!(DEMO_TOOLS), "{result}");
    assert_eq!(result["isError"], false);
}

#[tokio::test]
async fn sessions_hear_list_changed_through_the_gateway() {
    let stack = Stack::start(Options::default()).await;
    let url = format!("{}/mcp-servers/fruits_api/mcp", stack.base);
    let client = run(
        "venv-mcp1",
        "client_v1.py",
        &[&url, "get_fruits", "{}", "--wait-list-changed", "20"],
    );
    let client = tokio::task::spawn_blocking(move || {
        mcp_testkit::wait_until("the client to be ready", Duration::from_secs(60), || {
            if client.has_exited() {
                panic!("client exited: {}", client.stderr_lines().join("\n"));
            }
            client
                .stdout_lines()
                .iter()
                .any(|l| l.contains("\"ready\""))
                .then_some(())
        });
        client
    })
    .await
    .expect("join");
    let tool = json!({"name": "lemon", "method": "GET", "pathTemplate": "/fruits/4"});
    stack
        .registry
        .upsert_tool("fruits_api", serde_json::from_value(tool).expect("tool"))
        .await
        .expect("add");
    let result = tokio::task::spawn_blocking(move || summary(&client, "client_v1.py"))
        .await
        .expect("join");
    assert_eq!(result["listChanged"], true, "{result}");
    assert!(
        result["toolsAfter"]
            .as_array()
            .expect("tools")
            .iter()
            .any(|t| t == "lemon"),
        "{result}"
    );
}

#[tokio::test]
async fn json_rpc_calls_are_validated_and_origins_checked_at_the_gateway() {
    let stack = Stack::start(Options::default()).await;
    let url = format!("{}/mcp-servers/fakestore_api/mcp", stack.base);
    let post = |body: Value, session: Option<&str>, origin: Option<&str>| {
        let mut request = stack
            .client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let response = post(init.clone(), None, None).await.expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .expect("session")
        .to_owned();
    assert!(
        session.starts_with("r0."),
        "the session names its replica: {session}"
    );
    let _ = response.text().await;
    let initialized = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
        None,
    )
    .await
    .expect("sent");
    assert_eq!(initialized.status().as_u16(), 202, "status codes are kept");

    let bad_call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add_product", "arguments": {"price": "free"}}});
    let refused: Value = post(bad_call, Some(&session), None)
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(refused["id"], 7, "{refused}");
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert!(
        refused["error"]["data"]["violations"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "{refused}"
    );
    let products: Value = stack
        .client
        .get(format!("{}/products", stack.mock.url()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        products.as_array().map(Vec::len),
        Some(5),
        "the refused call never reached the REST API"
    );

    let good_call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "get_product_by_id", "arguments": {"id": 1}}});
    let text = post(good_call, Some(&session), None)
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    assert!(text.contains("Backpack"), "{text}");

    let forbidden = post(init.clone(), None, Some("https://evil.example.com"))
        .await
        .expect("sent");
    assert_eq!(forbidden.status().as_u16(), 403);
    let allowed = post(init, None, Some("http://localhost:3000"))
        .await
        .expect("sent");
    assert_eq!(allowed.status().as_u16(), 200);
}

#[tokio::test]
async fn a_session_continues_through_another_gateway() {
    let stack = Stack::start(Options::default()).await;
    // Two replicas, so a session routed to the wrong one would be refused (404).
    stack.set_replicas("fruits_api", 2).await;
    let (_second, second_base) = stack.second_gateway().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    // Open sessions through the first gateway until both replicas hold one.
    let mut sessions: std::collections::BTreeMap<String, String> = Default::default();
    for _ in 0..40 {
        let response = stack
            .client
            .post(format!("{}/mcp-servers/fruits_api/mcp", stack.base))
            .header("accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .expect("sent");
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .expect("session")
            .to_owned();
        let _ = response.text().await;
        let replica = session.split('.').next().unwrap_or_default().to_owned();
        sessions.entry(replica).or_insert(session);
        if sessions.len() == 2 {
            break;
        }
    }
    assert_eq!(
        sessions.keys().map(String::as_str).collect::<Vec<_>>(),
        ["r0", "r1"],
        "new sessions are spread over both replicas"
    );
    // Each continues through the second gateway, on the replica that holds it.
    for session in sessions.values() {
        let post = |body: Value| {
            stack
                .client
                .post(format!("{second_base}/mcp-servers/fruits_api/mcp"))
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session)
                .json(&body)
                .send()
        };
        assert_eq!(
            post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                .await
                .expect("sent")
                .status()
                .as_u16(),
            202,
            "{session}"
        );
        let text = post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_fruit_by_id", "arguments": {"id": 4}}})).await.expect("sent").text().await.expect("body");
        assert!(
            text.contains("Lemon"),
            "the second gateway reached the worker of {session}: {text}"
        );
    }
}

#[tokio::test]
async fn mcp_status_codes_and_headers_pass_through_the_gateway() {
    let stack = Stack::start(Options::default()).await;
    let url = format!("{}/mcp-servers/fruits_api/mcp", stack.base);
    let send = |method: reqwest::Method, body: Option<String>, headers: Vec<(&str, String)>| {
        let mut request = stack
            .client
            .request(method, &url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let response = send(reqwest::Method::POST, Some(init.to_string()), vec![])
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .expect("session")
        .to_owned();
    let _ = response.text().await;
    let with_session = |version: &str| {
        vec![
            ("mcp-session-id", session.clone()),
            ("mcp-protocol-version", version.to_owned()),
        ]
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let status = |r: reqwest::Response| r.status().as_u16();

    // MCP-Protocol-Version reaches the worker: an unsupported one is refused there.
    let r = send(
        reqwest::Method::POST,
        Some(initialized.clone()),
        with_session("1999-01-01"),
    )
    .await
    .expect("sent");
    assert_eq!(status(r), 400, "the worker saw the version header");
    let r = send(
        reqwest::Method::POST,
        Some(initialized.clone()),
        with_session("2025-11-25"),
    )
    .await
    .expect("sent");
    assert_eq!(status(r), 202);
    // A session the worker does not know: its 404, kept.
    let r = send(
        reqwest::Method::POST,
        Some(initialized.clone()),
        vec![
            ("mcp-session-id", "r0.not-a-session".to_owned()),
            ("mcp-protocol-version", "2025-11-25".to_owned()),
        ],
    )
    .await
    .expect("sent");
    assert_eq!(status(r), 404);
    // A method the transport does not have: 405.
    let r = send(
        reqwest::Method::PUT,
        Some("{}".into()),
        with_session("2025-11-25"),
    )
    .await
    .expect("sent");
    assert_eq!(status(r), 405);
    // Ending the session, then using it: gone.
    let r = send(reqwest::Method::DELETE, None, with_session("2025-11-25"))
        .await
        .expect("sent");
    assert!(r.status().is_success(), "DELETE: {}", r.status());
    let r = send(
        reqwest::Method::POST,
        Some(initialized),
        with_session("2025-11-25"),
    )
    .await
    .expect("sent");
    assert_eq!(status(r), 404, "the ended session is unknown");
}

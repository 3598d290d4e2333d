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
async fn official_sdks_hear_list_changed_through_the_gateway() {
    // 1.x on its session's stream; 2.x in its default mode: the stateless 2026-07-28
    // protocol, on a `subscriptions/listen` stream that stays open through the gateway.
    let stack = Stack::start(Options::default()).await;
    let url = format!("{}/mcp-servers/fruits_api/mcp", stack.base);
    for (venv, name, tool) in [
        ("venv-mcp1", "client_v1.py", "lemon"),
        ("venv-mcp2", "client_v2.py", "lime"),
    ] {
        let client = run(
            venv,
            name,
            &[&url, "get_fruits", "{}", "--wait-list-changed", "20"],
        );
        let client = tokio::task::spawn_blocking(move || {
            mcp_testkit::python::wait_ready(&client, name);
            client
        })
        .await
        .expect("join");
        let added = json!({"name": tool, "method": "GET", "pathTemplate": "/fruits/4"});
        stack
            .registry
            .upsert_tool("fruits_api", serde_json::from_value(added).expect("tool"))
            .await
            .expect("add");
        let result = tokio::task::spawn_blocking(move || summary(&client, name))
            .await
            .expect("join");
        assert_eq!(result["listChanged"], true, "{name}: {result}");
        if name == "client_v2.py" {
            assert_eq!(
                (
                    &result["protocol"],
                    &result["initialized"],
                    &result["listenedVia"]
                ),
                (
                    &json!("2026-07-28"),
                    &json!(false),
                    &json!("subscriptions/listen")
                ),
                "no handshake, a listen stream: {result}"
            );
        }
        assert!(
            result["toolsAfter"]
                .as_array()
                .expect("tools")
                .iter()
                .any(|t| t == tool),
            "{name}: {result}"
        );
    }
}

#[tokio::test]
async fn an_sdk_call_with_invalid_arguments_gets_a_tool_error_on_a_2025_11_25_session() {
    let stack = Stack::start(Options::default()).await;
    let url = format!("{}/mcp-servers/fakestore_api/mcp", stack.base);
    let result = tokio::task::spawn_blocking(move || {
        summary(
            &run(
                "venv-mcp1",
                "client_v1.py",
                &[&url, "add_product", r#"{"title": "", "price": "free"}"#],
            ),
            "client_v1.py",
        )
    })
    .await
    .expect("join");
    // 2025-11-25 asks for input validation failures as a tool result with isError (so
    // a model can correct its call), with every violation's pointer in the text.
    assert_eq!(result["protocol"], "2025-11-25", "{result}");
    assert_eq!(result["isError"], true, "{result}");
    let text = result["text"][0].as_str().expect("text");
    assert!(
        text.starts_with("invalid_arguments") && text.contains("/price") && text.contains("/title"),
        "{result}"
    );
    let seen = stack
        .gateway
        .wait_for_event("gateway.request.invalid_arguments", Duration::from_secs(5));
    assert_eq!(seen["tool"], "add_product", "{seen}");
    assert_eq!(
        stack.product_count().await,
        5,
        "the refused call never reached the REST API"
    );
}

/// The JSON-RPC message of a Streamable HTTP answer with `id` (SSE or JSON).
fn message_with_id(text: &str, id: i64) -> Value {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .chain(serde_json::from_str(text).ok())
        .find(|v: &Value| v["id"] == id)
        .unwrap_or(Value::Null)
}

/// A Streamable HTTP client of raw requests through the gateway.
struct Raw<'a> {
    stack: &'a Stack,
    url: String,
}

impl Raw<'_> {
    async fn post(
        &self,
        body: &str,
        session: Option<&str>,
        version: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self
            .stack
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        if let Some(version) = version {
            request = request.header("mcp-protocol-version", version);
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.expect("body"))
    }

    /// initialize + initialized at `version`; the gateway's session id.
    async fn session(&self, version: &str) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
        let (status, headers, text) = self.post(&init.to_string(), None, None).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            message_with_id(&text, 1)["result"]["protocolVersion"],
            version,
            "{text}"
        );
        let session = headers["mcp-session-id"]
            .to_str()
            .expect("session")
            .to_owned();
        assert!(
            session.starts_with("r0."),
            "the session names its replica: {session}"
        );
        let (status, _, _) = self
            .post(
                r#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#,
                Some(&session),
                Some(version),
            )
            .await;
        assert_eq!(status, 202, "status codes are kept");
        session
    }
}

#[tokio::test]
async fn invalid_arguments_follow_the_negotiated_version_and_the_session_comes_first() {
    let stack = Stack::start(Options::default()).await;
    let raw = Raw {
        stack: &stack,
        url: format!("{}/mcp-servers/fakestore_api/mcp", stack.base),
    };
    let bad_call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add_product", "arguments": {"price": "free"}}}).to_string();

    // Before 2025-11-25: a JSON-RPC error -32602 with every violation and the request id.
    let old = raw.session("2025-06-18").await;
    let (status, headers, text) = raw.post(&bad_call, Some(&old), Some("2025-06-18")).await;
    assert_eq!(status, 200, "{text}");
    let refused = message_with_id(&text, 7);
    assert_eq!(refused["error"]["code"], -32602, "{text}");
    let violations = refused["error"]["data"]["violations"]
        .as_array()
        .expect("violations");
    assert!(
        violations.iter().any(|v| v["pointer"] == "/price"),
        "{text}"
    );
    assert_eq!(
        refused["error"]["data"]["request_id"],
        headers["x-request-id"].to_str().expect("id"),
        "{text}"
    );

    // 2025-11-25: the same failure as a tool result with isError.
    let new = raw.session("2025-11-25").await;
    let (status, _, text) = raw.post(&bad_call, Some(&new), Some("2025-11-25")).await;
    assert_eq!(status, 200, "{text}");
    let result = &message_with_id(&text, 7)["result"];
    assert_eq!(result["isError"], true, "{text}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("/price")),
        "{text}"
    );

    // An unknown session is told so first, whatever its arguments.
    let (status, _, text) = raw
        .post(&bad_call, Some("r0.no-such-session"), Some("2025-11-25"))
        .await;
    assert_eq!(status, 404, "{text}");
    assert_eq!(
        stack.product_count().await,
        5,
        "no refused call reached the REST API"
    );

    // A valid call runs.
    let good_call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "get_product_by_id", "arguments": {"id": 1}}});
    let (_, _, text) = raw
        .post(&good_call.to_string(), Some(&new), Some("2025-11-25"))
        .await;
    assert!(text.contains("Backpack"), "{text}");
}

#[tokio::test]
async fn json_rpc_error_codes_and_shapes() {
    let stack = Stack::start(Options::default()).await;
    let raw = Raw {
        stack: &stack,
        url: format!("{}/mcp-servers/fruits_api/mcp", stack.base),
    };
    let session = raw.session("2025-11-25").await;
    let check = |status: u16, text: &str, want_status: u16, code: i64, id: Value, what: &str| {
        assert_eq!(status, want_status, "{what}: {text}");
        let body: Value = serde_json::from_str(text)
            .unwrap_or_else(|_| message_with_id(text, id.as_i64().unwrap_or(-1)));
        assert_eq!(body["jsonrpc"], "2.0", "{what}: {text}");
        assert_eq!(body["error"]["code"], code, "{what}: {text}");
        assert!(body["error"]["message"].is_string(), "{what}: {text}");
        assert_eq!(body["id"], id, "{what}: {text}");
    };
    for (body, want_status, code, id, what) in [
        (
            r#"{"jsonrpc": "2.0", "id": 1, "#,
            400,
            -32700,
            Value::Null,
            "malformed JSON",
        ),
        (
            r#"[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]"#,
            400,
            -32600,
            Value::Null,
            "a batch",
        ),
        (
            r#"{"id": 2, "method": "ping"}"#,
            400,
            -32600,
            json!(2),
            "no jsonrpc",
        ),
        (
            r#"{"jsonrpc": "2.0", "id": null, "method": "ping"}"#,
            400,
            -32600,
            Value::Null,
            "a null id",
        ),
        (
            r#"{"jsonrpc": "2.0", "id": 3, "method": "tools/call"}"#,
            200,
            -32602,
            json!(3),
            "tools/call without params",
        ),
        (
            r#"{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"arguments": {}}}"#,
            200,
            -32602,
            json!(4),
            "tools/call without a name",
        ),
        (
            r#"{"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope"}}"#,
            200,
            -32602,
            json!(5),
            "an unknown tool",
        ),
    ] {
        let (status, _, text) = raw.post(body, Some(&session), Some("2025-11-25")).await;
        check(status, &text, want_status, code, id, what);
    }
    // initialize without protocolVersion: named as that, not as a missing session.
    let (status, _, text) = raw
        .post(
            r#"{"jsonrpc": "2.0", "id": 6, "method": "initialize", "params": {"capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}"#,
            None,
            None,
        )
        .await;
    check(
        status,
        &text,
        200,
        -32602,
        json!(6),
        "initialize without protocolVersion",
    );
    assert!(text.contains("protocolVersion"), "{text}");
    // A missing-params call on an unknown session: the session first.
    let (status, _, text) = raw
        .post(
            r#"{"jsonrpc": "2.0", "id": 7, "method": "tools/call"}"#,
            Some("r0.no-such-session"),
            Some("2025-11-25"),
        )
        .await;
    assert_eq!(status, 404, "{text}");

    // A JSON-RPC client pointed at the hub's call API is told where MCP is.
    let response = stack
        .client
        .post(format!("{}/mcp/fruits_api", stack.base))
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["id"], 9, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/mcp-servers/fruits_api/mcp")),
        "{body}"
    );
    // The old hub's own `{"method": "initialize"}` still answers.
    let (status, _, info) = stack
        .call("/mcp/fruits_api", json!({"method": "initialize"}))
        .await;
    assert_eq!(status, 200, "{info:?}");
}

#[tokio::test]
async fn a_browser_origin_is_checked_on_the_mcp_endpoint() {
    let stack = Stack::start(Options::default()).await;
    let url = format!("{}/mcp-servers/fakestore_api/mcp", stack.base);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let post = |origin: &str| {
        stack
            .client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("origin", origin)
            .json(&init)
            .send()
    };
    let forbidden = post("https://evil.example.com").await.expect("sent");
    assert_eq!(forbidden.status().as_u16(), 403);
    let header_id = forbidden.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let body: Value = forbidden.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], "origin_forbidden", "{body}");
    assert_eq!(body["error"]["request_id"], header_id.as_str(), "{body}");
    let allowed = post("http://localhost:3000").await.expect("sent");
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

/// What a (streaming) response sends within `window`, and whether it ended in it.
async fn read_for(mut response: reqwest::Response, window: Duration) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + window;
    let mut text = String::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => return (text, true),
            Ok(Err(_)) | Err(_) => return (text, false),
        }
    }
}

#[tokio::test]
async fn the_worker_sees_its_own_host_and_the_clients_mcp_headers() {
    let stack = Stack::start(Options {
        gateway_args: vec![
            "--allowed-hosts".into(),
            "localhost,127.0.0.1,hub.example".into(),
        ],
        ..Options::default()
    })
    .await;
    let url = format!("{}/mcp-servers/fruits_api/mcp", stack.base);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});

    // Host: the gateway sends the worker's own address, so a public name the client
    // used (here `hub.example`, which this gateway is configured to answer to) passes;
    // straight to the worker the same Host is refused by its DNS-rebinding check.
    let through = stack
        .client
        .post(&url)
        .header("host", "hub.example")
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("sent");
    assert_eq!(through.status().as_u16(), 200);
    let session = through.headers()["mcp-session-id"]
        .to_str()
        .expect("session")
        .to_owned();
    let (text, _) = read_for(through, Duration::from_secs(5)).await;
    assert!(text.contains("\"serverInfo\""), "{text}");
    let port = stack
        .registry
        .get_runtime("fruits_api")
        .await
        .expect("runtime")
        .workers[0]
        .port
        .expect("port");
    let direct = |host: Option<&str>| {
        let mut request = stack
            .client
            .post(format!("http://127.0.0.1:{port}/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    assert_eq!(
        direct(Some("hub.example"))
            .await
            .expect("sent")
            .status()
            .as_u16(),
        403,
        "the worker checks Host"
    );
    assert_eq!(direct(None).await.expect("sent").status().as_u16(), 200);

    // Mcp-Method and Mcp-Name (2026-07-28 standard headers): the worker checks them
    // against the body and quotes the values it received.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}});
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "get_fruit_by_id", "arguments": {"id": 2}, "_meta": meta}});
    let stateless = |method: &str, name: &str| {
        stack
            .client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .header("mcp-name", name)
            .json(&call)
            .send()
    };
    let ok = stateless("tools/call", "get_fruit_by_id")
        .await
        .expect("sent");
    assert_eq!(ok.status().as_u16(), 200);
    let text = ok.text().await.expect("body");
    assert!(text.contains("Banana"), "{text}");
    for (method, name, quoted) in [
        (
            "tools/call",
            "get_fruits",
            "Mcp-Name header `get_fruits` does not match",
        ),
        (
            "tools/list",
            "get_fruit_by_id",
            "Mcp-Method header `tools/list` does not match",
        ),
    ] {
        let refused = stateless(method, name).await.expect("sent");
        assert_eq!(refused.status().as_u16(), 400);
        let text = refused.text().await.expect("body");
        assert!(text.contains(quoted), "{text}");
    }

    // Last-Event-ID: the worker resumes the session's notification stream from the
    // event the client names. Two list_changed notifications are cached as events 0 and
    // 1; resuming from 1 replays 1 only, from 0 both.
    let initialized = stack
        .client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(initialized.status().as_u16(), 202);
    let resume = |last_event_id: &'static str| {
        let (client, url, session) = (stack.client.clone(), url.clone(), session.clone());
        async move {
            let response = client
                .get(&url)
                .header("accept", "text/event-stream")
                .header("mcp-session-id", &session)
                .header("mcp-protocol-version", "2025-11-25")
                .header("last-event-id", last_event_id)
                .send()
                .await
                .ok()?;
            // Replayed events come at once; the stream then stays open.
            let (text, _) = read_for(response, Duration::from_millis(700)).await;
            let ids: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
                .map(|id| id.trim().to_owned())
                .collect();
            (text.matches("notifications/tools/list_changed").count() == ids.len()).then_some(ids)
        }
    };
    for (n, tool) in ["lemon_a", "lemon_b"].into_iter().enumerate() {
        let tool = json!({"name": tool, "method": "GET", "pathTemplate": "/fruits/4"});
        stack
            .registry
            .upsert_tool("fruits_api", serde_json::from_value(tool).expect("tool"))
            .await
            .expect("add");
        // Until the notification is cached (a resume while the previous resumed stream
        // is still open gets no replay).
        let ids = mcp_testkit::wait_until_async(
            &format!("list_changed event {n} to be replayed"),
            Duration::from_secs(15),
            || async { resume("0").await.filter(|ids| ids.len() == n + 1) },
        )
        .await;
        assert_eq!(ids, (0..=n).map(|i| i.to_string()).collect::<Vec<_>>());
    }
    let ids =
        mcp_testkit::wait_until_async("a resume from event 1", Duration::from_secs(15), || async {
            resume("1").await.filter(|ids| !ids.is_empty())
        })
        .await;
    assert_eq!(ids, ["1"], "replayed from the event the client named");
}

use std::time::Duration;

use serde_json::{json, Value};

use crate::WorkerHarness;

fn tools() -> Vec<Value> {
    vec![
        json!({"name": "get_fruit", "description": "Get one fruit by its id", "method": "GET", "pathTemplate": "/api/fruits/{id}", "paramMapping": {"path": {"id": "id"}},
        "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}),
    ]
}

/// Reads SSE frames from a streaming response until one satisfies `done`.
async fn read_until(
    response: &mut reqwest::Response,
    text: &mut String,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(text) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("in time")
            .expect("chunk")
            .expect("open stream");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_stateless_discover_path_answers() {
    let hub = WorkerHarness::start(json!({}), tools()).await;
    let response = hub
        .client
        .post(format!("{}/mcp", hub.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            }}}),
        )
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{text}");
    let answer: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .chain(serde_json::from_str(&text).ok())
        .find(|v: &Value| v["id"] == 1)
        .unwrap_or(Value::Null);
    assert!(answer.get("error").is_none(), "{answer}");
    let result = &answer["result"];
    assert!(
        result["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("2026-07-28")) && v.contains(&json!("2025-11-25"))),
        "{answer}"
    );
    assert_eq!(
        result["capabilities"]["tools"]["listChanged"], true,
        "{answer}"
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "svc",
        "the server is named after its id: {answer}"
    );
    let refused = hub
        .client
        .post(format!("{}/mcp", hub.base))
        .header("host", "evil.example.com")
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status().as_u16(), 403, "Host is checked");
}

#[tokio::test]
async fn the_old_sse_transport_over_raw_http() {
    let hub = WorkerHarness::start(json!({}), tools()).await;
    let mut stream = hub
        .client
        .get(format!("{}/sse", hub.base))
        .header("x-forwarded-prefix", "/mcp-servers/svc/r0")
        .send()
        .await
        .expect("sse");
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    read_until(&mut stream, &mut text, |t| {
        t.contains("event: endpoint\ndata: ") && t.contains("\n\n")
    })
    .await;
    let endpoint = text
        .split("data: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .expect("endpoint")
        .to_owned();
    assert!(
        endpoint.starts_with("/mcp-servers/svc/r0/messages?session_id="),
        "{endpoint}"
    );
    let post_url = format!(
        "{}{}",
        hub.base,
        endpoint.trim_start_matches("/mcp-servers/svc/r0")
    );
    let post = |body: Value| hub.client.post(&post_url).json(&body).send();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    assert_eq!(post(init).await.expect("sent").status().as_u16(), 202);
    read_until(&mut stream, &mut text, |t| t.contains("\"id\":1")).await;
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
            .expect("sent")
            .status()
            .as_u16(),
        202
    );
    assert_eq!(
        post(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
            .await
            .expect("sent")
            .status()
            .as_u16(),
        202
    );
    read_until(&mut stream, &mut text, |t| t.contains("\"id\":2")).await;
    assert!(text.contains("get_fruit"));
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_fruit", "arguments": {"id": 1}}});
    assert_eq!(post(call).await.expect("sent").status().as_u16(), 202);
    read_until(&mut stream, &mut text, |t| t.contains("\"id\":3")).await;
    assert!(text.contains("Apple"), "{text}");

    let unknown = hub
        .client
        .post(format!("{}/messages?session_id=nope", hub.base))
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status().as_u16(), 404);
    let bad = hub
        .client
        .post(&post_url)
        .body("{not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status().as_u16(), 400);
    drop(stream);
    // The session ends with its SSE stream.
    mcp_testkit::wait_until_async("the session to close", Duration::from_secs(10), || async {
        (hub.client
            .post(&post_url)
            .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .ok()?
            .status()
            .as_u16()
            == 404)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_old_sse_transport_checks_host_and_keeps_endpoint_on_this_origin() {
    let hub = WorkerHarness::start(json!({}), tools()).await;
    for path in ["/sse", "/messages?session_id=x"] {
        let rebound = hub
            .client
            .get(format!("{}{path}", hub.base))
            .header("host", "evil.example")
            .send()
            .await
            .expect("sent");
        assert_eq!(rebound.status().as_u16(), 403, "{path}");
        let body: Value = rebound.json().await.expect("json");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // A prefix that would turn `endpoint` into another host's URL is ignored.
    let mut stream = hub
        .client
        .get(format!("{}/sse", hub.base))
        .header("x-forwarded-prefix", "//evil.example/x")
        .send()
        .await
        .expect("sse");
    assert_eq!(stream.status().as_u16(), 200);
    let mut text = String::new();
    read_until(&mut stream, &mut text, |t| {
        t.contains("event: endpoint\ndata: ") && t.contains("\n\n")
    })
    .await;
    assert!(
        text.contains("data: /messages?session_id="),
        "endpoint must stay on this origin: {text}"
    );
}

/// Posts one JSON-RPC message to `/mcp` and returns the answer with `id` (JSON or SSE).
async fn mcp_post(
    hub: &WorkerHarness,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, Value) {
    let mut request = hub
        .client
        .post(format!("{}/mcp", hub.base))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25");
    }
    let (status, session_id, answer) = rpc_answer(request, &body["id"]).await;
    (status, session_id, answer.unwrap_or(Value::Null))
}

/// Sends a JSON-RPC request; returns the status, the session id header if any, and the
/// message answering `id` (the JSON body, or one of the SSE events' data).
async fn rpc_answer(
    request: reqwest::RequestBuilder,
    id: &Value,
) -> (u16, Option<String>, Result<Value, String>) {
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let session_id = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .chain(serde_json::from_str::<Value>(&text).ok())
        .find(|v| v.get("id").is_some() && v["id"] == *id)
        .ok_or(text);
    (status, session_id, answer)
}

#[tokio::test]
async fn mcp_tool_errors_are_is_error_results_with_the_reason() {
    let mut tools = tools();
    tools.extend([
        json!({"name": "broken", "method": "GET", "pathTemplate": "/test/status/500"}),
        json!({"name": "hang", "method": "GET", "pathTemplate": "/test/hang"}),
        json!({"name": "close_early", "method": "GET", "pathTemplate": "/test/close-early"}),
        json!({"name": "not_json", "method": "GET", "pathTemplate": "/test/not-json"}),
        json!({"name": "item", "method": "GET", "pathTemplate": "/test/echo/{id}",
            "paramMapping": {"path": {"id": "id"}, "headers": {"X-Trace": "trace"}}, "inputSchema": {"type": "object"}}),
    ]);
    // A short timeoutMs so the hanging REST API is given up on quickly.
    let hub = WorkerHarness::start(json!({"timeoutMs": 1500}), tools).await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let (status, session, answer) = mcp_post(&hub, None, init).await;
    assert_eq!(status, 200, "{answer}");
    let session = session.expect("a session id");
    let (status, _, _) = mcp_post(
        &hub,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);

    let call = |id: u64, name: &str, args: Value| json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}});
    let (_, _, answer) =
        mcp_post(&hub, Some(&session), call(2, "get_fruit", json!({"id": 1}))).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["name"], "Apple",
        "{answer}"
    );

    // Bad arguments (refused by the schema or by the adapter before any REST call) and a
    // REST API that fails every way it can: each an `isError` result saying why, in time.
    for (id, name, args, expected) in [
        (
            3,
            "get_fruit",
            json!({"id": "one"}),
            vec!["invalid_arguments", "/id"],
        ),
        (4, "get_fruit", json!({}), vec!["invalid_arguments", "id"]),
        (
            5,
            "item",
            json!({"id": ".."}),
            vec!["invalid_arguments", "dot segments"],
        ),
        (
            6,
            "item",
            json!({}),
            vec!["invalid_arguments", "missing argument"],
        ),
        (
            7,
            "item",
            json!({"id": "a", "trace": "x\r\nInjected: 1"}),
            vec!["invalid_arguments", "X-Trace"],
        ),
        (
            8,
            "broken",
            json!({}),
            vec!["upstream_status", "HTTP 500", "Internal Server Error"],
        ),
        (9, "hang", json!({}), vec!["upstream_timeout", "1500 ms"]),
        (10, "close_early", json!({}), vec!["upstream_failed"]),
        (11, "not_json", json!({}), vec!["upstream_invalid_json"]),
    ] {
        let started = std::time::Instant::now();
        let (status, _, answer) = mcp_post(&hub, Some(&session), call(id, name, args)).await;
        assert_eq!(status, 200, "{name}: {answer}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} took {:?}",
            started.elapsed()
        );
        assert_eq!(answer["result"]["isError"], true, "{name}: {answer}");
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        for part in expected {
            assert!(text.contains(part), "{name}: {part:?} not in {answer}");
        }
    }
    // The worker is fine afterwards.
    let (_, _, answer) = mcp_post(
        &hub,
        Some(&session),
        call(12, "get_fruit", json!({"id": 2})),
    )
    .await;
    assert_eq!(
        answer["result"]["structuredContent"]["name"], "Banana",
        "{answer}"
    );
}

/// The per-request `_meta` of the 2026-07-28 protocol (no session, no `initialize`).
fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// Posts one stateless 2026-07-28 request (the headers that protocol requires, never a
/// session id) and returns the HTTP status, the session id header if any, and the answer.
async fn stateless_post(
    hub: &WorkerHarness,
    id: u64,
    method: &str,
    mut params: Value,
    request_id: Option<&str>,
) -> (u16, Option<String>, Value) {
    params["_meta"] = stateless_meta();
    let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    let mut request = hub
        .client
        .post(format!("{}/mcp", hub.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .json(&body);
    if let Some(name) = body["params"]["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    if let Some(request_id) = request_id {
        request = request.header("x-request-id", request_id);
    }
    let (status, session_id, answer) = rpc_answer(request, &json!(id)).await;
    (
        status,
        session_id,
        answer.unwrap_or_else(|text| json!({"unparsed": text})),
    )
}

#[tokio::test]
async fn stateless_2026_07_28_discovers_lists_and_calls_without_a_session() {
    let mut tools = tools();
    tools.push(
        json!({"name": "echo", "description": "Echo what the REST API received",
        "method": "POST", "pathTemplate": "/test/echo", "paramMapping": {"body": {"v": "v"}},
        "inputSchema": {"type": "object"}}),
    );
    let hub = WorkerHarness::start(json!({}), tools).await;

    let (status, session, answer) =
        stateless_post(&hub, 1, "server/discover", json!({}), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(session, None, "the stateless protocol has no session");
    assert!(
        answer["result"]["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("2026-07-28"))),
        "{answer}"
    );

    // tools/list straight away, without initialize and without a session id.
    let (status, session, answer) = stateless_post(&hub, 2, "tools/list", json!({}), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(session, None);
    assert!(answer.get("error").is_none(), "{answer}");
    let listed = answer["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = listed.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["echo", "get_fruit"], "{answer}");
    let get_fruit = &listed[1];
    assert_eq!(
        get_fruit["description"], "Get one fruit by its id",
        "the registry's description: {answer}"
    );
    assert_eq!(get_fruit["inputSchema"]["required"], json!(["id"]));

    // tools/call, also sessionless: a JSON object result, then one carrying the id.
    let (status, _, answer) = stateless_post(
        &hub,
        3,
        "tools/call",
        json!({"name": "get_fruit", "arguments": {"id": 2}}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["name"], "Banana",
        "{answer}"
    );
    let (_, _, answer) = stateless_post(
        &hub,
        4,
        "tools/call",
        json!({"name": "echo", "arguments": {"v": 1}}),
        Some("mcp-stateless-7"),
    )
    .await;
    let echoed = &answer["result"]["structuredContent"];
    assert_eq!(echoed["bodyJson"], json!({"v": 1}), "{answer}");
    assert_eq!(
        echoed["headers"]["x-request-id"], "mcp-stateless-7",
        "the caller's request id reaches the REST API: {answer}"
    );
}

/// The JSON-RPC messages of the SSE frames read so far.
fn sse_messages(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

fn count_method(text: &str, method: &str) -> usize {
    sse_messages(text)
        .iter()
        .filter(|m| m["method"] == method)
        .count()
}

/// Opens a stateless `subscriptions/listen` asking for tool and prompt list changes.
async fn open_listen(hub: &WorkerHarness, id: &str) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": true, "promptsListChanged": true},
            "_meta": stateless_meta()}});
    let response = hub
        .client
        .post(format!("{}/mcp", hub.base))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "subscriptions/listen")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    response
}

#[tokio::test]
async fn subscriptions_listen_streams_tools_list_changed_over_raw_http() {
    let hub = WorkerHarness::start(json!({}), tools()).await;
    let mut response = open_listen(&hub, "listen-7").await;
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream"),
        "a listen answers with a stream"
    );
    let mut text = String::new();
    read_until(&mut response, &mut text, |t| {
        count_method(t, "notifications/subscriptions/acknowledged") == 1
    })
    .await;
    let messages = sse_messages(&text);
    let ack = messages
        .iter()
        .find(|m| m["method"] == "notifications/subscriptions/acknowledged")
        .expect("ack");
    // Only tool-list changes are accepted: this server has no prompts.
    assert_eq!(
        ack["params"]["notifications"],
        json!({"toolsListChanged": true}),
        "{ack}"
    );

    // Each change of the served tool list is one notification on the open stream.
    for (n, name) in [(1, "lemon"), (2, "lime")] {
        let tool = json!({"name": name, "method": "GET", "pathTemplate": "/api/fruits/4"});
        hub.registry
            .upsert_tool(crate::SERVER, serde_json::from_value(tool).expect("tool"))
            .await
            .expect("add tool");
        read_until(&mut response, &mut text, |t| {
            count_method(t, "notifications/tools/list_changed") == n
        })
        .await;
    }
    let changed: Vec<Value> = sse_messages(&text)
        .into_iter()
        .filter(|m| m["method"] == "notifications/tools/list_changed")
        .collect();
    for notification in &changed {
        assert_eq!(
            notification["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen-7",
            "stamped with the listen request's id: {notification}"
        );
    }
    assert!(
        sse_messages(&text).iter().all(|m| m.get("id").is_none()),
        "the listen is still open (no final result): {text}"
    );
}

#[tokio::test]
async fn an_open_listen_ends_when_the_worker_shuts_down() {
    let mut hub = WorkerHarness::start(json!({}), tools()).await;
    let mut response = open_listen(&hub, "listen-9").await;
    let mut text = String::new();
    read_until(&mut response, &mut text, |t| {
        count_method(t, "notifications/subscriptions/acknowledged") == 1
    })
    .await;
    hub.process.signal(nix::sys::signal::Signal::SIGTERM);
    // The stream ends (it does not hold the shutdown up to its timeout), and the worker
    // exits on its own: no `worker.shutdown.timeout`.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, response.chunk())
        .await
        .expect("the listen stream ends")
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let status = hub.process.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let logged: Vec<String> = hub
        .process
        .json_lines()
        .iter()
        .filter_map(|l| l["event"].as_str().map(str::to_owned))
        .collect();
    assert!(logged.iter().any(|e| e == "worker.stopped"), "{logged:?}");
    assert!(
        !logged.iter().any(|e| e == "worker.shutdown.timeout"),
        "{logged:?}"
    );
}

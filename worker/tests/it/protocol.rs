use std::time::Duration;

use serde_json::{json, Value};

use crate::{parse_sse, WorkerHarness, SERVER};

fn demo_tools() -> Vec<Value> {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../conf/demo-registry.json"
        ))
        .expect("demo"),
    )
    .expect("json");
    doc["tools"]["fruits_api"]
        .as_object()
        .expect("tools")
        .values()
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_call_protocol_speaks_sse_with_the_request_id_everywhere() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let response = hub
        .client
        .post(format!("{}/call/get_fruit_by_id", hub.base))
        .header("x-request-id", "req-abc-1")
        .json(&json!({"args": {"id": 2}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-request-id"], "req-abc-1");
    let events = parse_sse(&response.text().await.expect("body"));
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names,
        ["tool_call.started", "output.delta", "tool_call.completed"]
    );
    assert!(
        events.iter().all(|e| e.data["request_id"] == "req-abc-1"),
        "{events:?}"
    );
    assert_eq!(events[0].data["tool"], "get_fruit_by_id");
    assert_eq!(events[1].data["output"]["name"], "Banana");
    assert_eq!(events[2].data["status"], 200);
    assert!(events[2].data["latency_ms"].is_number());

    // Create then get through the tools: the mock is stateful.
    let created = hub
        .output(
            "create_fruit",
            json!({"name": "Mango", "family": "Anacardiaceae"}),
        )
        .await;
    let got = hub
        .output("get_fruit_by_id", json!({"id": created["id"]}))
        .await;
    assert_eq!(got["name"], "Mango");

    // Refusals before any REST call: JSON with stable codes.
    for (tool, args, status, code) in [
        ("nope", json!({}), 404, "tool_not_found"),
        (
            "get_fruit_by_id",
            json!({"id": "two"}),
            400,
            "invalid_arguments",
        ),
        ("get_fruit_by_id", json!([1]), 400, "invalid_arguments"),
    ] {
        let response = hub
            .client
            .post(format!("{}/call/{tool}", hub.base))
            .json(&json!({"args": args}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["request_id"].is_string());
    }
    let response = hub
        .client
        .post(format!("{}/call/get_fruits", hub.base))
        .body("{broken")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = hub
        .client
        .post(format!("{}/call/get_fruit_by_id", hub.base))
        .json(&json!({"args": {}}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(body["error"]["details"][0]["pointer"], "");

    // The existing hub's shapes on POST /call.
    let info: Value = hub
        .client
        .post(format!("{}/call", hub.base))
        .json(&json!({"method": "initialize"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(info["serverInfo"]["name"], SERVER);
    let list: Value = hub
        .client
        .post(format!("{}/call", hub.base))
        .json(&json!({"method": "tools.list"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(list["tools"].as_array().map(Vec::len), Some(5));
    let text = hub
        .client
        .post(format!("{}/call", hub.base))
        .json(&json!({"name": "get_fruits", "args": {}}))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body");
    assert!(text.contains("tool_call.completed"), "{text}");
}

#[tokio::test]
async fn tools_added_changed_and_removed_in_redis_are_served_without_a_restart() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let tool = json!({"name": "lemon", "method": "GET", "pathTemplate": "/fruits/4", "responseMapping": {"pick": "$.name"}});
    hub.registry
        .upsert_tool(SERVER, serde_json::from_value(tool).expect("tool"))
        .await
        .expect("add");
    let output = mcp_testkit::wait_until_async(
        "the new tool to be callable",
        Duration::from_secs(10),
        || async {
            let (status, events) = hub.call("lemon", json!({})).await;
            (status == 200)
                .then(|| {
                    events
                        .into_iter()
                        .find(|e| e.event == "output.delta")
                        .map(|e| e.data["output"].clone())
                })
                .flatten()
        },
    )
    .await;
    assert_eq!(output, json!("Lemon"));
    let list: Value = hub
        .client
        .post(format!("{}/call", hub.base))
        .json(&json!({"method": "tools.list"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(list["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .any(|t| t["name"] == "lemon"));

    let changed = json!({"name": "lemon", "method": "GET", "pathTemplate": "/fruits/4", "responseMapping": {"pick": "$.color"}});
    hub.registry
        .upsert_tool(SERVER, serde_json::from_value(changed).expect("tool"))
        .await
        .expect("change");
    mcp_testkit::wait_until_async("the changed tool", Duration::from_secs(10), || async {
        (hub.output("lemon", json!({})).await == json!("yellow")).then_some(())
    })
    .await;

    hub.registry
        .delete_tool(SERVER, "lemon")
        .await
        .expect("delete");
    mcp_testkit::wait_until_async("the tool to be gone", Duration::from_secs(10), || async {
        (hub.call("lemon", json!({})).await.0 == 404).then_some(())
    })
    .await;
    let health: Value = hub
        .client
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(health["tools"], 5);
    assert!(health["version"].as_u64().is_some_and(|v| v >= 8));
}

#[tokio::test]
async fn an_inactive_server_or_tool_is_refused() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let mut tool: mcp_core::model::ToolBinding =
        serde_json::from_value(demo_tools()[0].clone()).expect("tool");
    let name = tool.name.clone();
    tool.active = false;
    hub.registry
        .upsert_tool(SERVER, tool)
        .await
        .expect("deactivate");
    mcp_testkit::wait_until_async(
        "the tool to be inactive",
        Duration::from_secs(10),
        || async { (hub.call(&name, json!({})).await.0 == 403).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn after_a_lost_subscription_the_worker_reloads_in_full() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    // A tool written behind the registry's back: no event announces it, so only a
    // full reload can find it (the periodic one is 30 s away).
    let tool = json!({"name": "quiet", "method": "GET", "pathTemplate": "/fruits/5", "responseMapping": {"pick": "$.name"}});
    let (mut conn, _) = write_tool_behind_the_registry(&hub, "quiet", &tool).await;
    let (status, _) = hub.call("quiet", json!({})).await;
    assert_eq!(status, 404, "not known before a reload");
    // Cut the worker's subscription, as a network blip or a Redis failover would.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("client kill");
    assert!(killed >= 1, "the worker was subscribed");
    let output = mcp_testkit::wait_until_async(
        "the reconnected worker to reload and serve the quiet tool",
        Duration::from_secs(10),
        || async {
            let (status, events) = hub.call("quiet", json!({})).await;
            (status == 200).then_some(())?;
            events
                .into_iter()
                .find(|e| e.event == "output.delta")
                .map(|e| e.data["output"].clone())
        },
    )
    .await;
    assert_eq!(output, json!("Kiwi"));
}

#[tokio::test]
async fn after_a_version_gap_the_worker_reloads_in_full() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    // A first tool through the registry, served once the worker's subscription has read
    // its starting version: from here on every event reaches it in order.
    let tool = |name: &str, id: u64| json!({"name": name, "method": "GET", "pathTemplate": format!("/fruits/{id}"), "responseMapping": {"pick": "$.name"}});
    let served = |name: &'static str| {
        let hub = &hub;
        async move {
            let (status, events) = hub.call(name, json!({})).await;
            (status == 200).then_some(())?;
            events
                .into_iter()
                .find(|e| e.event == "output.delta")
                .map(|e| e.data["output"].clone())
        }
    };
    hub.registry
        .upsert_tool(
            SERVER,
            serde_json::from_value(tool("probe", 1)).expect("tool"),
        )
        .await
        .expect("probe");
    let output = mcp_testkit::wait_until_async("the probe tool", Duration::from_secs(10), || {
        served("probe")
    })
    .await;
    assert_eq!(output, json!("Apple"));

    // A write whose event is lost: the tool and the version bump land in Redis, the
    // PUBLISH never happens.
    let (mut conn, keys) = write_tool_behind_the_registry(&hub, "quiet", &tool("quiet", 5)).await;
    let lost_version: u64 = redis::cmd("INCR")
        .arg(keys.version())
        .query_async(&mut conn)
        .await
        .expect("incr");
    let (status, _) = hub.call("quiet", json!({})).await;
    assert_eq!(status, 404, "nothing announced the quiet tool");

    // The next event is one version further than the worker expects: a gap, so the
    // worker reloads in full and finds the quiet tool (the periodic reload is 30 s
    // away, and the event itself only names the loud one).
    let outcome = hub
        .registry
        .upsert_tool(
            SERVER,
            serde_json::from_value(tool("loud", 3)).expect("tool"),
        )
        .await
        .expect("loud");
    assert_eq!(outcome.version, lost_version + 1);
    let output = mcp_testkit::wait_until_async(
        "the worker to reload after the gap and serve the quiet tool",
        Duration::from_secs(10),
        || served("quiet"),
    )
    .await;
    assert_eq!(output, json!("Kiwi"));
    assert_eq!(served("loud").await, Some(json!("Cherry")));
    let health: Value = hub
        .client
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(health["version"], lost_version + 1, "{health}");
    assert_eq!(health["tools"], 8, "{health}");
}

/// Writes a tool straight into Redis, with no version bump and no event (what a lost
/// write would leave); returns the connection and key layout for more of the same.
async fn write_tool_behind_the_registry(
    hub: &WorkerHarness,
    name: &str,
    tool: &Value,
) -> (redis::aio::MultiplexedConnection, mcp_core::keys::Keys) {
    let client = redis::Client::open(hub.redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let keys = mcp_core::keys::Keys::new(&hub.prefix);
    let _: i64 = redis::cmd("HSET")
        .arg(keys.tools(SERVER))
        .arg(name)
        .arg(tool.to_string())
        .query_async(&mut conn)
        .await
        .expect("hset");
    (conn, keys)
}

/// One raw `POST /call/{tool}` to the worker: each read's text and when it arrived.
async fn raw_call_reads(
    hub: &WorkerHarness,
    tool: &str,
    body: &str,
) -> Vec<(std::time::Duration, String)> {
    let addr = hub.base.trim_start_matches("http://");
    mcp_testkit::raw_http::post_reads(addr, &format!("/call/{tool}"), body).await
}

#[tokio::test]
async fn a_quick_rest_answer_leaves_whole_in_one_sized_write() {
    // A hold far above what the mock takes, so a loaded test machine cannot make the
    // REST answer miss it (5 ms by default).
    let hub = WorkerHarness::start_with(
        json!({"basePath": "/api"}),
        demo_tools(),
        &["--started-hold-ms", "2000"],
    )
    .await;
    // The first call also opens the pooled REST connection; the second reuses it.
    for _ in 0..2 {
        let reads = raw_call_reads(&hub, "get_fruit_by_id", r#"{"args":{"id":2}}"#).await;
        let first = &reads[0].1;
        assert_eq!(reads.len(), 1, "one write: {reads:?}");
        for part in [
            "HTTP/1.1 200",
            "content-length: ",
            "tool_call.started",
            "output.delta",
            "tool_call.completed",
        ] {
            assert!(
                first.contains(part),
                "{part:?} in the first read: {reads:?}"
            );
        }
        assert!(!first.contains("chunked"), "{first}");
    }
}

#[tokio::test]
async fn a_quick_failure_leaves_whole_too() {
    let tools = vec![
        json!({"name": "missing", "method": "GET", "pathTemplate": "/test/status/404",
        "inputSchema": {"type": "object"}}),
    ];
    let hub = WorkerHarness::start_with(json!({}), tools, &["--started-hold-ms", "2000"]).await;
    let reads = raw_call_reads(&hub, "missing", r#"{"args":{}}"#).await;
    assert_eq!(reads.len(), 1, "one write: {reads:?}");
    let first = &reads[0].1;
    for part in ["content-length: ", "tool_call.started", "tool_call.error"] {
        assert!(first.contains(part), "{part:?} in {first}");
    }
}

#[tokio::test]
async fn a_slow_rest_answer_gets_tool_call_started_when_the_hold_ends() {
    let tools = vec![
        json!({"name": "slow", "method": "GET", "pathTemplate": "/test/delay/1500",
        "inputSchema": {"type": "object"}}),
    ];
    let hub = WorkerHarness::start(json!({}), tools).await;
    let reads = raw_call_reads(&hub, "slow", r#"{"args":{}}"#).await;
    let (first_at, first) = &reads[0];
    assert!(first.contains("tool_call.started"), "{reads:?}");
    assert!(first.contains("transfer-encoding: chunked"), "{reads:?}");
    assert!(!first.contains("tool_call.completed"), "{reads:?}");
    // The hold is 5 ms by default; anything well under the REST API's 1.5 s shows that
    // the head and `tool_call.started` did not wait for the answer.
    assert!(
        *first_at < Duration::from_millis(1000),
        "tool_call.started after {first_at:?}"
    );
    let (last_at, last) = reads.last().expect("reads");
    assert!(last.contains("tool_call.completed"), "{reads:?}");
    assert!(*last_at >= Duration::from_millis(1500), "{last_at:?}");
}

/// The message checks straight on a worker's `/mcp` (no gateway in front): each code,
/// the session before params, the negotiated version's shape for invalid arguments.
#[tokio::test]
async fn mcp_messages_get_the_right_json_rpc_codes_straight_on_the_worker() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let url = format!("{}/mcp", hub.base);
    let post = |body: String, session: Option<String>| {
        let mut request = hub
            .client
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            let session = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = response.text().await.expect("body");
            let message = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .chain(serde_json::from_str::<Value>(&text).ok())
                .find(|v| v.get("result").is_some() || v.get("error").is_some())
                .unwrap_or(Value::Null);
            (status, session, message)
        }
    };
    let session_at = |version: &'static str| {
        let post = &post;
        async move {
            let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
            let (status, session, _) = post(init.to_string(), None).await;
            assert_eq!(status, 200);
            let session = session.expect("a session");
            let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
            assert_eq!(
                post(initialized.to_string(), Some(session.clone())).await.0,
                202
            );
            session
        }
    };
    let new = session_at("2025-11-25").await;
    for (body, status, code) in [
        (r#"{"jsonrpc": "2.0", "id": 1,"#, 400, -32700),
        (
            r#"[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]"#,
            400,
            -32600,
        ),
        (r#"{"id": 1, "method": "ping"}"#, 400, -32600),
        (
            r#"{"jsonrpc": "2.0", "id": 3, "method": "tools/call"}"#,
            200,
            -32602,
        ),
    ] {
        let (got, _, message) = post(body.to_owned(), Some(new.clone())).await;
        assert_eq!(
            (got, &message["error"]["code"]),
            (status, &json!(code)),
            "{body}: {message}"
        );
    }
    let bad = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "get_fruit_by_id", "arguments": {"id": "two"}}}).to_string();
    let (_, _, message) = post(bad.clone(), Some(new)).await;
    assert_eq!(message["result"]["isError"], true, "2025-11-25: {message}");
    let old = session_at("2025-06-18").await;
    let (_, _, message) = post(bad.clone(), Some(old)).await;
    assert_eq!(message["error"]["code"], -32602, "2025-06-18: {message}");
    assert_eq!(
        message["error"]["data"]["violations"][0]["pointer"], "/id",
        "{message}"
    );
    let (status, _, _) = post(bad, Some("no-such-session".into())).await;
    assert_eq!(status, 404, "the session is checked first");
    let init = json!({"jsonrpc": "2.0", "id": 5, "method": "initialize", "params": {"capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let (status, _, message) = post(init.to_string(), None).await;
    assert_eq!(
        (status, &message["error"]["code"]),
        (200, &json!(-32602)),
        "{message}"
    );
}

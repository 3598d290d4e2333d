use serde_json::json;

use crate::{assert_completed, Options, Stack};

#[tokio::test]
async fn every_call_and_compatibility_route() {
    let stack = Stack::start(Options::default()).await;
    check_call_routes(&stack, 1).await;

    // The admin API and health behind the same front door; metrics on their own port.
    let stats: serde_json::Value = stack.get_json("/api/stats").await;
    assert_eq!(stats["servers"], 3);
    // The dashboard routes are the admin API's: its status and body, passed through
    // (the same request id on both, since the admin API puts it in error bodies).
    for (path, request_id) in [("/", "dash-root"), ("/dashboard", "dash-page")] {
        let direct = stack
            .client
            .get(format!("http://{}{path}", stack.admin_addr))
            .header("x-request-id", request_id)
            .send()
            .await
            .expect("sent");
        let (direct_status, direct_body) = (direct.status(), direct.bytes().await.expect("body"));
        let proxied = stack
            .client
            .get(format!("{}{path}", stack.base))
            .header("x-request-id", request_id)
            .send()
            .await
            .expect("sent");
        assert_eq!(proxied.headers()["x-request-id"], request_id, "{path}");
        assert_eq!(proxied.status(), direct_status, "{path}");
        assert_eq!(proxied.bytes().await.expect("body"), direct_body, "{path}");
        // ... answered by the admin API itself: it logged both requests.
        mcp_testkit::wait_until(
            &format!("the admin API to log both GET {path}"),
            std::time::Duration::from_secs(5),
            || {
                let seen = stack
                    .admin
                    .json_lines()
                    .iter()
                    .filter(|l| {
                        l["event"] == "admin.request"
                            && l["path"] == path
                            && l["request_id"] == request_id
                    })
                    .count();
                (seen == 2).then_some(())
            },
        );
        println!(
            "GET {path}: the admin API's {direct_status} ({} bytes) through the gateway",
            direct_body.len()
        );
    }
    let health: serde_json::Value = stack.get_json("/healthz").await;
    assert_eq!(
        (health["status"].clone(), health["mode"].clone()),
        (json!("ok"), json!("workers"))
    );
    let metrics = stack
        .metrics_when(|m| {
            m.contains(
                "mcp_gateway_requests_total{route=\"call\",server=\"fruits_api\",status=\"200\"}",
            )
        })
        .await;
    assert!(
        metrics.contains("mcp_gateway_request_duration_seconds_bucket"),
        "latency histogram"
    );

    // The PRD's log events, with their fields.
    let accepted = stack
        .gateway
        .wait_for_event("tool.call.accepted", std::time::Duration::from_secs(5));
    assert!(
        accepted["request_id"].is_string()
            && accepted["server"].is_string()
            && accepted["tool"].is_string()
            && accepted["args_size"].is_number(),
        "{accepted}"
    );
    let done = stack
        .gateway
        .wait_for_event("tool.call.proxy.done", std::time::Duration::from_secs(5));
    assert!(
        done["target_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:"))
            && done["status"] == 200
            && done["latency"].is_number(),
        "{done}"
    );
    stack
        .gateway
        .wait_for_event("tool.call.proxy.start", std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_call_is_counted_before_its_answer_ends() {
    // The gateway records a forwarded call (metrics, `proxy.done`) before it writes the
    // answer's last bytes, so a scrape right after an answer already counts it: no
    // waiting, unlike the metrics of other routes (see `Stack::metrics_when`).
    let stack = Stack::start(Options::default()).await;
    let series = "mcp_gateway_requests_total{route=\"call\",server=\"fruits_api\",status=\"200\"}";
    let count = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = count(&stack.metrics_text().await);
    for n in 1..=20 {
        let (status, events, _) = stack
            .call(
                "/mcp/fruits_api/get_fruit_by_id",
                json!({"args": {"id": 1}}),
            )
            .await;
        assert_eq!(status, 200);
        assert_completed(&events);
        assert_eq!(
            count(&stack.metrics_text().await),
            before + n,
            "after call {n}"
        );
    }
}

#[tokio::test]
async fn a_server_registered_through_the_admin_api_answers_through_the_gateway() {
    // The PRD's flow 1, end to end: admin API -> Redis -> supervisor spawns a worker
    // -> the gateway routes to it. PRD bar: 5 s.
    let stack = Stack::start(Options::default()).await;
    let admin = format!("http://{}", stack.admin_addr);
    let started = std::time::Instant::now();
    let response = stack
        .client
        .post(format!("{admin}/api/servers/fresh_api"))
        .json(&json!({"baseUrl": format!("{}/api", stack.mock_url)}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    let response = stack
        .client
        .post(format!("{admin}/api/tools/fresh_api/get_fruit_by_id"))
        .json(&json!({"method": "GET", "pathTemplate": "/fruits/{id}", "paramMapping": {"path": {"id": "id"}},
            "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    let output = mcp_testkit::wait_until_async(
        "the new server to answer through the gateway (PRD bar: 5 s)",
        std::time::Duration::from_secs(5),
        || async {
            let (status, events, _) = stack
                .call("/mcp/fresh_api/get_fruit_by_id", json!({"args": {"id": 3}}))
                .await;
            if status != 200 || events.last()?.event != "tool_call.completed" {
                return None;
            }
            Some(assert_completed(&events)[0].clone())
        },
    )
    .await;
    println!(
        "registered through the admin API -> first call answered through the gateway in {:?}",
        started.elapsed()
    );
    assert_eq!(output["name"], "Cherry");
}

/// Every call and compatibility route of the hub, with its events and request ids;
/// shared by the worker mode and the rollback mode (`workers` running per server).
pub async fn check_call_routes(stack: &Stack, workers: usize) {
    // POST /mcp/{id}/{tool} with {"args"}: request id kept from the caller.
    let response = stack
        .client
        .post(format!("{}/mcp/fruits_api/get_fruit_by_id", stack.base))
        .header("x-request-id", "caller-7")
        .json(&json!({"args": {"id": 1}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], "caller-7");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let events = crate::parse_sse(&response.text().await.expect("body"));
    let outputs = assert_completed(&events);
    assert_eq!(events[0].data["request_id"], "caller-7");
    assert_eq!(
        outputs,
        vec![
            json!({"id": 1, "name": "Apple", "family": "Rosaceae", "color": "red", "calories": 52})
        ]
    );

    // A generated id is returned as a header and is in every event.
    let response = stack
        .post(
            "/mcp/fakestore_api/get_all_products",
            json!({"args": {"limit": 2}}),
        )
        .await;
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let events = crate::parse_sse(&response.text().await.expect("body"));
    assert_eq!(events[0].data["request_id"], header_id.as_str());
    assert_eq!(
        assert_completed(&events)[0].as_array().map(Vec::len),
        Some(2)
    );

    // POST /mcp/{id}/tools/call with {name, args}.
    let (status, events, _) = stack
        .call(
            "/mcp/fruits_api/tools/call",
            json!({"name": "get_fruits", "args": {"family": "Rosaceae"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        assert_completed(&events)[0].as_array().map(Vec::len),
        Some(2)
    );

    // POST /mcp/{id}: {name, args}, {"method": "initialize"}, {"method": "tools.list"}.
    let (status, events, _) = stack
        .call(
            "/mcp/fruits_api",
            json!({"name": "create_fruit", "args": {"name": "Pear"}}),
        )
        .await;
    assert_eq!(status, 200);
    let created = assert_completed(&events)[0].clone();
    let (_, events, _) = stack
        .call(
            "/mcp/fruits_api/get_fruit_by_id",
            json!({"args": {"id": created["id"]}}),
        )
        .await;
    assert_eq!(assert_completed(&events)[0]["name"], "Pear");
    // The JSON compatibility answers carry the request id too (kept from the caller).
    let (status, id, body) =
        json_with_id(stack, "/mcp/fruits_api", json!({"method": "initialize"})).await;
    assert_eq!(
        (status, id.as_str(), body["serverInfo"]["name"].clone()),
        (200, "compat-1", json!("fruits_api"))
    );
    let (status, id, body) =
        json_with_id(stack, "/mcp/fruits_api", json!({"method": "tools.list"})).await;
    assert_eq!(
        (status, id.as_str(), body["tools"].as_array().map(Vec::len)),
        (200, "compat-1", Some(5))
    );
    let (status, id, body) = json_with_id(stack, "/mcp/fruits_api/tools/list", json!({})).await;
    assert_eq!(
        (status, id.as_str(), body["tools"].as_array().map(Vec::len)),
        (200, "compat-1", Some(5))
    );

    // An incoming id that is not a valid one is replaced, in the header and the events.
    for bad in ["has spaces", "a/slash", "ü", &"x".repeat(129)] {
        let response = stack
            .client
            .post(format!("{}/mcp/fruits_api/get_fruit_by_id", stack.base))
            .header(
                "x-request-id",
                reqwest::header::HeaderValue::from_bytes(bad.as_bytes()).expect("header"),
            )
            .json(&json!({"args": {"id": 1}}))
            .send()
            .await
            .expect("sent");
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_owned();
        assert!(
            id != bad && mcp_core::request_id::is_valid(&id),
            "{bad:?} -> {id:?}"
        );
        let events = crate::parse_sse(&response.text().await.expect("body"));
        assert_completed(&events);
        assert_eq!(events[0].data["request_id"], id.as_str());
    }

    // GET|HEAD /mcp/{id}, GET|POST /mcp/{id}/tools/list, POST /mcp/{id}/initialize, POST /mcp/initialize.
    let info: serde_json::Value = stack.get_json("/mcp/fruits_api").await;
    assert_eq!(
        (
            info["id"].clone(),
            info["tools"].clone(),
            info["workers"].clone()
        ),
        (json!("fruits_api"), json!(5), json!(workers))
    );
    let head = stack
        .client
        .head(format!("{}/mcp/fruits_api", stack.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(head.status().as_u16(), 200);
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let list: serde_json::Value = stack
            .client
            .request(
                method,
                format!("{}/mcp/fakestore_api/tools/list", stack.base),
            )
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let names: Vec<&str> = list["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names,
            [
                "add_product",
                "delete_product",
                "get_all_products",
                "get_product_by_id",
                "update_product"
            ]
        );
        assert!(list["tools"][0]["inputSchema"].is_object());
    }
    let (status, _, body) = stack.call("/mcp/fruits_api/initialize", json!({})).await;
    assert_eq!(
        (status, body.expect("json")["protocolVersion"].clone()),
        (200, json!("2024-11-05"))
    );
    let (status, _, body) = stack.call("/mcp/initialize", json!({})).await;
    let body = body.expect("json");
    assert_eq!(status, 200);
    assert_eq!(
        body["servers"],
        json!(["fakestore_api", "fruits_api", "test_api"])
    );
}

/// POSTs `body` with the request id `compat-1`; returns the status, the id the answer
/// carries and the JSON body.
async fn json_with_id(
    stack: &Stack,
    path: &str,
    body: serde_json::Value,
) -> (u16, String, serde_json::Value) {
    let response = stack
        .client
        .post(format!("{}{path}", stack.base))
        .header("x-request-id", "compat-1")
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, id, response.json().await.expect("json"))
}

#[tokio::test]
async fn a_sampled_call_logs_its_accepted_start_and_done_together() {
    // One sampling decision per request: with half the calls sampled, each call logs
    // all of its success-path events or none of them.
    let stack = Stack::start(Options {
        gateway_args: vec!["--log-sample".into(), "0.5".into()],
        ..Options::default()
    })
    .await;
    let ids: Vec<String> = (0..10).map(|n| format!("sampled-{n}")).collect();
    for id in &ids {
        let response = stack
            .client
            .post(format!("{}/mcp/fruits_api/get_fruit_by_id", stack.base))
            .header("x-request-id", id)
            .json(&json!({"args": {"id": 1}}))
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), 200);
        assert_completed(&crate::parse_sse(&response.text().await.expect("body")));
    }
    // Lines are written in batches: a refused call (always logged, whatever the
    // sampling) made after the others marks where their lines have all been written.
    let marker = stack
        .client
        .post(format!("{}/mcp/fruits_api/get_fruit_by_id", stack.base))
        .header("x-request-id", "sampled-marker")
        .json(&json!({"args": {"id": "not a number"}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(marker.status().as_u16(), 400);
    mcp_testkit::wait_until_async(
        "the marker's gateway.request.refused line",
        std::time::Duration::from_secs(10),
        || async {
            stack.gateway.json_lines().into_iter().find(|l| {
                l["event"] == "gateway.request.refused" && l["request_id"] == "sampled-marker"
            })
        },
    )
    .await;
    // `proxy.done` is logged after the answer went out: wait for the last one.
    let logged = |event: &str| -> Vec<String> {
        let mut logged: Vec<String> = stack
            .gateway
            .json_lines()
            .iter()
            .filter(|l| l["event"] == event)
            .filter_map(|l| l["request_id"].as_str().map(str::to_owned))
            .filter(|id| id.starts_with("sampled-") && id != "sampled-marker")
            .collect();
        logged.sort();
        logged.dedup();
        logged
    };
    let started = logged("tool.call.proxy.start");
    assert!(
        !started.is_empty() && started.len() < ids.len(),
        "half the calls are sampled: {started:?}"
    );
    mcp_testkit::wait_until_async(
        "proxy.done for every sampled call",
        std::time::Duration::from_secs(5),
        || async { (logged("tool.call.proxy.done") == started).then_some(()) },
    )
    .await;
    assert_eq!(logged("tool.call.accepted"), started);
}

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_it_from_the_gateway() {
    let stack = Stack::start(Options::default()).await;
    check_expect_continue(&stack).await;
}

/// The gateway reads the body before any backend sees the request, so it answers
/// `Expect: 100-continue` itself (curl waits a second for it past 1 KiB), once, in
/// both modes; then the call runs.
pub async fn check_expect_continue(stack: &Stack) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = stack.base.trim_start_matches("http://").to_owned();
    for size in [2 * 1024, 300 * 1024] {
        let body = json!({"args": {"blob": "c".repeat(size)}}).to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /mcp/test_api/echo_blob HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        let mut interim = vec![0; 64];
        let n = tokio::time::timeout(
            std::time::Duration::from_millis(800),
            stream.read(&mut interim),
        )
        .await
        .expect("a 100 Continue before the body was sent")
        .expect("read");
        let interim = String::from_utf8_lossy(&interim[..n]).into_owned();
        assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
        stream.write_all(body.as_bytes()).await.expect("body");
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("in time")
        .expect("read");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            answer.contains("HTTP/1.1 200") && answer.contains("tool_call.completed"),
            "{size} bytes: {}",
            answer.chars().take(300).collect::<String>()
        );
        assert_eq!(
            answer.matches("HTTP/1.1 100").count(),
            0,
            "one 100 Continue only"
        );
    }
}

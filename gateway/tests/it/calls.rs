use serde_json::json;

use crate::{assert_completed, Options, Stack};

#[tokio::test]
async fn every_call_and_compatibility_route() {
    let stack = Stack::start(Options::default()).await;
    check_call_routes(&stack, 1).await;

    // The admin API and health behind the same front door; metrics on their own port.
    let stats: serde_json::Value = stack.get_json("/api/stats").await;
    assert_eq!(stats["servers"], 3);
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
async fn a_server_registered_through_the_admin_api_answers_through_the_gateway() {
    // The PRD's flow 1, end to end: admin API -> Redis -> supervisor spawns a worker
    // -> the gateway routes to it. PRD bar: 5 s.
    let stack = Stack::start(Options::default()).await;
    let admin = format!("http://{}", stack.admin_addr);
    let started = std::time::Instant::now();
    let response = stack
        .client
        .post(format!("{admin}/api/servers/fresh_api"))
        .json(&json!({"baseUrl": format!("{}/api", stack.mock.url())}))
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
    let (status, _, body) = stack
        .call("/mcp/fruits_api", json!({"method": "initialize"}))
        .await;
    assert_eq!(
        (status, body.expect("json")["serverInfo"]["name"].clone()),
        (200, json!("fruits_api"))
    );
    let (status, _, body) = stack
        .call("/mcp/fruits_api", json!({"method": "tools.list"}))
        .await;
    assert_eq!(
        (
            status,
            body.expect("json")["tools"].as_array().map(Vec::len)
        ),
        (200, Some(5))
    );

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

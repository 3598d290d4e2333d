//! The circuit breaker seen from outside, through the whole hub: a REST API that fails
//! until the worker's breaker opens, then `GET /api/servers/{id}/runtime` (the record
//! the supervisor copies from the worker's `/healthz`) shows it open with its counters,
//! and closed again after the API recovers and the half-open probe succeeds; the call
//! refused while open is in the audit log with `error: circuit_open`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{Options, Stack};

const KEY: &str = "gw-breaker";

async fn set_fault(stack: &Stack, fault: Value) {
    let status = stack
        .client
        .put(format!("{}/control/faults/{KEY}", stack.mock_url))
        .json(&fault)
        .send()
        .await
        .expect("fault set")
        .status();
    assert_eq!(status, 200);
}

/// One hub call of `breaker_api/get`; the whole SSE body.
async fn call(stack: &Stack) -> String {
    stack
        .client
        .post(format!("{}/mcp/breaker_api/get", stack.base))
        .json(&json!({"args": {}}))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("body")
}

async fn runtime(stack: &Stack) -> Value {
    let response = stack
        .client
        .get(format!(
            "{}/api/servers/breaker_api/runtime",
            stack.admin_url
        ))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

/// Waits until replica 0's record shows the breaker in `state`; its `resilience`.
async fn wait_breaker(stack: &Stack, state: &str) -> Value {
    mcp_testkit::wait_until_async(
        &format!("the runtime record to show the breaker {state}"),
        Duration::from_secs(10),
        || async {
            let runtime = runtime(stack).await;
            let resilience = runtime["workers"][0]["resilience"].clone();
            (resilience["state"] == state).then_some(resilience)
        },
    )
    .await
}

#[tokio::test]
async fn the_runtime_record_shows_the_breaker_open_then_closed() {
    let stack = Stack::start(Options::default()).await;
    set_fault(&stack, json!({"status": 503})).await;
    let server = serde_json::from_value(json!({
        "baseUrl": stack.mock_url, "timeoutMs": 5000,
        "circuitBreaker": {"failureThreshold": 3, "coolDownMs": 1500}
    }))
    .expect("server");
    stack
        .registry
        .upsert_server("breaker_api", server)
        .await
        .expect("server");
    let tool = json!({"name": "get", "method": "GET",
        "pathTemplate": format!("/fault/{KEY}/test/echo")});
    stack
        .registry
        .upsert_tool("breaker_api", serde_json::from_value(tool).expect("tool"))
        .await
        .expect("tool");
    stack.wait_routable("breaker_api", 1).await;

    for n in 1..=3 {
        let body = call(&stack).await;
        assert!(body.contains("tool_call.error"), "call {n}: {body}");
        assert!(!body.contains("circuit_open"), "call {n}: {body}");
    }
    let body = call(&stack).await;
    assert!(
        body.contains("circuit_open"),
        "the 4th call fails fast: {body}"
    );

    // The call refused while open is audited with its outcome.
    let refused: Value = mcp_testkit::wait_until_async(
        "the refused call's audit entry",
        Duration::from_secs(10),
        || async {
            let page: Value = stack
                .client
                .get(format!("{}/api/audit?server=breaker_api", stack.admin_url))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            page["entries"]
                .as_array()?
                .iter()
                .find(|e| e["error"] == "circuit_open")
                .cloned()
        },
    )
    .await;
    assert_eq!(refused["tool"], "get", "{refused}");
    assert_eq!(refused["status"], "error", "{refused}");
    assert!(
        refused.get("rest_status").is_none_or(Value::is_null),
        "{refused}"
    );

    let open = wait_breaker(&stack, "open").await;
    assert_eq!(open["opened"], 1, "{open}");
    assert_eq!(open["consecutiveFailures"], 3, "{open}");
    assert!(open["rejected"].as_u64() >= Some(1), "{open}");

    // The API recovers; after the cool-down the probe succeeds and closes the breaker.
    set_fault(&stack, json!({})).await;
    mcp_testkit::wait_until_async(
        "a call to succeed after the cool-down",
        Duration::from_secs(10),
        || async {
            call(&stack)
                .await
                .contains("tool_call.completed")
                .then_some(())
        },
    )
    .await;
    let closed = wait_breaker(&stack, "closed").await;
    assert_eq!(closed["consecutiveFailures"], 0, "{closed}");
}

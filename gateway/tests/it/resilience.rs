//! The circuit breaker seen from outside, through the whole hub: a REST API that fails
//! until the worker's breaker opens, then `GET /api/servers/{id}/runtime` (the record
//! the supervisor copies from the worker's `/healthz`) shows it open with its counters,
//! and closed again after the API recovers and the half-open probe succeeds; the call
//! refused while open is in the audit log with `error: circuit_open`. The same counters
//! on the gateway's `/metrics`: retries by reason, the breaker's state, opened and
//! rejected counts. In rollback mode the gateway's own guards and audit writer count
//! the calls it runs itself: `/metrics` shows them with `replica="gateway"`.

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
    call_server(stack, "breaker_api").await
}

/// One hub call of `{server}/get`; the whole SSE body.
async fn call_server(stack: &Stack, server: &str) -> String {
    stack
        .client
        .post(format!("{}/mcp/{server}/get", stack.base))
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

/// Registers `server_id` (its fields over the mock's base URL) with one tool, `get`,
/// behind the fault key, and waits for its worker.
async fn register(stack: &Stack, server_id: &str, fields: Value) {
    let mut server = json!({"baseUrl": stack.mock_url, "timeoutMs": 5000});
    if let (Some(server), Value::Object(fields)) = (server.as_object_mut(), fields) {
        server.extend(fields);
    }
    stack
        .registry
        .upsert_server(server_id, serde_json::from_value(server).expect("server"))
        .await
        .expect("server");
    let tool = json!({"name": "get", "method": "GET",
        "pathTemplate": format!("/fault/{KEY}/test/echo")});
    stack
        .registry
        .upsert_tool(server_id, serde_json::from_value(tool).expect("tool"))
        .await
        .expect("tool");
    stack.wait_routable(server_id, 1).await;
}

#[tokio::test]
async fn the_runtime_record_shows_the_breaker_open_then_closed() {
    let stack = Stack::start(Options::default()).await;
    set_fault(&stack, json!({"status": 503})).await;
    register(
        &stack,
        "breaker_api",
        json!({"circuitBreaker": {"failureThreshold": 3, "coolDownMs": 1500}}),
    )
    .await;

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
            let page = stack
                .try_get_json_at(&format!("{}/api/audit?server=breaker_api", stack.admin_url))
                .await?;
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
    assert_eq!(
        open["openedBy"],
        json!({"kind": "consecutive_failures"}),
        "why it opened: {open}"
    );
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
    assert!(
        closed.get("openedBy").is_none(),
        "closed: no reason: {closed}"
    );
}

/// The value of the sample `series` (`name{labels}`, labels in name order, as the
/// gateway writes them) in a Prometheus text, when it is there.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn the_gateway_metrics_show_retries_by_reason_and_the_breaker_open() {
    let stack = Stack::start(Options::default()).await;
    set_fault(&stack, json!({"status": 502})).await;
    register(
        &stack,
        "metrics_api",
        json!({"retry": {"maxAttempts": 3, "baseDelayMs": 10, "maxDelayMs": 20},
            "circuitBreaker": {"failureThreshold": 5, "coolDownMs": 60000}}),
    )
    .await;
    // 502 three times: two retries, three failures in a row.
    let body = call_server(&stack, "metrics_api").await;
    assert!(body.contains("tool_call.error"), "{body}");
    // 504: the fourth failure is retried, the fifth opens the breaker (no more retries).
    set_fault(&stack, json!({"status": 504})).await;
    let body = call_server(&stack, "metrics_api").await;
    assert!(body.contains("tool_call.error"), "{body}");
    let hits = stack
        .get_json_at(&format!("{}/control/faults/{KEY}/hits", stack.mock_url))
        .await;
    assert_eq!(hits["hits"], 2, "two attempts under 504: {hits}");
    // Open: failed fast, without reaching the API.
    let body = call_server(&stack, "metrics_api").await;
    assert!(body.contains("circuit_open"), "{body}");

    let labels = r#"replica="0",server="metrics_api""#;
    let series = |name: &str| format!("{name}{{{labels}}}");
    let retries =
        |reason: &str| format!(r#"mcp_worker_retries_total{{reason="{reason}",{labels}}}"#);
    // The counters reach /metrics through the runtime record (the supervisor's next
    // health probe, then the gateway's table): waited for, not slept.
    let text = mcp_testkit::wait_until_async(
        "the gateway's /metrics to show the breaker open with its counts",
        Duration::from_secs(20),
        || async {
            let text = stack
                .client
                .get(&stack.metrics)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let done = sample(&text, &series("mcp_breaker_state")) == Some(2.0)
                && sample(&text, &series("mcp_breaker_rejected_total")) == Some(1.0);
            done.then_some(text)
        },
    )
    .await;
    assert_eq!(sample(&text, &retries("status_502")), Some(2.0), "{text}");
    assert_eq!(sample(&text, &retries("status_504")), Some(1.0), "{text}");
    for reason in ["connect", "timeout", "status_503"] {
        assert_eq!(
            sample(&text, &retries(reason)),
            Some(0.0),
            "{reason}: {text}"
        );
    }
    assert_eq!(
        sample(&text, &series("mcp_breaker_opened_total")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("mcp_worker_retries_refused_total")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("mcp_breaker_consecutive_failures")),
        Some(5.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE mcp_worker_retries_total counter")
            && text.contains("# TYPE mcp_breaker_state gauge"),
        "{text}"
    );
    // The admin API's runtime record says the same.
    let runtime = stack
        .get_json_at(&format!(
            "{}/api/servers/metrics_api/runtime",
            stack.admin_url
        ))
        .await;
    let by_reason = &runtime["workers"][0]["resilience"]["retriesByReason"];
    assert_eq!(by_reason["status_502"], 2, "{runtime}");
    assert_eq!(by_reason["status_504"], 1, "{runtime}");
}

#[tokio::test]
async fn in_rollback_mode_the_gateway_metrics_show_its_own_retries_and_breaker() {
    let stack = Stack::start(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    set_fault(&stack, json!({"status": 502})).await;
    let server = json!({"baseUrl": stack.mock_url, "timeoutMs": 5000,
        "retry": {"maxAttempts": 3, "baseDelayMs": 10, "maxDelayMs": 20},
        "circuitBreaker": {"failureThreshold": 5, "coolDownMs": 60000}});
    stack
        .registry
        .upsert_server("rb_api", serde_json::from_value(server).expect("server"))
        .await
        .expect("server");
    let tool = json!({"name": "get", "method": "GET",
        "pathTemplate": format!("/fault/{KEY}/test/echo")});
    stack
        .registry
        .upsert_tool("rb_api", serde_json::from_value(tool).expect("tool"))
        .await
        .expect("tool");
    mcp_testkit::wait_until_async(
        "the gateway to see rb_api/get",
        Duration::from_secs(10),
        || async {
            let info = stack
                .try_get_json_at(&format!("{}/mcp/rb_api", stack.base))
                .await?;
            (info["tools"] == 1).then_some(())
        },
    )
    .await;
    // 502 three times: two retries, three failures in a row.
    let body = call_server(&stack, "rb_api").await;
    assert!(body.contains("tool_call.error"), "{body}");
    // 504: the fourth failure is retried, the fifth opens the breaker.
    set_fault(&stack, json!({"status": 504})).await;
    let body = call_server(&stack, "rb_api").await;
    assert!(body.contains("tool_call.error"), "{body}");
    // Open: failed fast.
    let body = call_server(&stack, "rb_api").await;
    assert!(body.contains("circuit_open"), "{body}");

    let labels = r#"replica="gateway",server="rb_api""#;
    let series = |name: &str| format!("{name}{{{labels}}}");
    let retries =
        |reason: &str| format!(r#"mcp_worker_retries_total{{reason="{reason}",{labels}}}"#);
    // Read live at the scrape; the audit writer appends its three entries in the
    // background: waited for.
    let written = r#"mcp_audit_written_total{replica="gateway",server=""}"#;
    let text = stack
        .metrics_when(|text| sample(text, written) == Some(3.0))
        .await;
    assert_eq!(sample(&text, &retries("status_502")), Some(2.0), "{text}");
    assert_eq!(sample(&text, &retries("status_504")), Some(1.0), "{text}");
    for reason in ["connect", "timeout", "status_503"] {
        assert_eq!(
            sample(&text, &retries(reason)),
            Some(0.0),
            "{reason}: {text}"
        );
    }
    for (name, value) in [
        ("mcp_breaker_state", 2.0),
        ("mcp_breaker_opened_total", 1.0),
        ("mcp_breaker_rejected_total", 1.0),
        ("mcp_breaker_consecutive_failures", 5.0),
        ("mcp_worker_retries_refused_total", 0.0),
    ] {
        assert_eq!(sample(&text, &series(name)), Some(value), "{name}: {text}");
    }
    assert_eq!(
        sample(
            &text,
            r#"mcp_audit_dropped_total{replica="gateway",server=""}"#
        ),
        Some(0.0),
        "{text}"
    );
    // No worker runs: no numbered replica; servers without retry or breaker: no series.
    assert!(!text.contains(r#"replica="0""#), "{text}");
    assert!(!text.contains(r#"server="fruits_api""#), "{text}");
}

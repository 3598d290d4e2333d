//! Retries and the circuit breaker (issue 27 section 2) with a real worker in front of
//! the mock REST API's fault keys (`/fault/{key}/...`, `failFirst`, `retryAfter`, the
//! per-key hit counter): what is retried and what is not, counted at the mock, timed,
//! and the log events with the call's request id.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{SseEvent, WorkerHarness};

const KEY: &str = "rz";

/// A tool on the echo route behind fault key [`KEY`].
fn tool(name: &str, method: &str, extra: Value) -> Value {
    let mut tool =
        json!({"name": name, "method": method, "pathTemplate": format!("/fault/{KEY}/test/echo")});
    if let (Some(obj), Some(extra)) = (tool.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    tool
}

async fn set_fault(hub: &WorkerHarness, fault: Value) {
    let status = hub
        .client
        .put(format!("{}/control/faults/{KEY}", hub.mock.url()))
        .json(&fault)
        .send()
        .await
        .expect("fault set")
        .status();
    assert_eq!(status, 200);
}

async fn hits(client: &reqwest::Client, mock_url: &str) -> u64 {
    let body: Value = client
        .get(format!("{mock_url}/control/faults/{KEY}/hits"))
        .send()
        .await
        .expect("hits")
        .json()
        .await
        .expect("json");
    body["hits"].as_u64().expect("a count")
}

fn last(events: &[SseEvent]) -> &SseEvent {
    events.last().expect("events")
}

/// The events named `event` the worker logged for `request_id`.
fn logged(hub: &WorkerHarness, event: &str, request_id: &str) -> Vec<Value> {
    hub.process
        .json_lines()
        .into_iter()
        .filter(|line| line["event"] == event && line["request_id"] == request_id)
        .collect()
}

fn request_id(events: &[SseEvent]) -> String {
    last(events).data["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned()
}

/// Waits (with a deadline) until the worker has logged `event` for `request_id`.
fn wait_logged(hub: &WorkerHarness, event: &str, request_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = logged(hub, event, request_id);
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_the_asked_wait_then_succeeds() {
    let hub = WorkerHarness::start(
        json!({"retry": {"maxAttempts": 3, "baseDelayMs": 10}}),
        vec![tool("get", "GET", json!({}))],
    )
    .await;
    set_fault(
        &hub,
        json!({"status": 503, "failFirst": 1, "retryAfter": 1}),
    )
    .await;
    let started = Instant::now();
    let (status, events) = hub.call("get", json!({})).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(last(&events).event, "tool_call.completed", "{events:?}");
    assert_eq!(
        hits(&hub.client, &hub.mock.url()).await,
        2,
        "one 503, one retry"
    );
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After: 1 was waited: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let id = request_id(&events);
    let retries = wait_logged(&hub, "tool.http.retry", &id);
    assert_eq!(retries.len(), 1, "{retries:?}");
    let retry = &retries[0];
    assert_eq!(
        (
            &retry["attempt"],
            &retry["status"],
            &retry["code"],
            &retry["retry_after"],
            &retry["delay"]
        ),
        (
            &json!(2),
            &json!(503),
            &json!("upstream_status"),
            &json!(1),
            &json!(1000)
        ),
        "{retry}"
    );
    assert_eq!(
        (&retry["server"], &retry["tool"]),
        (&json!("svc"), &json!("get"))
    );
    let health: Value = hub
        .client
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health["resilience"]["retries"], 1, "{health}");
    assert_eq!(health["resilience"]["state"], "closed", "{health}");
}

#[tokio::test]
async fn a_500_is_not_retried_and_a_post_only_when_the_tool_says_so() {
    let hub = WorkerHarness::start(
        json!({"retry": {"maxAttempts": 3, "baseDelayMs": 10}}),
        vec![
            tool("get", "GET", json!({})),
            tool("post", "POST", json!({})),
            tool("marked", "POST", json!({"retry": {"idempotent": true}})),
            tool(
                "marked_body",
                "POST",
                json!({"retry": {"idempotent": true}, "paramMapping": {"body": {"blob": "blob"}}}),
            ),
        ],
    )
    .await;
    let mock = hub.mock.url();

    set_fault(&hub, json!({"status": 500, "failFirst": 1})).await;
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.error", "{events:?}");
    assert_eq!(last(&events).data["error"]["status"], 500, "{events:?}");
    assert_eq!(hits(&hub.client, &mock).await, 1, "a 500 is not retried");
    let id = request_id(&events);
    wait_logged(&hub, "tool.call.failed", &id);
    assert!(logged(&hub, "tool.http.retry", &id).is_empty());

    set_fault(&hub, json!({"status": 503, "failFirst": 1})).await;
    let (_, events) = hub.call("post", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.error", "{events:?}");
    assert_eq!(hits(&hub.client, &mock).await, 1, "a POST is not retried");
    let id = request_id(&events);
    let skipped = wait_logged(&hub, "tool.http.retry.skipped", &id);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["reason"], "not_idempotent", "{}", skipped[0]);
    assert!(logged(&hub, "tool.http.retry", &id).is_empty());

    set_fault(&hub, json!({"status": 503, "failFirst": 1})).await;
    let (_, events) = hub.call("marked", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.completed", "{events:?}");
    assert_eq!(
        hits(&hub.client, &mock).await,
        2,
        "a marked POST is retried"
    );
    assert_eq!(
        wait_logged(&hub, "tool.http.retry", &request_id(&events)).len(),
        1
    );

    // Every attempt sends the whole body again: the third one reaches the echo intact.
    let blob = format!("{}-END", "b".repeat(200_000));
    set_fault(&hub, json!({"status": 503, "failFirst": 2})).await;
    let output = hub.output("marked_body", json!({"blob": blob})).await;
    assert_eq!(hits(&hub.client, &mock).await, 3, "two retries");
    assert_eq!(output["method"], "POST", "{output}");
    assert_eq!(
        output["bodyJson"],
        json!({"blob": blob}),
        "the body re-sent intact"
    );
}

#[tokio::test]
async fn connect_refused_is_retried_then_the_breaker_fails_fast_and_closes_after_recovery() {
    let port = mcp_testkit::free_port();
    let hub = WorkerHarness::start(
        json!({
            "baseUrl": format!("http://127.0.0.1:{port}"),
            "retry": {"maxAttempts": 2, "baseDelayMs": 10},
            "circuitBreaker": {"failureThreshold": 3, "coolDownMs": 1000}
        }),
        vec![tool("get", "GET", json!({}))],
    )
    .await;

    // Call 1: two refused attempts (failures 1 and 2), one retry.
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(
        last(&events).data["error"]["code"],
        "upstream_unreachable",
        "{events:?}"
    );
    let first = request_id(&events);
    assert_eq!(wait_logged(&hub, "tool.http.retry", &first).len(), 1);
    // Call 2: its first attempt is the third failure: the breaker opens, no retry.
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(
        last(&events).data["error"]["code"],
        "upstream_unreachable",
        "{events:?}"
    );
    let second = request_id(&events);
    let opened = wait_logged(&hub, "tool.circuit.open", &second);
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(
        (&opened[0]["from"], &opened[0]["to"], &opened[0]["failures"]),
        (&json!("closed"), &json!("open"), &json!(3)),
        "{}",
        opened[0]
    );
    let skipped = wait_logged(&hub, "tool.http.retry.skipped", &second);
    assert_eq!(skipped[0]["reason"], "circuit_open", "{skipped:?}");
    // Call 3: fails fast.
    let started = Instant::now();
    let (_, events) = hub.call("get", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let error = &last(&events).data["error"];
    assert_eq!(error["code"], "circuit_open", "{events:?}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the circuit breaker of this REST API is open")),
        "{error}"
    );

    // The REST API comes back on its port: the first call after the cool-down is the
    // probe; it succeeds and closes the breaker. Calls before it fail fast, unsent.
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mcp_testkit::mock_api::serve(listener, async move {
        let _ = stopped.await;
    }));
    let api = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = loop {
        let (_, events) = hub.call("get", json!({})).await;
        match last(&events).event.as_str() {
            "tool_call.completed" => break request_id(&events),
            _ => {
                assert_eq!(
                    last(&events).data["error"]["code"],
                    "circuit_open",
                    "{events:?}"
                );
                assert!(
                    Instant::now() < deadline,
                    "the breaker never let a probe through"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(
        hits(&hub.client, &api).await,
        1,
        "only the probe reached the API"
    );
    assert_eq!(wait_logged(&hub, "tool.circuit.half_open", &probe).len(), 1);
    let closed = wait_logged(&hub, "tool.circuit.closed", &probe);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(
        (&closed[0]["from"], &closed[0]["to"]),
        (&json!("half_open"), &json!("closed"))
    );
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.completed", "{events:?}");
    assert_eq!(hits(&hub.client, &api).await, 2);
    let health: Value = hub
        .client
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    let resilience = &health["resilience"];
    assert_eq!(
        (
            &resilience["state"],
            &resilience["opened"],
            &resilience["consecutive_failures"]
        ),
        (&json!("closed"), &json!(1), &json!(0)),
        "{health}"
    );
    assert!(
        resilience["rejected"].as_u64().is_some_and(|n| n >= 1),
        "{health}"
    );
    let _ = stop.send(());
    let _ = server.await;
}

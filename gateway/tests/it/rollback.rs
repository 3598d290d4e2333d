use serde_json::json;

use crate::{assert_completed, Options, Stack};

#[tokio::test]
async fn with_workers_off_the_gateway_runs_calls_itself() {
    let stack = Stack::start(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let health: serde_json::Value = stack.get_json("/healthz").await;
    assert_eq!(health["mode"], "rollback");
    assert!(
        stack
            .registry
            .list_runtime()
            .await
            .expect("runtime")
            .is_empty(),
        "no workers run"
    );

    // The same routes, events and ids as with workers, and the same body phase.
    crate::calls::check_call_routes(&stack, 0).await;
    crate::calls::check_expect_continue(&stack).await;

    let response = stack
        .client
        .post(format!("{}/mcp/fruits_api/get_fruit_by_id", stack.base))
        .header("x-request-id", "rb-1")
        .json(&json!({"args": {"id": 2}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "rb-1");
    let events = crate::parse_sse(&response.text().await.expect("body"));
    assert_eq!(assert_completed(&events)[0]["name"], "Banana");
    assert_eq!(events[0].data["request_id"], "rb-1");

    let (status, _, body) = stack
        .call(
            "/mcp/fakestore_api/add_product",
            json!({"args": {"price": "free"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body.expect("json")["error"]["code"], "invalid_arguments");
    let (status, _, _) = stack
        .call("/mcp/fruits_api/nope", json!({"args": {}}))
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = stack
        .call(
            "/mcp/test_api/echo_blob",
            json!({"args": {"blob": "x".repeat(2 * 1024 * 1024)}}),
        )
        .await;
    assert_eq!(status, 413);

    let mut response = stack
        .post(
            "/mcp/test_api/chunks",
            json!({"args": {"n": 3, "interval": 150}}),
        )
        .await;
    let mut text = String::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(assert_completed(&crate::parse_sse(&text)).len(), 3);
    let http_line = stack
        .gateway
        .wait_for_event("tool.http.response", std::time::Duration::from_secs(5));
    assert_eq!(
        http_line["service"], "mcp-gateway",
        "the adapter runs in the gateway"
    );
}

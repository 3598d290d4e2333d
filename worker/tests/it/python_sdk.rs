//! The official Python MCP SDKs (2.x default mode, 1.x Streamable HTTP, 1.x SSE) against
//! the worker, list_changed included: 2.x hears it on a `subscriptions/listen` stream,
//! 1.x on its session (helpers in `mcp_testkit::python`).

use mcp_testkit::python::{run_client, summary, wait_ready};
use serde_json::{json, Value};

use crate::WorkerHarness;

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

const DEMO_TOOLS: [&str; 5] = [
    "create_fruit",
    "delete_fruit",
    "get_fruit_by_id",
    "get_fruits",
    "update_fruit",
];

fn check_summary(summary: &Value) {
    assert_eq!(summary["tools"], json!(DEMO_TOOLS), "{summary}");
    assert_eq!(summary["isError"], false, "{summary}");
    assert_eq!(summary["structured"]["name"], "Banana", "{summary}");
    assert!(
        summary["text"][0]
            .as_str()
            .is_some_and(|t| t.contains("Banana")),
        "{summary}"
    );
}

/// Runs a client to its summary off the async runtime.
async fn client_summary(venv: &'static str, script: &'static str, args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        summary(&run_client(venv, script, &args), script)
    })
    .await
    .expect("join")
}

#[tokio::test]
async fn python_sdk_2_default_mode_lists_and_calls() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let args = vec![
        format!("{}/mcp", hub.base),
        "get_fruit_by_id".into(),
        r#"{"id": 2}"#.into(),
    ];
    let summary = client_summary("venv-mcp2", "client_v2.py", args).await;
    check_summary(&summary);
    assert_eq!(
        summary["schemas"]["get_fruit_by_id"]["required"],
        json!(["id"])
    );
    // The 2.x SDK's default mode took the stateless 2026-07-28 path (server/discover,
    // no initialize, no session), not the fallback handshake.
    assert_eq!(
        (
            &summary["protocol"],
            &summary["discovered"],
            &summary["initialized"]
        ),
        (&json!("2026-07-28"), &json!(true), &json!(false)),
        "{summary}"
    );
}

/// Runs a client with `--wait-list-changed`, adds tool `tool` in Redis once it listens,
/// and returns its summary after checking the calls and that it heard the change.
async fn hears_list_changed(venv: &'static str, script: &'static str, tool: &str) -> Value {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let url = format!("{}/mcp", hub.base);
    let client = tokio::task::spawn_blocking(move || {
        let client = run_client(
            venv,
            script,
            &[
                &url,
                "get_fruit_by_id",
                r#"{"id": 2}"#,
                "--wait-list-changed",
                "20",
            ],
        );
        wait_ready(&client, script);
        client
    })
    .await
    .expect("join");
    let added = json!({"name": tool, "method": "GET", "pathTemplate": "/fruits/4"});
    hub.registry
        .upsert_tool(crate::SERVER, serde_json::from_value(added).expect("tool"))
        .await
        .expect("add tool");
    let summary = tokio::task::spawn_blocking(move || summary(&client, script))
        .await
        .expect("join");
    check_summary(&summary);
    assert_eq!(summary["listChanged"], true, "{summary}");
    assert!(
        summary["toolsAfter"]
            .as_array()
            .expect("tools")
            .iter()
            .any(|t| t == tool),
        "{summary}"
    );
    summary
}

#[tokio::test]
async fn python_sdk_1_streamable_http_lists_calls_and_hears_list_changed() {
    hears_list_changed("venv-mcp1", "client_v1.py", "lemon").await;
}

#[tokio::test]
async fn python_sdk_2_default_mode_hears_list_changed_on_a_listen_stream() {
    let summary = hears_list_changed("venv-mcp2", "client_v2.py", "lime").await;
    // The stateless 2026-07-28 protocol (no initialize, no session): the change came on
    // a subscriptions/listen stream that the worker acknowledged for tool-list changes.
    assert_eq!(
        (
            &summary["protocol"],
            &summary["discovered"],
            &summary["initialized"],
            &summary["listenedVia"],
        ),
        (
            &json!("2026-07-28"),
            &json!(true),
            &json!(false),
            &json!("subscriptions/listen")
        ),
        "{summary}"
    );
    assert_eq!(
        summary["honored"],
        json!({"toolsListChanged": true}),
        "{summary}"
    );
}

#[tokio::test]
async fn python_sdk_1_old_sse_transport_lists_and_calls() {
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let args = vec![
        format!("{}/sse", hub.base),
        "get_fruit_by_id".into(),
        r#"{"id": 2}"#.into(),
    ];
    let summary = client_summary("venv-mcp1", "client_sse.py", args).await;
    check_summary(&summary);
    assert!(
        summary["protocol"]
            .as_str()
            .is_some_and(|p| p.starts_with("20")),
        "{summary}"
    );
}

#[tokio::test]
async fn python_sdk_2_calls_a_tool_whose_result_is_a_list() {
    // MCP's structuredContent is an object; a JSON array result travels as text only
    // (the SDK refuses a result whose structuredContent is an array).
    let hub = WorkerHarness::start(json!({"basePath": "/api"}), demo_tools()).await;
    let args = vec![
        format!("{}/mcp", hub.base),
        "get_fruits".into(),
        "{}".into(),
    ];
    let summary = client_summary("venv-mcp2", "client_v2.py", args).await;
    assert_eq!(summary["isError"], false, "{summary}");
    assert_eq!(summary["structured"], Value::Null, "{summary}");
    let text: Value =
        serde_json::from_str(summary["text"][0].as_str().expect("text")).expect("JSON text");
    assert_eq!(text[0]["name"], "Apple", "{summary}");
}

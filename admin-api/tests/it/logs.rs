use reqwest::Method;

use crate::{Admin, Options};

#[tokio::test]
async fn every_log_line_is_json_with_service_event_and_ids() {
    let admin = Admin::start(Options::default());
    let response = admin
        .client
        .get(format!("{}/api/servers/ghost", admin.base))
        .header("x-request-id", "log-test-1")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 404);
    let body = serde_json::json!({"baseUrl": "http://x"});
    assert_eq!(
        admin
            .call(Method::POST, "/api/servers/logged", Some(body))
            .await
            .0,
        201
    );

    let tool = serde_json::json!({"method": "GET", "pathTemplate": "/x"});
    assert_eq!(
        admin
            .call(Method::POST, "/api/tools/logged/logged_tool", Some(tool))
            .await
            .0,
        201
    );

    // Each line the test needs is waited for: the writer batches lines, so a response
    // can reach the test before the lines its request logged reach stdout.
    let traced = admin.wait_for_log("the 404 with the caller's request id", |l| {
        l["event"] == "admin.request" && l["request_id"] == "log-test-1"
    });
    assert_eq!(traced["status"], 404);
    assert!(traced["latency"].is_number());
    let upsert = admin.wait_for_log("admin.server.upsert", |l| {
        l["event"] == "admin.server.upsert"
    });
    assert_eq!(upsert["server"], "logged");
    assert!(
        upsert["request_id"].is_string(),
        "events inside a request carry its id: {upsert}"
    );
    let tool_upsert =
        admin.wait_for_log("admin.tool.upsert", |l| l["event"] == "admin.tool.upsert");
    assert_eq!(
        (&tool_upsert["server"], &tool_upsert["tool"]),
        (&"logged".into(), &"logged_tool".into()),
        "a tool route's line names the server and the tool: {tool_upsert}"
    );
    assert!(tool_upsert["request_id"].is_string(), "{tool_upsert}");
    admin.wait_for_log("the tool route's request line", |l| {
        l["event"] == "admin.request" && l["path"] == "/api/tools/logged/logged_tool"
    });

    let lines = admin.process.stdout_lines();
    assert!(!lines.is_empty());
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(json["service"], "mcp-admin", "{line}");
        assert!(
            json["event"].as_str().is_some_and(|e| !e.is_empty()),
            "{line}"
        );
        assert!(
            json["timestamp"].is_string() && json["level"].is_string(),
            "{line}"
        );
    }
}

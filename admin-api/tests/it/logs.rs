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

    let request_line = admin
        .process
        .wait_for_event("admin.request", std::time::Duration::from_secs(10));
    assert_eq!(request_line["service"], "mcp-admin");
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
    let json: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let traced = json
        .iter()
        .find(|l| l["event"] == "admin.request" && l["request_id"] == "log-test-1")
        .expect("request line with the caller's id");
    assert_eq!(traced["status"], 404);
    assert!(traced["latency"].is_number());
    let upsert = json
        .iter()
        .find(|l| l["event"] == "admin.server.upsert")
        .expect("upsert line");
    assert_eq!(upsert["server"], "logged");
    assert!(
        upsert["request_id"].is_string(),
        "events inside a request carry its id: {upsert}"
    );
}

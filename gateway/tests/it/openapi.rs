//! Tools imported from a real OpenAPI document (the Swagger Petstore of
//! `@readme/oas-examples`, fetched by `scripts/ensure-deps.sh --with-sdks`) through the
//! gateway's admin route, then called as any client calls a tool: the REST API (the
//! mock's echo) receives the right method, path, query, headers and body.

use serde_json::{json, Value};

use crate::{assert_completed, Options, Stack};

fn petstore() -> Value {
    let cache = std::env::var("MCP_HUB_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/mcp-hub",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    });
    let path = format!("{cache}/openapi-fixtures/oas-examples/3.0/json/petstore.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("{path} is missing: run scripts/ensure-deps.sh --with-sdks (make test does)")
    });
    serde_json::from_str(&text).expect("petstore JSON")
}

#[tokio::test]
async fn an_imported_tool_reaches_the_rest_api_with_its_path_query_headers_and_body() {
    let stack = Stack::start(Options::default()).await;
    let base_url = format!("{}/test/echo", stack.mock_url);
    let report: Value = stack
        .client
        .post(format!("{}/api/servers/petstore/openapi", stack.base))
        .json(&json!({"document": petstore(), "baseUrl": base_url, "tags": ["pet"]}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("report");
    assert_eq!(report["serverCreated"], true, "{report}");
    assert_eq!(
        report["created"].as_array().map(Vec::len),
        Some(8),
        "{report}"
    );
    stack.wait_routable("petstore", 1).await;

    let echo = |events: &[crate::SseEvent]| -> Value {
        let outputs = assert_completed(events);
        outputs.into_iter().next().expect("one output")
    };
    let (status, events, body) = stack
        .call(
            "/mcp/petstore/findPetsByStatus",
            json!({"args": {"status": ["sold"]}}),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let seen = echo(&events);
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/test/echo/pet/findByStatus");
    let query = seen["query"].as_str().expect("a query");
    assert!(
        query.starts_with("status=") && query.contains("sold"),
        "{query}"
    );

    let (_, events, _) = stack
        .call(
            "/mcp/petstore/deletePet",
            json!({"args": {"petId": 42, "api_key": "k-1"}}),
        )
        .await;
    let seen = echo(&events);
    assert_eq!(
        (seen["method"].clone(), seen["path"].clone()),
        (json!("DELETE"), json!("/test/echo/pet/42"))
    );
    assert_eq!(seen["headers"]["api_key"], "k-1");

    let pet = json!({"name": "Rex", "photoUrls": ["http://x/p.png"], "status": "available"});
    let (_, events, _) = stack
        .call("/mcp/petstore/addPet", json!({"args": pet}))
        .await;
    let seen = echo(&events);
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/test/echo/pet");
    assert_eq!(seen["bodyJson"], pet, "the flattened body arrives whole");

    // The imported schema is enforced at the gateway like any tool's.
    let (status, _, body) = stack
        .call("/mcp/petstore/addPet", json!({"args": {"photoUrls": []}}))
        .await;
    assert_eq!(status, 400, "{body:?}");
    assert_eq!(body.expect("error")["error"]["code"], "invalid_arguments");
}

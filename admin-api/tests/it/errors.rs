use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::{assert_error, Admin, Options};

#[tokio::test]
async fn every_error_code_is_json_with_a_request_id() {
    let admin = Admin::start(Options {
        max_body_bytes: Some(4096),
        ..Options::default()
    });

    // 400: not JSON, and empty, on every route that takes a body.
    for path in ["/api/servers/x", "/api/tools/fruits_api/t", "/api/import"] {
        for body in ["{nope", ""] {
            let response = admin
                .client
                .post(format!("{}{path}", admin.base))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("sent");
            let status = response.status().as_u16();
            let json: serde_json::Value = response.json().await.expect("a JSON error body");
            assert_error(status, &json, 400, "bad_request");
            assert!(
                json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("JSON")),
                "POST {path} with {body:?}: {json}"
            );
        }
    }

    // 400: a malformed query string answers in the same JSON contract.
    for (method, path, body, culprit) in [
        (
            Method::POST,
            "/api/import?mode=bogus",
            Some(json!({"servers": {}})),
            "bogus",
        ),
        (
            Method::GET,
            "/api/export?includeSecrets=maybe",
            None,
            "includeSecrets",
        ),
    ] {
        let (status, body) = admin.call(method, path, body).await;
        assert_error(status, &body, 400, "bad_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(culprit)),
            "{path}: the message names what is wrong: {body}"
        );
    }

    // 404: unknown server, tool, route.
    for (method, path) in [
        (Method::GET, "/api/servers/ghost"),
        (Method::DELETE, "/api/servers/ghost"),
        (Method::POST, "/api/servers/ghost/restart"),
        (Method::GET, "/api/servers/ghost/runtime"),
        (Method::GET, "/api/tools/ghost"),
        (Method::GET, "/api/tools/fruits_api/ghost"),
        (Method::DELETE, "/api/tools/fruits_api/ghost"),
        (Method::GET, "/api/nothing-here"),
    ] {
        let (status, body) = admin.call(method, path, None).await;
        assert_error(status, &body, 404, "not_found");
    }
    let tool = json!({"method": "GET", "pathTemplate": "/x"});
    let (status, body) = admin
        .call(Method::POST, "/api/tools/ghost/t", Some(tool))
        .await;
    assert_error(status, &body, 404, "not_found");

    // 405.
    let (status, body) = admin.call(Method::PUT, "/api/stats", None).await;
    assert_error(status, &body, 405, "method_not_allowed");

    // 413.
    let big = json!({"baseUrl": "http://x", "defaultHeaders": {"X-Big": "a".repeat(8192)}});
    let (status, body) = admin
        .call(Method::POST, "/api/servers/big", Some(big))
        .await;
    assert_error(status, &body, 413, "payload_too_large");

    // 422 with every problem listed.
    let bad_server = json!({"baseUrl": "ftp://x", "auth": {"type": "header"}, "replicas": 0});
    let (status, body) = admin
        .call(Method::POST, "/api/servers/bad%20id", Some(bad_server))
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        ["id", "baseUrl", "auth.key", "auth.value", "replicas"]
    );

    // `audit.includeArguments` is a boolean.
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/servers/audited",
            Some(json!({"baseUrl": "http://x", "audit": {"includeArguments": "yes"}})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    assert_eq!(
        body["error"]["details"][0]["field"], "audit.includeArguments",
        "{body}"
    );

    // The breaker's error-rate rule: ranges, and its window needs its percentage.
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/servers/rated",
            Some(json!({"baseUrl": "http://x", "circuitBreaker":
                {"errorRatePercent": 150, "windowMs": 10, "minCalls": 0}})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    let details = body["error"]["details"].as_array().expect("details");
    let fields: Vec<&str> = details
        .iter()
        .map(|d| d["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        [
            "circuitBreaker.errorRatePercent",
            "circuitBreaker.windowMs",
            "circuitBreaker.minCalls"
        ],
        "{body}"
    );
    assert_eq!(details[0]["message"], "must be between 1 and 100", "{body}");
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/servers/rated",
            Some(json!({"baseUrl": "http://x", "circuitBreaker": {"windowMs": 5000}})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    assert_eq!(
        (
            &body["error"]["details"][0]["field"],
            &body["error"]["details"][0]["message"]
        ),
        (
            &json!("circuitBreaker.windowMs"),
            &json!("has no effect without circuitBreaker.errorRatePercent")
        ),
        "{body}"
    );

    let bad_tool = json!({"method": "GET", "pathTemplate": "/p/{id}", "inputSchema": {"type": 5}});
    let (status, body) = admin
        .call(Method::POST, "/api/tools/fruits_api/t", Some(bad_tool))
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["paramMapping.path.id", "inputSchema"]);

    let (status, body) = admin
        .call(
            Method::POST,
            "/api/tools/fruits_api/t",
            Some(json!({"method": "TRACE"})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    assert_eq!(body["error"]["details"][0]["field"], "method");

    // A field of the wrong shape does not hide the other problems: each is listed with
    // its field and a message.
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/tools/fruits_api/t",
            Some(json!({"method": "TRACE", "pathTemplate": "/p/{id}"})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    let details = body["error"]["details"].as_array().expect("details");
    let fields: Vec<&str> = details
        .iter()
        .map(|d| d["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["method", "paramMapping.path.id"], "{body}");
    assert!(
        details[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("TRACE")),
        "{body}"
    );
    assert!(
        details[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("{id}")),
        "{body}"
    );
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/servers/bad%20id",
            Some(json!({"baseUrl": 3, "auth": {"type": "magic"}, "replicas": 0})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, ["baseUrl", "auth.type", "id", "replicas"], "{body}");
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/tools/fruits_api/t",
            Some(json!({"name": "other", "method": "GET"})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    let (status, body) = admin
        .call(
            Method::POST,
            "/api/import",
            Some(json!({"servers": {"x": {"baseUrl": 3, "replicas": 0}}})),
        )
        .await;
    assert_error(status, &body, 422, "invalid_registration");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        ["servers.x.baseUrl", "servers.x.replicas"],
        "{body}"
    );

    // 403: secrets in clear need a token.
    let (status, body) = admin
        .call(Method::GET, "/api/export?includeSecrets=true", None)
        .await;
    assert_error(status, &body, 403, "forbidden");

    // A caller's request id is kept, an invalid one replaced.
    let response = admin
        .client
        .get(format!("{}/api/servers/ghost", admin.base))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "trace-42");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["request_id"], "trace-42");
    let response = admin
        .client
        .get(format!("{}/api/servers/ghost", admin.base))
        .header("x-request-id", "bad id!")
        .send()
        .await
        .expect("sent");
    assert_ne!(response.headers()["x-request-id"], "bad id!");
}

#[tokio::test]
async fn redis_down_is_503_and_recovers() {
    let mut admin = Admin::start(Options::default());
    admin.redis.stop();
    for (method, path) in [
        (Method::GET, "/api/servers"),
        (Method::GET, "/api/stats"),
        (Method::POST, "/api/servers/x/restart"),
    ] {
        let started = std::time::Instant::now();
        let (status, body) = admin.call(method, path, None).await;
        assert_error(status, &body, 503, "registry_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    let (status, health) = admin.call(Method::GET, "/healthz", None).await;
    assert_eq!(
        (status, health),
        (503, json!({"status": "degraded", "redis": "unavailable"}))
    );
    admin.redis.restart();
    mcp_testkit::wait_until_async(
        "admin to reach redis again",
        Duration::from_secs(10),
        || async { (admin.call(Method::GET, "/api/stats", None).await.0 == 200).then_some(()) },
    )
    .await;
}

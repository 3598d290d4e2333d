use reqwest::Method;
use serde_json::json;

use crate::{assert_error, Admin, Options};

const TOKEN: &str = "test-token-0123456789abcdef";

#[tokio::test]
async fn with_a_token_every_api_route_requires_it() {
    let admin = Admin::start(Options {
        token: Some(TOKEN),
        ..Options::default()
    });
    let anonymous = |method: Method, path: &str| {
        admin
            .client
            .request(method, format!("{}{path}", admin.base))
            .send()
    };
    let routes = [
        (Method::GET, "/api/servers"),
        (Method::GET, "/api/servers/fruits_api"),
        (Method::POST, "/api/servers/fruits_api"),
        (Method::DELETE, "/api/servers/fruits_api"),
        (Method::POST, "/api/servers/fruits_api/restart"),
        (Method::POST, "/api/servers/fruits_api/openapi"),
        (Method::GET, "/api/servers/fruits_api/runtime"),
        (Method::GET, "/api/tools/fruits_api"),
        (Method::GET, "/api/tools/fruits_api/get_fruits"),
        (Method::POST, "/api/tools/fruits_api/get_fruits"),
        (Method::DELETE, "/api/tools/fruits_api/get_fruits"),
        (Method::POST, "/api/tools/fruits_api/get_fruits/validate"),
        (Method::GET, "/api/stats"),
        (Method::GET, "/api/metrics"),
        (Method::GET, "/api/export"),
        (Method::POST, "/api/import"),
        (Method::GET, "/api/openapi.json"),
        (Method::GET, "/api/events"),
        (Method::GET, "/api/runtime"),
        (Method::GET, "/api/audit"),
        (Method::GET, "/api/audit/stream"),
    ];
    for (method, path) in &routes {
        let response = anonymous(method.clone(), path).await.expect("sent");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer",
            "{method} {path}"
        );
        let status = response.status().as_u16();
        assert_error(
            status,
            &response.json().await.expect("json"),
            401,
            "unauthorized",
        );
    }
    // The list above is every /api route: it is exactly the OpenAPI document's /api
    // operations with their path parameters filled in, and the document's paths are
    // the router's own (`routes::api_routes`), so a route added anywhere fails here
    // until it is checked.
    let (status, doc) = admin.call(Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut documented = Vec::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/") {
            continue;
        }
        let path = path
            .replace("{id}", "fruits_api")
            .replace("{tool}", "get_fruits");
        for method in operations.as_object().expect("operations").keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(documented.len() >= 16, "{documented:?}");
    for (method, path) in &documented {
        assert!(
            routes
                .iter()
                .any(|(m, p)| m.as_str() == method.as_str() && p == path),
            "{method} {path} is documented but not checked for the token"
        );
    }
    for (method, path) in &routes {
        assert!(
            documented
                .iter()
                .any(|(m, p)| m.as_str() == method.as_str() && p == path),
            "{method} {path} is checked for the token but not documented"
        );
    }
    assert_eq!(documented.len(), routes.len(), "{documented:?}");
    // Nothing above was changed by the refused requests.
    let (status, _) = admin
        .call(Method::GET, "/api/tools/fruits_api/get_fruits", None)
        .await;
    assert_eq!(status, 200, "the anonymous DELETE was refused");
    let wrong = admin
        .client
        .get(format!("{}/api/stats", admin.base))
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status().as_u16(), 401);
    let (status, _) = admin.call(Method::GET, "/api/stats", None).await;
    assert_eq!(status, 200, "with the token");
    let health = anonymous(Method::GET, "/healthz").await.expect("sent");
    assert_eq!(health.status().as_u16(), 200, "/healthz needs no token");
    // The console is static: it loads without the token, then asks for it.
    let console = anonymous(Method::GET, "/dashboard/").await.expect("sent");
    assert_ne!(console.status().as_u16(), 401, "/dashboard needs no token");
}

#[tokio::test]
async fn without_a_token_the_api_is_open_on_loopback_and_refuses_remote_binds() {
    let admin = Admin::start(Options::default());
    let (status, _) = admin.call(Method::GET, "/api/stats", None).await;
    assert_eq!(status, 200);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-admin"))
        .env("MCP_ENV_FILE", "/nonexistent/.env")
        .env_remove("MCP_ADMIN_TOKEN")
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .expect("ran");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    assert!(stderr.contains("MCP_ADMIN_TOKEN"), "{stderr}");
}

#[tokio::test]
async fn secrets_are_masked_in_every_response() {
    let admin = Admin::start(Options {
        token: Some(TOKEN),
        ..Options::default()
    });
    let body = json!({"baseUrl": "http://x", "auth": {"type": "header", "key": "X-Api-Key", "value": "super-secret-value"}});
    let (status, created) = admin
        .call(Method::POST, "/api/servers/secretive", Some(body))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        created["auth"],
        json!({"type": "header", "key": "X-Api-Key", "value": "********"})
    );
    for path in ["/api/servers", "/api/servers/secretive", "/api/export"] {
        let response = admin.send(Method::GET, path, None).await;
        let text = response.text().await.expect("text");
        assert!(
            !text.contains("super-secret-value"),
            "{path} leaked the secret: {text}"
        );
        assert!(
            text.contains("********"),
            "{path} should show the mask: {text}"
        );
    }
    // Posting the masked value back keeps the secret.
    let (status, _) = admin
        .call(
            Method::POST,
            "/api/servers/secretive",
            Some(created.clone()),
        )
        .await;
    assert_eq!(status, 200);
    let stored = admin
        .registry()
        .get_server("secretive")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored.auth.value.as_deref(), Some("super-secret-value"));
    // With the token, an explicit opt-in exports secrets in clear (for migration).
    let (status, doc) = admin
        .call(Method::GET, "/api/export?includeSecrets=true", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["servers"]["secretive"]["auth"]["value"],
        "super-secret-value"
    );
    // Masked values never leak to the logs either. Lines are written in batches: wait
    // for the line of a request sent after every secret-bearing one, so all of theirs
    // are out too.
    let response = admin
        .client
        .get(format!("{}/api/stats", admin.base))
        .bearer_auth(TOKEN)
        .header("x-request-id", "after-the-secrets")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    admin.wait_for_log("the request after the secrets", |l| {
        l["event"] == "admin.request" && l["request_id"] == "after-the-secrets"
    });
    let lines = admin.process.stdout_lines();
    assert!(
        lines.iter().any(|l| l.contains("admin.server.upsert")),
        "the secret-bearing upserts were logged: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("super-secret-value")));
}

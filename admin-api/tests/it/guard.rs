//! The Host and Origin policy of the admin API's own port (MCP_ADMIN_ALLOWED_HOSTS,
//! MCP_ADMIN_ALLOWED_ORIGINS): a cross-site write is refused whatever its body type and
//! changes nothing, a foreign Host is refused on every route but /healthz, the API's own
//! origin (the dashboard it serves) and configured names pass.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::{assert_error, Admin, Options};

const EVIL: &str = "http://evil.example.com";

/// Sends `method path` with these headers and a raw body; the status and JSON body.
async fn send(
    admin: &Admin,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = admin
        .client
        .request(method, format!("{}{path}", admin.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response: Response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{path} answered non-JSON: {text:?}"));
    (status, json)
}

#[tokio::test]
async fn cross_site_writes_are_refused_for_every_body_type_and_change_nothing() {
    let admin = Admin::start(Options::default());
    let server = json!({"baseUrl": "http://127.0.0.1:8090"}).to_string();
    let tool = json!({"method": "GET", "pathTemplate": "/x"}).to_string();
    let writes = [
        (Method::POST, "/api/servers/evil_api", server.as_str()),
        (Method::PUT, "/api/servers/evil_api", server.as_str()),
        (Method::DELETE, "/api/servers/fruits_api", ""),
        (Method::POST, "/api/servers/fruits_api/restart", ""),
        (
            Method::POST,
            "/api/tools/fruits_api/evil_tool",
            tool.as_str(),
        ),
        (Method::DELETE, "/api/tools/fruits_api/get_fruits", ""),
        (
            Method::POST,
            "/api/import",
            r#"{"servers": {}, "mode": "replace"}"#,
        ),
        (
            Method::POST,
            "/api/servers/fruits_api/openapi",
            r#"{"document": {}}"#,
        ),
    ];
    let types = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json",
    ];
    for (method, path, body) in &writes {
        for content_type in types {
            let (status, body) = send(
                &admin,
                method.clone(),
                path,
                &[("origin", EVIL), ("content-type", content_type)],
                Some(body),
            )
            .await;
            assert_error(status, &body, 403, "origin_forbidden");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("MCP_ADMIN_ALLOWED_ORIGINS")),
                "{method} {path} {content_type}: {body}"
            );
        }
    }
    // A reading page of another site is refused too, and `null` (a sandboxed page).
    for origin in [EVIL, "null", "http://localhost.evil.example.com"] {
        let (status, body) = send(
            &admin,
            Method::GET,
            "/api/export",
            &[("origin", origin)],
            None,
        )
        .await;
        assert_error(status, &body, 403, "origin_forbidden");
    }
    // Nothing was written: the demo registry is whole, the new names absent.
    let (status, servers) = admin.call(Method::GET, "/api/servers", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = servers
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(ids.contains(&"fruits_api"), "{servers}");
    assert!(!ids.contains(&"evil_api"), "{servers}");
    let (status, _) = admin
        .call(Method::GET, "/api/tools/fruits_api/get_fruits", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = admin
        .call(Method::GET, "/api/tools/fruits_api/evil_tool", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_foreign_host_is_refused_on_every_route_but_healthz() {
    let admin = Admin::start(Options::default());
    for path in [
        "/api/servers",
        "/api/openapi.json",
        "/api/events",
        "/dashboard/",
        "/no/such/route",
    ] {
        for host in [
            "evil.example.com",
            "rebound.example:8081",
            "127.0.0.1.nip.io",
        ] {
            let (status, body) = send(&admin, Method::GET, path, &[("host", host)], None).await;
            assert_error(status, &body, 403, "host_forbidden");
        }
    }
    let (status, body) = send(
        &admin,
        Method::POST,
        "/api/servers/x",
        &[
            ("host", "evil.example.com"),
            ("content-type", "application/json"),
        ],
        Some(r#"{"baseUrl": "http://127.0.0.1:8090"}"#),
    )
    .await;
    assert_error(status, &body, 403, "host_forbidden");
    let (status, body) = send(
        &admin,
        Method::GET,
        "/healthz",
        &[("host", "10.1.2.3:8081")],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_own_origin_and_loopback_pages_may_write() {
    let admin = Admin::start(Options::default());
    let own = admin.base.clone();
    let localhost = own.replace("127.0.0.1", "localhost");
    for (i, (host, origin)) in [
        (None, own.as_str()),
        (
            Some(localhost.trim_start_matches("http://")),
            localhost.as_str(),
        ),
        (None, "http://localhost:5173"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut headers = vec![("origin", origin), ("content-type", "application/json")];
        if let Some(host) = host {
            headers.push(("host", host));
        }
        let path = format!("/api/servers/same_site_{i}");
        let (status, body) = send(
            &admin,
            Method::POST,
            &path,
            &headers,
            Some(r#"{"baseUrl": "http://127.0.0.1:8090"}"#),
        )
        .await;
        assert!(status == 200 || status == 201, "{origin}: {status} {body}");
        let (status, body) = send(&admin, Method::DELETE, &path, &headers, None).await;
        assert_eq!(status, 200, "{origin}: {body}");
    }
}

#[tokio::test]
async fn configured_names_are_served_and_their_own_origin_allowed() {
    let admin = Admin::start(Options {
        env: vec![
            ("MCP_ADMIN_ALLOWED_HOSTS", "hub.example,127.0.0.1"),
            ("MCP_ADMIN_ALLOWED_ORIGINS", "https://console.example"),
        ],
        ..Options::default()
    });
    let write = |host: &'static str, origin: &'static str| {
        let admin = &admin;
        async move {
            send(
                admin,
                Method::POST,
                "/api/servers/configured_api",
                &[
                    ("host", host),
                    ("origin", origin),
                    ("content-type", "application/json"),
                ],
                Some(r#"{"baseUrl": "http://127.0.0.1:8090"}"#),
            )
            .await
        }
    };
    let (status, body) = write("hub.example:8081", "http://hub.example:8081").await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = write("127.0.0.1", "https://console.example").await;
    assert!(status == 200 || status == 201, "{status} {body}");
    // localhost is no longer listed, nor are loopback pages.
    let (status, body) = write("localhost", "https://console.example").await;
    assert_error(status, &body, 403, "host_forbidden");
    let (status, body) = write("127.0.0.1", "http://localhost:5173").await;
    assert_error(status, &body, 403, "origin_forbidden");
    let (status, body) = write("hub.example", "http://hub.example:9999").await;
    assert_error(status, &body, 403, "origin_forbidden");
}

#[test]
fn a_bad_host_entry_is_one_line_and_exit_2() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-admin"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MCP_ENV_FILE", "/nonexistent/.env")
        .env("MCP_ADMIN_ALLOWED_HOSTS", "localhost,a b")
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("MCP_ADMIN_ALLOWED_HOSTS") && stderr.contains("a b"),
        "{stderr}"
    );
}

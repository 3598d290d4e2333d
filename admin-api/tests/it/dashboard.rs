//! The console's static files (content types, cache headers, SPA fallback, CSP, the
//! page of a missing build), `/api/metrics` over a real metrics listener, and the tool
//! check the editor runs before saving.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::{assert_error, Admin, Options};

/// A folder shaped like `frontend/dist`.
fn built_dashboard() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("assets")).expect("assets");
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><html><head><title>t</title><script type=\"module\" src=\"./assets/index-abc123.js\"></script></head><body></body></html>",
    )
    .expect("index");
    std::fs::write(dir.path().join("assets/index-abc123.js"), "console.log(1)").expect("js");
    std::fs::write(dir.path().join("assets/index-abc123.css"), "body{}").expect("css");
    std::fs::write(dir.path().join("favicon.svg"), "<svg/>").expect("svg");
    dir
}

async fn get(admin: &Admin, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut request = client.get(format!("{}{path}", admin.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn serves_the_build_with_types_caching_fallback_and_policy() {
    let dist = built_dashboard();
    let admin = Admin::start(Options {
        dashboard_dir: Some(dist.path().to_owned()),
        ..Options::default()
    });

    for path in ["/", "/dashboard"] {
        let response = get(&admin, path, &[]).await;
        assert_eq!(response.status().as_u16(), 302, "{path}");
        assert_eq!(response.headers()["location"], "dashboard/", "{path}");
    }

    // index.html, revalidated, with its <base> and the policy.
    let response = get(&admin, "/dashboard/", &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-eval"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let html = response.text().await.expect("html");
    assert!(
        html.contains("<head>\n    <base href=\"/dashboard/\">"),
        "{html}"
    );

    // A deep link is a console route: the same page.
    let response = get(&admin, "/dashboard/servers/fruits_api/tools", &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("index-abc123.js"));

    // Behind a proxy that mounts the hub under a prefix.
    let response = get(
        &admin,
        "/dashboard/servers",
        &[("x-forwarded-prefix", "/hub/")],
    )
    .await;
    assert!(response
        .text()
        .await
        .expect("html")
        .contains("<base href=\"/hub/dashboard/\">"));

    // Hashed assets: their type, cached for good; revalidation by ETag.
    let response = get(&admin, "/dashboard/assets/index-abc123.js", &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = response.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    assert_eq!(response.text().await.expect("js"), "console.log(1)");
    let response = get(
        &admin,
        "/dashboard/assets/index-abc123.js",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(response.status().as_u16(), 304);
    let response = get(&admin, "/dashboard/assets/index-abc123.css", &[]).await;
    assert_eq!(
        response.headers()["content-type"],
        "text/css; charset=utf-8"
    );
    let response = get(&admin, "/dashboard/favicon.svg", &[]).await;
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    assert_eq!(response.headers()["cache-control"], "no-cache");

    // A file the build lacks is a 404, not the page; nothing escapes the folder.
    for path in [
        "/dashboard/assets/missing-123.js",
        "/dashboard/../Cargo.toml",
        "/dashboard/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/dashboard/assets/..%2f..%2fCargo.toml",
    ] {
        let response = get(&admin, path, &[]).await;
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
    // HEAD works like GET without a body.
    let head = admin
        .client
        .request(Method::HEAD, format!("{}/dashboard/", admin.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(head.status().as_u16(), 200);
}

#[tokio::test]
async fn a_missing_build_answers_a_page_that_says_how_to_build_it() {
    let admin = Admin::start(Options::default());
    let response = get(&admin, "/dashboard/servers", &[]).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = response.text().await.expect("html");
    assert!(html.contains("scripts/build-dashboard.sh"), "{html}");
    assert!(html.contains("MCP_DASHBOARD_DIR"), "{html}");
    // The API is unaffected.
    let (status, _) = admin.call(Method::GET, "/api/stats", None).await;
    assert_eq!(status, 200);
    admin.wait_for_log("admin.dashboard.missing", |line| {
        line["event"] == "admin.dashboard.missing"
    });
}

/// A stand-in for the gateway's metrics listener, serving `text`.
async fn metrics_listener(text: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app =
        axum::Router::new().route("/metrics", axum::routing::get(move || async move { text }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/metrics"), task)
}

#[tokio::test]
async fn metrics_are_summed_per_server() {
    let (url, _task) = metrics_listener(
        "# TYPE mcp_gateway_requests_total counter
mcp_gateway_requests_total{route=\"call\",server=\"fruits_api\",status=\"200\"} 9
mcp_gateway_requests_total{route=\"call\",server=\"fruits_api\",status=\"400\"} 1
mcp_gateway_requests_total{route=\"tools_list\",server=\"fruits_api\",status=\"200\"} 2
mcp_gateway_requests_total{route=\"admin\",server=\"-\",status=\"200\"} 40
mcp_gateway_errors_total{code=\"400\",server=\"fruits_api\"} 1
mcp_gateway_request_duration_seconds_bucket{route=\"call\",server=\"fruits_api\",le=\"0.001\"} 0
mcp_gateway_request_duration_seconds_bucket{route=\"call\",server=\"fruits_api\",le=\"0.01\"} 10
mcp_gateway_request_duration_seconds_bucket{route=\"call\",server=\"fruits_api\",le=\"+Inf\"} 10
mcp_gateway_request_duration_seconds_sum{route=\"call\",server=\"fruits_api\"} 0.03
mcp_gateway_request_duration_seconds_count{route=\"call\",server=\"fruits_api\"} 10
",
    )
    .await;
    let admin = Admin::start(Options {
        metrics_url: Some(url.clone()),
        ..Options::default()
    });
    let (status, view) = admin.call(Method::GET, "/api/metrics", None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["available"], true, "{view}");
    assert_eq!(view["source"], url);
    assert!(view["scrapedAt"].as_u64().is_some_and(|t| t > 0));
    assert_eq!(
        view["totals"],
        json!({"requests": 12, "calls": 10, "errors": 1})
    );
    let server = &view["servers"][0];
    assert_eq!(server["serverId"], "fruits_api");
    assert_eq!(server["calls"], 10);
    assert_eq!(server["errorsByCode"], json!({"400": 1}));
    assert_eq!(server["latency"]["count"], 10);
    assert!((server["latency"]["meanMs"].as_f64().expect("mean") - 3.0).abs() < 1e-9);
    assert_eq!(view["servers"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_unreachable_gateway_is_reported_not_failed() {
    let admin = Admin::start(Options::default());
    let started = std::time::Instant::now();
    let (status, view) = admin.call(Method::GET, "/api/metrics", None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["available"], false);
    assert!(
        view["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer")),
        "{view}"
    );
    assert_eq!(view["servers"], json!([]));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_tool_is_checked_without_being_written() {
    let admin = Admin::start(Options::default());
    let path = "/api/tools/fruits_api/draft/validate";
    let good = json!({"method": "GET", "pathTemplate": "/fruits/{id}",
        "paramMapping": {"path": {"id": "id"}},
        "inputSchema": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}});
    let (status, body) = admin.call(Method::POST, path, Some(good)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], true);
    assert_eq!(body["tool"]["name"], "draft");
    let (status, _) = admin
        .call(Method::GET, "/api/tools/fruits_api/draft", None)
        .await;
    assert_eq!(status, 404, "a check writes nothing");

    let bad = json!({"method": "GET", "inputSchema": {"type": "object", "properties": {"id": {"type": 12}}}});
    let (status, body) = admin.call(Method::POST, path, Some(bad)).await;
    assert_error(status, &body, 422, "invalid_registration");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|p| p["field"].as_str())
        .collect();
    assert_eq!(fields, ["inputSchema"], "{body}");
}

/// The dashboard's live worker state: a runtime record written (as the supervisor
/// writes it) reaches `/api/events` as a `worker.status` event with the whole record.
#[tokio::test]
async fn worker_status_changes_reach_the_event_stream() {
    use mcp_core::runtime::{WorkerRecord, WorkerStatus};

    let admin = Admin::start(Options::default());
    let registry = admin.registry();
    let mut response = admin.send(Method::GET, "/api/events", None).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut wrote = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // Until the worker.status frame is complete (its blank line has arrived).
    while !text
        .split_once("event: worker.status")
        .is_some_and(|(_, rest)| rest.contains("\n\n"))
    {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("events in time")
            .expect("chunk")
            .expect("open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if text.contains("event: reload") && !wrote {
            wrote = true;
            let mut record = WorkerRecord::new(0, WorkerStatus::Restarting, "sup-test");
            record.restarts = 3;
            record.port = Some(9100);
            record.last_failure = Some("signal: 9 (SIGKILL)".into());
            record.last_failure_at = Some(1);
            registry
                .put_worker_record("fruits_api", &record)
                .await
                .expect("record written");
        }
    }
    let frame = text
        .split("\n\n")
        .find(|f| f.contains("event: worker.status"))
        .expect("a worker.status frame");
    let data = frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data");
    let event: serde_json::Value = serde_json::from_str(data).expect("json");
    assert_eq!(event["type"], "worker.status");
    assert_eq!(event["serverId"], "fruits_api");
    assert_eq!(event["worker"]["status"], "restarting");
    assert_eq!(event["worker"]["restarts"], 3);
    assert_eq!(event["worker"]["lastFailure"], "signal: 9 (SIGKILL)");
    assert!(
        frame.contains("\nid: "),
        "events carry the registry version: {frame}"
    );
}

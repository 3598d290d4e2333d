use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{echo_tool, WorkerHarness, SERVER};

fn any_object() -> Value {
    json!({"type": "object"})
}

#[tokio::test]
async fn every_mapping_kind_reaches_the_rest_api_as_configured() {
    let tools = vec![
        echo_tool(
            "everything",
            "POST",
            "/items/{id}/sub/{name}",
            json!({
                "path": {"id": "id", "name": "name"},
                "query": {"q": "query", "tag": "tags", "absent": "missing"},
                "headers": {"X-Trace": "trace"},
                "body": {"title": "title", "price": "price", "nested": "meta", "gone": "nothing"}
            }),
            any_object(),
        ),
        echo_tool(
            "raw_text",
            "PUT",
            "/raw",
            json!({"rawBody": "payload"}),
            any_object(),
        ),
        echo_tool(
            "raw_json",
            "PATCH",
            "/raw",
            json!({"rawBody": "payload"}),
            any_object(),
        ),
        echo_tool("plain_get", "GET", "", json!({}), any_object()),
    ];
    let hub = WorkerHarness::start(json!({"defaultHeaders": {"X-Default": "d1"}}), tools).await;
    let echoed = hub
        .output(
            "everything",
            json!({"id": 42, "name": "a b/c", "query": "x&y=z", "tags": ["t1", 2], "trace": "tr-1", "title": "T", "price": 9.5, "meta": {"k": [1]}, "nothing": null}),
        )
        .await;
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["path"], "/test/echo/items/42/sub/a%20b%2Fc");
    assert_eq!(echoed["query"], "q=x%26y%3Dz&tag=t1&tag=2");
    assert_eq!(echoed["headers"]["x-trace"], "tr-1");
    assert_eq!(echoed["headers"]["x-default"], "d1");
    assert_eq!(echoed["headers"]["content-type"], "application/json");
    assert!(echoed["headers"]["x-request-id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(
        echoed["bodyJson"],
        json!({"title": "T", "price": 9.5, "nested": {"k": [1]}})
    );

    let raw = hub
        .output("raw_text", json!({"payload": "line one\nline two"}))
        .await;
    assert_eq!(raw["method"], "PUT");
    assert_eq!(
        raw["body"], "line one\nline two",
        "a string raw body goes as text, byte for byte"
    );
    assert!(raw["headers"]["content-type"]
        .as_str()
        .is_some_and(|c| c.starts_with("text/plain")));
    let raw = hub
        .output("raw_json", json!({"payload": [1, {"a": true}]}))
        .await;
    assert_eq!(raw["body"], "[1,{\"a\":true}]");
    assert_eq!(raw["headers"]["content-type"], "application/json");
    let plain = hub.output("plain_get", json!({})).await;
    assert_eq!(
        (
            plain["path"].clone(),
            plain["query"].clone(),
            plain["bodyLength"].clone()
        ),
        (json!("/test/echo"), Value::Null, json!(0))
    );
}

#[tokio::test]
async fn every_auth_kind_is_applied_and_never_logged() {
    for (auth, check) in [
        (
            json!({"type": "bearer", "value": "tok-123"}),
            ("header", "authorization", "Bearer tok-123"),
        ),
        (
            json!({"type": "header", "key": "X-Api-Key", "value": "key-456"}),
            ("header", "x-api-key", "key-456"),
        ),
        (
            json!({"type": "query", "key": "api_key", "value": "q-789"}),
            ("query", "", "api_key=q-789"),
        ),
    ] {
        let tools = vec![echo_tool("whoami", "GET", "", json!({}), any_object())];
        let hub = WorkerHarness::start(json!({"auth": auth}), tools).await;
        let echoed = hub.output("whoami", json!({})).await;
        match check {
            ("header", name, value) => assert_eq!(echoed["headers"][name], value),
            (_, _, value) => assert_eq!(echoed["query"], value),
        }
        let secret = check
            .2
            .rsplit(['=', ' '])
            .next()
            .unwrap_or_default()
            .to_owned();
        let request_id = echoed["headers"]["x-request-id"].clone();
        assert!(request_id.is_string(), "{echoed}");
        let request_line = hub
            .process
            .wait_for_event("tool.http.request", Duration::from_secs(5));
        assert_eq!(
            (
                &request_line["request_id"],
                &request_line["server"],
                &request_line["tool"],
                &request_line["method"]
            ),
            (&request_id, &json!(SERVER), &json!("whoami"), &json!("GET")),
            "{request_line}"
        );
        let logged_url = request_line["url"].as_str().expect("url");
        let expected_url = match check {
            ("query", _, _) => format!("{}/test/echo?api_key=********", hub.mock.url()),
            _ => format!("{}/test/echo", hub.mock.url()),
        };
        assert_eq!(logged_url, expected_url, "secrets redacted: {request_line}");
        let http_line = hub
            .process
            .wait_for_event("tool.http.response", Duration::from_secs(5));
        assert!(
            http_line["latency"].is_number() && http_line["status"] == 200,
            "{http_line}"
        );
        assert_eq!(http_line["request_id"], request_id, "{http_line}");
        assert_eq!(http_line["url"], logged_url, "{http_line}");
        assert_eq!(
            (&http_line["server"], &http_line["method"]),
            (&json!(SERVER), &json!("GET")),
            "{http_line}"
        );
        assert!(http_line["tool"].is_string() && http_line["url"].is_string());
        assert!(
            !hub.process
                .stdout_lines()
                .iter()
                .any(|l| l.contains(&secret)),
            "the secret {secret} reached the logs"
        );
    }
}

#[tokio::test]
async fn path_values_cannot_leave_their_segment() {
    let tools = vec![echo_tool(
        "get_item",
        "GET",
        "/items/{id}/detail",
        json!({"path": {"id": "id"}}),
        json!({"type": "object", "properties": {"id": {"type": "string"}}}),
    )];
    let hub = WorkerHarness::start(json!({}), tools).await;
    for (value, expected_path) in [
        ("../../admin", "/test/echo/items/..%2F..%2Fadmin/detail"),
        ("%2e%2e", "/test/echo/items/%252e%252e/detail"),
        ("a?x=1#frag", "/test/echo/items/a%3Fx%3D1%23frag/detail"),
        ("..\\..", "/test/echo/items/..%5C../detail"),
    ] {
        let echoed = hub.output("get_item", json!({"id": value})).await;
        assert_eq!(echoed["path"], expected_path, "{value}");
        assert_eq!(echoed["query"], Value::Null, "{value}");
    }
    for value in ["..", ".", "", "a\r\nX-Injected: 1"] {
        let error = hub.error("get_item", json!({"id": value})).await;
        assert_eq!(error["code"], "invalid_arguments", "{value:?}: {error}");
    }
    let tools_with_header = vec![echo_tool(
        "h",
        "GET",
        "",
        json!({"headers": {"X-Val": "v"}}),
        any_object(),
    )];
    let hub = WorkerHarness::start(json!({}), tools_with_header).await;
    let error = hub.error("h", json!({"v": "ok\r\nX-Injected: yes"})).await;
    assert_eq!(error["code"], "invalid_arguments");
}

#[tokio::test]
async fn streamed_responses_arrive_as_separate_deltas_over_time() {
    let stream_tool = |name: &str, kind: &str| json!({"name": name, "method": "GET", "pathTemplate": format!("/test/stream/{kind}"), "paramMapping": {"query": {"n": "n", "interval_ms": "interval"}}});
    let tools = vec![
        stream_tool("chunks", "chunks"),
        stream_tool("sse", "sse"),
        stream_tool("ndjson", "ndjson"),
    ];
    let hub = WorkerHarness::start(json!({}), tools).await;
    for (tool, first) in [
        ("chunks", json!("chunk 0\n")),
        ("sse", json!({"seq": 0})),
        ("ndjson", json!({"seq": 0})),
    ] {
        let mut response = hub
            .client
            .post(format!("{}/call/{tool}", hub.base))
            .json(&json!({"args": {"n": 5, "interval": 200}}))
            .send()
            .await
            .expect("sent");
        let started = Instant::now();
        let mut text = String::new();
        let mut delta_times = Vec::new();
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            let chunk = String::from_utf8_lossy(&chunk).into_owned();
            for _ in 0..chunk.matches("event: output.delta").count() {
                delta_times.push(started.elapsed());
            }
            text.push_str(&chunk);
        }
        let events = crate::parse_sse(&text);
        let deltas: Vec<&crate::SseEvent> = events
            .iter()
            .filter(|e| e.event == "output.delta")
            .collect();
        assert_eq!(deltas.len(), 5, "{tool}: {events:?}");
        assert_eq!(deltas[0].data["output"], first, "{tool}");
        let spread = *delta_times.last().expect("times") - delta_times[0];
        assert!(
            spread >= Duration::from_millis(600),
            "{tool}: deltas arrived together ({delta_times:?})"
        );
        assert_eq!(
            events.last().map(|e| e.event.as_str()),
            Some("tool_call.completed")
        );
    }
}

#[tokio::test]
async fn responses_are_parsed_picked_and_errors_are_clear() {
    let tools = vec![
        json!({"name": "product_title", "method": "GET", "pathTemplate": "/products/{id}", "paramMapping": {"path": {"id": "id"}}, "responseMapping": {"pick": "$.title"}}),
        json!({"name": "titles", "method": "GET", "pathTemplate": "/products", "responseMapping": {"pick": "$[*].title"}}),
        json!({"name": "text", "method": "GET", "pathTemplate": "/test/text"}),
        json!({"name": "not_json", "method": "GET", "pathTemplate": "/test/not-json"}),
        json!({"name": "status", "method": "GET", "pathTemplate": "/test/status/{code}", "paramMapping": {"path": {"code": "code"}, "query": {"size": "size"}}}),
        json!({"name": "hang", "method": "GET", "pathTemplate": "/test/hang"}),
        json!({"name": "close_early", "method": "GET", "pathTemplate": "/test/close-early"}),
        json!({"name": "needs_id", "method": "GET", "pathTemplate": "/products/{id}", "paramMapping": {"path": {"id": "id"}}}),
        json!({"name": "large", "method": "GET", "pathTemplate": "/test/large/{n}", "paramMapping": {"path": {"n": "n"}}}),
    ];
    let hub = WorkerHarness::start(json!({"timeoutMs": 1500}), tools).await;
    assert_eq!(
        hub.output("product_title", json!({"id": 1})).await,
        json!("Backpack")
    );
    assert_eq!(
        hub.output("titles", json!({}))
            .await
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert_eq!(
        hub.output("text", json!({})).await,
        json!("hello from mock")
    );

    let error = hub.error("not_json", json!({})).await;
    assert_eq!(error["code"], "upstream_invalid_json");
    let error = hub.error("status", json!({"code": 500})).await;
    assert_eq!(
        (error["code"].clone(), error["status"].clone()),
        (json!("upstream_status"), json!(500))
    );
    assert_eq!(
        error["body"]["status"], 500,
        "the REST API's body is carried: {error}"
    );
    // A huge error body is cut, never turned into upstream_too_large: the status stays.
    let error = hub
        .error("status", json!({"code": 503, "size": 3_000_000}))
        .await;
    assert_eq!(
        (error["code"].clone(), error["status"].clone()),
        (json!("upstream_status"), json!(503))
    );
    let body = error["body"].as_str().expect("text body");
    assert!(
        body.ends_with(" [cut]") && body.len() < 70_000,
        "{}",
        body.len()
    );
    let started = Instant::now();
    let error = hub.error("hang", json!({})).await;
    assert_eq!(error["code"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server's timeoutMs applies"
    );
    let error = hub.error("close_early", json!({})).await;
    assert_eq!(error["code"], "upstream_failed", "{error}");
    let error = hub.error("needs_id", json!({})).await;
    assert_eq!(error["code"], "invalid_arguments");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing argument")),
        "{error}"
    );
    let error = hub.error("large", json!({"n": 3_000_000})).await;
    assert_eq!(error["code"], "upstream_too_large");
    let failed = hub
        .process
        .wait_for_event("tool.call.failed", Duration::from_secs(5));
    assert!(
        failed["request_id"].is_string() && failed["error"].is_string(),
        "{failed}"
    );
    assert_eq!(failed["server"], SERVER);

    // The worker is still healthy after all that.
    let health: Value = hub
        .client
        .get(format!("{}/healthz", hub.base))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(health["server_id"], SERVER);
}

#[tokio::test]
async fn a_unreachable_rest_api_is_a_clear_error() {
    let port = mcp_testkit::free_port();
    let tools = vec![json!({"name": "t", "method": "GET", "pathTemplate": "/x"})];
    let hub = WorkerHarness::start(
        json!({"baseUrl": format!("http://127.0.0.1:{port}")}),
        tools,
    )
    .await;
    let (_, events) = hub.call("t", json!({})).await;
    let last = events.last().expect("events");
    assert_eq!(last.event, "tool_call.error", "{events:?}");
    assert_eq!(last.data["error"]["code"], "upstream_unreachable");
    let message = last.data["error"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("could not reach the REST API: ")
            && message.to_lowercase().contains("connection refused"),
        "the caller hears the cause: {message}"
    );
    let request_id = last.data["request_id"].as_str().expect("request_id");

    // The PRD's tool.call.failed: request_id, error, traceback (the cause chain down to
    // the refused TCP connect, one `caused by:` line per cause).
    let failed = hub
        .process
        .wait_for_event("tool.call.failed", Duration::from_secs(5));
    assert_eq!(failed["request_id"], request_id, "{failed}");
    assert_eq!(
        (&failed["server"], &failed["tool"], &failed["code"]),
        (&json!(SERVER), &json!("t"), &json!("upstream_unreachable")),
        "{failed}"
    );
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("could not reach the REST API")),
        "{failed}"
    );
    let traceback = failed["traceback"].as_str().expect("a traceback field");
    let lines: Vec<&str> = traceback.lines().collect();
    assert_eq!(lines[0], "could not reach the REST API", "{traceback}");
    assert!(
        lines
            .windows(2)
            .all(|pair| !pair[0].ends_with(pair[1].trim_start_matches("caused by: "))),
        "each cause appears once: {traceback}"
    );
    assert!(
        lines.len() >= 3 && lines[1..].iter().all(|l| l.starts_with("caused by: ")),
        "one line per cause: {traceback}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.to_lowercase().contains("connection refused")),
        "the root cause is last: {traceback}"
    );
}

#[tokio::test]
async fn redirects_are_followed_only_within_the_origin() {
    let tool = json!({"name": "follow", "method": "GET", "pathTemplate": "/test/redirect",
        "paramMapping": {"query": {"to": "to"}}, "inputSchema": any_object()});
    let hub = WorkerHarness::start(
        json!({"auth": {"type": "header", "key": "X-Api-Key", "value": "s3cret"}}),
        vec![tool],
    )
    .await;
    let same = hub
        .output("follow", json!({"to": "/test/echo/after"}))
        .await;
    assert_eq!(same["path"], "/test/echo/after");
    assert_eq!(same["headers"]["x-api-key"], "s3cret");

    // Another origin (the same mock by another name): not followed, so the secret
    // header never leaves; the tool gets the redirect itself.
    let elsewhere = format!(
        "http://localhost:{}/test/echo/elsewhere",
        hub.mock.addr().port()
    );
    let (status, events) = hub.call("follow", json!({"to": elsewhere})).await;
    assert_eq!(status, 200);
    let last = events.last().expect("events");
    assert_eq!(last.event, "tool_call.completed", "{events:?}");
    assert_eq!(last.data["status"], 302, "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e.data["output"].get("path").is_none()),
        "the echo at the other origin must not have been reached: {events:?}"
    );
}

#[tokio::test]
async fn null_and_absent_arguments_are_left_out_of_query_headers_and_body() {
    let tools = vec![echo_tool(
        "mapped",
        "POST",
        "",
        json!({
            "query": {"q": "q", "n": "n", "tag": "tags"},
            "headers": {"X-A": "a", "X-B": "b"},
            "body": {"x": "x", "y": "y"}
        }),
        any_object(),
    )];
    let hub = WorkerHarness::start(json!({}), tools).await;
    // Every mapped argument null or absent (and null items of an array skipped).
    let echoed = hub
        .output(
            "mapped",
            json!({"q": null, "a": null, "x": null, "tags": [null]}),
        )
        .await;
    assert_eq!(echoed["query"], Value::Null, "no query at all: {echoed}");
    let headers = echoed["headers"].as_object().expect("headers");
    assert!(
        !headers.contains_key("x-a") && !headers.contains_key("x-b"),
        "null and absent headers are not sent, not even empty: {echoed}"
    );
    assert_eq!(echoed["bodyJson"], json!({}), "{echoed}");
    // The same mapping with values: everything arrives, so the above can fail.
    let echoed = hub
        .output(
            "mapped",
            json!({"q": "v", "n": 0, "tags": ["t", null, false], "a": "ha", "b": 7, "x": false, "y": ""}),
        )
        .await;
    assert_eq!(echoed["query"], "n=0&q=v&tag=t&tag=false", "{echoed}");
    assert_eq!(
        (&echoed["headers"]["x-a"], &echoed["headers"]["x-b"]),
        (&json!("ha"), &json!("7")),
        "{echoed}"
    );
    assert_eq!(echoed["bodyJson"], json!({"x": false, "y": ""}), "{echoed}");
}

#[tokio::test]
async fn the_request_id_reaches_the_rest_api_unchanged() {
    let tools = vec![echo_tool("whoami", "GET", "", json!({}), any_object())];
    let hub = WorkerHarness::start(json!({}), tools).await;
    let call = |request_id: Option<&str>| {
        let mut request = hub
            .client
            .post(format!("{}/call/whoami", hub.base))
            .json(&json!({"args": {}}));
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        async move {
            let response = request.send().await.expect("sent");
            let header = response.headers()["x-request-id"]
                .to_str()
                .expect("header")
                .to_owned();
            let events = crate::parse_sse(&response.text().await.expect("body"));
            (header, events)
        }
    };
    let received = |events: &[crate::SseEvent]| {
        events
            .iter()
            .find(|e| e.event == "output.delta")
            .map(|e| e.data["output"]["headers"]["x-request-id"].clone())
            .unwrap_or_else(|| panic!("no delta: {events:?}"))
    };

    // A valid incoming id is the id the REST API gets, exactly.
    let (header, events) = call(Some("req-2026.11:24_a-1")).await;
    assert_eq!(header, "req-2026.11:24_a-1");
    assert_eq!(received(&events), "req-2026.11:24_a-1", "{events:?}");

    // No id (or one not fit for a header or a log line): the one made up is the one in
    // every event, in the response header and at the REST API.
    for incoming in [None, Some("has space"), Some("ü")] {
        let (header, events) = call(incoming).await;
        assert!(mcp_core::request_id::is_valid(&header), "{header}");
        assert_ne!(Some(header.as_str()), incoming);
        assert!(
            events
                .iter()
                .all(|e| e.data["request_id"] == header.as_str()),
            "{events:?}"
        );
        assert_eq!(received(&events), header.as_str(), "{events:?}");
    }
}

#[tokio::test]
async fn raw_body_of_every_json_type() {
    let tools = vec![echo_tool(
        "raw",
        "POST",
        "",
        json!({"rawBody": "payload"}),
        any_object(),
    )];
    let hub = WorkerHarness::start(json!({}), tools).await;
    // (arguments, body received, content-type received): a string goes as text, any
    // other JSON value as its JSON text, null or absent as no body at all.
    for (args, body, content_type) in [
        (
            json!({"payload": "text"}),
            json!("text"),
            json!("text/plain; charset=utf-8"),
        ),
        (
            json!({"payload": ""}),
            json!(""),
            json!("text/plain; charset=utf-8"),
        ),
        (
            json!({"payload": 42}),
            json!("42"),
            json!("application/json"),
        ),
        (
            json!({"payload": -1.5}),
            json!("-1.5"),
            json!("application/json"),
        ),
        (
            json!({"payload": true}),
            json!("true"),
            json!("application/json"),
        ),
        (
            json!({"payload": false}),
            json!("false"),
            json!("application/json"),
        ),
        (
            json!({"payload": {"a": [1, null]}}),
            json!("{\"a\":[1,null]}"),
            json!("application/json"),
        ),
        (
            json!({"payload": []}),
            json!("[]"),
            json!("application/json"),
        ),
        (json!({"payload": null}), json!(""), Value::Null),
        (json!({}), json!(""), Value::Null),
    ] {
        let echoed = hub.output("raw", args.clone()).await;
        assert_eq!(
            (&echoed["body"], &echoed["headers"]["content-type"]),
            (&body, &content_type),
            "{args}: {echoed}"
        );
    }
}

#[tokio::test]
async fn a_configured_header_http_cannot_carry_fails_the_call_clearly() {
    let tool = json!({"name": "t", "method": "GET", "pathTemplate": "/test/echo/x",
        "inputSchema": any_object()});
    let hub = WorkerHarness::start(json!({"defaultHeaders": {"bad name": "v"}}), vec![tool]).await;
    let error = hub.error("t", json!({})).await;
    assert_eq!(error["code"], "upstream_failed", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"bad name\"")),
        "the message names the header: {error}"
    );
}

/// Reads one request head (the tool sends GETs without a body); `None` once the
/// client closed.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A REST API on a bare socket that counts its connections and the `Host` each request
/// carried; with `close_after_answer` it closes every connection once it has answered
/// (without saying so in a header), as a server with a short keep-alive timeout does.
fn counting_rest_api(
    close_after_answer: bool,
) -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let (counted, seen) = (connections.clone(), hosts.clone());
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Some(request) = read_head(&mut stream).await {
                    let host = request
                        .lines()
                        .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().expect("hosts").push(host);
                    let body = r#"{"ok":true}"#;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() || close_after_answer {
                        break;
                    }
                }
            });
        }
    });
    (port, connections, hosts)
}

#[tokio::test]
async fn calls_share_a_kept_alive_connection_and_one_the_api_closed_never_fails_a_call() {
    use std::sync::atomic::Ordering;
    let tool = json!({"name": "t", "method": "GET", "pathTemplate": "/x"});
    let (port, connections, hosts) = counting_rest_api(false);
    let hub = WorkerHarness::start(
        json!({"baseUrl": format!("http://127.0.0.1:{port}")}),
        vec![tool.clone()],
    )
    .await;
    for _ in 0..4 {
        assert_eq!(hub.output("t", json!({})).await, json!({"ok": true}));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "calls one after another share one connection"
    );
    assert_eq!(
        *hosts.lock().expect("hosts"),
        vec![format!("127.0.0.1:{port}"); 4],
        "every request names its host and port"
    );

    // The API closes each connection after answering: every call still succeeds, on a
    // connection of its own.
    let (port, connections, _) = counting_rest_api(true);
    let hub = WorkerHarness::start(
        json!({"baseUrl": format!("http://127.0.0.1:{port}")}),
        vec![tool],
    )
    .await;
    for _ in 0..5 {
        assert_eq!(hub.output("t", json!({})).await, json!({"ok": true}));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

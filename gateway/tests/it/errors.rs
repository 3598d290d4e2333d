use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::{assert_completed, Options, Stack};

fn assert_error(status: u16, body: &Option<Value>, expected_status: u16, code: &str) -> Value {
    assert_eq!(status, expected_status, "{body:?}");
    let body = body.clone().expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"].is_string() && body["error"]["request_id"].is_string(),
        "{body}"
    );
    body
}

#[tokio::test]
async fn refusals_are_json_with_stable_codes() {
    let stack = Stack::start(Options::default()).await;

    // 400 with every violation and its JSON pointer; no REST call was made.
    let (status, _, body) = stack
        .call(
            "/mcp/fakestore_api/add_product",
            json!({"args": {"title": "", "price": -1, "extra": true}}),
        )
        .await;
    let body = assert_error(status, &body, 400, "invalid_arguments");
    assert_eq!(sorted_pointers(&body), ["", "/price", "/title"], "{body}");
    assert_eq!(
        stack.product_count().await,
        5,
        "invalid arguments never reach the REST API"
    );
    let (status, _, body) = stack
        .call(
            "/mcp/fruits_api/tools/call",
            json!({"name": "get_fruit_by_id", "args": {"id": "x"}}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_arguments");
    let response = stack
        .client
        .post(format!("{}/mcp/fruits_api/get_fruits", stack.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let body = assert_error(status, &response.json().await.ok(), 400, "bad_request");
    assert_eq!(body["error"]["request_id"], header_id.as_str(), "{body}");

    // 404 and 403.
    let (status, _, body) = stack
        .call("/mcp/nope/get_fruits", json!({"args": {}}))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, _, body) = stack
        .call("/mcp/fruits_api/nope", json!({"args": {}}))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, _, body) = stack
        .call(
            "/mcp/fruits_api/tools/call",
            json!({"name": "nope", "args": {}}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, _, body) = stack
        .call("/mcp/test_api/disabled", json!({"args": {}}))
        .await;
    assert_error(status, &body, 403, "tool_inactive");
    let mut inactive = stack
        .registry
        .get_server("fakestore_api")
        .await
        .expect("get")
        .expect("exists");
    inactive.active = false;
    stack
        .registry
        .upsert_server("fakestore_api", inactive)
        .await
        .expect("deactivate");
    let body = mcp_testkit::wait_until_async(
        "fakestore_api to be refused",
        std::time::Duration::from_secs(10),
        || async {
            let (status, _, body) = stack
                .call("/mcp/fakestore_api/get_all_products", json!({"args": {}}))
                .await;
            (status == 403).then_some(body)
        },
    )
    .await;
    assert_error(403, &body, 403, "server_inactive");

    // 413 beyond MCP_MAX_BODY_BYTES; 900 KiB passes.
    let blob = "x".repeat(900 * 1024);
    let (status, events, _) = stack
        .call("/mcp/test_api/echo_blob", json!({"args": {"blob": blob}}))
        .await;
    assert_eq!(status, 200);
    let echoed = assert_completed(&events);
    assert_eq!(
        echoed[0]["bodyJson"]["blob"].as_str().map(str::len),
        Some(900 * 1024)
    );
    let (status, _, body) = stack
        .call(
            "/mcp/test_api/echo_blob",
            json!({"args": {"blob": "x".repeat(2 * 1024 * 1024)}}),
        )
        .await;
    assert_error(status, &body, 413, "payload_too_large");
    // Chunked (no Content-Length) bodies are counted as they arrive.
    let stream = futures::stream::iter(
        (0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))),
    );
    let response = stack
        .client
        .post(format!("{}/mcp/test_api/echo_blob", stack.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 413);
    // ... on routes whose body is passed through unchecked too. The worker may answer
    // such a request (here its 400: no session) before the body is over the limit;
    // either way the gateway stops reading it and stays up (the calls below). A client
    // still writing when the connection closes behind the answer may see the broken
    // pipe before the answer: TCP gives no other outcome for an unread upload.
    let stream = futures::stream::iter(
        (0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 64 * 1024]))),
    );
    match stack
        .client
        .delete(format!("{}/mcp-servers/fruits_api/mcp", stack.base))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            assert!(status == 413 || status == 400, "{status}");
        }
        Err(err) => assert!(
            err.is_request()
                && io_error_kind(&err).is_some_and(|kind| matches!(
                    kind,
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                )),
            "neither an answer nor a closed upload: {err:?}"
        ),
    }

    let response = stack
        .client
        .post(format!("{}/mcp/ghost_server/t", stack.base))
        .json(&json!({"args": {}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn no_worker_is_503_with_retry_after() {
    let stack = stack_routed_by_hand(&["--worker-wait", "300ms"]).await;
    let response = stack
        .post("/mcp/fruits_api/get_fruits", json!({"args": {}}))
        .await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "no_worker");
    assert!(body["error"]["request_id"].is_string());
    let failed = stack
        .gateway
        .wait_for_event("tool.call.failed", std::time::Duration::from_secs(5));
    assert_eq!(failed["server"], "fruits_api");
    // Arguments are validated before a worker is looked for: invalid ones are a 400
    // even with no worker.
    let (status, _, body) = stack
        .call(
            "/mcp/fruits_api/get_fruit_by_id",
            json!({"args": {"id": "one"}}),
        )
        .await;
    let body = assert_error(status, &body, 400, "invalid_arguments");
    assert_eq!(body["error"]["details"][0]["pointer"], "/id", "{body}");
    // ... whatever the body's size (past Pingora's 64 KiB retry buffer here).
    let (status, _, body) = stack
        .call(
            "/mcp/fakestore_api/add_product",
            json!({"args": {"title": "", "price": 1, "description": "d".repeat(900 * 1024)}}),
        )
        .await;
    let body = assert_error(status, &body, 400, "invalid_arguments");
    assert_eq!(sorted_pointers(&body), ["/title"], "{body}");

    // Ids that are not registered get a 404 and no metrics series of their own.
    let (status, _, body) = stack
        .call("/mcp/no_such_server_4711/get_fruits", json!({"args": {}}))
        .await;
    assert_error(status, &body, 404, "not_found");
    // Error answers are counted by code and server (metrics are counted after the
    // answer went out, hence the wait).
    let expected = [
        "mcp_gateway_errors_total{code=\"503\",server=\"fruits_api\"} 1",
        "mcp_gateway_errors_total{code=\"400\",server=\"fruits_api\"} 1",
        "mcp_gateway_errors_total{code=\"400\",server=\"fakestore_api\"} 1",
        "mcp_gateway_errors_total{code=\"404\",server=\"-\"} 1",
    ];
    let metrics = stack
        .metrics_when(|m| expected.iter().all(|e| m.lines().any(|l| l == *e)))
        .await;
    assert!(!metrics.contains("no_such_server_4711"), "{metrics}");
}

#[tokio::test]
async fn a_slow_worker_is_504_and_the_gateway_stays_up() {
    let stack = Stack::start(Options {
        gateway_args: vec!["--read-timeout".into(), "500ms".into()],
        ..Options::default()
    })
    .await;
    let response = stack
        .post("/mcp/test_api/delay", json!({"args": {"ms": 3000}}))
        .await;
    let status = response.status().as_u16();
    let (text, clean) = crate::body_text(response).await;
    // The worker sends `tool_call.started` at once, so the silence after it is what times out:
    // either a 504 before any byte, or a stream that ends with tool_call.error and is then
    // cut (no chunked terminator), so the client knows the response is incomplete.
    if status == 504 {
        assert_error(
            status,
            &serde_json::from_str(&text).ok(),
            504,
            "worker_timeout",
        );
    } else {
        assert_eq!(status, 200);
        assert!(
            !clean,
            "a failed stream must not end like a complete one: {text}"
        );
        let events = crate::parse_sse(&text);
        let last = events.last().expect("events");
        assert_eq!(last.event, "tool_call.error", "{events:?}");
        assert_eq!(last.data["error"]["code"], "worker_failed");
        assert_eq!(last.data["request_id"], events[0].data["request_id"]);
    }
    // A connection whose upstream failed mid-stream is closed by the gateway (Pingora
    // never reuses it), so the next call goes out on a new connection, as a client's
    // retry would.
    let (status, events, _) = stack
        .call_with(
            &reqwest::Client::new(),
            "/mcp/test_api/delay",
            json!({"args": {"ms": 10}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_completed(&events);
}

/// A stack whose workers stop after 1 s without a call, once `server_id` has gone idle.
async fn stack_with_idle_server(server_id: &str) -> Stack {
    let stack = Stack::start(Options {
        supervisor_args: vec!["--idle-ttl".into(), "1s".into()],
        ..Options::default()
    })
    .await;
    mcp_testkit::wait_until_async(
        &format!("{server_id} to go idle"),
        std::time::Duration::from_secs(20),
        || async {
            let runtime = stack.registry.get_runtime(server_id).await.ok()?;
            (runtime.workers.first()?.status == mcp_core::runtime::WorkerStatus::Idle).then_some(())
        },
    )
    .await;
    stack
}

#[tokio::test]
async fn an_idle_server_is_woken_by_a_call() {
    let stack = stack_with_idle_server("fruits_api").await;
    // Invalid arguments are refused before anything is woken.
    let (status, _, body) = stack
        .call(
            "/mcp/fruits_api/get_fruit_by_id",
            json!({"args": {"id": 0}}),
        )
        .await;
    assert_error(status, &body, 400, "invalid_arguments");
    assert!(
        !stack
            .gateway
            .json_lines()
            .iter()
            .any(|l| l["event"] == "gateway.wake"),
        "an invalid call woke the server"
    );
    let started = std::time::Instant::now();
    let (status, events, body) = stack
        .call(
            "/mcp/fruits_api/get_fruit_by_id",
            json!({"args": {"id": 1}}),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(assert_completed(&events)[0]["name"], "Apple");
    println!(
        "a call to an idle server was answered after {:?}",
        started.elapsed()
    );
    stack
        .gateway
        .wait_for_event("gateway.wake", std::time::Duration::from_secs(5));
}

/// The race of an idle stop: the gateway still routes to a worker that was just stopped
/// as idle (its `idle` record has not reached the gateway yet). The call's connect fails,
/// the call waits for a worker, the `idle` record arrives, and the gateway must wake the
/// server then rather than wait out `MCP_GATEWAY_WORKER_WAIT` for a worker no one starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_meets_a_worker_just_stopped_as_idle_wakes_the_server() {
    let stack = std::sync::Arc::new(stack_with_idle_server("fruits_api").await);
    let idle = stack
        .registry
        .get_runtime("fruits_api")
        .await
        .expect("runtime")
        .workers
        .into_iter()
        .find(|w| w.replica_idx == 0)
        .expect("replica 0's record");
    assert_eq!(idle.status, mcp_core::runtime::WorkerStatus::Idle);
    // What the gateway held before the idle stop: replica 0 running, at an address where
    // nothing listens any more.
    let mut stale = idle.clone();
    stale.status = mcp_core::runtime::WorkerStatus::Running;
    stale.host = Some("127.0.0.1".into());
    stale.port = Some(mcp_testkit::free_port());
    stack
        .registry
        .put_worker_record("fruits_api", &stale)
        .await
        .expect("the stale record");
    stack.wait_gateway_workers("fruits_api", 1).await;

    let started = std::time::Instant::now();
    let call = {
        let stack = stack.clone();
        tokio::spawn(async move {
            stack
                .call(
                    "/mcp/fruits_api/get_fruit_by_id",
                    json!({"args": {"id": 1}}),
                )
                .await
        })
    };
    // The connect to the stopped worker failed; the call waits for a worker.
    tokio::task::block_in_place(|| {
        stack
            .gateway
            .wait_for_event("gateway.connect.failed", std::time::Duration::from_secs(10))
    });
    assert!(
        !stack
            .gateway
            .json_lines()
            .iter()
            .any(|l| l["event"] == "gateway.wake"),
        "woken before the idle record arrived"
    );
    // The supervisor's `idle` record reaches the gateway now.
    stack
        .registry
        .put_worker_record("fruits_api", &idle)
        .await
        .expect("the idle record");
    let (status, events, body) = call.await.expect("the call");
    let answered = started.elapsed();
    assert_eq!(status, 200, "{body:?}");
    assert_eq!(assert_completed(&events)[0]["name"], "Apple");
    // Its line may still be on its way from the gateway's stdout.
    tokio::task::block_in_place(|| {
        stack
            .gateway
            .wait_for_event("gateway.wake", std::time::Duration::from_secs(5))
    });
    println!("a call that met a worker stopped as idle was answered after {answered:?}");
}

/// `body` as a chunked request (no Content-Length), in 64 KiB chunks.
fn chunked(body: &Value) -> reqwest::Body {
    let bytes = body.to_string().into_bytes();
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = bytes
        .chunks(64 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

fn sorted_pointers(body: &Value) -> Vec<String> {
    let mut pointers: Vec<String> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| d["pointer"].as_str().expect("pointer").to_owned())
        .collect();
    pointers.sort_unstable();
    pointers
}

#[tokio::test]
async fn large_bodies_are_validated_before_an_idle_server_is_woken() {
    // Bodies past Pingora's 64 KiB retry buffer, with a Content-Length or chunked, are
    // read whole and validated before a worker is looked for, as small ones are.
    let stack = stack_with_idle_server("fakestore_api").await;
    let description = "d".repeat(900 * 1024);
    let invalid = json!({"args": {"title": "", "price": -1, "description": description}});
    let url = format!("{}/mcp/fakestore_api/add_product", stack.base);

    let (status, _, body) = stack
        .call("/mcp/fakestore_api/add_product", invalid.clone())
        .await;
    let body = assert_error(status, &body, 400, "invalid_arguments");
    assert_eq!(sorted_pointers(&body), ["/price", "/title"], "{body}");
    let response = stack
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(chunked(&invalid))
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let body: Option<Value> = response.json().await.ok();
    let body = assert_error(status, &body, 400, "invalid_arguments");
    assert_eq!(sorted_pointers(&body), ["/price", "/title"], "{body}");

    assert!(
        !stack
            .gateway
            .json_lines()
            .iter()
            .any(|l| l["event"] == "gateway.wake"),
        "an invalid call woke the server"
    );
    let runtime = stack
        .registry
        .get_runtime("fakestore_api")
        .await
        .expect("runtime");
    assert_eq!(
        runtime.workers[0].status,
        mcp_core::runtime::WorkerStatus::Idle,
        "still idle"
    );
    assert_eq!(stack.product_count().await, 5, "no REST call was made");

    // A valid one of the same size wakes the server and reaches the REST API whole,
    // with a Content-Length and chunked.
    let valid = json!({"args": {"title": "Big", "price": 1, "description": description}});
    let (status, events, body) = stack
        .call("/mcp/fakestore_api/add_product", valid.clone())
        .await;
    assert_eq!(status, 200, "{body:?}");
    let created = assert_completed(&events)[0].clone();
    assert_eq!(
        created["description"].as_str().map(str::len),
        Some(900 * 1024)
    );
    stack
        .gateway
        .wait_for_event("gateway.wake", std::time::Duration::from_secs(5));
    let response = stack
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(chunked(&valid))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let events = crate::parse_sse(&response.text().await.expect("body"));
    assert_eq!(
        assert_completed(&events)[0]["description"]
            .as_str()
            .map(str::len),
        Some(900 * 1024)
    );
    // A small chunked body is read whole and sent the same way.
    let response = stack
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(chunked(&json!({"args": {"title": "Small", "price": 2}})))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let events = crate::parse_sse(&response.text().await.expect("body"));
    assert_eq!(assert_completed(&events)[0]["title"], "Small");
    assert_eq!(stack.product_count().await, 8);
}

/// A stand-in worker on a free port: `answer` is written to each connection (nothing
/// at all when empty: the connection is held open and silent).
fn fake_worker(answer: &'static [u8]) -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            if !answer.is_empty() {
                let _ = stream.write_all(answer);
            }
            held.push(stream);
        }
    });
    port
}

/// A stack without workers whose gateway routes to the worker records a test writes
/// itself (`route_to`), with `extra` gateway flags.
async fn stack_routed_by_hand(extra: &[&str]) -> Stack {
    let mut gateway_args = vec!["--supervisor-enabled".to_owned(), "true".to_owned()];
    gateway_args.extend(extra.iter().map(|a| a.to_string()));
    Stack::start(Options {
        workers: false,
        gateway_args,
        ..Options::default()
    })
    .await
}

async fn route_to(stack: &Stack, server_id: &str, port: u16) {
    stack
        .registry
        .put_worker_record(server_id, &worker_record(port))
        .await
        .expect("record");
    stack.wait_gateway_workers(server_id, 1).await;
}

/// A running replica 0 on `port`.
fn worker_record(port: u16) -> mcp_core::runtime::WorkerRecord {
    mcp_core::runtime::WorkerRecord {
        pid: Some(std::process::id()),
        host: Some("127.0.0.1".into()),
        port: Some(port),
        ..mcp_core::runtime::WorkerRecord::new(0, mcp_core::runtime::WorkerStatus::Running, "test")
    }
}

/// Reads a request's head: its request line (without the line end) and its
/// `Content-Length` (0 when absent); `None` when the connection ends first.
fn read_head(reader: &mut impl std::io::BufRead) -> Option<(String, usize)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return None;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            return Some((request_line.trim_end().to_owned(), length));
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
}

/// A stand-in worker that reads each request whole and answers 200 with the number of
/// body bytes it received, one request per connection.
fn counting_worker() -> u16 {
    standin_worker(true, |body| ("text/plain", body.len().to_string())).0
}

/// A stand-in worker that reads each request whole and answers it 200 with what
/// `answer` makes of its body (content type and text), on a keep-alive connection, or
/// closing each connection after its first answer (without saying so in the answer, as
/// a worker that restarts or times idle connections out does); counts the connections
/// it accepted.
fn standin_worker(
    close_after_answer: bool,
    answer: fn(&[u8]) -> (&'static str, String),
) -> (u16, Arc<AtomicUsize>) {
    use std::io::{BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                while let Some((_, length)) = read_head(&mut reader) {
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let (content_type, text) = answer(&body);
                    let message = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    let stream = reader.get_mut();
                    if stream.write_all(message.as_bytes()).is_err() {
                        return;
                    }
                    if close_after_answer {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            });
        }
    });
    (port, connections)
}

#[tokio::test]
async fn a_large_body_is_retried_after_a_failed_connect() {
    // The gateway holds a large body itself (past Pingora's retry buffer), so a call
    // whose worker refused the connection can be sent again, whole, to its replacement.
    let stack = stack_routed_by_hand(&[]).await;
    route_to(&stack, "test_api", mcp_testkit::free_port()).await;
    let body = json!({"args": {"blob": "b".repeat(300 * 1024)}});
    let length = body.to_string().len();
    let call = stack
        .client
        .post(format!("{}/mcp/test_api/echo_blob", stack.base))
        .header("x-request-id", "held-1")
        .json(&body)
        .send();
    let call = tokio::spawn(call);
    mcp_testkit::wait_until_async(
        "the connect to the dead worker to fail",
        std::time::Duration::from_secs(10),
        || async {
            stack
                .gateway
                .json_lines()
                .iter()
                .any(|l| l["event"] == "gateway.connect.failed" && l["request_id"] == "held-1")
                .then_some(())
        },
    )
    .await;
    // The replacement comes up on another port while the call waits for it.
    let mut replacement = worker_record(counting_worker());
    replacement.pid = Some(std::process::id() + 1);
    stack
        .registry
        .put_worker_record("test_api", &replacement)
        .await
        .expect("record");
    let response = call.await.expect("join").expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], "held-1");
    assert_eq!(
        response.text().await.expect("body"),
        length.to_string(),
        "the whole body reached the replacement"
    );
}

#[tokio::test]
async fn a_silent_worker_is_504_and_a_garbled_one_502_as_json() {
    let stack = stack_routed_by_hand(&["--read-timeout", "500ms"]).await;
    route_to(&stack, "fruits_api", fake_worker(b"")).await;
    let started = std::time::Instant::now();
    let (status, _, body) = stack
        .call("/mcp/fruits_api/get_fruits", json!({"args": {}}))
        .await;
    let timed_out = assert_error(status, &body, 504, "worker_timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    route_to(
        &stack,
        "fakestore_api",
        fake_worker(b"this is not HTTP\r\n\r\n"),
    )
    .await;
    let (status, _, body) = stack
        .call("/mcp/fakestore_api/get_all_products", json!({"args": {}}))
        .await;
    let garbled = assert_error(status, &body, 502, "worker_failed");
    // Both are logged as failures at the gateway, with where they happened and the PRD's
    // fields: the request id of the answer, the error and its traceback (cause chain).
    let failed = mcp_testkit::wait_until(
        "tool.call.failed lines for the 504 and the 502",
        std::time::Duration::from_secs(5),
        || {
            let failed: Vec<Value> = stack
                .gateway
                .json_lines()
                .into_iter()
                .filter(|l| l["event"] == "tool.call.failed" && l["stage"] == "gateway.proxy")
                .collect();
            let line = |status: u16| failed.iter().find(|l| l["status"] == status).cloned();
            Some((line(504)?, line(502)?))
        },
    );
    for (line, answer, kind) in [
        (&failed.0, &timed_out, "ReadTimedout"),
        (&failed.1, &garbled, "InvalidHTTPHeader"),
    ] {
        assert_eq!(line["request_id"], answer["error"]["request_id"], "{line}");
        assert!(
            line["error"].as_str().is_some_and(|e| e.contains(kind)),
            "{line}"
        );
        let traceback = line["traceback"].as_str().unwrap_or_default();
        println!("traceback of the {kind} failure:\n{traceback}");
        assert!(
            traceback.starts_with(&format!("Upstream {kind}: peer: "))
                && traceback.contains("\ncaused by: "),
            "the traceback names where and what failed, and why: {line}"
        );
    }
}

/// The I/O error under a reqwest error, if one is in its chain of causes.
fn io_error_kind(err: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
}

/// What a stand-in admin API saw of one request: its `Content-Length` and the body
/// bytes that arrived (within 2 s).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    request_line: String,
    content_length: usize,
    body_received: usize,
}

/// A stand-in admin API that closes the first connection after reading its request,
/// unanswered, and answers every later one with 200 `{}`.
fn dropping_admin() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use std::io::{BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().flatten().enumerate() {
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut reader = BufReader::new(stream);
                let Some((request_line, content_length)) = read_head(&mut reader) else {
                    return;
                };
                let mut body = vec![0; content_length];
                let mut body_received = 0;
                while body_received < content_length {
                    match reader.read(&mut body[body_received..]) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => body_received += read,
                    }
                }
                if let Ok(mut seen) = log.lock() {
                    seen.push(Seen {
                        request_line,
                        content_length,
                        body_received,
                    });
                }
                if n > 0 {
                    let _ = reader.get_mut().write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
                    );
                }
                // The first connection is dropped here, unanswered.
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn an_admin_post_is_never_sent_again_without_its_body_and_a_get_is_retried() {
    // Pingora streams an admin body through without keeping it, so when the admin
    // API's connection breaks before an answer the request cannot be sent again whole:
    // it must fail as a JSON 502, not reach the admin API a second time bodiless. A
    // request without a body is simply sent again.
    let stack = Stack::start(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let (admin, seen) = dropping_admin();
    let upstream = [("--admin-upstream".to_owned(), admin.clone())].into();
    let (gateway, base, _) = stack
        .hub
        .start_gateway(&upstream)
        .await
        .expect("a gateway in front of the dropping admin API");

    let body = json!({"name": "fresh", "baseUrl": "http://127.0.0.1:1"});
    let response = stack
        .client
        .post(format!("{base}/api/servers/fresh"))
        .header("x-request-id", "admin-post-1")
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let answer: Option<Value> = response.json().await.ok();
    let error = assert_error(status, &answer, 502, "admin_failed");
    assert_eq!(error["error"]["request_id"], "admin-post-1", "{error}");
    let logged = gateway.wait_for_event("gateway.admin.failed", std::time::Duration::from_secs(5));
    assert_eq!(logged["request_id"], "admin-post-1", "{logged}");
    // The gateway answered after its last attempt, so everything it sent is recorded.
    let posts = seen.lock().expect("lock").clone();
    assert_eq!(
        posts.len(),
        1,
        "the POST reached the admin API once: {posts:?}"
    );
    assert_eq!(posts[0].request_line, "POST /api/servers/fresh HTTP/1.1");
    assert_eq!(posts[0].content_length, body.to_string().len());
    assert_eq!(posts[0].body_received, posts[0].content_length, "{posts:?}");

    let response = stack
        .client
        .get(format!("{base}/api/servers"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.status().as_u16(),
        200,
        "retried on a new connection"
    );
    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].request_line, "GET /api/servers HTTP/1.1");
}

/// Answers `{"ok":true}` whatever the request.
fn ok_json(_: &[u8]) -> (&'static str, String) {
    ("application/json", r#"{"ok":true}"#.to_owned())
}

#[tokio::test]
async fn a_pooled_worker_connection_is_reused_and_one_the_worker_closed_never_fails_a_call() {
    let stack = stack_routed_by_hand(&[]).await;
    let (port, connections) = standin_worker(false, ok_json);
    route_to(&stack, "fruits_api", port).await;
    for _ in 0..3 {
        let (status, _, body) = stack
            .call("/mcp/fruits_api/get_fruits", json!({"args": {}}))
            .await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(body, Some(json!({"ok": true})));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "calls one after another share one pooled connection"
    );

    // Each connection is closed by the worker once idle: every call still succeeds, on
    // a connection of its own.
    let (port, connections) = standin_worker(true, ok_json);
    route_to(&stack, "fakestore_api", port).await;
    for _ in 0..5 {
        let (status, _, body) = stack
            .call("/mcp/fakestore_api/get_all_products", json!({"args": {}}))
            .await;
        assert_eq!(status, 200, "{body:?}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_metrics_port_taken_stops_the_gateway_with_one_clear_line() {
    let redis = mcp_testkit::RedisServer::start();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let metrics = taken.local_addr().expect("addr").to_string();
    let mut command = crate::base_command("mcp-gateway", &redis, &mcp_testkit::unique_prefix());
    command.args([
        "--listen",
        &format!("127.0.0.1:{}", mcp_testkit::free_port()),
        "--metrics-listen",
        &metrics,
    ]);
    let mut gateway = mcp_testkit::ChildProcess::spawn("mcp-gateway", command);
    let status = gateway.wait_exit(std::time::Duration::from_secs(20));
    assert!(!status.success(), "it must not run without its metrics");
    let stderr = gateway.stderr_lines().join("\n");
    assert!(
        stderr.contains(&format!("binding the metrics listener {metrics}"))
            && stderr.contains("MCP_GATEWAY_METRICS_LISTEN"),
        "{stderr}"
    );
}

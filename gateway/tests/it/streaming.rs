use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Options, Stack};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn a_quick_answer_reaches_the_client_whole_and_sized() {
    // A hold far above what the mock takes, so a loaded test machine cannot make the
    // REST answer miss it (5 ms by default) and turn the answer into a stream.
    let stack = Stack::start(Options {
        supervisor_env: vec![("MCP_WORKER_STARTED_HOLD_MS".into(), "2000".into())],
        ..Options::default()
    })
    .await;
    let addr = stack.base.trim_start_matches("http://");
    // The PRD mix's two tools, and an answer of a few KiB: more than one MSS, which is
    // Pingora's default write buffer.
    let blob = json!({"args": {"blob": "x".repeat(3000)}}).to_string();
    for (path, body) in [
        ("/mcp/fruits_api/get_fruit_by_id", r#"{"args":{"id":2}}"#),
        ("/mcp/fruits_api/get_fruits", r#"{"args":{}}"#),
        ("/mcp/test_api/echo_blob", blob.as_str()),
        ("/mcp/fruits_api/get_fruit_by_id", r#"{"args":{"id":3}}"#),
    ] {
        let reads = mcp_testkit::raw_http::post_reads(addr, path, body).await;
        assert_eq!(reads.len(), 1, "one write: {reads:?}");
        let text = &reads[0].1;
        let lower = text.to_ascii_lowercase();
        for part in ["http/1.1 200", "content-length: ", "x-request-id: "] {
            assert!(lower.contains(part), "{part:?} in {text}");
        }
        assert!(!lower.contains("chunked"), "{text}");
        let (_, body) = text.split_once("\r\n\r\n").expect("head and body");
        crate::assert_completed(&crate::parse_sse(body));
    }
}

#[tokio::test]
async fn chunks_stream_through_the_gateway_as_they_are_produced() {
    let stack = Stack::start(Options::default()).await;
    let mut response = stack
        .post(
            "/mcp/test_api/chunks",
            json!({"args": {"n": 5, "interval": 200}}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 200);
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
    let outputs = crate::assert_completed(&crate::parse_sse(&text));
    assert_eq!(outputs.len(), 5, "5 chunks, 5 events");
    let spread = *delta_times.last().expect("times") - delta_times[0];
    println!("5 chunks 200 ms apart reached the client over {spread:?}: {delta_times:?}");
    assert!(
        spread >= Duration::from_millis(640),
        "events arrived together: {delta_times:?}"
    );
}

#[tokio::test]
async fn a_slow_reader_does_not_grow_the_gateway_memory() {
    let stack = Stack::start(Options::default()).await;
    let pid = stack.gateway_pid();
    // Warm up so pools and buffers exist before the baseline.
    let (status, _, _) = stack
        .call(
            "/mcp/test_api/chunks",
            json!({"args": {"n": 20, "interval": 0}}),
        )
        .await;
    assert_eq!(status, 200);
    let baseline = rss_kib(pid);
    // About 48 MiB of SSE (768 chunks of 64 KiB) that the client does not read for a while.
    let mut response = stack
        .client
        .post(format!("{}/mcp/test_api/large", stack.base))
        .json(&json!({"args": {"n": 768, "interval": 0, "size": 65536}}))
        .send()
        .await
        .expect("sent");
    let mut received = 0usize;
    if let Some(first) = response.chunk().await.expect("chunk") {
        received += first.len();
    }
    let mut peak = baseline;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        received += chunk.len();
        peak = peak.max(rss_kib(pid));
    }
    let growth_mib = (peak.saturating_sub(baseline)) as f64 / 1024.0;
    println!("gateway RSS: baseline {} KiB, peak {} KiB (+{growth_mib:.1} MiB) while {} MiB streamed to a stalled reader", baseline, peak, received / (1024 * 1024));
    assert!(
        received > 40 * 1024 * 1024,
        "the whole stream arrived: {received} bytes"
    );
    assert!(
        growth_mib < 16.0,
        "gateway memory grew by {growth_mib:.1} MiB: the stream was buffered"
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_is_not_a_worker_failure() {
    let stack = Stack::start(Options::default()).await;
    let request_id = "01a20def-a9d8-73df-9a9a-7c78694b7aaa";
    let mut response = stack
        .client
        .post(format!("{}/mcp/test_api/chunks", stack.base))
        .header("x-request-id", request_id)
        .json(&json!({"args": {"n": 10, "interval": 200}}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let first = response
        .chunk()
        .await
        .expect("chunk")
        .expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("tool_call.started"));
    drop(response);

    let closed = mcp_testkit::wait_until_async(
        "the gateway to log the hang-up",
        Duration::from_secs(10),
        || async {
            stack.gateway.json_lines().into_iter().find(|line| {
                line["event"] == "gateway.client.closed" && line["request_id"] == request_id
            })
        },
    )
    .await;
    assert_eq!(closed["server"], "test_api");
    let failed: Vec<_> = stack
        .gateway
        .json_lines()
        .into_iter()
        .filter(|line| line["request_id"] == request_id && line["level"] == "ERROR")
        .collect();
    assert!(
        failed.is_empty(),
        "a hang-up logged as an error: {failed:?}"
    );
}

//! The generator's connection budget: however slow the target, it never has more than
//! `connections` requests on the wire or connections open, and a call that waited for a
//! connection still succeeds, its wait counted in the response time (from the
//! schedule) and not in the latency (from the send).
//!
//! The target is a small HTTP/1.1 server of this test (the generator is what is under
//! test here): it answers every call after `DELAY` with a complete hub event stream and
//! counts the connections it accepted and the most requests it held at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcp_loadtest::{driver, Plan, RunConfig, Scenario, Schedule, Target};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const DELAY: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    busy: AtomicUsize,
    most_busy: AtomicUsize,
}

const ANSWER: &str = "event: tool_call.started\ndata: {}\n\n\
                      event: tool_call.completed\ndata: {}\n\n";

/// Serves one connection: each request gets the answer after `DELAY`. The generator
/// sends a request only once the previous answer arrived, so what has been read is
/// always one request.
async fn serve(mut stream: TcpStream, counts: Arc<Counts>) {
    while mcp_testkit::raw_http::read_message(&mut stream)
        .await
        .is_some()
    {
        let now = counts.busy.fetch_add(1, Ordering::SeqCst) + 1;
        counts.most_busy.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(DELAY).await;
        counts.busy.fetch_sub(1, Ordering::SeqCst);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn slow_target() -> (String, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let counts = Arc::new(Counts::default());
    let accepting = counts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepting.accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, accepting.clone()));
        }
    });
    (format!("http://{addr}/"), counts)
}

#[tokio::test]
async fn a_slow_target_gets_no_more_connections_than_the_budget() {
    let (url, counts) = slow_target().await;
    let scenario = Scenario::parse(
        "name: budget\nmode: call\nservers: [s]\nrequests:\n  - tool: t\n    args: {}\n",
    )
    .expect("scenario");
    // 200 calls a second that each take 50 ms need 10 connections; the budget is 3.
    let config = RunConfig {
        schedule: Schedule::new(200.0, Duration::ZERO, Duration::from_secs(1)).expect("schedule"),
        max_in_flight: 5_000,
        connections: 3,
        timeout: Duration::from_secs(30),
        seed: 1,
        sessions_per_server: 1,
        timeline: false,
    };
    let target = Target::Gateway(url.parse().expect("url"));
    let report = driver::run(
        &Plan::new(scenario),
        &target,
        &config,
        &driver::client().expect("client"),
    )
    .await
    .expect("run");

    assert_eq!(report.failed, 0, "every call completes: {report:?}");
    assert_eq!(report.succeeded, 200);
    assert!(
        counts.most_busy.load(Ordering::SeqCst) <= 3,
        "at most 3 requests at once, saw {}",
        counts.most_busy.load(Ordering::SeqCst)
    );
    assert!(
        counts.accepted.load(Ordering::SeqCst) <= 3,
        "at most 3 connections, saw {}",
        counts.accepted.load(Ordering::SeqCst)
    );
    // 3 connections carry 60 calls a second: the last of the 200 left about 2.3 s
    // after its time, and the response time says so; the latency is one call's 50 ms.
    assert!(
        report.response_ms.max > 1_500.0,
        "waits count in the response time: {:?}",
        report.response_ms
    );
    assert!(
        report.latency_ms.p99 < 1_000.0,
        "waits stay out of the latency: {:?}",
        report.latency_ms
    );
}

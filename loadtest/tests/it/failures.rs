//! How the generator's call client judges answers, kind by kind, and that it keeps its
//! connections: against a small HTTP/1.1 server of this test whose tools each answer
//! one way (the generator is what is under test here).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcp_loadtest::{driver, Plan, Report, RunConfig, Scenario, Schedule, Target};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const STREAM: &str = "event: tool_call.started\ndata: {}\n\n\
                      event: output.delta\ndata: {\"output\": 1}\n\n\
                      event: tool_call.completed\ndata: {}\n\n";

fn answer(path: &str) -> String {
    let started = "event: tool_call.started\ndata: {}\n\n";
    let (status, content_type, body, declared) = match path {
        "/mcp/s/ok" => ("200 OK", "text/event-stream", STREAM.to_owned(), None),
        "/mcp/s/busy" => (
            "503 Service Unavailable",
            "application/json",
            r#"{"error": {"code": "overloaded"}}"#.to_owned(),
            None,
        ),
        "/mcp/s/failing" => (
            "200 OK",
            "text/event-stream",
            format!("{started}event: tool_call.error\ndata: {{}}\n\n"),
            None,
        ),
        "/mcp/s/plain" => ("200 OK", "text/plain", "hello".to_owned(), None),
        // Says it has more than it sends, then the connection closes.
        "/mcp/s/cut" => (
            "200 OK",
            "text/event-stream",
            started.to_owned(),
            Some(4096),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "no such tool".to_owned(),
            None,
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        declared.unwrap_or(body.len())
    )
}

async fn serve(mut stream: TcpStream) {
    while let Some(request) = mcp_testkit::raw_http::read_message(&mut stream).await {
        let path = request.split_whitespace().nth(1).unwrap_or_default();
        if stream.write_all(answer(path).as_bytes()).await.is_err() || path == "/mcp/s/cut" {
            return;
        }
    }
}

/// The test server's base URL and how many connections it accepted.
async fn target() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (format!("http://{addr}/"), accepted)
}

async fn run(base: &str, tool: &str, calls: u32) -> Report {
    let scenario = Scenario::parse(&format!(
        "name: kinds\nmode: call\nservers: [s]\nrequests:\n  - tool: {tool}\n    args: {{}}\n"
    ))
    .expect("scenario");
    let config = RunConfig {
        schedule: Schedule::new(
            f64::from(calls) * 2.0,
            Duration::ZERO,
            Duration::from_millis(500),
        )
        .expect("schedule"),
        max_in_flight: 5_000,
        connections: 4,
        timeout: Duration::from_secs(10),
        seed: 1,
        sessions_per_server: 1,
        timeline: false,
    };
    driver::run(
        &Plan::new(scenario),
        &Target::Gateway(base.parse().expect("url")),
        &config,
        &driver::client().expect("client"),
    )
    .await
    .expect("run")
}

#[tokio::test]
async fn each_kind_of_answer_is_counted_as_its_own_failure() {
    let (base, _) = target().await;
    for (tool, label) in [
        ("busy", "http_503"),
        ("missing", "http_404"),
        ("failing", "tool_error"),
        ("plain", "protocol"),
        ("cut", "connection"),
    ] {
        let report = run(&base, tool, 10).await;
        assert_eq!(report.succeeded, 0, "{tool}: {report:?}");
        assert_eq!(
            report.failures.get(label).copied(),
            Some(report.offered),
            "{tool} counts as {label}: {:?}",
            report.failures
        );
    }
    // Nothing listens on a port of a closed listener.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let report = run(&format!("http://127.0.0.1:{port}/"), "ok", 10).await;
    assert_eq!(
        report.failures.get("connection").copied(),
        Some(report.offered),
        "{:?}",
        report.failures
    );
}

#[tokio::test]
async fn completed_calls_keep_their_connections_and_failed_answers_too() {
    let (base, accepted) = target().await;
    let report = run(&base, "ok", 100).await;
    assert_eq!(
        (report.succeeded, report.failed),
        (report.offered, 0),
        "{report:?}"
    );
    let after_ok = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=4).contains(&after_ok),
        "{} calls over at most 4 kept-alive connections, saw {after_ok}",
        report.offered
    );
    // An HTTP error with a complete body leaves its connection usable as well.
    let report = run(&base, "busy", 100).await;
    assert_eq!(
        report.failures.get("http_503").copied(),
        Some(report.offered)
    );
    let after_busy = accepted.load(Ordering::SeqCst);
    assert!(after_busy - after_ok <= 4, "{after_ok} then {after_busy}");
}

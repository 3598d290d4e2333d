//! The connection cap (`--max-connections`) and the first-byte timeout
//! (`--first-byte-timeout`) against the real gateway: held connections are bare TCP
//! sockets, so the tests decide exactly which of them have sent a byte.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Options, Stack};

const OPEN: &str = "mcp_gateway_connections_open";
const IDLE: &str = "mcp_gateway_connections_idle";
const EVICTED_IDLE: &str = r#"mcp_gateway_connections_shed_total{reason="evicted_idle"}"#;
const REFUSED: &str = r#"mcp_gateway_connections_shed_total{reason="refused"}"#;
const FIRST_BYTE_TIMEOUT: &str =
    r#"mcp_gateway_connections_shed_total{reason="first_byte_timeout"}"#;

/// The value of the series named exactly `series` (with its labels) in Prometheus text.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The gateway with `gateway_args` and no workers, and no connection of the harness
/// left holding a slot: its pooled client is swapped for one that keeps none, and the
/// open gauge is waited down to 0.
async fn quiet_stack(gateway_args: &[&str]) -> Stack {
    let mut stack = Stack::start(Options {
        workers: false,
        gateway_args: gateway_args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await;
    stack.client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    wait_for(&stack, "no open connection", |text| {
        metric(text, OPEN) == Some(0.0)
    })
    .await;
    stack
}

/// Waits (10 s at most) until the gateway's metrics text satisfies `ready`; returns it.
async fn wait_for(stack: &Stack, what: &str, ready: impl Fn(&str) -> bool) -> String {
    mcp_testkit::wait_until_async(what, Duration::from_secs(10), || async {
        let text = stack.metrics_text().await;
        ready(&text).then_some(text)
    })
    .await
}

/// `host:port` of the gateway's proxy listener.
fn addr(stack: &Stack) -> String {
    stack
        .base
        .strip_prefix("http://")
        .expect("an http:// base")
        .to_owned()
}

/// Holds `socket` in a task that reads until the gateway closes it (EOF or an error),
/// then counts it in `closed`. Dropping the handle's task (abort) closes the socket.
fn watch_close(
    mut socket: TcpStream,
    closed: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        closed.fetch_add(1, Ordering::SeqCst);
        got
    })
}

/// Sends a whole `GET /healthz` on `socket` and reads the answer to the end.
async fn healthz_on(mut socket: TcpStream, addr: &str) -> String {
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.expect("write");
    read_all(socket).await
}

/// Everything the gateway sends on `socket` until it closes (5 s at most).
async fn read_all(mut socket: TcpStream) -> String {
    let mut whole = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut whole))
        .await
        .expect("the gateway closes within 5 s")
        .expect("read");
    String::from_utf8_lossy(&whole).into_owned()
}

/// Status, lower-cased header lines and body of a whole HTTP/1.1 response.
fn parse_response(text: &str) -> (u16, Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn at_the_cap_the_oldest_silent_connection_gives_its_slot_to_a_newcomer() {
    let stack = quiet_stack(&["--max-connections", "50", "--first-byte-timeout", "0"]).await;
    let addr = addr(&stack);
    let closed = Arc::new(AtomicUsize::new(0));
    let mut silent = Vec::new();
    for _ in 0..50 {
        let socket = TcpStream::connect(&addr).await.expect("connect");
        silent.push(watch_close(socket, Arc::clone(&closed)));
    }
    let text = wait_for(&stack, "50 open connections, all idle", |text| {
        metric(text, OPEN) == Some(50.0) && metric(text, IDLE) == Some(50.0)
    })
    .await;
    assert_eq!(metric(&text, EVICTED_IDLE), Some(0.0), "{text}");
    assert_eq!(closed.load(Ordering::SeqCst), 0);

    // A newcomer at the cap is served: a fresh connection (the client keeps none).
    let started = Instant::now();
    let response = stack
        .client
        .get(format!("{}/healthz", stack.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok", "{body}");
    let served_in = started.elapsed();

    let text = wait_for(&stack, "an idle connection evicted", |text| {
        metric(text, EVICTED_IDLE).is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(metric(&text, EVICTED_IDLE), Some(1.0), "{text}");
    assert_eq!(metric(&text, REFUSED), Some(0.0), "{text}");
    mcp_testkit::wait_until_async(
        "a silent connection closed by the gateway",
        Duration::from_secs(5),
        || async { (closed.load(Ordering::SeqCst) >= 1).then_some(()) },
    )
    .await;
    // The newcomer's connection is gone (no pool), so 49 silent ones are left.
    let text = wait_for(&stack, "49 open connections, all idle", |text| {
        metric(text, OPEN) == Some(49.0) && metric(text, IDLE) == Some(49.0)
    })
    .await;
    assert_eq!(closed.load(Ordering::SeqCst), 1, "{text}");
    eprintln!("served at the cap in {served_in:?}");
    for task in silent {
        task.abort();
    }
}

#[tokio::test]
async fn when_every_slot_has_sent_data_a_newcomer_gets_503_too_many_connections() {
    const CAP: usize = 8;
    let cap = CAP.to_string();
    let stack = quiet_stack(&["--max-connections", &cap, "--first-byte-timeout", "0"]).await;
    let addr = addr(&stack);
    let closed = Arc::new(AtomicUsize::new(0));
    let mut busy = Vec::new();
    for _ in 0..CAP {
        let mut socket = TcpStream::connect(&addr).await.expect("connect");
        // A request head that never ends: the connection has sent data, holds its slot.
        let partial = format!("POST /mcp HTTP/1.1\r\nhost: {addr}\r\n");
        socket.write_all(partial.as_bytes()).await.expect("write");
        busy.push(watch_close(socket, Arc::clone(&closed)));
    }
    let text = wait_for(&stack, "the cap reached, no idle connection", |text| {
        metric(text, OPEN) == Some(CAP as f64) && metric(text, IDLE) == Some(0.0)
    })
    .await;
    assert_eq!(metric(&text, REFUSED), Some(0.0), "{text}");

    let newcomer = TcpStream::connect(&addr).await.expect("connect");
    let answer = healthz_on(newcomer, &addr).await;
    let (status, headers, body) = parse_response(&answer);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(header(&headers, "connection"), Some("close"), "{answer}");
    assert_eq!(header(&headers, "retry-after"), Some("1"), "{answer}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json"),
        "{answer}"
    );
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let request_id = header(&headers, "x-request-id").expect("x-request-id");
    assert_eq!(body["error"]["request_id"], request_id, "{body}");

    let text = wait_for(&stack, "a refusal counted", |text| {
        metric(text, REFUSED).is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(metric(&text, REFUSED), Some(1.0), "{text}");
    assert_eq!(metric(&text, EVICTED_IDLE), Some(0.0), "{text}");
    // The busy connections were not touched, and still hold every slot.
    assert_eq!(metric(&text, OPEN), Some(CAP as f64), "{text}");
    assert_eq!(closed.load(Ordering::SeqCst), 0);

    // One busy connection ends: its slot is free again for the next newcomer.
    busy.pop().expect("one").abort();
    wait_for(&stack, "a slot freed", |text| {
        metric(text, OPEN) == Some((CAP - 1) as f64)
    })
    .await;
    let newcomer = TcpStream::connect(&addr).await.expect("connect");
    let answer = healthz_on(newcomer, &addr).await;
    assert_eq!(parse_response(&answer).0, 200, "{answer}");
    for task in busy {
        task.abort();
    }
}

#[tokio::test]
async fn a_connection_silent_past_the_first_byte_timeout_is_closed() {
    let stack = quiet_stack(&["--first-byte-timeout", "300ms"]).await;
    let addr = addr(&stack);

    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    let connected = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the gateway closes a silent connection within 5 s");
    let closed_after = connected.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without an answer: {read:?}"
    );
    assert!(
        closed_after >= Duration::from_millis(250),
        "closed after {closed_after:?}, before the 300 ms timeout"
    );
    let text = wait_for(&stack, "a first-byte timeout counted", |text| {
        metric(text, FIRST_BYTE_TIMEOUT).is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(metric(&text, FIRST_BYTE_TIMEOUT), Some(1.0), "{text}");

    // A connection that sends its request at once is served.
    let prompt = TcpStream::connect(&addr).await.expect("connect");
    let answer = healthz_on(prompt, &addr).await;
    assert_eq!(parse_response(&answer).0, 200, "{answer}");

    // The timeout is for the first byte only: a request head sent in two parts, the
    // second well after the timeout, is served too.
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    // Not a synchronisation: the gap the test is about, longer than the timeout.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rest = format!("host: {addr}\r\nconnection: close\r\n\r\n");
    slow.write_all(rest.as_bytes()).await.expect("write");
    let answer = read_all(slow).await;
    assert_eq!(parse_response(&answer).0, 200, "{answer}");

    let text = stack.metrics_text().await;
    assert_eq!(metric(&text, FIRST_BYTE_TIMEOUT), Some(1.0), "{text}");
    eprintln!("silent connection closed after {closed_after:?}");
}

//! The mock REST API over real HTTP: demo collections are stateful, the echo endpoint
//! reports exactly what arrived, streams are paced.

use std::time::{Duration, Instant};

use mcp_testkit::{ChildProcess, MockApi};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[tokio::test]
async fn demo_collections_are_stateful() {
    let mock = MockApi::start();
    let c = client();
    let products: Value = c
        .get(format!("{}/products?limit=2&sort=desc", mock.url()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(products.as_array().map(Vec::len), Some(2));
    assert_eq!(products[0]["id"], 5);
    let created = c
        .post(format!("{}/products", mock.url()))
        .json(&json!({"title": "New", "price": 1.5}))
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.expect("json");
    let got: Value = c
        .get(format!("{}/products/{}", mock.url(), created["id"]))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(got["title"], "New");
    let fruit: Value = c
        .post(format!("{}/api/fruits", mock.url()))
        .json(&json!({"name": "Fig"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let updated: Value = c
        .put(format!("{}/api/fruits/{}", mock.url(), fruit["id"]))
        .json(&json!({"color": "purple"}))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        updated,
        json!({"name": "Fig", "id": fruit["id"], "color": "purple"})
    );
    let deleted = c
        .delete(format!("{}/api/fruits/{}", mock.url(), fruit["id"]))
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status().as_u16(), 200);
    let missing = c
        .get(format!("{}/api/fruits/{}", mock.url(), fruit["id"]))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status().as_u16(), 404);
    let bad = c
        .get(format!("{}/products/abc", mock.url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn echo_reports_what_arrived() {
    let mock = MockApi::start();
    let echoed: Value = client()
        .patch(format!("{}/test/echo/a%2Fb/c%20d?q=a+b&x=%26", mock.url()))
        .header("X-Custom", "v1")
        .body("raw body")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(echoed["method"], "PATCH");
    assert_eq!(echoed["path"], "/test/echo/a%2Fb/c%20d");
    assert_eq!(echoed["query"], "q=a+b&x=%26");
    assert_eq!(echoed["headers"]["x-custom"], "v1");
    assert_eq!(echoed["body"], "raw body");
    let failed = client()
        .get(format!("{}/test/echo-status/401?k=v", mock.url()))
        .header("Authorization", "Bearer t-1")
        .send()
        .await
        .expect("sent");
    assert_eq!(failed.status().as_u16(), 401);
    let failed: Value = failed.json().await.expect("json");
    assert_eq!(failed["headers"]["authorization"], "Bearer t-1");
    assert_eq!(failed["query"], "k=v");
    let status = client()
        .post(format!("{}/test/status/503", mock.url()))
        .send()
        .await
        .expect("sent");
    assert_eq!(status.status().as_u16(), 503);
}

#[tokio::test]
async fn streams_are_paced_and_large_bodies_exact() {
    let mock = MockApi::start();
    let mut response = client()
        .get(format!(
            "{}/test/stream/chunks?n=4&interval_ms=150",
            mock.url()
        ))
        .send()
        .await
        .expect("sent");
    let started = Instant::now();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        arrivals.push(started.elapsed());
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(text, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    let spread = arrivals.last().copied().unwrap_or_default() - arrivals[0];
    assert!(
        spread >= Duration::from_millis(300),
        "chunks arrived together: {arrivals:?}"
    );
    let large = client()
        .get(format!("{}/test/large/1000001", mock.url()))
        .send()
        .await
        .expect("sent")
        .bytes()
        .await
        .expect("body");
    assert_eq!(large.len(), 1_000_001);
}

#[test]
fn the_binary_listens_and_answers() {
    let mut command = std::process::Command::new(mcp_testkit::bin_path("mcp-mock-api"));
    command.args(["--listen", "127.0.0.1:0"]);
    let process = ChildProcess::spawn("mcp-mock-api", command);
    let addr = process.wait_for_listen_addr("mock_api.listening", Duration::from_secs(20));
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"ok\""));
}

/// A route with path parameters answers the same under `/fault/{key}/` (the chaos
/// suite's victim server calls `/fault/victim/api/fruits/{id}`), slowed and failed as
/// the key says, and whole again once the fault is lifted.
#[tokio::test]
async fn routes_with_parameters_are_served_under_a_fault_key() {
    let mock = MockApi::start();
    let c = client();
    let url = format!("{}/fault/victim/api/fruits/3?x=1", mock.url());
    let fruit: Value = c
        .get(&url)
        .send()
        .await
        .expect("sent")
        .error_for_status()
        .expect("2xx")
        .json()
        .await
        .expect("json");
    assert_eq!(fruit["name"], "Cherry");
    let set = |fault: Value| {
        let c = c.clone();
        let url = format!("{}/control/faults/victim", mock.url());
        async move {
            c.put(url)
                .json(&fault)
                .send()
                .await
                .expect("sent")
                .error_for_status()
                .expect("fault set");
        }
    };
    set(json!({"delayMs": 200})).await;
    let t0 = Instant::now();
    let slow = c.get(&url).send().await.expect("sent");
    assert_eq!(slow.status().as_u16(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(200));
    set(json!({"status": 500})).await;
    assert_eq!(
        c.get(&url).send().await.expect("sent").status().as_u16(),
        500
    );
    set(json!({"delayMs": 0, "status": null})).await;
    let back: Value = c
        .get(&url)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(back["id"], 3);
}

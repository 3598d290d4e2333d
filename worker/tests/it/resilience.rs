//! Retries and the circuit breaker (issue 27 section 2) with a real worker in front of
//! the mock REST API's fault keys (`/fault/{key}/...`, `failFirst`, `retryAfter`, the
//! per-key hit counter): what is retried and what is not, counted at the mock, timed,
//! and the log events with the call's request id.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{SseEvent, WorkerHarness};

const KEY: &str = "rz";

/// A tool on the echo route behind fault key [`KEY`].
fn tool(name: &str, method: &str, extra: Value) -> Value {
    let mut tool =
        json!({"name": name, "method": method, "pathTemplate": format!("/fault/{KEY}/test/echo")});
    if let (Some(obj), Some(extra)) = (tool.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    tool
}

async fn set_fault(hub: &WorkerHarness, fault: Value) {
    let status = hub
        .client
        .put(format!("{}/control/faults/{KEY}", hub.mock.url()))
        .json(&fault)
        .send()
        .await
        .expect("fault set")
        .status();
    assert_eq!(status, 200);
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

async fn hits(client: &reqwest::Client, mock_url: &str) -> u64 {
    hits_of(client, mock_url, KEY).await
}

/// The worker's `/healthz`.
async fn healthz(hub: &WorkerHarness) -> Value {
    get_json(&hub.client, format!("{}/healthz", hub.base)).await
}

fn last(events: &[SseEvent]) -> &SseEvent {
    events.last().expect("events")
}

/// The events named `event` the worker logged for `request_id`.
fn logged(hub: &WorkerHarness, event: &str, request_id: &str) -> Vec<Value> {
    hub.process
        .json_lines()
        .into_iter()
        .filter(|line| line["event"] == event && line["request_id"] == request_id)
        .collect()
}

fn request_id(events: &[SseEvent]) -> String {
    last(events).data["request_id"]
        .as_str()
        .expect("request_id")
        .to_owned()
}

/// Waits (with a deadline) until the worker has logged `event` for `request_id`.
fn wait_logged(hub: &WorkerHarness, event: &str, request_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = logged(hub, event, request_id);
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_the_asked_wait_then_succeeds() {
    let hub = WorkerHarness::start(
        json!({"retry": {"maxAttempts": 3, "baseDelayMs": 10}}),
        vec![tool("get", "GET", json!({}))],
    )
    .await;
    set_fault(
        &hub,
        json!({"status": 503, "failFirst": 1, "retryAfter": 1}),
    )
    .await;
    let started = Instant::now();
    let (status, events) = hub.call("get", json!({})).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(last(&events).event, "tool_call.completed", "{events:?}");
    assert_eq!(
        hits(&hub.client, &hub.mock.url()).await,
        2,
        "one 503, one retry"
    );
    assert!(
        took >= Duration::from_secs(1),
        "Retry-After: 1 was waited: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let id = request_id(&events);
    let retries = wait_logged(&hub, "tool.http.retry", &id);
    assert_eq!(retries.len(), 1, "{retries:?}");
    let retry = &retries[0];
    assert_eq!(
        (
            &retry["attempt"],
            &retry["status"],
            &retry["code"],
            &retry["retry_after"],
            &retry["delay"]
        ),
        (
            &json!(2),
            &json!(503),
            &json!("upstream_status"),
            &json!(1),
            &json!(1000)
        ),
        "{retry}"
    );
    assert_eq!(
        (&retry["server"], &retry["tool"]),
        (&json!("svc"), &json!("get"))
    );
    let health = healthz(&hub).await;
    assert_eq!(health["resilience"]["retries"], 1, "{health}");
    assert_eq!(health["resilience"]["state"], "closed", "{health}");
}

#[tokio::test]
async fn a_500_is_not_retried_and_a_post_only_when_the_tool_says_so() {
    let hub = WorkerHarness::start(
        json!({"retry": {"maxAttempts": 3, "baseDelayMs": 10}}),
        vec![
            tool("get", "GET", json!({})),
            tool("post", "POST", json!({})),
            tool("marked", "POST", json!({"retry": {"idempotent": true}})),
            tool(
                "marked_body",
                "POST",
                json!({"retry": {"idempotent": true}, "paramMapping": {"body": {"blob": "blob"}}}),
            ),
        ],
    )
    .await;
    let mock = hub.mock.url();

    set_fault(&hub, json!({"status": 500, "failFirst": 1})).await;
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.error", "{events:?}");
    assert_eq!(last(&events).data["error"]["status"], 500, "{events:?}");
    assert_eq!(hits(&hub.client, &mock).await, 1, "a 500 is not retried");
    let id = request_id(&events);
    wait_logged(&hub, "tool.call.failed", &id);
    assert!(logged(&hub, "tool.http.retry", &id).is_empty());

    set_fault(&hub, json!({"status": 503, "failFirst": 1})).await;
    let (_, events) = hub.call("post", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.error", "{events:?}");
    assert_eq!(hits(&hub.client, &mock).await, 1, "a POST is not retried");
    let id = request_id(&events);
    let skipped = wait_logged(&hub, "tool.http.retry.skipped", &id);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["reason"], "not_idempotent", "{}", skipped[0]);
    assert!(logged(&hub, "tool.http.retry", &id).is_empty());

    set_fault(&hub, json!({"status": 503, "failFirst": 1})).await;
    let (_, events) = hub.call("marked", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.completed", "{events:?}");
    assert_eq!(
        hits(&hub.client, &mock).await,
        2,
        "a marked POST is retried"
    );
    assert_eq!(
        wait_logged(&hub, "tool.http.retry", &request_id(&events)).len(),
        1
    );

    // Every attempt sends the whole body again: the third one reaches the echo intact.
    let blob = format!("{}-END", "b".repeat(200_000));
    set_fault(&hub, json!({"status": 503, "failFirst": 2})).await;
    let output = hub.output("marked_body", json!({"blob": blob})).await;
    assert_eq!(hits(&hub.client, &mock).await, 3, "two retries");
    assert_eq!(output["method"], "POST", "{output}");
    assert_eq!(
        output["bodyJson"],
        json!({"blob": blob}),
        "the body re-sent intact"
    );
}

#[tokio::test]
async fn connect_refused_is_retried_then_the_breaker_fails_fast_and_closes_after_recovery() {
    let port = mcp_testkit::free_port();
    let hub = WorkerHarness::start(
        json!({
            "baseUrl": format!("http://127.0.0.1:{port}"),
            "retry": {"maxAttempts": 2, "baseDelayMs": 10},
            "circuitBreaker": {"failureThreshold": 3, "coolDownMs": 1000}
        }),
        vec![tool("get", "GET", json!({}))],
    )
    .await;

    // Call 1: two refused attempts (failures 1 and 2), one retry.
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(
        last(&events).data["error"]["code"],
        "upstream_unreachable",
        "{events:?}"
    );
    let first = request_id(&events);
    assert_eq!(wait_logged(&hub, "tool.http.retry", &first).len(), 1);
    // Call 2: its first attempt is the third failure: the breaker opens, no retry.
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(
        last(&events).data["error"]["code"],
        "upstream_unreachable",
        "{events:?}"
    );
    let second = request_id(&events);
    let opened = wait_logged(&hub, "tool.circuit.open", &second);
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(
        (&opened[0]["from"], &opened[0]["to"], &opened[0]["failures"]),
        (&json!("closed"), &json!("open"), &json!(3)),
        "{}",
        opened[0]
    );
    let skipped = wait_logged(&hub, "tool.http.retry.skipped", &second);
    assert_eq!(skipped[0]["reason"], "circuit_open", "{skipped:?}");
    // Call 3: fails fast.
    let started = Instant::now();
    let (_, events) = hub.call("get", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let error = &last(&events).data["error"];
    assert_eq!(error["code"], "circuit_open", "{events:?}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("the circuit breaker of this REST API is open")),
        "{error}"
    );

    // The REST API comes back on its port: the first call after the cool-down is the
    // probe; it succeeds and closes the breaker. Calls before it fail fast, unsent.
    let std_listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mcp_testkit::mock_api::serve(listener, async move {
        let _ = stopped.await;
    }));
    let api = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = loop {
        let (_, events) = hub.call("get", json!({})).await;
        match last(&events).event.as_str() {
            "tool_call.completed" => break request_id(&events),
            _ => {
                assert_eq!(
                    last(&events).data["error"]["code"],
                    "circuit_open",
                    "{events:?}"
                );
                assert!(
                    Instant::now() < deadline,
                    "the breaker never let a probe through"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(
        hits(&hub.client, &api).await,
        1,
        "only the probe reached the API"
    );
    assert_eq!(wait_logged(&hub, "tool.circuit.half_open", &probe).len(), 1);
    let closed = wait_logged(&hub, "tool.circuit.closed", &probe);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(
        (&closed[0]["from"], &closed[0]["to"]),
        (&json!("half_open"), &json!("closed"))
    );
    let (_, events) = hub.call("get", json!({})).await;
    assert_eq!(last(&events).event, "tool_call.completed", "{events:?}");
    assert_eq!(hits(&hub.client, &api).await, 2);
    let health = healthz(&hub).await;
    let resilience = &health["resilience"];
    assert_eq!(
        (
            &resilience["state"],
            &resilience["opened"],
            &resilience["consecutive_failures"]
        ),
        (&json!("closed"), &json!(1), &json!(0)),
        "{health}"
    );
    assert!(resilience.get("opened_by").is_none(), "closed: {health}");
    assert!(
        resilience["rejected"].as_u64().is_some_and(|n| n >= 1),
        "{health}"
    );
    let _ = stop.send(());
    let _ = server.await;
}

/// Requests under `/fault/{key}/` the mock counted for `key`.
async fn hits_of(client: &reqwest::Client, mock_url: &str, key: &str) -> u64 {
    let body = get_json(client, format!("{mock_url}/control/faults/{key}/hits")).await;
    body["hits"].as_u64().expect("a count")
}

#[tokio::test]
async fn an_error_rate_below_the_consecutive_threshold_opens_the_breaker_and_fails_fast() {
    // `ok` and `bad` share the server's breaker; `bad`'s key always answers 500.
    let hub = WorkerHarness::start(
        json!({"circuitBreaker": {"failureThreshold": 5, "coolDownMs": 60000,
            "errorRatePercent": 50, "windowMs": 60000, "minCalls": 6}}),
        vec![
            json!({"name": "ok", "method": "GET", "pathTemplate": "/fault/rzok/test/echo"}),
            tool("bad", "GET", json!({})),
        ],
    )
    .await;
    let mock = hub.mock.url();
    set_fault(&hub, json!({"status": 500})).await;

    // ok, bad, ok, bad, ok: never two failures in a row, 2 of 5 failed.
    for (n, name) in ["ok", "bad", "ok", "bad", "ok"].into_iter().enumerate() {
        let (_, events) = hub.call(name, json!({})).await;
        if name == "ok" {
            assert_eq!(
                last(&events).event,
                "tool_call.completed",
                "{n}: {events:?}"
            );
        } else {
            assert_eq!(
                last(&events).data["error"]["code"],
                "upstream_status",
                "{n}: {events:?}"
            );
        }
    }
    // The sixth call is the third failure of six: 50%, and the breaker opens on it.
    let (_, events) = hub.call("bad", json!({})).await;
    assert_eq!(
        last(&events).data["error"]["code"],
        "upstream_status",
        "{events:?}"
    );
    let sixth = request_id(&events);
    let opened = wait_logged(&hub, "tool.circuit.open", &sixth);
    assert_eq!(opened.len(), 1, "{opened:?}");
    let open = &opened[0];
    assert_eq!(
        (
            &open["from"],
            &open["to"],
            &open["reason"],
            &open["failures"],
            &open["window_calls"],
            &open["window_failures"]
        ),
        (
            &json!("closed"),
            &json!("open"),
            &json!("error_rate"),
            &json!(1),
            &json!(6),
            &json!(3)
        ),
        "{open}"
    );
    assert_eq!(
        (&open["server"], &open["tool"]),
        (&json!("svc"), &json!("bad"))
    );
    assert_eq!(
        (
            hits_of(&hub.client, &mock, "rzok").await,
            hits(&hub.client, &mock).await
        ),
        (3, 3)
    );

    // Open: both tools fail fast, unsent, with an error that says why.
    for name in ["ok", "bad"] {
        let started = Instant::now();
        let error = hub.error(name, json!({})).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{name}: {:?}",
            started.elapsed()
        );
        assert_eq!(error["code"], "circuit_open", "{name}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(
                "the circuit breaker of this REST API is open after an error rate of 50% \
                 (3 of the last 6 calls failed); calls fail fast for "
            ),
            "{name}: {message}"
        );
    }
    assert_eq!(
        (
            hits_of(&hub.client, &mock, "rzok").await,
            hits(&hub.client, &mock).await
        ),
        (3, 3),
        "nothing reached the REST API while open"
    );
    let health = healthz(&hub).await;
    let resilience = &health["resilience"];
    assert_eq!(
        (
            &resilience["state"],
            &resilience["opened"],
            &resilience["rejected"],
            &resilience["consecutive_failures"]
        ),
        (&json!("open"), &json!(1), &json!(2), &json!(1)),
        "{health}"
    );
    assert_eq!(
        resilience["opened_by"],
        json!({"kind": "error_rate", "failed": 3, "calls": 6}),
        "why it opened: {health}"
    );
}

/// `time` as an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`), whole seconds.
fn http_date(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        months[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// A REST API on a free local port whose answers follow `plan`, one entry per request:
/// `Some(s)`: 503 with `Retry-After` the HTTP date of the next whole second plus `s - 1`
/// (so between `s - 1` and `s` seconds ahead); `None` (or the plan spent): 200 with a
/// JSON body. Each request's arrival time and each date sent are kept in `log`.
struct DatedApi {
    url: String,
    log: std::sync::Arc<std::sync::Mutex<DatedLog>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Default)]
struct DatedLog {
    plan: std::collections::VecDeque<Option<u64>>,
    arrivals: Vec<std::time::SystemTime>,
    dates: Vec<std::time::SystemTime>,
}

impl DatedApi {
    async fn start() -> DatedApi {
        use axum::response::IntoResponse;
        let log = std::sync::Arc::new(std::sync::Mutex::new(DatedLog::default()));
        let state = std::sync::Arc::clone(&log);
        let app = axum::Router::new().fallback(move || {
            let state = std::sync::Arc::clone(&state);
            async move {
                let now = std::time::SystemTime::now();
                let mut log = state.lock().expect("log");
                log.arrivals.push(now);
                match log.plan.pop_front().flatten() {
                    Some(ahead) => {
                        let whole = now
                            .duration_since(std::time::UNIX_EPOCH)
                            .expect("after 1970")
                            .as_secs();
                        let date =
                            std::time::UNIX_EPOCH + Duration::from_secs(whole + ahead.max(1));
                        log.dates.push(date);
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [(axum::http::header::RETRY_AFTER, http_date(date))],
                            "busy",
                        )
                            .into_response()
                    }
                    None => axum::Json(json!({"ok": true})).into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        DatedApi {
            url,
            log,
            stop: Some(stop),
        }
    }

    fn plan(&self, plan: &[Option<u64>]) {
        let mut log = self.log.lock().expect("log");
        log.plan = plan.iter().copied().collect();
        log.arrivals.clear();
        log.dates.clear();
    }

    fn arrivals_and_dates(&self) -> (Vec<std::time::SystemTime>, Vec<std::time::SystemTime>) {
        let log = self.log.lock().expect("log");
        (log.arrivals.clone(), log.dates.clone())
    }
}

impl Drop for DatedApi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[test]
fn the_test_http_dates_are_what_the_worker_parses() {
    let epoch = std::time::UNIX_EPOCH;
    for (secs, text) in [
        (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
        (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
    ] {
        assert_eq!(http_date(epoch + Duration::from_secs(secs)), text);
    }
    let now = std::time::SystemTime::now();
    let ahead = now + Duration::from_secs(3);
    let parsed = mcp_adapter::resilience::parse_retry_after(http_date(ahead).as_bytes(), now)
        .expect("a date");
    assert!(
        parsed <= Duration::from_secs(3) && parsed > Duration::from_secs(2),
        "{parsed:?}"
    );
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_waited_until_that_date_within_the_timeout() {
    // What a sleep may come short of the date by: the clocks read on either side of it
    // (the same host clock; the worker's sleep never ends early), a few ms.
    const GRANULARITY: Duration = Duration::from_millis(20);
    let api = DatedApi::start().await;
    let hub = WorkerHarness::start(
        json!({"baseUrl": api.url, "timeoutMs": 4000,
            "retry": {"maxAttempts": 3, "baseDelayMs": 10}}),
        vec![json!({"name": "get", "method": "GET", "pathTemplate": "/busy"})],
    )
    .await;

    // A 503 asking to come back at a date 1-2 s ahead, then a 200.
    api.plan(&[Some(2), None]);
    let started = Instant::now();
    let (status, events) = hub.call("get", json!({})).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(last(&events).event, "tool_call.completed", "{events:?}");
    let (arrivals, dates) = api.arrivals_and_dates();
    assert_eq!((arrivals.len(), dates.len()), (2, 1), "one 503, one retry");
    let date = dates[0];
    let asked = date.duration_since(arrivals[0]).expect("ahead");
    assert!(
        asked > Duration::from_secs(1) && asked <= Duration::from_secs(2),
        "{asked:?}"
    );
    assert!(
        arrivals[1] + GRANULARITY >= date,
        "the retry came {:?} before the date",
        date.duration_since(arrivals[1]).unwrap_or_default()
    );
    assert!(took + GRANULARITY >= asked, "{took:?} < {asked:?}");
    assert!(took < Duration::from_secs(4), "within timeoutMs: {took:?}");
    let id = request_id(&events);
    let retries = wait_logged(&hub, "tool.http.retry", &id);
    assert_eq!(retries.len(), 1, "{retries:?}");
    let delay = retries[0]["delay"].as_u64().expect("delay");
    assert!(
        Duration::from_millis(delay) + GRANULARITY >= asked
            && Duration::from_millis(delay) <= Duration::from_secs(2),
        "{}",
        retries[0]
    );
    assert_eq!(retries[0]["status"], 503, "{}", retries[0]);

    // A date past the call's timeoutMs (5-6 s ahead, timeoutMs 4000) is not waited:
    // the 503 is the answer at once, the retry skipped for lack of time.
    api.plan(&[Some(6), None]);
    let started = Instant::now();
    let (_, events) = hub.call("get", json!({})).await;
    let took = started.elapsed();
    let error = &last(&events).data["error"];
    assert_eq!(
        (&error["code"], &error["status"]),
        (&json!("upstream_status"), &json!(503)),
        "{events:?}"
    );
    assert!(took < Duration::from_secs(2), "not waited: {took:?}");
    let (arrivals, _) = api.arrivals_and_dates();
    assert_eq!(arrivals.len(), 1, "no retry");
    let skipped = wait_logged(&hub, "tool.http.retry.skipped", &request_id(&events));
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["reason"], "no_time_left", "{}", skipped[0]);
}

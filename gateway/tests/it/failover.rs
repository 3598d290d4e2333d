use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{Options, Stack};

/// A failed call: its request id (set by the test), status (0: no answer) and the start
/// of its body.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) request_id: String,
    pub(crate) status: u16,
    pub(crate) text: String,
}

/// `concurrency` loops of calls to `fruits_api` until `stop`, counting successes as
/// they happen.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<Failure>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(stack: Arc<Stack>, concurrency: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..concurrency)
            .map(|task| {
                let (stack, stop, ok, failures) =
                    (stack.clone(), stop.clone(), ok.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let request_id = format!("load-{task}-{n}");
                        let response = stack
                            .client
                            .post(format!("{}/mcp/fruits_api/get_fruits", stack.base))
                            .header("x-request-id", &request_id)
                            .json(&json!({"args": {}}))
                            .send()
                            .await;
                        let (status, text, clean) = match response {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let (text, clean) = crate::body_text(response).await;
                                (status, text, clean)
                            }
                            Err(err) => (0, err.to_string(), false),
                        };
                        if status == 200 && clean && text.contains("tool_call.completed") {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else if let Ok(mut failures) = failures.lock() {
                            failures.push(Failure {
                                request_id,
                                status,
                                text: text.chars().take(300).collect(),
                            });
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            tasks,
        }
    }

    pub(crate) fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` calls in all have succeeded.
    pub(crate) async fn wait_ok(&self, n: usize, what: &str) {
        mcp_testkit::wait_until_async(what, Duration::from_secs(30), || async {
            (self.ok() >= n).then_some(())
        })
        .await;
    }

    pub(crate) async fn stop(self) -> (usize, Vec<Failure>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let failures = self.failures.lock().map(|f| f.clone()).unwrap_or_default();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
}

#[tokio::test]
async fn with_two_replicas_a_killed_worker_costs_no_call_that_had_not_reached_it() {
    const CONCURRENCY: usize = 4;
    let stack = Arc::new(Stack::start(Options::default()).await);
    stack.set_replicas("fruits_api", 2).await;
    let victim = stack
        .registry
        .get_runtime("fruits_api")
        .await
        .expect("runtime")
        .workers
        .iter()
        .find(|w| w.replica_idx == 0)
        .and_then(|w| w.pid)
        .expect("pid of replica 0");

    let load = Load::start(stack.clone(), CONCURRENCY);
    load.wait_ok(40, "40 calls before the kill").await;
    kill9(victim);
    let at_kill = load.ok();
    let replacement = mcp_testkit::wait_until_async(
        "the supervisor to run a replacement of replica 0",
        Duration::from_secs(30),
        || async {
            let runtime = stack.registry.get_runtime("fruits_api").await.ok()?;
            runtime
                .workers
                .iter()
                .find(|w| {
                    w.replica_idx == 0
                        && w.status == mcp_core::runtime::WorkerStatus::Running
                        && w.pid.is_some_and(|pid| pid != victim)
                })
                .and_then(|w| w.pid)
        },
    )
    .await;
    let at_replacement = load.ok();
    load.wait_ok(
        at_replacement + 40,
        "40 more calls with the replacement running",
    )
    .await;
    let (ok, failures) = load.stop().await;
    println!(
        "2 replicas, kill -9 of one under load: {ok} calls succeeded ({} before the kill, {} until the replacement {replacement} ran), {} failed: {failures:?}",
        at_kill,
        at_replacement - at_kill,
        failures.len()
    );

    // Only a call in flight on the killed worker at the instant of the kill may fail: a
    // 502, or a started stream that ends in tool_call.error; at most one per loop.
    // Log lines are written in batches: wait until every failed call's line is out.
    let lines = mcp_testkit::wait_until(
        "a tool.call.failed line for every failed call",
        Duration::from_secs(10),
        || {
            let lines = stack.gateway.json_lines();
            failures
                .iter()
                .all(|f| {
                    lines.iter().any(|l| {
                        l["event"] == "tool.call.failed" && l["request_id"] == f.request_id
                    })
                })
                .then_some(lines)
        },
    );
    let failed_at = |request_id: &str| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["event"] == "tool.call.failed" && l["request_id"] == request_id)
            .cloned()
            .collect()
    };
    assert!(
        failures.len() <= CONCURRENCY,
        "at most the calls in flight: {failures:?}"
    );
    for failure in &failures {
        let reached_worker = failure.status == 502
            || (failure.status == 200
                && failure.text.contains("tool_call.error")
                && failure.text.contains("worker_failed"));
        assert!(reached_worker, "{failure:?}");
        let logged = failed_at(&failure.request_id);
        assert!(
            logged
                .iter()
                .any(|l| l["worker_pid"].as_u64() == Some(u64::from(victim))),
            "the failed call was on the killed worker: {failure:?} {logged:?}"
        );
    }
    // Calls sent to the dead worker before the gateway knew (a refused connect, or a
    // connection lost before any answer) were retried on a live one and succeeded. (How
    // many there are depends on how soon the gateway hears of the exit, often 1 to 3;
    // none is possible, so their number is not asserted.)
    let retried: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "gateway.connect.failed" || l["event"] == "gateway.worker.lost")
        .filter_map(|l| l["request_id"].as_str())
        .filter(|id| id.starts_with("load-"))
        .collect();
    for id in &retried {
        assert!(
            failures.iter().all(|f| f.request_id != *id),
            "{id} was retried yet failed: {failures:?}"
        );
    }
    println!(
        "{} calls met the dead worker and were retried on the live one",
        retried.len()
    );
}

#[tokio::test]
async fn with_one_replica_calls_during_a_restart_wait_and_succeed() {
    let stack = Arc::new(Stack::start(Options::default()).await);
    let victim = stack
        .registry
        .get_runtime("fruits_api")
        .await
        .expect("runtime")
        .workers[0]
        .pid
        .expect("pid");
    kill9(victim);
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let (status, events, body) = stack
            .call("/mcp/fruits_api/get_fruits", json!({"args": {}}))
            .await;
        assert_eq!(status, 200, "{body:?}");
        crate::assert_completed(&events);
        statuses.push(status);
    }
    println!(
        "1 replica, kill -9: 10 calls right after all succeeded within {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn calls_keep_succeeding_while_redis_is_down() {
    let mut stack = Stack::start(Options::default()).await;
    stack.redis.stop();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let (status, events, body) = stack
            .call(
                "/mcp/fruits_api/get_fruit_by_id",
                json!({"args": {"id": 3}}),
            )
            .await;
        assert_eq!(status, 200, "call {n} with Redis down: {body:?}");
        assert_eq!(crate::assert_completed(&events)[0]["name"], "Cherry");
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{n} calls over 10 s with Redis stopped: all succeeded");
    stack.redis.restart();
    let (status, _, _) = stack
        .call("/mcp/fruits_api/get_fruits", json!({"args": {}}))
        .await;
    assert_eq!(status, 200);
}

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Options, Stack};

/// Runs `concurrency` loops of calls until `stop`; returns (ok, failures with status).
async fn call_loop(
    stack: Arc<Stack>,
    stop: Arc<AtomicBool>,
    concurrency: usize,
) -> (usize, Vec<(u16, String)>) {
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (stack, stop, ok, failures) =
            (stack.clone(), stop.clone(), ok.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let response = stack
                    .client
                    .post(format!("{}/mcp/fruits_api/get_fruits", stack.base))
                    .json(&json!({"args": {}}))
                    .send()
                    .await;
                match response {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let (text, clean) = crate::body_text(response).await;
                        if status == 200 && clean && text.contains("tool_call.completed") {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else if let Ok(mut f) = failures.lock() {
                            f.push((status, text.chars().take(300).collect()));
                        }
                    }
                    Err(err) => {
                        if let Ok(mut f) = failures.lock() {
                            f.push((0, err.to_string()));
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    (ok.load(Ordering::Relaxed), failures)
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
    let stack = Arc::new(Stack::start(Options::default()).await);
    stack.set_replicas("fruits_api", 2).await;
    let victim = stack
        .registry
        .get_runtime("fruits_api")
        .await
        .expect("runtime")
        .workers[0]
        .pid
        .expect("pid");

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(call_loop(stack.clone(), stop.clone(), 4));
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill9(victim);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failures) = load.await.expect("join");
    println!(
        "2 replicas, kill -9 of one under load: {ok} calls succeeded, {} failed: {failures:?}",
        failures.len()
    );
    assert!(ok > 50, "the load ran: {ok}");
    // A call in flight on the killed worker at the instant of the kill may fail (a 502,
    // or a started stream that ends in tool_call.error); nothing else may.
    let reached_worker = |(status, text): &(u16, String)| {
        *status == 502
            || (*status == 200
                && text.contains("tool_call.error")
                && text.contains("worker_failed"))
    };
    assert!(failures.iter().all(reached_worker), "{failures:?}");
    assert!(
        failures.len() <= 4,
        "at most the calls in flight: {failures:?}"
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

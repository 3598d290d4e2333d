//! The whole hub on Redis Sentinel: every part (admin API, supervisor, workers, gateway)
//! on a `redis+sentinel://` URL of one master, one replica and three sentinels (real
//! processes on loopback ports), with calls through the gateway and registrations
//! through the admin API running, then `SENTINEL FAILOVER` and then a `kill -9` of the
//! new master. No call may fail (a call needs no Redis write), no acknowledged
//! registration may be lost, writes must come back, and a server registered after both
//! must be started and routed: the supervisor's and the gateway's subscriptions followed
//! the master. The figures are printed as one `sentinel-hub-figures {json}` line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_testkit::sentinel::SentinelSetup;
use serde_json::{json, Value};

use crate::failover::Load;
use crate::{Options, Stack};

/// One registration sent to the admin API: when its answer came, and whether it was
/// acknowledged (2xx).
struct Attempt {
    server_id: String,
    ended: Instant,
    acked: bool,
    status: u16,
}

/// The longest stretch in `[from, to]` without an acknowledged registration.
fn write_outage(attempts: &[Attempt], from: Instant, to: Instant) -> Duration {
    let acknowledged = attempts.iter().filter(|a| a.acked).map(|a| a.ended);
    mcp_testkit::sentinel::longest_gap(acknowledged, from, to)
}

fn acked(attempts: &Mutex<Vec<Attempt>>) -> usize {
    attempts
        .lock()
        .map(|a| a.iter().filter(|a| a.acked).count())
        .unwrap_or(0)
}

/// Registrations of inactive servers (no worker each) one after another until `stop`;
/// one that fails is sent again 20 ms later, as a client would.
fn start_registrations(
    stack: &Arc<Stack>,
    stop: &Arc<AtomicBool>,
    attempts: &Arc<Mutex<Vec<Attempt>>>,
) -> tokio::task::JoinHandle<()> {
    let (stack, stop, attempts) = (stack.clone(), stop.clone(), attempts.clone());
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let server_id = format!("sentinel_{i:05}");
            let status = client
                .post(format!("{}/api/servers/{server_id}", stack.admin_url))
                .json(&json!({"baseUrl": stack.mock_url, "active": false}))
                .send()
                .await
                .map_or(0, |r| r.status().as_u16());
            let acked = (200..300).contains(&status);
            if let Ok(mut attempts) = attempts.lock() {
                attempts.push(Attempt {
                    server_id,
                    ended: Instant::now(),
                    acked,
                    status,
                });
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(if acked { 5 } else { 20 })).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_on_sentinel_loses_no_call_and_no_acknowledged_registration_through_failover_and_kill(
) {
    let mut setup = tokio::task::block_in_place(SentinelSetup::start);
    let first_master = setup.master_port();
    let stack = Arc::new(
        Stack::start(Options {
            redis_url: Some(setup.url("")),
            ..Default::default()
        })
        .await,
    );

    let load = Load::start(stack.clone(), 2);
    load.wait_ok(40, "40 calls before the failover").await;
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let writer = start_registrations(&stack, &stop, &attempts);
    mcp_testkit::wait_until_async("20 registrations", Duration::from_secs(20), || async {
        (acked(&attempts) >= 20).then_some(())
    })
    .await;

    // 1. A planned failover; writes wait until the old master has synced as a replica.
    let failover_at = Instant::now();
    let second_master = tokio::task::block_in_place(|| setup.failover());
    assert_ne!(second_master, first_master);
    tokio::task::block_in_place(|| setup.wait_replica_synced(Duration::from_secs(60)));
    let n = acked(&attempts);
    mcp_testkit::wait_until_async(
        "registrations after the failover",
        Duration::from_secs(30),
        || async { (acked(&attempts) >= n + 20).then_some(()) },
    )
    .await;
    let failover_done = Instant::now();
    let calls_at_failover_done = load.ok();

    // 2. kill -9 of the master; it comes back empty, as a replica of the new one.
    let kill_at = Instant::now();
    tokio::task::block_in_place(|| {
        setup.kill_node(second_master);
        setup.wait_master(first_master, Duration::from_secs(60));
        setup.restart_node(second_master);
        setup.wait_replica_synced(Duration::from_secs(60));
    });
    let n = acked(&attempts);
    mcp_testkit::wait_until_async(
        "registrations after the kill",
        Duration::from_secs(30),
        || async { (acked(&attempts) >= n + 20).then_some(()) },
    )
    .await;
    let kill_done = Instant::now();
    load.wait_ok(calls_at_failover_done + 40, "calls after the kill")
        .await;

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("the registrations");

    // 3. A server registered now is started and routed: the supervisor and the gateway
    // hear the master the sentinels name now.
    let mut config = stack
        .registry
        .get_server("fruits_api")
        .await
        .expect("get")
        .expect("fruits_api");
    config.active = true;
    stack
        .registry
        .upsert_server("fruits_after", config)
        .await
        .expect("fruits_after");
    let tools = stack
        .registry
        .list_tools("fruits_api")
        .await
        .expect("fruits_api's tools");
    for tool in tools.into_values() {
        stack
            .registry
            .upsert_tool("fruits_after", tool)
            .await
            .expect("a tool");
    }
    let registered = Instant::now();
    mcp_testkit::wait_until_async(
        "a call to fruits_after through the gateway",
        Duration::from_secs(30),
        || async {
            let (status, events, _) = stack
                .call("/mcp/fruits_after/get_fruits", json!({"args": {}}))
                .await;
            (status == 200
                && events
                    .last()
                    .is_some_and(|e| e.event == "tool_call.completed"))
            .then_some(())
        },
    )
    .await;
    let new_server_routed = registered.elapsed();

    let (calls_ok, failures) = load.stop().await;
    let attempts = std::mem::take(&mut *attempts.lock().expect("lock"));
    let stored: Value = mcp_testkit::wait_until_async(
        "the server list from the admin API",
        Duration::from_secs(20),
        || async {
            stack
                .try_get_json_at(&format!("{}/api/servers", stack.admin_url))
                .await
        },
    )
    .await;
    let stored_ids: std::collections::BTreeSet<String> = stored
        .as_array()
        .map(|servers| {
            servers
                .iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let lost: Vec<&str> = attempts
        .iter()
        .filter(|a| a.acked && !stored_ids.contains(&a.server_id))
        .map(|a| a.server_id.as_str())
        .collect();
    let refused: Vec<u16> = attempts
        .iter()
        .filter(|a| !a.acked)
        .map(|a| a.status)
        .collect();
    let figures = json!({
        "calls_ok": calls_ok,
        "calls_failed": failures.len(),
        "registrations_acknowledged": attempts.iter().filter(|a| a.acked).count(),
        "registrations_lost": lost.len(),
        "registrations_failed": refused.len(),
        "failover_write_outage_ms": write_outage(&attempts, failover_at, failover_done).as_millis() as u64,
        "kill_write_outage_ms": write_outage(&attempts, kill_at, kill_done).as_millis() as u64,
        "new_server_routed_ms": new_server_routed.as_millis() as u64,
    });
    println!("sentinel-hub-figures {figures}");
    eprintln!("sentinel-hub-figures {figures}");
    assert!(
        failures.is_empty(),
        "{} calls failed, the first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(lost.is_empty(), "acknowledged registrations lost: {lost:?}");
    // A refused registration is an answer (503 while no replica confirms), never a
    // dropped connection or a 500.
    assert!(
        refused.iter().all(|status| *status == 503),
        "registrations refused otherwise than with a 503: {refused:?}"
    );
}

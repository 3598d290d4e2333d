//! Limits: MCP_WORKER_MAX (pending, woken servers, stopping workers) and crash-loop back-off.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::{alive, call_worker, events_of, Hub};

#[tokio::test]
async fn over_the_worker_cap_a_server_waits_pending() {
    let hub = Hub::start().await;
    let _supervisor = hub.supervisor("sup-a", &["--worker-max", "2"]);
    for id in ["s1", "s2", "s3"] {
        hub.register(id, json!({})).await;
    }
    let (running, pending) = two_running_one_pending(&hub).await;
    let (pending_id, pending_record) = pending;
    assert!(
        pending_record
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("MCP_WORKER_MAX=2")),
        "the reason is visible"
    );
    assert_eq!(hub.worker_pids().len(), 2);

    hub.registry
        .delete_server(running[0].0)
        .await
        .expect("delete");
    let started = hub.wait_running(pending_id, Duration::from_secs(20)).await;
    call_worker(&started).await;
}

#[tokio::test]
async fn a_crash_loop_backs_off_and_other_servers_are_served() {
    let hub = Hub::start().await;
    // A worker binary that cannot start for one server and is the real worker otherwise.
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = dir.path().join("mcp-worker");
    let real = mcp_testkit::bin_path("mcp-worker");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\ncase \" $* \" in *\" --server broken \"*) echo 'cannot start' >&2; exit 3;; esac\nexec {} \"$@\"\n", real.display()),
    )
    .expect("write wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let supervisor = hub.supervisor("sup-a", &["--worker-bin", wrapper.to_str().expect("utf8")]);
    hub.register("broken", json!({})).await;

    // Every failure writes the back-off ahead into the record ("...; restarting in N ms
    // (K failures in a row)"): read the first five, as they come.
    let mut seen: Vec<(u32, u64, u64)> = Vec::new(); // (failures in a row, delay ms, failed at)
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 5 {
        assert!(
            Instant::now() < deadline,
            "five failures of broken: saw {seen:?}"
        );
        let record = hub.records("broken").await.into_iter().next();
        if let Some(record) = record {
            if let Some((failures, delay)) = record.reason.as_deref().and_then(parse_backoff) {
                if seen.last().is_none_or(|(f, _, _)| *f < failures) {
                    let failed_at = record.last_failure_at.expect("last_failure_at");
                    seen.push((failures, delay, failed_at));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("crash loop (failures in a row, back-off ms, failed at): {seen:?}");
    for pair in seen.windows(2) {
        let ((f0, delay0, at0), (f1, delay1, at1)) = (pair[0], pair[1]);
        if f1 == f0 + 1 {
            // 100 ms doubling up to the 2 s maximum.
            assert_eq!(
                delay1,
                (delay0 * 2).min(2000),
                "the back-off grows: {seen:?}"
            );
        }
        assert!(delay1 > delay0, "the back-off grows: {seen:?}");
        // The supervisor waited the delay it announced before the next attempt.
        assert!(
            at1 - at0 >= delay0,
            "restarted before its back-off: {seen:?}"
        );
    }
    let record = hub.records("broken").await.remove(0);
    assert!(
        record
            .last_failure
            .as_deref()
            .is_some_and(|f| f.contains("exit status: 3")),
        "{record:?}"
    );
    let logged: Vec<u64> =
        mcp_testkit::wait_until("five worker.restart lines", Duration::from_secs(10), || {
            let logged: Vec<u64> = events_of(&supervisor, "worker.restart", "broken")
                .iter()
                .filter_map(|l| l["backoff_ms"].as_u64())
                .take(5)
                .collect();
            (logged.len() == 5).then_some(logged)
        });
    assert_eq!(
        logged,
        [100, 200, 400, 800, 1600],
        "worker.restart backoff_ms"
    );

    // The supervisor still serves everyone else.
    hub.register("healthy", json!({})).await;
    let healthy = hub.wait_running("healthy", Duration::from_secs(20)).await;
    call_worker(&healthy).await;
    let failed = hub
        .wait_record(
            "broken marked failed",
            "broken",
            Duration::from_secs(30),
            |r| r.status == WorkerStatus::Failed,
        )
        .await;
    assert!(failed.restarts >= 4, "{failed:?}");
}

/// `(failures in a row, delay ms)` from a record's reason "...; restarting in N ms (K
/// failures in a row)".
fn parse_backoff(reason: &str) -> Option<(u32, u64)> {
    let (_, rest) = reason.rsplit_once("restarting in ")?;
    let (delay, rest) = rest.split_once(" ms (")?;
    let (failures, _) = rest.split_once(' ')?;
    Some((failures.parse().ok()?, delay.parse().ok()?))
}

#[tokio::test]
async fn waking_an_idle_server_respects_the_worker_cap() {
    let hub = Hub::start().await;
    let mut supervisor = hub.supervisor("sup-a", &["--worker-max", "2", "--idle-ttl", "1s"]);
    hub.register("s1", json!({})).await;
    hub.wait_record("s1 idle", "s1", Duration::from_secs(20), |r| {
        r.status == WorkerStatus::Idle
    })
    .await;
    // Back without an idle TTL (s1 stays idle across the restart), so the next two stay
    // up and fill the cap: an idle server takes no room.
    supervisor.signal(Signal::SIGTERM);
    assert!(supervisor.wait_exit(Duration::from_secs(20)).success());
    let _supervisor = hub.supervisor("sup-a", &["--worker-max", "2"]);
    for id in ["s2", "s3"] {
        hub.register(id, json!({})).await;
    }
    hub.wait_running("s2", Duration::from_secs(20)).await;
    hub.wait_running("s3", Duration::from_secs(20)).await;

    let most = AtomicUsize::new(0);
    hub.registry.request_wake("s1").await.expect("wake");
    let pending = hub
        .wait_record("woken s1 pending", "s1", Duration::from_secs(20), |r| {
            most.fetch_max(hub.worker_count(), Ordering::Relaxed);
            r.status == WorkerStatus::Pending
        })
        .await;
    assert!(
        pending
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("MCP_WORKER_MAX=2")),
        "{pending:?}"
    );
    assert!(!hub.worker_pids().contains_key("s1"));
    // Room frees up: the woken server starts, never beside the two others.
    hub.registry.delete_server("s2").await.expect("delete");
    let woken = hub
        .wait_record("s1 running", "s1", Duration::from_secs(20), |r| {
            most.fetch_max(hub.worker_count(), Ordering::Relaxed);
            r.status == WorkerStatus::Running
        })
        .await;
    assert!(
        most.into_inner() <= 2,
        "more than MCP_WORKER_MAX=2 workers ran"
    );
    call_worker(&woken).await;
}

#[tokio::test]
async fn a_pending_server_waits_until_the_deleted_servers_worker_is_gone() {
    let hub = Hub::start().await;
    // Stop timeout 2 s (see Hub::supervisor); probes never give up on the frozen worker.
    let _supervisor = hub.supervisor("sup-a", &["--worker-max", "2", "--health-failures", "1000"]);
    for id in ["s1", "s2", "s3"] {
        hub.register(id, json!({})).await;
    }
    let (running, pending) = two_running_one_pending(&hub).await;
    // A frozen worker cannot act on SIGTERM: it takes the whole stop timeout to go.
    let (victim, victim_pid) = (running[0].0, running[0].1.pid.expect("pid"));
    kill(Pid::from_raw(victim_pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let deleted_at = Instant::now();
    hub.registry.delete_server(victim).await.expect("delete");
    let most = AtomicUsize::new(0);
    let started = hub
        .wait_record(
            "the pending server to run",
            pending.0,
            Duration::from_secs(20),
            |r| {
                most.fetch_max(hub.worker_count(), Ordering::Relaxed);
                r.status == WorkerStatus::Running
            },
        )
        .await;
    println!(
        "pending server running {:?} after the deletion of a server whose worker took the stop timeout",
        deleted_at.elapsed()
    );
    assert!(!alive(victim_pid), "the deleted server's worker is gone");
    assert!(
        most.into_inner() <= 2,
        "the pending server ran beside the stopping worker"
    );
    call_worker(&started).await;
}

/// Records of `server_id` once there are `n` and `check` holds for all of them.
async fn wait_records(
    hub: &Hub,
    what: &str,
    server_id: &str,
    n: usize,
    check: impl Fn(&[WorkerRecord]) -> bool,
) -> Vec<WorkerRecord> {
    mcp_testkit::wait_until_async(what, Duration::from_secs(20), || async {
        let records = hub.records(server_id).await;
        (records.len() == n && check(&records)).then_some(records)
    })
    .await
}

#[tokio::test]
async fn a_replica_held_over_the_cap_sleeps_with_its_idle_server_and_wakes_with_it() {
    let hub = Hub::start().await;
    let _supervisor = hub.supervisor("sup-a", &["--worker-max", "1", "--idle-ttl", "2s"]);
    // Running with one replica, then asked for two: the second waits for room.
    hub.register("s1", json!({})).await;
    hub.wait_running("s1", Duration::from_secs(20)).await;
    hub.register("s1", json!({"replicas": 2})).await;
    let statuses = |records: &[WorkerRecord]| records.iter().map(|r| r.status).collect::<Vec<_>>();
    wait_records(&hub, "replica 1 held pending", "s1", 2, |r| {
        r[1].status == WorkerStatus::Pending
    })
    .await;
    // Replica 0 goes idle: the replica that waited for room is idle with it, so the
    // gateway sees an idle server, one a call wakes.
    let asleep = wait_records(&hub, "both replicas idle", "s1", 2, |r| {
        statuses(r) == [WorkerStatus::Idle, WorkerStatus::Idle]
    })
    .await;
    assert_eq!(asleep[1].supervisor_id.as_deref(), Some("sup-a"));
    assert!(hub.worker_pids().is_empty(), "{:?}", hub.worker_pids());

    hub.registry.request_wake("s1").await.expect("wake");
    let woken = wait_records(&hub, "replica 0 woken, 1 held", "s1", 2, |r| {
        statuses(r) == [WorkerStatus::Running, WorkerStatus::Pending]
    })
    .await;
    call_worker(&woken[0]).await;
    assert_eq!(hub.worker_count(), 1, "MCP_WORKER_MAX=1");
}

#[tokio::test]
async fn a_restarted_supervisor_puts_a_held_replica_of_an_idle_server_to_sleep() {
    let hub = Hub::start().await;
    hub.register("s1", json!({"replicas": 2})).await;
    // What a run before left: replica 0 stopped as idle, replica 1 still held pending.
    for (replica_idx, status) in [(0, WorkerStatus::Idle), (1, WorkerStatus::Pending)] {
        let record = WorkerRecord::new(replica_idx, status, "sup-a");
        hub.registry
            .put_worker_record("s1", &record)
            .await
            .expect("record");
    }
    let _supervisor = hub.supervisor("sup-a", &["--worker-max", "1"]);
    wait_records(&hub, "both replicas idle", "s1", 2, |r| {
        r.iter().all(|r| r.status == WorkerStatus::Idle)
    })
    .await;
    assert!(hub.worker_pids().is_empty(), "an idle server stays idle");
    hub.registry.request_wake("s1").await.expect("wake");
    let woken = hub.wait_running("s1", Duration::from_secs(20)).await;
    call_worker(&woken).await;
}

/// Waits for s1..s3 (registered under a cap of 2) to settle as two running and one
/// pending; returns the running ones and the pending one with their records.
async fn two_running_one_pending(
    hub: &Hub,
) -> (
    Vec<(&'static str, WorkerRecord)>,
    (&'static str, WorkerRecord),
) {
    mcp_testkit::wait_until_async(
        "two running and one pending",
        Duration::from_secs(20),
        || async {
            let mut running = Vec::new();
            let mut pending = Vec::new();
            for id in ["s1", "s2", "s3"] {
                let Some(record) = hub.records(id).await.into_iter().next() else {
                    continue;
                };
                match record.status {
                    WorkerStatus::Running if record.pid.is_some() => running.push((id, record)),
                    WorkerStatus::Pending => pending.push((id, record)),
                    _ => {}
                }
            }
            (running.len() == 2 && pending.len() == 1).then(|| (running, pending.remove(0)))
        },
    )
    .await
}

#[tokio::test]
async fn with_no_free_port_a_server_waits_pending_not_failed() {
    let hub = Hub::start().await;
    let supervisor = hub.supervisor("sup-a", &["--port-count", "1"]);
    for id in ["p1", "p2"] {
        hub.register(id, json!({})).await;
    }
    let ((running_id, running), (waiting_id, waiting)) = mcp_testkit::wait_until_async(
        "one running and one pending",
        Duration::from_secs(20),
        || async {
            let mut running = None;
            let mut pending = None;
            for id in ["p1", "p2"] {
                let Some(record) = hub.records(id).await.into_iter().next() else {
                    continue;
                };
                match record.status {
                    WorkerStatus::Running if record.pid.is_some() => running = Some((id, record)),
                    WorkerStatus::Pending => pending = Some((id, record)),
                    _ => {}
                }
            }
            running.zip(pending)
        },
    )
    .await;
    assert_eq!(running.port, Some(hub.base_port));
    let expected = format!(
        "no free port in the worker port range {0}-{0} (MCP_WORKER_BASE_PORT, MCP_WORKER_PORT_COUNT)",
        hub.base_port
    );
    let reason = waiting.reason.clone().unwrap_or_default();
    assert!(reason.contains(&expected), "reason: {reason}");
    assert_eq!(waiting.pid, None);
    assert_eq!(waiting.restarts, 0);

    // It keeps waiting, retried without failures or back-off (with 100 ms back-off it
    // was `failed` within 1.5 s): 2 s, several retries, still `pending`, one log line.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        let record = hub.records(waiting_id).await.into_iter().next();
        let record = record.expect("the waiting record stays");
        assert_eq!(
            record.status,
            WorkerStatus::Pending,
            "after {:?}: {record:?}",
            window.elapsed()
        );
        assert_eq!(record.restarts, 0, "{record:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending_lines = events_of(&supervisor, "worker.pending", waiting_id);
    assert_eq!(pending_lines.len(), 1, "once per change: {pending_lines:?}");
    assert!(
        pending_lines[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&expected)),
        "{pending_lines:?}"
    );
    assert!(events_of(&supervisor, "worker.restart", waiting_id).is_empty());

    // The port frees up: the waiting server starts within a few reconcile intervals.
    hub.registry
        .delete_server(running_id)
        .await
        .expect("delete");
    let deleted = Instant::now();
    let started = hub.wait_running(waiting_id, Duration::from_secs(5)).await;
    println!(
        "{waiting_id} running {} ms after {running_id} was deleted",
        deleted.elapsed().as_millis()
    );
    assert_eq!(started.port, Some(hub.base_port));
    call_worker(&started).await;
}

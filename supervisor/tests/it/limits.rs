use std::time::Duration;

use mcp_core::runtime::WorkerStatus;
use serde_json::json;

use crate::{call_worker, Hub};

#[tokio::test]
async fn over_the_worker_cap_a_server_waits_pending() {
    let hub = Hub::start().await;
    let _supervisor = hub.supervisor("sup-a", &["--worker-max", "2"]);
    for id in ["s1", "s2", "s3"] {
        hub.register(id, json!({})).await;
    }
    let (running, pending) = mcp_testkit::wait_until_async(
        "two running and one pending",
        Duration::from_secs(20),
        || async {
            let mut running = Vec::new();
            let mut pending = Vec::new();
            for id in ["s1", "s2", "s3"] {
                match hub
                    .records(id)
                    .await
                    .first()
                    .map(|r| (r.status, r.reason.clone()))
                {
                    Some((WorkerStatus::Running, _)) => running.push(id),
                    Some((WorkerStatus::Pending, reason)) => pending.push((id, reason)),
                    _ => {}
                }
            }
            (running.len() == 2 && pending.len() == 1).then_some((running, pending))
        },
    )
    .await;
    let (pending_id, reason) = pending[0].clone();
    assert!(
        reason.is_some_and(|r| r.contains("MCP_WORKER_MAX=2")),
        "the reason is visible"
    );
    assert_eq!(hub.worker_pids().len(), 2);

    hub.registry
        .delete_server(running[0])
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
    let _supervisor = hub.supervisor("sup-a", &["--worker-bin", wrapper.to_str().expect("utf8")]);
    hub.register("broken", json!({})).await;

    let record = hub
        .wait_record(
            "broken to be failing with back-off",
            "broken",
            Duration::from_secs(30),
            |r| {
                r.restarts >= 4
                    && matches!(r.status, WorkerStatus::Restarting | WorkerStatus::Failed)
            },
        )
        .await;
    let reason = record.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("restarting in"),
        "back-off visible in the record: {record:?}"
    );
    assert!(
        record
            .last_failure
            .as_deref()
            .is_some_and(|f| f.contains("exit status: 3")),
        "{record:?}"
    );
    // Back-off grows: about 100+200+400+800 ms for 4 restarts, never a spin.
    let restarts_now = record.restarts;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = hub.records("broken").await.remove(0);
    assert!(
        later.restarts <= restarts_now + 1,
        "crash loop spins: {} -> {}",
        restarts_now,
        later.restarts
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

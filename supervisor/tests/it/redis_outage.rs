//! Redis killed (SIGKILL) and started again on its port with its data: every server
//! has a running worker again within a deadline, and its calls succeed.

use std::time::{Duration, Instant};

use mcp_core::registry::ImportMode;
use mcp_core::runtime::WorkerStatus;
use mcp_testkit::RedisServer;
use serde_json::json;

use crate::{call_worker, elapsed_ms, Hub};

const SERVERS: usize = 6;

#[tokio::test]
async fn after_redis_is_killed_and_restarted_with_its_data_every_server_runs_again() {
    let data = tempfile::tempdir().expect("data dir");
    let dir = data.path().display().to_string();
    // Every write on disk before it is acknowledged: the restart finds what was there.
    let redis = RedisServer::start_with(|_| {
        [
            "--dir",
            &dir,
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ]
        .map(String::from)
        .to_vec()
    });
    let mut hub = Hub::start_on(redis).await;
    let supervisor = hub.supervisor("sup-a", &[]);
    let servers: Vec<String> = (0..SERVERS).map(|i| format!("srv{i:02}")).collect();
    for id in &servers {
        hub.register(id, json!({})).await;
    }
    for id in &servers {
        hub.wait_running(id, Duration::from_secs(30)).await;
    }

    hub.redis.stop();
    // Down for longer than the lease TTL (2 s): the leases on disk have expired by the
    // time Redis is back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    hub.redis.restart();
    let back = Instant::now();

    for id in &servers {
        let record = mcp_testkit::wait_until_async(
            &format!("{id} running and answering after the Redis restart"),
            Duration::from_secs(20),
            || async {
                let record = hub
                    .records(id)
                    .await
                    .into_iter()
                    .find(|r| r.replica_idx == 0 && r.status == WorkerStatus::Running)?;
                // The worker named is alive and is the one the supervisor runs.
                let pid = record.pid?;
                hub.worker_pids().get(id)?.contains(&pid).then_some(record)
            },
        )
        .await;
        call_worker(&record).await;
    }
    println!(
        "Redis back -> every server running and answering: {} ms",
        elapsed_ms(back)
    );
    for id in &servers {
        assert_eq!(
            hub.worker_pids()[id].len(),
            1,
            "{id}: one worker, no duplicate"
        );
        // The restored records can show `running` before the supervisor's next
        // reconcile takes the expired lease again: wait for it, with a deadline.
        mcp_testkit::wait_until_async(
            &format!("{id}: the lease held again by sup-a"),
            Duration::from_secs(10),
            || async {
                (hub.registry.lease_holder(id).await.ok()? == Some("sup-a".to_string()))
                    .then_some(())
            },
        )
        .await;
    }
    drop(supervisor);
}

/// Redis comes back EMPTY (its data lost): the supervisor must not read that as "every
/// server deleted". It logs `registry.data_lost`, keeps every worker running (they keep
/// answering from the tools they loaded), and once the registry is imported again it
/// carries on with the same workers.
#[tokio::test]
async fn after_redis_comes_back_empty_the_workers_keep_serving_until_the_registry_is_re_imported() {
    let mut hub = Hub::start().await;
    let supervisor = hub.supervisor("sup-a", &[]);
    let servers: Vec<String> = (0..SERVERS).map(|i| format!("srv{i:02}")).collect();
    for id in &servers {
        hub.register(id, json!({})).await;
    }
    let mut before = Vec::new();
    for id in &servers {
        before.push(hub.wait_running(id, Duration::from_secs(30)).await);
    }
    let export = hub.registry.export().await.expect("export");

    // testkit's Redis keeps nothing on disk: it restarts empty.
    hub.redis.stop();
    hub.redis.restart();
    let version =
        mcp_testkit::wait_until_async("Redis answers", Duration::from_secs(5), || async {
            hub.registry.version().await.ok()
        })
        .await;
    assert_eq!(version, 0, "Redis came back empty");
    supervisor.wait_for_event("registry.data_lost", Duration::from_secs(10));
    // Several reconcile rounds (300 ms each) later, nothing was stopped.
    let pids: Vec<u32> = before.iter().map(|r| r.pid.expect("pid")).collect();
    crate::holds_for(
        "every worker alive with Redis empty",
        Duration::from_secs(3),
        || pids.iter().all(|&pid| crate::alive(pid)),
    )
    .await;
    for record in &before {
        call_worker(record).await;
    }
    let terminated = supervisor
        .json_lines()
        .into_iter()
        .filter(|l| l["event"] == "worker.terminated")
        .count();
    assert_eq!(terminated, 0, "no worker was stopped");

    // The operator re-imports the export (server by server: consumers see it midway):
    // the same workers carry on, their records come back.
    hub.registry
        .import(&export, ImportMode::Merge)
        .await
        .expect("import");
    for (id, old) in servers.iter().zip(&before) {
        let record = hub.wait_running(id, Duration::from_secs(20)).await;
        assert_eq!(record.pid, old.pid, "{id}: the same worker, not a new one");
        call_worker(&record).await;
    }
    assert_eq!(hub.worker_count(), SERVERS, "no duplicate worker");
}

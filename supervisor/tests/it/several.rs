//! Several supervisors on one registry: one owner per server, take-over when one dies.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mcp_core::events::EventKind;
use mcp_core::runtime::WorkerStatus;
use mcp_core::subscription::{ReloadReason, Update};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use crate::{alive, call_worker, events_of, holds_for, Hub};

#[tokio::test]
async fn two_supervisors_never_duplicate_and_one_takes_over_from_the_other() {
    let hub = Hub::start().await;
    let servers = ["s1", "s2", "s3"];
    // Every check below also samples the worker processes: never two for one server.
    let most_per_server = AtomicUsize::new(0);
    let sample = || {
        let pids = hub.worker_pids();
        most_per_server.fetch_max(
            pids.values().map(Vec::len).max().unwrap_or(0),
            Ordering::Relaxed,
        );
    };
    let owners = || async {
        let mut owners = BTreeMap::new();
        for id in servers {
            let record = hub.records(id).await.into_iter().next()?;
            (record.status == WorkerStatus::Running).then_some(())?;
            owners.insert(id, (record.supervisor_id?, record.pid?));
        }
        Some(owners)
    };
    // sup-a (room for 2) gets there first and leaves one server pending; sup-b (room
    // for 3) takes that one: both supervisors own servers.
    let mut sup_a = hub.supervisor("sup-a", &["--worker-max", "2"]);
    for id in servers {
        hub.register(id, json!({})).await;
    }
    mcp_testkit::wait_until_async(
        "two running, one pending",
        Duration::from_secs(30),
        || async {
            sample();
            let mut statuses = Vec::new();
            for id in servers {
                statuses.push(hub.records(id).await.into_iter().next()?.status);
            }
            let running = statuses
                .iter()
                .filter(|s| **s == WorkerStatus::Running)
                .count();
            let pending = statuses
                .iter()
                .filter(|s| **s == WorkerStatus::Pending)
                .count();
            (running == 2 && pending == 1).then_some(())
        },
    )
    .await;
    let sup_b = hub.supervisor("sup-b", &["--worker-max", "3"]);
    let before =
        mcp_testkit::wait_until_async("all three running", Duration::from_secs(30), || async {
            sample();
            owners().await
        })
        .await;
    let of = |owner: &str| -> Vec<&str> {
        before
            .iter()
            .filter(|(_, (o, _))| o == owner)
            .map(|(id, _)| *id)
            .collect()
    };
    let (a_servers, b_servers) = (of("sup-a"), of("sup-b"));
    assert_eq!((a_servers.len(), b_servers.len()), (2, 1), "{before:?}");

    // SIGKILL sup-a: sup-b, the only other supervisor, takes its two servers over.
    sup_a.signal(Signal::SIGKILL);
    sup_a.wait_exit(Duration::from_secs(10));
    let killed_at = Instant::now();
    let after = mcp_testkit::wait_until_async(
        "sup-b to own every server",
        Duration::from_secs(30),
        || async {
            sample();
            let owners = owners().await?;
            owners.values().all(|(o, _)| o == "sup-b").then_some(owners)
        },
    )
    .await;
    let took = killed_at.elapsed();
    println!(
        "sup-b took over sup-a's {} server(s) {took:?} after its SIGKILL (lease TTL 2 s)",
        a_servers.len()
    );
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");
    for id in servers {
        assert_eq!(
            after[id].1, before[id].1,
            "{id} was taken over, not restarted"
        );
        call_worker(&hub.records(id).await[0]).await;
    }
    sample();
    assert_eq!(
        most_per_server.into_inner(),
        1,
        "a server ran twice at some point"
    );
    let mut expected: Vec<String> = a_servers.iter().map(|s| s.to_string()).collect();
    expected.sort();
    // Log lines are written in batches: wait for them (a wrong set times out).
    mcp_testkit::wait_until(
        "sup-b to log worker.adopted for exactly sup-a's servers",
        Duration::from_secs(10),
        || {
            let mut adopted: Vec<String> = sup_b
                .json_lines()
                .into_iter()
                .filter(|l| l["event"] == "worker.adopted")
                .filter_map(|l| l["server"].as_str().map(str::to_owned))
                .collect();
            adopted.sort();
            (adopted == expected).then_some(())
        },
    );
}

#[tokio::test]
async fn the_surviving_supervisor_takes_over_in_bounded_time_without_duplicates() {
    let hub = Hub::start().await;
    // Lease TTL 2 s (see Hub::supervisor): a dead supervisor's servers are free after it.
    let sup_a = hub.supervisor("sup-a", &[]);
    let sup_b = hub.supervisor("sup-b", &[]);
    let servers = ["t1", "t2", "t3", "t4"];
    for id in servers {
        hub.register(id, json!({})).await;
    }
    let owners =
        mcp_testkit::wait_until_async("all four running", Duration::from_secs(30), || async {
            let mut owners = Vec::new();
            for id in servers {
                let record = hub.records(id).await.into_iter().next()?;
                (record.status == WorkerStatus::Running).then_some(())?;
                owners.push((id, record.supervisor_id?, record.pid?));
            }
            Some(owners)
        })
        .await;
    // Kill whichever supervisor owns the first server; the other must take its servers.
    let (victim_id, mut victim, survivor, survivor_id) = if owners[0].1 == "sup-a" {
        ("sup-a", sup_a, sup_b, "sup-b")
    } else {
        ("sup-b", sup_b, sup_a, "sup-a")
    };
    let moved: Vec<&str> = owners
        .iter()
        .filter(|(_, owner, _)| owner == victim_id)
        .map(|(id, _, _)| *id)
        .collect();
    victim.signal(Signal::SIGKILL);
    victim.wait_exit(Duration::from_secs(10));
    let killed_at = std::time::Instant::now();
    let most_per_server = std::sync::atomic::AtomicUsize::new(0);
    let took = mcp_testkit::wait_until_async(
        "the survivor to own every server",
        Duration::from_secs(30),
        || async {
            let pids = hub.worker_pids();
            most_per_server.fetch_max(
                pids.values().map(Vec::len).max().unwrap_or(0),
                std::sync::atomic::Ordering::Relaxed,
            );
            for id in servers {
                let record = hub.records(id).await.into_iter().next()?;
                (record.status == WorkerStatus::Running
                    && record.supervisor_id.as_deref() == Some(survivor_id))
                .then_some(())?;
            }
            Some(killed_at.elapsed())
        },
    )
    .await;
    println!(
        "{} server(s) of a SIGKILLed supervisor taken over after {took:?}",
        moved.len()
    );
    assert!(took < Duration::from_secs(15), "takeover took {took:?}");
    assert!(
        most_per_server.into_inner() <= 1,
        "a server ran twice during the takeover"
    );
    for id in servers {
        let record = hub.records(id).await.into_iter().next().expect("record");
        call_worker(&record).await;
    }
    // The orphaned workers were adopted, not restarted, when they were healthy.
    let count_adopted = || {
        survivor
            .json_lines()
            .iter()
            .filter(|l| l["event"] == "worker.adopted")
            .count()
    };
    // Log lines are written in batches: wait until the expected number is out.
    mcp_testkit::wait_until(
        "the survivor's worker.adopted lines",
        Duration::from_secs(10),
        || (count_adopted() >= moved.len()).then_some(()),
    );
    let adopted = count_adopted();
    println!(
        "{adopted} of {} moved worker(s) adopted without a restart",
        moved.len()
    );
    assert_eq!(adopted, moved.len(), "healthy orphans are adopted");
    assert_eq!(hub.worker_pids().values().map(Vec::len).sum::<usize>(), 4);
}

#[tokio::test]
async fn a_supervisor_leaves_alone_a_server_it_marked_pending_once_another_took_it() {
    let hub = Hub::start().await;
    // sup-a has room for s1 only and marks s2 pending; sup-b, with room, takes s2.
    let sup_a = hub.supervisor("sup-a", &["--worker-max", "1"]);
    hub.register("s1", json!({})).await;
    hub.wait_running("s1", Duration::from_secs(20)).await;
    hub.register("s2", json!({})).await;
    hub.wait_record("s2 pending on sup-a", "s2", Duration::from_secs(20), |r| {
        r.status == WorkerStatus::Pending && r.supervisor_id.as_deref() == Some("sup-a")
    })
    .await;
    let _sup_b = hub.supervisor("sup-b", &["--worker-max", "2"]);
    hub.wait_record("sup-b to run s2", "s2", Duration::from_secs(20), |r| {
        r.status == WorkerStatus::Running && r.supervisor_id.as_deref() == Some("sup-b")
    })
    .await;
    // sup-a stops counting s2 as its pending server (and reconciling for it).
    let dropped = sup_a.wait_for_event("supervisor.pending.dropped", Duration::from_secs(10));
    assert_eq!(
        (&dropped["server"], &dropped["supervisor_id"]),
        (&json!("s2"), &json!("sup-b"))
    );

    // s2 is made inactive: sup-b, its owner, finishes its record; sup-a must not touch it.
    let mut updates = hub.registry.subscribe();
    assert!(matches!(
        updates.next().await,
        Some(Update::Reload(ReloadReason::Subscribed))
    ));
    let mut config = hub
        .registry
        .get_server("s2")
        .await
        .expect("get")
        .expect("s2");
    config.active = false;
    hub.registry
        .upsert_server("s2", config)
        .await
        .expect("inactive");
    hub.wait_record("s2 stopped by sup-b", "s2", Duration::from_secs(20), |r| {
        r.status == WorkerStatus::Stopped && r.supervisor_id.as_deref() == Some("sup-b")
    })
    .await;
    // Both supervisors reconciled on the change, and do every 300 ms: a few more passes.
    let window = Instant::now() + Duration::from_millis(1500);
    let mut removed = Vec::new();
    while let Ok(Some(update)) = tokio::time::timeout_at(window.into(), updates.next()).await {
        if let Update::Event(event) = update {
            if let EventKind::WorkerRemoved {
                server_id,
                replica_idx,
            } = event.kind
            {
                removed.push((server_id, replica_idx));
            }
        }
    }
    assert!(removed.is_empty(), "records were removed: {removed:?}");
    let record = hub.records("s2").await;
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(
        (record[0].status, record[0].supervisor_id.as_deref()),
        (WorkerStatus::Stopped, Some("sup-b"))
    );
}

#[tokio::test]
async fn taking_over_an_unhealthy_worker_stays_within_the_worker_cap() {
    let hub = Hub::start().await;
    let mut sup_a = hub.supervisor("sup-a", &[]);
    hub.register("s1", json!({})).await;
    let before = hub.wait_running("s1", Duration::from_secs(20)).await;
    let frozen = before.pid.expect("pid");
    // sup-b is up and past its start-up adoption: its reconcile loop takes s1 over.
    let sup_b = hub.supervisor("sup-b", &["--worker-max", "1"]);
    sup_b.wait_for_event("supervisor.adopted", Duration::from_secs(20));
    sup_a.signal(Signal::SIGKILL);
    sup_a.wait_exit(Duration::from_secs(10));
    // A frozen worker fails sup-b's health probe and ignores SIGTERM: killing it takes
    // the whole stop timeout (2 s), during which it still counts against the cap.
    kill(Pid::from_raw(frozen as i32), Signal::SIGSTOP).expect("SIGSTOP");
    let most = AtomicUsize::new(0);
    let after = hub
        .wait_record(
            "a new worker of s1 on sup-b",
            "s1",
            Duration::from_secs(30),
            |r| {
                most.fetch_max(hub.worker_count(), Ordering::Relaxed);
                r.status == WorkerStatus::Running
                    && r.supervisor_id.as_deref() == Some("sup-b")
                    && r.pid != Some(frozen)
            },
        )
        .await;
    assert!(!alive(frozen), "the frozen worker was killed");
    let stopping = events_of(&sup_b, "worker.stopping", "s1");
    assert!(
        stopping
            .iter()
            .any(|l| l["pid"] == frozen && l["reason"] == "unhealthy at adoption"),
        "{stopping:?}"
    );
    assert!(
        most.into_inner() <= 1,
        "the replacement ran beside the worker it replaces (MCP_WORKER_MAX=1)"
    );
    call_worker(&after).await;
}

/// A supervisor stopped with SIGTERM that stops its workers
/// (`--stop-workers-on-exit true`) gives up its leases once they are stopped: the other
/// supervisor runs its servers at its next reconcile, far sooner than the lease TTL
/// (30 s here), and never beside a worker of the stopped one.
#[tokio::test]
async fn a_supervisor_stopped_with_sigterm_hands_its_servers_over_long_before_the_lease_ttl() {
    let hub = Hub::start().await;
    let servers = ["h1", "h2"];
    let mut sup_a = hub.supervisor(
        "sup-a",
        &["--lease-ttl", "30s", "--stop-workers-on-exit", "true"],
    );
    for id in servers {
        hub.register(id, json!({})).await;
    }
    for id in servers {
        hub.wait_record(
            &format!("{id} on sup-a"),
            id,
            Duration::from_secs(30),
            |r| r.status == WorkerStatus::Running && r.supervisor_id.as_deref() == Some("sup-a"),
        )
        .await;
    }
    // sup-b is past its start-up adoption: its reconcile loop is what takes them.
    let sup_b = hub.supervisor("sup-b", &["--lease-ttl", "30s"]);
    sup_b.wait_for_event("supervisor.adopted", Duration::from_secs(20));
    // Every check below also samples the worker processes: never two for one server.
    let most = AtomicUsize::new(0);
    let sample = || {
        let pids = hub.worker_pids();
        most.fetch_max(
            pids.values().map(Vec::len).max().unwrap_or(0),
            Ordering::Relaxed,
        );
    };

    sup_a.signal(Signal::SIGTERM);
    let termed_at = Instant::now();
    assert!(sup_a.wait_exit(Duration::from_secs(20)).success());
    let exited = termed_at.elapsed();
    for id in servers {
        assert_ne!(
            hub.registry
                .lease_holder(id)
                .await
                .expect("lease")
                .as_deref(),
            Some("sup-a"),
            "{id}: sup-a gave its lease up before it exited"
        );
    }
    for id in servers {
        hub.wait_record(
            &format!("{id} on sup-b"),
            id,
            Duration::from_secs(30),
            |r| {
                sample();
                r.status == WorkerStatus::Running && r.supervisor_id.as_deref() == Some("sup-b")
            },
        )
        .await;
    }
    let took = termed_at.elapsed();
    println!(
        "SIGTERM to sup-a: exited after {exited:?}, both servers running on sup-b after {took:?} (lease TTL 30 s)"
    );
    assert!(
        took < Duration::from_secs(10),
        "the takeover waited for the lease TTL: {took:?}"
    );
    sample();
    assert_eq!(
        most.into_inner(),
        1,
        "a server ran twice during the takeover"
    );
    for id in servers {
        assert_eq!(
            hub.registry
                .lease_holder(id)
                .await
                .expect("lease")
                .as_deref(),
            Some("sup-b")
        );
        call_worker(&hub.records(id).await[0]).await;
    }
    let mut released: Vec<String> = sup_a
        .json_lines()
        .into_iter()
        .filter(|l| l["event"] == "supervisor.lease.released")
        .filter_map(|l| l["server"].as_str().map(str::to_owned))
        .collect();
    released.sort();
    assert_eq!(released, servers);
}

/// With its workers left running (the default), a supervisor stopped with SIGTERM keeps
/// the lease of a server whose worker still runs (it adopts that worker when it is
/// back; another supervisor must not start a second one beside it) and gives up that
/// of a server with no worker (idle here), which the other supervisor takes at once.
#[tokio::test]
async fn sigterm_keeps_the_lease_of_a_worker_left_running_and_gives_up_the_others() {
    let hub = Hub::start().await;
    let flags = ["--lease-ttl", "30s", "--idle-ttl", "4s"];
    let mut sup_a = hub.supervisor("sup-a", &flags);
    hub.register("sleepy", json!({})).await;
    hub.wait_record(
        "sleepy idle on sup-a",
        "sleepy",
        Duration::from_secs(30),
        |r| r.status == WorkerStatus::Idle && r.supervisor_id.as_deref() == Some("sup-a"),
    )
    .await;
    hub.register("busy", json!({})).await;
    let busy = hub
        .wait_record("busy on sup-a", "busy", Duration::from_secs(30), |r| {
            r.status == WorkerStatus::Running && r.supervisor_id.as_deref() == Some("sup-a")
        })
        .await;
    let busy_pid = busy.pid.expect("pid");
    let sup_b = hub.supervisor("sup-b", &flags);
    sup_b.wait_for_event("supervisor.adopted", Duration::from_secs(20));
    // A call now: busy is 4 s from idle, the shutdown takes a fraction of that.
    call_worker(&busy).await;

    sup_a.signal(Signal::SIGTERM);
    let termed_at = Instant::now();
    assert!(sup_a.wait_exit(Duration::from_secs(20)).success());
    assert_eq!(
        hub.registry
            .lease_holder("busy")
            .await
            .expect("lease")
            .as_deref(),
        Some("sup-a"),
        "busy's worker runs on: its lease is kept"
    );
    let took = mcp_testkit::wait_until_async(
        "sup-b to hold sleepy's lease",
        Duration::from_secs(10),
        || async {
            let holder = hub.registry.lease_holder("sleepy").await.ok().flatten()?;
            (holder == "sup-b").then(|| termed_at.elapsed())
        },
    )
    .await;
    println!(
        "sleepy (idle, no worker) taken by sup-b {took:?} after SIGTERM to sup-a (lease TTL 30 s)"
    );
    let sleepy = hub.records("sleepy").await;
    assert_eq!(
        sleepy[0].status,
        WorkerStatus::Idle,
        "it stays idle: {sleepy:?}"
    );
    // Five reconciles of sup-b: busy keeps its one worker, the one sup-a left.
    holds_for(
        "busy has one worker, sup-a's",
        Duration::from_millis(1500),
        || hub.worker_pids().get("busy") == Some(&vec![busy_pid]),
    )
    .await;
    assert_eq!(
        hub.registry
            .lease_holder("busy")
            .await
            .expect("lease")
            .as_deref(),
        Some("sup-a")
    );
    // sup-a back: it adopts its worker.
    let sup_a = hub.supervisor("sup-a", &flags);
    let adopted = mcp_testkit::wait_until(
        "sup-a to adopt busy's worker",
        Duration::from_secs(20),
        || {
            events_of(&sup_a, "worker.adopted", "busy")
                .into_iter()
                .next()
        },
    );
    assert_eq!(adopted["pid"], busy_pid, "adopted, not restarted");
    call_worker(&hub.records("busy").await[0]).await;
}

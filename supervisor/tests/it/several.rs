use std::collections::BTreeSet;
use std::time::Duration;

use mcp_core::runtime::WorkerStatus;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::{call_worker, Hub};

#[tokio::test]
async fn two_supervisors_never_duplicate_and_one_takes_over_from_the_other() {
    let hub = Hub::start().await;
    let mut sup_a = hub.supervisor("sup-a", &["--worker-max", "2"]);
    let sup_b = hub.supervisor("sup-b", &["--worker-max", "2"]);
    let servers = ["s1", "s2", "s3"];
    for id in servers {
        hub.register(id, json!({})).await;
    }
    let owners =
        mcp_testkit::wait_until_async("all three running", Duration::from_secs(30), || async {
            let mut owners = Vec::new();
            for id in servers {
                let record = hub.records(id).await.into_iter().next()?;
                (record.status == WorkerStatus::Running).then_some(())?;
                owners.push(record.supervisor_id?);
            }
            Some(owners)
        })
        .await;
    let distinct: BTreeSet<&String> = owners.iter().collect();
    assert_eq!(
        distinct.len(),
        2,
        "the cap of 2 spreads three servers over both: {owners:?}"
    );
    // Exactly one worker process per server, whoever owns it.
    let pids = hub.worker_pids();
    assert!(
        servers
            .iter()
            .all(|id| pids.get(*id).is_some_and(|p| p.len() == 1)),
        "{pids:?}"
    );

    // Kill sup-a: its servers move to sup-b (the cap allows 2, so raise nothing: sup-b
    // takes what fits and the rest waits pending until room frees up).
    let a_servers: Vec<&str> = servers
        .iter()
        .zip(&owners)
        .filter(|(_, o)| o.as_str() == "sup-a")
        .map(|(s, _)| *s)
        .collect();
    sup_a.signal(Signal::SIGKILL);
    sup_a.wait_exit(Duration::from_secs(10));
    drop(sup_a);
    // The orphaned workers keep serving until sup-b takes over; give sup-b room.
    let sup_c = hub.supervisor("sup-c", &["--worker-max", "4"]);
    for id in &a_servers {
        let record = hub
            .wait_record("a new owner", id, Duration::from_secs(30), |r| {
                r.status == WorkerStatus::Running && r.supervisor_id.as_deref() != Some("sup-a")
            })
            .await;
        call_worker(&record).await;
    }
    mcp_testkit::wait_until(
        "one worker per server after the takeover",
        Duration::from_secs(20),
        || {
            let pids = hub.worker_pids();
            servers
                .iter()
                .all(|id| pids.get(*id).is_some_and(|p| p.len() == 1))
                .then_some(())
        },
    );
    drop((sup_b, sup_c));
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
    let adopted = survivor
        .json_lines()
        .iter()
        .filter(|l| l["event"] == "worker.adopted")
        .count();
    println!(
        "{adopted} of {} moved worker(s) adopted without a restart",
        moved.len()
    );
    assert_eq!(adopted, moved.len(), "healthy orphans are adopted");
    assert_eq!(hub.worker_pids().values().map(Vec::len).sum::<usize>(), 4);
}

//! Adoption and take-over: workers outlive supervisors, are adopted, followed and cleaned up.

use std::process::Command;
use std::time::{Duration, Instant};

use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use mcp_testkit::ChildProcess;
use nix::sys::signal::Signal;
use serde_json::json;

use crate::{alive, call_worker, events_of, holds_for, Hub};

#[tokio::test]
async fn a_restarted_supervisor_adopts_its_workers_and_cleans_up_ghosts() {
    let hub = Hub::start().await;
    let mut supervisor = hub.supervisor("sup-a", &[]);
    hub.register("alpha", json!({})).await;
    hub.register("beta", json!({})).await;
    let alpha = hub.wait_running("alpha", Duration::from_secs(20)).await;
    let beta = hub.wait_running("beta", Duration::from_secs(20)).await;

    supervisor.signal(Signal::SIGKILL);
    supervisor.wait_exit(Duration::from_secs(10));
    drop(supervisor);
    assert_eq!(
        hub.worker_pids().len(),
        2,
        "workers outlive their supervisor"
    );

    // A worker started by hand for a server that is then deleted: a ghost.
    hub.register("ghost", json!({})).await;
    let mut by_hand = Command::new(mcp_testkit::bin_path("mcp-worker"));
    by_hand.env("MCP_ENV_FILE", "/nonexistent/.env").args([
        "--server",
        "ghost",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        &hub.redis.url(),
        "--key-prefix",
        &hub.prefix,
    ]);
    let ghost = ChildProcess::spawn("ghost worker", by_hand);
    ghost.wait_for_event("worker.listening", Duration::from_secs(20));
    hub.registry.delete_server("ghost").await.expect("delete");

    let supervisor = hub.supervisor("sup-a", &[]);
    let adopted = supervisor.wait_for_event("supervisor.adopted", Duration::from_secs(20));
    assert_eq!(adopted["workers"], 2);
    mcp_testkit::wait_until("the ghost to be stopped", Duration::from_secs(20), || {
        (!hub.worker_pids().contains_key("ghost")).then_some(())
    });
    for before in [&alpha, &beta] {
        let server = if before.pid == alpha.pid {
            "alpha"
        } else {
            "beta"
        };
        let after = hub.wait_running(server, Duration::from_secs(10)).await;
        assert_eq!(after.pid, before.pid, "{server} was adopted, not restarted");
        assert_eq!(after.restarts, 0, "no restart counted for {server}");
        call_worker(&after).await;
    }
    assert!(
        supervisor
            .json_lines()
            .iter()
            .all(|l| l["event"] != "worker.spawned"),
        "nothing was respawned"
    );
}

#[tokio::test]
async fn workers_exit_by_themselves_when_their_supervisor_is_gone_for_good() {
    let hub = Hub::start().await;
    let mut supervisor = hub.supervisor("sup-a", &["--orphan-timeout", "2s"]);
    hub.register("alpha", json!({})).await;
    hub.wait_running("alpha", Duration::from_secs(20)).await;
    supervisor.signal(Signal::SIGKILL);
    supervisor.wait_exit(Duration::from_secs(10));
    mcp_testkit::wait_until(
        "the orphaned worker to exit",
        Duration::from_secs(20),
        || hub.worker_pids().is_empty().then_some(()),
    );
    // A worker that is gone leaves a record a new supervisor cleans and replaces.
    let _supervisor = hub.supervisor("sup-b", &[]);
    let record = hub
        .wait_record("a fresh worker", "alpha", Duration::from_secs(30), |r| {
            r.status == WorkerStatus::Running && r.supervisor_id.as_deref() == Some("sup-b")
        })
        .await;
    call_worker(&record).await;
}

#[tokio::test]
async fn sigterm_leaves_workers_running_unless_asked_to_stop_them() {
    let hub = Hub::start().await;
    let mut supervisor = hub.supervisor("sup-a", &[]);
    hub.register("alpha", json!({})).await;
    let alpha = hub.wait_running("alpha", Duration::from_secs(20)).await;
    supervisor.signal(Signal::SIGTERM);
    assert!(supervisor.wait_exit(Duration::from_secs(20)).success());
    assert_eq!(
        hub.worker_pids()["alpha"],
        vec![alpha.pid.expect("pid")],
        "rolling restart keeps the worker"
    );

    let mut supervisor = hub.supervisor("sup-a", &["--stop-workers-on-exit", "true"]);
    supervisor.wait_for_event("worker.adopted", Duration::from_secs(20));
    supervisor.signal(Signal::SIGTERM);
    assert!(supervisor.wait_exit(Duration::from_secs(20)).success());
    assert!(
        hub.worker_pids().is_empty(),
        "workers stopped with the supervisor"
    );
    let record = hub.records("alpha").await;
    assert_eq!(record[0].status, WorkerStatus::Stopped);
}

#[tokio::test]
async fn a_ghost_slow_to_die_does_not_stall_the_supervisor() {
    let hub = Hub::start().await;
    // Two processes that look like our workers for servers nobody wants, and that
    // ignore SIGTERM: each takes the whole stop timeout (6 s) to kill.
    let stubborn = |server: &str| {
        let mut command = std::process::Command::new("bash");
        command.args([
            "-c",
            r#"exec -a mcp-worker perl -e '$SIG{TERM} = "IGNORE"; sleep 120' -- "$@""#,
            "stubborn",
            "--server",
            server,
            "--redis-url",
            &hub.redis.url(),
            "--key-prefix",
            &hub.prefix,
        ]);
        mcp_testkit::ChildProcess::spawn(server, command)
    };
    let ghosts = [stubborn("ghost_a"), stubborn("ghost_b")];
    mcp_testkit::wait_until(
        "the ghosts to look like workers",
        Duration::from_secs(10),
        || (hub.worker_pids().len() == 2).then_some(()),
    );
    let supervisor = hub.supervisor("sup-a", &["--stop-timeout", "6s"]);
    mcp_testkit::wait_until(
        "the supervisor to stop both ghosts",
        Duration::from_secs(20),
        || {
            let stopping = supervisor
                .json_lines()
                .iter()
                .filter(|l| l["event"] == "worker.stopping" && l["reason"] == "ghost")
                .count();
            (stopping == 2).then_some(())
        },
    );
    // While the kills wait out their timeout, a new server gets its worker at once.
    let registered = std::time::Instant::now();
    hub.register("alpha", json!({})).await;
    let record = hub.wait_running("alpha", Duration::from_secs(20)).await;
    let took = registered.elapsed();
    println!("a server registered while two ghosts die slowly ran after {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the loop stalled behind the kills: {took:?}"
    );
    crate::call_worker(&record).await;
    mcp_testkit::wait_until("both ghosts killed", Duration::from_secs(30), || {
        ghosts.iter().all(|g| g.has_exited()).then_some(())
    });
}

#[tokio::test]
async fn a_worker_taken_over_follows_its_new_owner_past_the_orphan_timeout() {
    let hub = Hub::start().await;
    // sup-a's workers exit 4 s after their owner is gone; a 1 s lease lets sup-b take
    // them over well before that.
    let mut sup_a = hub.supervisor("sup-a", &["--orphan-timeout", "4s", "--lease-ttl", "1s"]);
    hub.register("alpha", json!({})).await;
    let before = hub.wait_running("alpha", Duration::from_secs(20)).await;
    let pid = before.pid.expect("pid");
    let sup_b = hub.supervisor("sup-b", &["--lease-ttl", "1s"]);
    sup_b.wait_for_event("supervisor.adopted", Duration::from_secs(20));

    sup_a.signal(Signal::SIGKILL);
    sup_a.wait_exit(Duration::from_secs(10));
    let killed_at = Instant::now();
    let after = hub
        .wait_record(
            "sup-b to own alpha",
            "alpha",
            Duration::from_secs(20),
            |r| r.status == WorkerStatus::Running && r.supervisor_id.as_deref() == Some("sup-b"),
        )
        .await;
    assert_eq!(after.pid, Some(pid), "taken over, not restarted");
    println!(
        "sup-b took alpha over {:?} after sup-a died",
        killed_at.elapsed()
    );
    // Twice the orphan timeout after sup-a's death, the same process still serves.
    let window = Duration::from_secs(8).saturating_sub(killed_at.elapsed());
    holds_for("the taken-over worker to stay up", window, || alive(pid)).await;
    // The worker's output still goes to sup-a's captured stdout: it follows sup-b.
    assert!(
        sup_a
            .json_lines()
            .iter()
            .any(|l| l["event"] == "worker.owner.changed" && l["supervisor_id"] == "sup-b"),
        "the worker says it follows sup-b"
    );
    assert!(
        sup_a
            .json_lines()
            .iter()
            .all(|l| l["event"] != "worker.orphaned"),
        "the worker judged itself orphaned"
    );
    for event in ["worker.terminated", "worker.restart", "worker.spawned"] {
        assert!(
            events_of(&sup_b, event, "alpha").is_empty(),
            "sup-b logged {event} for alpha"
        );
    }
    let now = hub.wait_running("alpha", Duration::from_secs(5)).await;
    assert_eq!((now.pid, now.restarts), (Some(pid), 0), "{now:?}");
    call_worker(&now).await;
}

#[tokio::test]
async fn a_returning_supervisor_leaves_alone_the_workers_another_took_over() {
    let hub = Hub::start().await;
    let mut sup_a = hub.supervisor("sup-a", &[]);
    hub.register("alpha", json!({})).await;
    hub.register("beta", json!({})).await;
    let alpha = hub.wait_running("alpha", Duration::from_secs(20)).await;
    let beta = hub.wait_running("beta", Duration::from_secs(20)).await;
    let sup_b = hub.supervisor("sup-b", &[]);
    sup_b.wait_for_event("supervisor.adopted", Duration::from_secs(20));

    sup_a.signal(Signal::SIGKILL);
    sup_a.wait_exit(Duration::from_secs(10));
    drop(sup_a);
    for (server, before) in [("alpha", &alpha), ("beta", &beta)] {
        let moved = hub
            .wait_record("sup-b to take over", server, Duration::from_secs(20), |r| {
                r.status == WorkerStatus::Running && r.supervisor_id.as_deref() == Some("sup-b")
            })
            .await;
        assert_eq!(moved.pid, before.pid, "{server} taken over, not restarted");
    }

    // sup-a comes back: the workers on its command line belong to sup-b now.
    let sup_a = hub.supervisor("sup-a", &[]);
    let adopted = sup_a.wait_for_event("supervisor.adopted", Duration::from_secs(20));
    assert_eq!(adopted["workers"], 0, "{adopted}");
    // A server registered now gets its worker from a reconcile pass of one of them.
    hub.register("gamma", json!({})).await;
    hub.wait_running("gamma", Duration::from_secs(20)).await;
    let stopped: Vec<_> = sup_a
        .json_lines()
        .into_iter()
        .filter(|l| l["event"] == "worker.stopping")
        .collect();
    assert!(
        stopped.is_empty(),
        "sup-a stopped sup-b's workers: {stopped:?}"
    );
    for (server, before) in [("alpha", &alpha), ("beta", &beta)] {
        let pid = before.pid.expect("pid");
        assert!(alive(pid), "{server}'s worker was killed");
        let record = hub.wait_running(server, Duration::from_secs(5)).await;
        assert_eq!(record.pid, Some(pid), "{server} was restarted: {record:?}");
        assert_eq!(record.supervisor_id.as_deref(), Some("sup-b"));
        assert_eq!(record.restarts, 0, "{record:?}");
        for event in ["worker.terminated", "worker.restart"] {
            assert!(
                events_of(&sup_b, event, server).is_empty(),
                "sup-b logged {event} for {server}"
            );
        }
        call_worker(&record).await;
    }
}

#[tokio::test]
async fn a_server_deleted_while_its_owner_is_dead_loses_its_record_and_port() {
    let hub = Hub::start().await;
    let mut sup_a = hub.supervisor("sup-a", &[]);
    hub.register("alpha", json!({})).await;
    let alpha = hub.wait_running("alpha", Duration::from_secs(20)).await;
    // sup-b is up and past its start-up adoption: only its reconcile loop can clean up.
    let sup_b = hub.supervisor("sup-b", &[]);
    sup_b.wait_for_event("supervisor.adopted", Duration::from_secs(20));

    sup_a.signal(Signal::SIGKILL);
    sup_a.wait_exit(Duration::from_secs(10));
    hub.registry.delete_server("alpha").await.expect("delete");
    let deleted_at = Instant::now();
    mcp_testkit::wait_until_async(
        "alpha's record and port claim to go",
        Duration::from_secs(20),
        || async {
            let ports = hub.registry.claimed_ports().await.ok()?;
            (hub.records("alpha").await.is_empty() && ports.is_empty()).then_some(())
        },
    )
    .await;
    println!(
        "record of a server deleted under a dead owner swept after {:?}",
        deleted_at.elapsed()
    );
    let swept = sup_b.wait_for_event("supervisor.record.swept", Duration::from_secs(5));
    assert_eq!(swept["server"], "alpha");
    assert_eq!(swept["supervisor_id"], "sup-a");
    assert_eq!(swept["port"], alpha.port.expect("port"));
    mcp_testkit::wait_until(
        "alpha's worker stopped as a ghost",
        Duration::from_secs(20),
        || (!hub.worker_pids().contains_key("alpha")).then_some(()),
    );
}

#[tokio::test]
async fn the_periodic_ghost_clean_up_spares_a_worker_a_live_supervisor_claims() {
    let hub = Hub::start().await;
    let supervisor = hub.supervisor("sup-a", &[]);
    supervisor.wait_for_event("supervisor.adopted", Duration::from_secs(20));
    // After start-up: a worker of a server nobody here wants, which another live
    // supervisor's record names (it is that one's to stop, e.g. while it drains it).
    let port = hub.base_port + 90;
    let listen = format!("127.0.0.1:{port}");
    let mut command = std::process::Command::new("bash");
    command.args([
        "-c",
        r#"exec -a mcp-worker perl -e 'sleep 120' -- "$@""#,
        "claimed",
        "--server",
        "elsewhere",
        "--listen",
        &listen,
        "--redis-url",
        &hub.redis.url(),
        "--key-prefix",
        &hub.prefix,
    ]);
    let worker = mcp_testkit::ChildProcess::spawn("claimed", command);
    let pid = worker.pid();
    let record = WorkerRecord {
        pid: Some(pid),
        host: Some("127.0.0.1".into()),
        port: Some(port),
        ..WorkerRecord::new(0, WorkerStatus::Stopping, "sup-b")
    };
    hub.registry
        .put_worker_record("elsewhere", &record)
        .await
        .expect("record");
    let heartbeat = || async {
        hub.registry
            .supervisor_heartbeat("sup-b", mcp_core::runtime::unix_millis())
            .await
            .expect("heartbeat")
    };
    heartbeat().await;
    mcp_testkit::wait_until(
        "the claimed worker to be seen",
        Duration::from_secs(10),
        || hub.worker_pids().contains_key("elsewhere").then_some(()),
    );

    // Many reconciles (300 ms; ghosts die after two) while sup-b beats: spared.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        heartbeat().await;
        assert!(alive(pid), "a claimed worker was killed as a ghost");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        events_of(&supervisor, "worker.stopping", "elsewhere").is_empty(),
        "no stop was even begun"
    );

    // sup-b goes silent past the lease TTL (2 s): the worker is nobody's, a ghost.
    mcp_testkit::wait_until("the ghost stopped", Duration::from_secs(20), || {
        worker.has_exited().then_some(())
    });
    let stop = mcp_testkit::wait_until("its stop logged", Duration::from_secs(5), || {
        events_of(&supervisor, "worker.stopping", "elsewhere")
            .into_iter()
            .next()
    });
    assert_eq!(stop["reason"], "ghost", "{stop}");
}

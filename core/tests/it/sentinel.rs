//! The registry on Redis Sentinel through `redis+sentinel://`: one master, one replica
//! and three sentinels (real processes on loopback ports), registrations, reads and a
//! subscriber running, then `SENTINEL FAILOVER` and then a `kill -9` of the new
//! master. No acknowledged registration may be lost, and writes must work again within
//! a bound. The figures are printed as one `sentinel-figures {json}` line, which
//! `scripts/sentinel-figures.sh` copies into docs/RELIABILITY.md.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_core::keys::Keys;
use mcp_core::model::ServerConfig;
use mcp_core::registry::{Error, Timeouts};
use mcp_core::subscription::Update;
use mcp_core::RedisRegistry;
use mcp_testkit::SentinelSetup;
use serde_json::json;

/// One registration attempt: when it ended, and whether it was acknowledged.
struct Attempt {
    server_id: String,
    ended: Instant,
    acked: bool,
}

fn server() -> ServerConfig {
    serde_json::from_value(json!({"baseUrl": "http://x"})).expect("server")
}

/// The longest time without an acknowledged registration between `from` and `to`
/// (the write outage an event caused): from `from`, or an acknowledgement, to the next.
fn write_outage(attempts: &[Attempt], from: Instant, to: Instant) -> Duration {
    let acknowledged = attempts.iter().filter(|a| a.acked).map(|a| a.ended);
    mcp_testkit::sentinel::longest_gap(acknowledged, from, to)
}

/// Runs blocking test-kit code (process control, waits) without stalling the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The default: a write is acknowledged once the replica has it (`WAIT 1`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_sentinel_failover_and_a_kill_of_the_master() {
    let figures = scenario("").await;
    assert_eq!(
        figures["registrations_lost"], 0,
        "acknowledged registrations lost: {figures}"
    );
}

/// `min_replicas=0`: acknowledged by the master alone, as plain Redis replication does.
/// Writes stay available while the old master catches up, and what the master had not
/// passed on when it died (or took while being demoted) is lost: measured, not bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_writes_stay_available_and_some_may_be_lost() {
    scenario("?min_replicas=0").await;
}

/// Runs the failover and the kill against a hub registry on `setup.url(query)`, checks
/// writes come back and the subscriber follows, and returns the figures.
async fn scenario(query: &str) -> serde_json::Value {
    let mut setup = blocking(SentinelSetup::start);
    let first_master = setup.master_port();
    let timeouts = Timeouts {
        connect: Duration::from_millis(500),
        response: Duration::from_millis(1_000),
    };
    let keys = Keys::new(&mcp_testkit::unique_prefix());
    let registry = RedisRegistry::new(&setup.url(query), keys.clone(), timeouts).expect("registry");
    let watcher = RedisRegistry::new(&setup.url(query), keys, timeouts).expect("registry");

    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let writer = {
        let (registry, stop, attempts) = (registry.clone(), stop.clone(), attempts.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let server_id = format!("s{i:06}");
                let result = registry.upsert_server(&server_id, server()).await;
                let acked = match result {
                    Ok(_) => true,
                    Err(Error::Unavailable(_)) => false,
                    Err(err) => panic!("a registration failed for another reason: {err}"),
                };
                let ended = Instant::now();
                attempts.lock().expect("lock").push(Attempt {
                    server_id,
                    ended,
                    acked,
                });
                i += 1;
                if !acked {
                    // What a client does: try again a little later.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let (reads_ok, reads_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (registry, stop) = (registry.clone(), stop.clone());
        let (ok, failed) = (reads_ok.clone(), reads_failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match registry.list_servers().await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    // A subscriber (the gateway's and supervisor's way in): which server ids reached it.
    let heard = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let reloads = Arc::new(AtomicU64::new(0));
    let subscriber = {
        let (heard, reloads) = (heard.clone(), reloads.clone());
        let mut subscription = watcher.subscribe();
        tokio::spawn(async move {
            while let Some(update) = subscription.next().await {
                match update {
                    Update::Reload(_) => {
                        reloads.fetch_add(1, Ordering::Relaxed);
                    }
                    Update::Event(event) => {
                        heard
                            .lock()
                            .expect("lock")
                            .insert(event.kind.server_id().to_owned());
                    }
                }
            }
        })
    };
    let acked = |attempts: &Arc<Mutex<Vec<Attempt>>>| {
        attempts
            .lock()
            .expect("lock")
            .iter()
            .filter(|a| a.acked)
            .count()
    };
    mcp_testkit::wait_until_async("50 registrations", Duration::from_secs(20), || async {
        (acked(&attempts) >= 50).then_some(())
    })
    .await;

    // 1. A planned failover: the replica becomes master, the old master a replica.
    let failover_at = Instant::now();
    let second_master = blocking(|| setup.failover());
    assert_ne!(second_master, first_master);
    // The old master is turned into a replica by the sentinels some seconds later;
    // until it has synced, writes wait for a replica that is not there (WAIT 1).
    blocking(|| setup.wait_replica_synced(Duration::from_secs(60)));
    let synced_after_failover = failover_at.elapsed();
    let n_before_kill = acked(&attempts);
    mcp_testkit::wait_until_async(
        "registrations after the failover",
        Duration::from_secs(30),
        || async { (acked(&attempts) >= n_before_kill + 20).then_some(()) },
    )
    .await;
    let failover_done = Instant::now();

    // 2. kill -9 of the master: the replica (the first master) takes over.
    let kill_at = Instant::now();
    blocking(|| setup.kill_node(second_master));
    blocking(|| setup.wait_master(first_master, Duration::from_secs(60)));
    let promoted_after_kill = kill_at.elapsed();
    // The killed node comes back empty, as a replica of the new master (what a process
    // supervisor restarting it with its configuration does); writes need it (WAIT 1).
    blocking(|| setup.restart_node(second_master));
    blocking(|| setup.wait_replica_synced(Duration::from_secs(60)));
    let n_after_kill = acked(&attempts);
    mcp_testkit::wait_until_async(
        "registrations after the kill",
        Duration::from_secs(30),
        || async { (acked(&attempts) >= n_after_kill + 20).then_some(()) },
    )
    .await;
    let kill_done = Instant::now();

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    reader.await.expect("reader");

    // Every acknowledged registration is there, on the master the sentinels name now.
    let stored = mcp_testkit::wait_until_async(
        "a read of the registry",
        Duration::from_secs(20),
        || async { registry.list_servers().await.ok() },
    )
    .await;
    let attempts = std::mem::take(&mut *attempts.lock().expect("lock"));
    let acked_ids: Vec<&str> = attempts
        .iter()
        .filter(|a| a.acked)
        .map(|a| a.server_id.as_str())
        .collect();
    let lost: Vec<&&str> = acked_ids
        .iter()
        .filter(|id| !stored.contains_key(**id))
        .collect();
    let failed = attempts.iter().filter(|a| !a.acked).count();
    let back_after_failover = write_outage(&attempts, failover_at, failover_done);
    let back_after_kill = write_outage(&attempts, kill_at, kill_done);

    // The subscriber followed the master: it hears the registrations made after the kill.
    let last_id = acked_ids.last().expect("registrations").to_string();
    mcp_testkit::wait_until_async(
        "the subscriber to hear the last registration",
        Duration::from_secs(20),
        || async { heard.lock().expect("lock").contains(&last_id).then_some(()) },
    )
    .await;
    subscriber.abort();

    let figures = json!({
        "url_query": query,
        "registrations_acknowledged": acked_ids.len(),
        "registrations_lost": lost.len(),
        "registrations_failed": failed,
        "reads_ok": reads_ok.load(Ordering::Relaxed),
        "reads_failed": reads_failed.load(Ordering::Relaxed),
        "subscriber_reloads": reloads.load(Ordering::Relaxed),
        "failover_write_outage_ms": back_after_failover.as_millis() as u64,
        "failover_old_master_synced_ms": synced_after_failover.as_millis() as u64,
        "kill_promoted_ms": promoted_after_kill.as_millis() as u64,
        "kill_write_outage_ms": back_after_kill.as_millis() as u64,
    });
    println!("sentinel-figures {figures}");
    eprintln!("sentinel-figures {figures}");
    if !lost.is_empty() {
        eprintln!(
            "{} acknowledged registrations lost, {} to {}",
            lost.len(),
            lost[0],
            lost[lost.len() - 1]
        );
    }
    assert!(
        back_after_failover < Duration::from_secs(30) && back_after_kill < Duration::from_secs(30),
        "writes took too long to come back: {figures}"
    );
    assert!(
        reloads.load(Ordering::Relaxed) >= 2,
        "the subscriber reloads at each change of master: {figures}"
    );
    figures
}

/// A sentinel that accepts connections and never answers (a hung host) is first in the
/// list: the others are asked at the same time, so the master is found within the
/// timeouts, not after the hung one's TCP give-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sentinel_does_not_stall_finding_the_master_and_a_replica_refuses_writes() {
    let setup = blocking(SentinelSetup::start);
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_port = hung.local_addr().expect("addr").port();
    let url = setup.url("").replacen(
        "redis+sentinel://",
        &format!("redis+sentinel://127.0.0.1:{hung_port},"),
        1,
    );
    let registry = RedisRegistry::new(
        &url,
        Keys::new(&mcp_testkit::unique_prefix()),
        Timeouts {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(1_000),
        },
    )
    .expect("registry");
    let started = Instant::now();
    registry
        .upsert_server("s", server())
        .await
        .expect("a registration through the sentinels that answer");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the hung sentinel held the lookup up: {:?}",
        started.elapsed()
    );
    assert_eq!(registry.list_servers().await.expect("list").len(), 1);
    drop(hung);

    // Pointed straight at the replica, a write is refused (READONLY), tried once more
    // on a fresh connection, and fails as unavailable: nothing was written.
    let master = setup.master_port();
    let replica = setup
        .node_ports()
        .into_iter()
        .find(|p| *p != master)
        .expect("replica");
    let on_replica = RedisRegistry::new(
        &format!("redis://127.0.0.1:{replica}"),
        Keys::new(&mcp_testkit::unique_prefix()),
        Timeouts::default(),
    )
    .expect("registry");
    match on_replica.upsert_server("s", server()).await {
        Err(Error::Unavailable(err)) => assert!(err.to_string().contains("replica"), "{err}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

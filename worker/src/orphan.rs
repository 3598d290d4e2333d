//! Owns the worker's exit when its supervisor is gone: supervisors record a heartbeat in
//! `mcp:supervisors`; a worker whose owner has not been seen for the timeout stops itself
//! (SIGTERM-like graceful shutdown). The owner is the supervisor its runtime record names
//! (a surviving supervisor that took the worker over rewrites the record), and the one on
//! its command line only while no record names this process (by pid, port and host: a
//! process on another machine may have the same pid and port). While Redis is unreachable
//! nothing can be known, so the worker keeps serving, and the count starts again when it
//! is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_core::runtime::WorkerRecord;
use tokio_util::sync::CancellationToken;

use crate::state::WorkerState;

/// What tells this process's runtime record from another's.
#[derive(Clone, Debug)]
pub struct Identity {
    pub replica_idx: u32,
    pub pid: u32,
    /// The port it listens on.
    pub port: u16,
    /// The host its record names it by (`--advertise-host`); `None`: not compared.
    pub host: Option<String>,
}

impl Identity {
    /// True when `record` is about this process: same replica, pid and port, and the
    /// same host when both sides know it.
    fn is_named_by(&self, record: &WorkerRecord) -> bool {
        record.replica_idx == self.replica_idx
            && record.pid == Some(self.pid)
            && record.port == Some(self.port)
            && match (&self.host, &record.host) {
                (Some(mine), Some(recorded)) => mine == recorded,
                _ => true,
            }
    }
}

/// Watches the liveness of this worker's owner until it is gone for `timeout` (then
/// cancels `shutdown`). `started_by` is the supervisor on the command line.
pub async fn watch(
    state: Arc<WorkerState>,
    started_by: String,
    me: Identity,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let every = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut timer = tokio::time::interval(every);
    let mut judge = Judge::new(timeout, Instant::now());
    let mut owner = started_by.clone();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let current = current_owner(&state, &started_by, &me).await;
        if current != owner {
            tracing::info!(event = "worker.owner.changed", server = %state.server_id, replica = me.replica_idx,
                from = %owner, supervisor_id = %current);
            owner = current;
        }
        let heartbeat = match state.registry.supervisors().await {
            Ok(supervisors) => Some(supervisors.get(&owner).copied()),
            Err(_) => None,
        };
        if judge.observe(&owner, heartbeat, Instant::now()) {
            tracing::warn!(event = "worker.orphaned", server = %state.server_id, supervisor_id = %owner,
                timeout_ms = timeout.as_millis() as u64, "supervisor gone; exiting");
            shutdown.cancel();
            return;
        }
    }
}

/// The supervisor that owns this process now: the one its runtime record names when the
/// record is about this process, else the one that started it (also when Redis cannot
/// say).
async fn current_owner(state: &WorkerState, started_by: &str, me: &Identity) -> String {
    state
        .registry
        .get_runtime(&state.server_id)
        .await
        .ok()
        .and_then(|runtime| owner_named(me, runtime.workers))
        .unwrap_or_else(|| started_by.to_owned())
}

/// The supervisor named by the record, among `records`, that is about this process.
fn owner_named(me: &Identity, records: Vec<WorkerRecord>) -> Option<String> {
    records
        .into_iter()
        .find(|r| me.is_named_by(r))
        .and_then(|record| record.supervisor_id)
        .filter(|owner| !owner.is_empty())
}

/// Decides that the owner is gone from what this worker sees, on its own clock: the
/// owner's heartbeat has not changed for `timeout` while Redis answered. A Redis outage
/// restarts the count (the supervisor could not write either), so a heartbeat that went
/// stale during an outage is never mistaken for a dead supervisor; so does a change of
/// owner (the new owner gets a full timeout).
struct Judge {
    timeout: Duration,
    /// The owner and its heartbeat last read (`None`: no entry).
    last: Option<(String, Option<u64>)>,
    /// Since when the heartbeat has been seen unchanged with Redis answering.
    unchanged_since: Instant,
}

impl Judge {
    fn new(timeout: Duration, now: Instant) -> Judge {
        Judge {
            timeout,
            last: None,
            unchanged_since: now,
        }
    }

    /// `heartbeat`: `None` when Redis did not answer, `Some(entry)` otherwise. True when
    /// the owner is to be judged gone.
    fn observe(&mut self, owner: &str, heartbeat: Option<Option<u64>>, now: Instant) -> bool {
        match heartbeat {
            None => {
                self.unchanged_since = now;
                false
            }
            Some(value) => {
                // Nothing read yet counts as "no entry" of the first owner seen.
                let changed = match &self.last {
                    None => value.is_some(),
                    Some((last_owner, last_value)) => last_owner != owner || *last_value != value,
                };
                if changed {
                    self.last = Some((owner.to_owned(), value));
                    self.unchanged_since = now;
                }
                now.duration_since(self.unchanged_since) > self.timeout
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: u32, port: u16, host: Option<&str>, owner: &str) -> WorkerRecord {
        WorkerRecord {
            pid: Some(pid),
            host: host.map(str::to_owned),
            port: Some(port),
            updated_at: 0,
            ..WorkerRecord::new(0, mcp_core::runtime::WorkerStatus::Running, owner)
        }
    }

    #[test]
    fn only_a_record_with_this_pid_port_and_host_names_the_owner() {
        let me = Identity {
            replica_idx: 0,
            pid: 42,
            port: 9001,
            host: Some("node-a".into()),
        };
        let check = |record: WorkerRecord, expected: Option<&str>| {
            let found = owner_named(&me, vec![record.clone()]);
            assert_eq!(found.as_deref(), expected, "{record:?}");
        };
        check(record(42, 9001, Some("node-a"), "sup-b"), Some("sup-b"));
        // The host is compared only when both sides know it.
        check(record(42, 9001, None, "sup-b"), Some("sup-b"));
        let no_host = Identity {
            host: None,
            ..me.clone()
        };
        assert_eq!(
            owner_named(&no_host, vec![record(42, 9001, Some("node-b"), "sup-b")]).as_deref(),
            Some("sup-b")
        );
        // Same pid, another process: another port, or another machine.
        check(record(42, 9002, Some("node-a"), "sup-b"), None);
        check(record(42, 9001, Some("node-b"), "sup-b"), None);
        check(record(43, 9001, Some("node-a"), "sup-b"), None);
        // Another replica's record.
        check(
            WorkerRecord {
                replica_idx: 1,
                ..record(42, 9001, Some("node-a"), "sup-b")
            },
            None,
        );
        // A record without a port (the process it named is gone) names nobody.
        check(
            WorkerRecord {
                port: None,
                ..record(42, 9001, Some("node-a"), "sup-b")
            },
            None,
        );
    }

    #[test]
    fn gone_only_after_a_heartbeat_unchanged_for_the_timeout_with_redis_up() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut judge = Judge::new(Duration::from_millis(1000), t0);
        // Beating: never gone.
        for (ms, beat) in [(250, 1), (500, 2), (750, 3), (1500, 4), (2400, 5)] {
            assert!(!judge.observe("sup-a", Some(Some(beat)), at(ms)), "{ms}");
        }
        // Redis down for a long time: nothing can be known, nothing is decided.
        for ms in [3000, 6000, 9000] {
            assert!(!judge.observe("sup-a", None, at(ms)));
        }
        // Back: the stale heartbeat gets a full timeout to move again.
        assert!(!judge.observe("sup-a", Some(Some(5)), at(9100)));
        assert!(!judge.observe("sup-a", Some(Some(5)), at(10_000)));
        assert!(!judge.observe("sup-a", Some(Some(6)), at(10_050)));
        // Then it stops for good.
        assert!(!judge.observe("sup-a", Some(Some(6)), at(11_000)));
        assert!(judge.observe("sup-a", Some(Some(6)), at(11_100)));
    }

    #[test]
    fn a_supervisor_that_never_appears_is_gone_after_the_timeout() {
        let t0 = Instant::now();
        let mut judge = Judge::new(Duration::from_millis(500), t0);
        assert!(!judge.observe("sup-a", Some(None), t0 + Duration::from_millis(400)));
        assert!(judge.observe("sup-a", Some(None), t0 + Duration::from_millis(600)));
    }

    #[test]
    fn a_new_owner_gets_a_full_timeout() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut judge = Judge::new(Duration::from_millis(1000), t0);
        assert!(!judge.observe("sup-a", Some(Some(7)), at(100)));
        // sup-a died; sup-b took the worker over just before the timeout.
        assert!(!judge.observe("sup-a", Some(Some(7)), at(1000)));
        assert!(!judge.observe("sup-b", Some(Some(7)), at(1050)));
        // sup-a's stale heartbeat no longer counts: sup-b's does.
        assert!(!judge.observe("sup-b", Some(Some(7)), at(2000)));
        assert!(!judge.observe("sup-b", Some(Some(8)), at(2040)));
        assert!(!judge.observe("sup-b", Some(Some(8)), at(3000)));
        assert!(judge.observe("sup-b", Some(Some(8)), at(3100)));
    }
}

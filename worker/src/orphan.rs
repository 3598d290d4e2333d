//! Owns the worker's exit when its supervisor is gone: supervisors record a heartbeat in
//! `mcp:supervisors`; a worker whose supervisor has not been seen for the timeout stops
//! itself (SIGTERM-like graceful shutdown). While Redis is unreachable nothing can be
//! known, so the worker keeps serving, and the count starts again when it is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::state::WorkerState;

pub async fn watch(
    state: Arc<WorkerState>,
    supervisor_id: String,
    timeout: Duration,
    shutdown: CancellationToken,
) {
    let every = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut timer = tokio::time::interval(every);
    let mut judge = Judge::new(timeout, Instant::now());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = timer.tick() => {}
        }
        let heartbeat = match state.registry.supervisors().await {
            Ok(supervisors) => Some(supervisors.get(&supervisor_id).copied()),
            Err(_) => None,
        };
        if judge.observe(heartbeat, Instant::now()) {
            tracing::warn!(event = "worker.orphaned", server = %state.server_id, supervisor_id = %supervisor_id,
                timeout_ms = timeout.as_millis() as u64, "supervisor gone; exiting");
            shutdown.cancel();
            return;
        }
    }
}

/// Decides that the supervisor is gone from what this worker sees, on its own clock:
/// the supervisor's heartbeat has not changed for `timeout` while Redis answered. A
/// Redis outage restarts the count (the supervisor could not write either), so a
/// heartbeat that went stale during an outage is never mistaken for a dead supervisor.
struct Judge {
    timeout: Duration,
    /// The heartbeat last read (`None`: no entry).
    last_value: Option<u64>,
    /// Since when the heartbeat has been seen unchanged with Redis answering.
    unchanged_since: Instant,
}

impl Judge {
    fn new(timeout: Duration, now: Instant) -> Judge {
        Judge {
            timeout,
            last_value: None,
            unchanged_since: now,
        }
    }

    /// `heartbeat`: `None` when Redis did not answer, `Some(entry)` otherwise. True when
    /// the supervisor is to be judged gone.
    fn observe(&mut self, heartbeat: Option<Option<u64>>, now: Instant) -> bool {
        match heartbeat {
            None => {
                self.unchanged_since = now;
                false
            }
            Some(value) => {
                if value != self.last_value {
                    self.last_value = value;
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

    #[test]
    fn gone_only_after_a_heartbeat_unchanged_for_the_timeout_with_redis_up() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut judge = Judge::new(Duration::from_millis(1000), t0);
        // Beating: never gone.
        for (ms, beat) in [(250, 1), (500, 2), (750, 3), (1500, 4), (2400, 5)] {
            assert!(!judge.observe(Some(Some(beat)), at(ms)), "{ms}");
        }
        // Redis down for a long time: nothing can be known, nothing is decided.
        for ms in [3000, 6000, 9000] {
            assert!(!judge.observe(None, at(ms)));
        }
        // Back: the stale heartbeat gets a full timeout to move again.
        assert!(!judge.observe(Some(Some(5)), at(9100)));
        assert!(!judge.observe(Some(Some(5)), at(10_000)));
        assert!(!judge.observe(Some(Some(6)), at(10_050)));
        // Then it stops for good.
        assert!(!judge.observe(Some(Some(6)), at(11_000)));
        assert!(judge.observe(Some(Some(6)), at(11_100)));
    }

    #[test]
    fn a_supervisor_that_never_appears_is_gone_after_the_timeout() {
        let t0 = Instant::now();
        let mut judge = Judge::new(Duration::from_millis(500), t0);
        assert!(!judge.observe(Some(None), t0 + Duration::from_millis(400)));
        assert!(judge.observe(Some(None), t0 + Duration::from_millis(600)));
    }
}

//! Owns the worker runtime record stored in `mcp:server_runtime:{server_id}` (one hash
//! field per replica, value = [`WorkerRecord`] JSON). Written only by the supervisor;
//! read by the gateway, the admin API and the dashboard. Wire format.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a worker is in its life. The supervisor owns the transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    /// Wanted, but a limit (`MCP_WORKER_MAX`) holds it back; `reason` says which.
    Pending,
    Starting,
    Running,
    Unhealthy,
    Restarting,
    Stopping,
    Stopped,
    Failed,
    /// Stopped after `MCP_WORKER_IDLE_TTL` without calls; a call wakes it.
    Idle,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Pending => "pending",
            WorkerStatus::Starting => "starting",
            WorkerStatus::Running => "running",
            WorkerStatus::Unhealthy => "unhealthy",
            WorkerStatus::Restarting => "restarting",
            WorkerStatus::Stopping => "stopping",
            WorkerStatus::Stopped => "stopped",
            WorkerStatus::Failed => "failed",
            WorkerStatus::Idle => "idle",
        }
    }

    /// True when the gateway may send calls to a worker in this state.
    pub fn is_routable(self) -> bool {
        matches!(self, WorkerStatus::Running | WorkerStatus::Unhealthy)
    }
}

/// One worker process (one replica of one server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerRecord {
    pub replica_idx: u32,
    pub status: WorkerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Address the gateway should use to reach the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Unix time in milliseconds of the last successful health probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<u64>,
    /// Id of the supervisor that owns this worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor_id: Option<String>,
    #[serde(default)]
    pub restarts: u32,
    /// Why the worker is not running (pending limit, crash, failed health probes...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Unix time in milliseconds of `last_failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_at: Option<u64>,
    /// Unix time in milliseconds when the current process started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Registry version the record was written at.
    #[serde(default)]
    pub updated_at: u64,
    /// The worker's circuit breaker and retry counters, as its `/healthz` showed them at
    /// `last_heartbeat` (absent until a call of a server with `retry` or
    /// `circuitBreaker` made them, and for a new process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resilience: Option<Resilience>,
    /// The worker's audit writer counters, as its `/healthz` showed them at
    /// `last_heartbeat` (absent when auditing is off, for a new process, and on the
    /// Kubernetes backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditCounters>,
}

impl WorkerRecord {
    /// A record of `supervisor_id`'s replica in `status`, with nothing else known yet
    /// (no process, no failure), stamped now.
    pub fn new(replica_idx: u32, status: WorkerStatus, supervisor_id: &str) -> WorkerRecord {
        WorkerRecord {
            replica_idx,
            status,
            pid: None,
            host: None,
            port: None,
            last_heartbeat: None,
            supervisor_id: Some(supervisor_id.to_owned()),
            restarts: 0,
            reason: None,
            last_failure: None,
            last_failure_at: None,
            started_at: None,
            updated_at: unix_millis(),
            resilience: None,
            audit: None,
        }
    }

    /// `host:port` when both are known.
    pub fn endpoint(&self) -> Option<String> {
        Some(format!("{}:{}", self.host.as_deref()?, self.port?))
    }
}

/// The state of a worker's circuit breaker towards its REST API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once with `circuit_open` until the cool-down ends.
    Open,
    /// One probe call is let through; its result closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// One worker's circuit breaker (one per server: a tool's overrides change its retries,
/// not the breaker) and its retry counters since the process started. The worker's
/// `/healthz` writes the same fields in snake_case (the aliases read them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resilience {
    pub state: BreakerState,
    /// Failed attempts in a row.
    #[serde(default, alias = "consecutive_failures")]
    pub consecutive_failures: u32,
    /// Retries made.
    #[serde(default)]
    pub retries: u64,
    /// The same retries by what failed (absent from records written before it: zeros).
    #[serde(default, alias = "retries_by_reason")]
    pub retries_by_reason: RetriesByReason,
    /// Retries refused because the retry budget was spent.
    #[serde(default, alias = "retries_refused_by_budget")]
    pub retries_refused_by_budget: u64,
    /// Calls failed fast by the open breaker.
    #[serde(default)]
    pub rejected: u64,
    /// Times the breaker opened.
    #[serde(default)]
    pub opened: u64,
    /// Why the breaker opened, while it is open or half-open (the reason of its last
    /// opening: from closed, or after a failed probe); absent while it is closed, and
    /// from records written before it.
    #[serde(default, alias = "opened_by", skip_serializing_if = "Option::is_none")]
    pub opened_by: Option<BreakerOpenReason>,
}

/// Why a circuit breaker opened, tagged by `kind`: `{"kind": "consecutive_failures"}`,
/// `{"kind": "error_rate", "failed": 6, "calls": 10}` or `{"kind": "probe_failed"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BreakerOpenReason {
    /// `failureThreshold` failed attempts in a row (`consecutiveFailures` says how many).
    ConsecutiveFailures,
    /// `failed` of the `calls` attempts in the error-rate window failed, at least
    /// `errorRatePercent` of them.
    ErrorRate { failed: u32, calls: u32 },
    /// The half-open probe failed.
    ProbeFailed,
}

/// Retries made, by the failure that was retried: the only ones a retry is made for
/// (connect errors, timeouts, 502/503/504). The keys are the `reason` label of the
/// gateway's `mcp_worker_retries_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetriesByReason {
    /// The connection could not be made.
    #[serde(default)]
    pub connect: u64,
    /// The attempt did not finish in time.
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub status_502: u64,
    #[serde(default)]
    pub status_503: u64,
    #[serde(default)]
    pub status_504: u64,
}

impl RetriesByReason {
    /// The reasons, in the order of [`RetriesByReason::counts`].
    pub const REASONS: [&'static str; 5] = [
        "connect",
        "timeout",
        "status_502",
        "status_503",
        "status_504",
    ];

    /// The counts in the order of [`RetriesByReason::REASONS`].
    pub fn counts(&self) -> [u64; 5] {
        [
            self.connect,
            self.timeout,
            self.status_502,
            self.status_503,
            self.status_504,
        ]
    }

    /// From counts in the order of [`RetriesByReason::REASONS`].
    pub fn from_counts(counts: [u64; 5]) -> RetriesByReason {
        let [connect, timeout, status_502, status_503, status_504] = counts;
        RetriesByReason {
            connect,
            timeout,
            status_502,
            status_503,
            status_504,
        }
    }
}

/// One worker's audit writer since the process started (`mcp_core::audit::Stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditCounters {
    /// Entries Redis acknowledged.
    #[serde(default)]
    pub written: u64,
    /// Entries dropped because Redis was slow or down (the buffer was full, or their
    /// batch failed to be written).
    #[serde(default)]
    pub dropped: u64,
}

/// All replicas of one server, as the admin API shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerRuntime {
    pub server_id: String,
    pub workers: Vec<WorkerRecord>,
}

/// Milliseconds since the Unix epoch, the unit of every timestamp in runtime records.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_written_before_the_retry_reasons_and_audit_counters_still_reads() {
        let old = json!({"replicaIdx": 0, "status": "running", "resilience": {
            "state": "open", "consecutiveFailures": 5, "retries": 7,
            "retriesRefusedByBudget": 1, "rejected": 3, "opened": 1}});
        let record: WorkerRecord = serde_json::from_value(old).expect("old record");
        let resilience = record.resilience.expect("resilience");
        assert_eq!(resilience.retries, 7);
        assert_eq!(resilience.retries_by_reason, RetriesByReason::default());
        assert_eq!(resilience.opened_by, None);
        assert_eq!(record.audit, None);
    }

    #[test]
    fn the_healthz_form_reads_and_the_record_form_round_trips() {
        // What a worker's /healthz writes (snake_case, audit with `enabled`).
        let healthz = json!({"state": "half_open", "consecutive_failures": 2, "retries": 6,
            "retries_by_reason": {"connect": 1, "timeout": 2, "status_503": 3},
            "retries_refused_by_budget": 0, "rejected": 0, "opened": 2,
            "opened_by": {"kind": "error_rate", "failed": 6, "calls": 10}});
        let resilience: Resilience = serde_json::from_value(healthz).expect("healthz");
        assert_eq!(resilience.retries_by_reason.counts(), [1, 2, 0, 3, 0]);
        assert_eq!(
            resilience.opened_by,
            Some(BreakerOpenReason::ErrorRate {
                failed: 6,
                calls: 10
            })
        );
        let audit: AuditCounters =
            serde_json::from_value(json!({"enabled": true, "written": 9, "dropped": 4}))
                .expect("audit");
        assert_eq!((audit.written, audit.dropped), (9, 4));
        let record = WorkerRecord {
            resilience: Some(resilience),
            audit: Some(audit),
            ..WorkerRecord::new(1, WorkerStatus::Running, "sup")
        };
        let text = serde_json::to_value(&record).expect("json");
        assert_eq!(text["resilience"]["retriesByReason"]["status_503"], 3);
        assert_eq!(
            text["resilience"]["openedBy"],
            json!({"kind": "error_rate", "failed": 6, "calls": 10})
        );
        assert_eq!(text["audit"], json!({"written": 9, "dropped": 4}));
        let back: WorkerRecord = serde_json::from_value(text).expect("round trip");
        assert_eq!(back, record);
        assert_eq!(
            RetriesByReason::from_counts(resilience.retries_by_reason.counts()),
            resilience.retries_by_reason
        );
    }

    #[test]
    fn each_open_reason_has_its_kind_and_a_closed_breaker_writes_none() {
        for (reason, wire) in [
            (
                BreakerOpenReason::ConsecutiveFailures,
                json!({"kind": "consecutive_failures"}),
            ),
            (
                BreakerOpenReason::ErrorRate {
                    failed: 3,
                    calls: 4,
                },
                json!({"kind": "error_rate", "failed": 3, "calls": 4}),
            ),
            (
                BreakerOpenReason::ProbeFailed,
                json!({"kind": "probe_failed"}),
            ),
        ] {
            assert_eq!(serde_json::to_value(reason).expect("json"), wire);
            let back: BreakerOpenReason = serde_json::from_value(wire).expect("back");
            assert_eq!(back, reason);
        }
        let closed = Resilience {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            retries: 0,
            retries_by_reason: RetriesByReason::default(),
            retries_refused_by_budget: 0,
            rejected: 0,
            opened: 0,
            opened_by: None,
        };
        let text = serde_json::to_value(closed).expect("json");
        assert!(text.get("openedBy").is_none(), "{text}");
        // /healthz may write null for none.
        let null: Resilience =
            serde_json::from_value(json!({"state": "closed", "opened_by": null})).expect("null");
        assert_eq!(null.opened_by, None);
    }
}

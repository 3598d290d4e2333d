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
    /// Retries refused because the retry budget was spent.
    #[serde(default, alias = "retries_refused_by_budget")]
    pub retries_refused_by_budget: u64,
    /// Calls failed fast by the open breaker.
    #[serde(default)]
    pub rejected: u64,
    /// Times the breaker opened.
    #[serde(default)]
    pub opened: u64,
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

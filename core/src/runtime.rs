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
        }
    }

    /// `host:port` when both are known.
    pub fn endpoint(&self) -> Option<String> {
        Some(format!("{}:{}", self.host.as_deref()?, self.port?))
    }
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

//! Owns the seams between the supervisor's logic and the way workers run. Leases,
//! `MCP_WORKER_MAX`, idle stop and the status machine stay the same whatever runs the
//! workers; only these change. [`WorkerBackend`] starts, signals and observes one
//! worker per replica, driven by the slots of [`crate::supervisor`]; [`ProcessBackend`]
//! forks local `mcp-worker` processes (the default). [`ServerBackend`] applies,
//! removes and observes a server's workers as one whole, driven by
//! [`crate::servers::ServerSupervisor`]; [`crate::kubernetes::KubeBackend`] implements
//! it with one Deployment per server.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use nix::sys::signal::Signal;

pub use crate::process::WorkerArgs;
use crate::{process, Ctx};

/// Which worker to start: one replica of one server, listening on a claimed port.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSpec<'a> {
    pub server_id: &'a str,
    pub replica_idx: u32,
    pub port: u16,
}

/// A worker this supervisor started (not one it adopted: those are watched by pid).
pub trait StartedWorker: Send + Sync {
    fn pid(&self) -> u32;
    /// Resolves when the worker ends, with how it ended (exit code or signal).
    fn wait(&mut self) -> Pin<Box<dyn Future<Output = String> + Send + '_>>;
}

/// How a worker is asked to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// Finish what runs and exit (SIGTERM).
    Graceful,
    /// At once (SIGKILL), after the stop timeout.
    Kill,
}

pub trait WorkerBackend: Send + Sync {
    /// Its name in logs (`MCP_WORKER_BACKEND`).
    fn name(&self) -> &'static str;
    fn start(&self, ctx: &Ctx, spec: WorkerSpec<'_>) -> std::io::Result<Box<dyn StartedWorker>>;
    fn signal(&self, pid: u32, signal: StopSignal);
    /// True while the worker exists and has not ended.
    fn alive(&self, pid: u32) -> bool;
    /// Every live worker of our registry (same Redis and key prefix), by pid.
    fn scan(&self, ctx: &Ctx) -> Vec<(u32, WorkerArgs)>;
    /// Whether a worker could listen on `host:port` now (no foreign holder).
    fn port_is_free(&self, host: IpAddr, port: u16) -> bool;
    /// Resident memory of the worker in bytes, when the backend can tell.
    fn rss_bytes(&self, _pid: u32) -> Option<u64> {
        None
    }
}

/// Workers as local processes, each in its own process group.
pub struct ProcessBackend;

struct Child(tokio::process::Child);

impl StartedWorker for Child {
    fn pid(&self) -> u32 {
        self.0.id().unwrap_or(0)
    }

    fn wait(&mut self) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(async move {
            match self.0.wait().await {
                Ok(status) => status.to_string(),
                Err(err) => err.to_string(),
            }
        })
    }
}

impl WorkerBackend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    fn start(&self, ctx: &Ctx, spec: WorkerSpec<'_>) -> std::io::Result<Box<dyn StartedWorker>> {
        let child = process::spawn(ctx, spec.server_id, spec.replica_idx, spec.port)?;
        Ok(Box::new(Child(child)))
    }

    fn signal(&self, pid: u32, signal: StopSignal) {
        let signal = match signal {
            StopSignal::Graceful => Signal::SIGTERM,
            StopSignal::Kill => Signal::SIGKILL,
        };
        process::signal_group(pid, signal);
    }

    fn alive(&self, pid: u32) -> bool {
        process::alive(pid)
    }

    fn scan(&self, ctx: &Ctx) -> Vec<(u32, WorkerArgs)> {
        process::scan_workers(ctx)
    }

    fn port_is_free(&self, host: IpAddr, port: u16) -> bool {
        process::port_is_free(host, port)
    }

    fn rss_bytes(&self, pid: u32) -> Option<u64> {
        process::rss_bytes(pid)
    }
}

/// A backend that runs the workers of a server as one whole (Kubernetes: one Deployment
/// of N replicas, its pods started, restarted and placed by the cluster), driven by
/// [`crate::servers::ServerSupervisor`] with the same leases, `MCP_WORKER_MAX`, idle
/// stop and status records as the process backend's per-replica slots. It only starts,
/// stops and observes workers; it never reads or writes Redis.
#[async_trait::async_trait]
pub trait ServerBackend: Send + Sync {
    /// Its name in logs (`MCP_WORKER_BACKEND`).
    fn name(&self) -> &'static str;
    /// Runs `replicas` workers of `server_id` (0: none, the server kept in place, e.g.
    /// idle). Idempotent: applying what runs changes nothing.
    async fn apply(&self, server_id: &str, replicas: u32) -> anyhow::Result<()>;
    /// The name of the placement [`ServerBackend::apply`] makes for `server_id`.
    fn placement_name(&self, server_id: &str) -> String;
    /// Stops every worker of the placement `name` (a [`Placement::name`]) and removes it;
    /// one already gone is fine.
    async fn remove(&self, name: &str) -> anyhow::Result<()>;
    /// What runs now: every placement of this registry, and the serving workers.
    async fn observe(&self) -> anyhow::Result<Observed>;
    /// Resolves when what [`ServerBackend::observe`] returns may have changed (a watch),
    /// so the loop need not wait for its timer; the default never resolves.
    async fn changed(&self) {
        std::future::pending::<()>().await
    }
}

/// What runs one server's workers in a [`ServerBackend`] (a Deployment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The backend's name for it ([`ServerBackend::remove`] takes it).
    pub name: String,
    /// The server it runs, when it says (one that does not is a ghost).
    pub server_id: Option<String>,
}

/// What a [`ServerBackend`] observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub placements: Vec<Placement>,
    /// The serving (Ready) workers of each server as `running` records: replica index,
    /// host, port, restarts (the supervisor id and times are the loop's to set).
    pub serving: std::collections::BTreeMap<String, Vec<mcp_core::runtime::WorkerRecord>>,
}

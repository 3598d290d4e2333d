//! Owns the seam between the supervisor's logic and the way workers run: start a
//! worker, signal it, tell whether it lives, list the live ones. Leases, reconcile
//! ([`crate::plan`]), slots and the status machine stay the same whatever runs the
//! workers; only this changes. [`ProcessBackend`] forks local `mcp-worker` processes
//! (the default); a backend that runs workers elsewhere (Kubernetes pods) implements
//! the same trait.

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

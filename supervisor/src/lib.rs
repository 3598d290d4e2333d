//! Supervisor of MCP Hub workers (`mcp-supervisor`): keeps, for every active registered
//! server it owns, its worker process(es) running and healthy, and keeps
//! `mcp:server_runtime:{id}` true. It is the only writer of runtime records and ports.
//!
//! Layout: [`config`] (flags), [`plan`] (every decision, as pure functions of desired
//! and observed state), [`supervisor`] (the executor: gathers facts from Redis and the
//! backend, runs the plan, renews leases), [`slot`] (one worker's life as an actor),
//! [`status`] (the state machine every record write passes), [`backend`] (start, signal,
//! observe a worker: the seam a second way to run workers plugs into), [`process`] (the
//! local-process backend's spawn, signals, `/proc`), [`health`] (`/healthz` probes),
//! [`servers`] (the same leases, cap, idle stop and records for a backend that runs a
//! server's workers as one whole), [`kubernetes`] (`MCP_WORKER_BACKEND=kubernetes`:
//! Deployments and pods instead of processes, under [`servers`]).
#![forbid(unsafe_code)]

pub mod backend;
pub mod config;
pub mod health;
pub mod kubernetes;
pub mod plan;
pub mod process;
pub mod servers;
pub mod slot;
pub mod status;
pub mod supervisor;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mcp_core::RedisRegistry;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// What every slot needs, fixed at start-up.
pub struct Ctx {
    pub registry: RedisRegistry,
    pub supervisor_id: String,
    pub worker_bin: PathBuf,
    pub redis_url: String,
    pub key_prefix: String,
    pub bind_host: IpAddr,
    pub advertise_host: String,
    pub base_port: u16,
    pub port_count: u16,
    pub worker_max: usize,
    pub idle_ttl: Duration,
    pub health_interval: Duration,
    pub health_failures: u32,
    /// `MCP_WORKER_MAX_RSS_MB` in bytes; 0 = no limit.
    pub max_rss_bytes: u64,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub orphan_timeout: Duration,
    pub stop_workers_on_exit: bool,
    /// One pooled client for every health probe.
    pub http: reqwest::Client,
    /// What starts, signals and observes the workers.
    pub backend: Arc<dyn backend::WorkerBackend>,
}

/// Runs until `shutdown`; then leaves workers running (or stops them with
/// `MCP_SUPERVISOR_STOP_WORKERS_ON_EXIT`).
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    if !config.enabled {
        tracing::info!(
            event = "supervisor.disabled",
            reason = "MCP_SUPERVISOR_ENABLED=false"
        );
        return Ok(());
    }
    // Redis restarted empty: keep the workers running rather than stop every one.
    let registry = config.redis.registry()?.guard_data_loss();
    if config.backend == config::Backend::Kubernetes {
        let settings = config.kube_settings();
        let cluster = kubernetes::KubeCluster::connect(&settings.namespace)
            .await
            .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
        tracing::info!(event = "supervisor.started", backend = "kubernetes", supervisor_id = %config.supervisor_id(),
            namespace = %settings.namespace, image = %settings.image, worker_max = config.worker_max, pid = std::process::id());
        let options = servers::Options {
            supervisor_id: config.supervisor_id(),
            worker_max: config.worker_max,
            idle_ttl: config.idle_ttl,
            lease_ttl: config.lease_ttl,
            reconcile_interval: config.reconcile_interval,
        };
        kubernetes::run(registry, Arc::new(cluster), settings, options, shutdown).await;
        tracing::info!(event = "supervisor.stopped");
        return Ok(());
    }
    let ctx = Arc::new(Ctx {
        registry: registry.clone(),
        supervisor_id: config.supervisor_id(),
        worker_bin: config.worker_bin(),
        redis_url: config.redis.redis_url.clone(),
        key_prefix: config.redis.key_prefix.clone(),
        bind_host: config.bind_host,
        advertise_host: config.advertise_host.clone(),
        base_port: config.base_port,
        port_count: config.port_count,
        worker_max: config.worker_max,
        idle_ttl: config.idle_ttl,
        health_interval: config.health_interval,
        health_failures: config.health_failures,
        max_rss_bytes: config.max_rss_mb.saturating_mul(1024 * 1024),
        start_timeout: config.start_timeout,
        stop_timeout: config.stop_timeout,
        backoff_min: config.backoff_min,
        backoff_max: config.backoff_max,
        orphan_timeout: config.orphan_timeout,
        stop_workers_on_exit: config.stop_workers_on_exit,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()
            .context("building the HTTP client")?,
        backend: Arc::new(backend::ProcessBackend),
    });
    tracing::info!(event = "supervisor.started", supervisor_id = %ctx.supervisor_id, worker_bin = %ctx.worker_bin.display(),
        backend = ctx.backend.name(), worker_max = ctx.worker_max, base_port = ctx.base_port, pid = std::process::id());
    let heartbeat = tokio::spawn(heartbeat(ctx.clone(), shutdown.child_token()));
    supervisor::Supervisor::new(ctx, config.lease_ttl, config.reconcile_interval, shutdown)
        .run()
        .await;
    heartbeat.abort();
    tracing::info!(event = "supervisor.stopped");
    Ok(())
}

/// Records this supervisor's liveness every second (workers and other supervisors read it).
async fn heartbeat(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let mut timer = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = timer.tick() => {
                if let Err(err) = ctx.registry.supervisor_heartbeat(&ctx.supervisor_id, mcp_core::runtime::unix_millis()).await {
                    tracing::warn!(event = "supervisor.heartbeat.failed", error = %err);
                }
            }
        }
    }
}

//! One MCP Hub worker (`mcp-worker`): serves exactly one registered server over its
//! transports; each call runs on the shared call engine (`mcp_adapter`), which makes the
//! REST API calls (here, or in the gateway only in rollback mode).
//!
//! Layout: [`config`] (flags), [`state`] (what is served, swapped atomically),
//! [`reload`] (registry follower), [`call`] (hub call protocol, `POST /call/{tool}`),
//! [`mcp`] (MCP Streamable HTTP at `/mcp`), [`jsonrpc`] (message checks rmcp
//! answers wrongly), [`orphan`] (exit when its owner is gone), [`legacy_sse`] (the older HTTP+SSE
//! transport at `/sse` + `/messages`), [`health`] (`/healthz`).
#![forbid(unsafe_code)]

pub mod call;
pub mod config;
pub mod health;
pub mod host_check;
pub mod jsonrpc;
pub mod legacy_sse;
pub mod mcp;
pub mod orphan;
pub mod reload;
pub mod state;

use axum::serve::ListenerExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::state::WorkerState;

/// The worker's HTTP surface.
pub fn app(state: Arc<WorkerState>, config: &Config, shutdown: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/call/{tool}", post(call::call))
        .route("/call", post(call::call_named))
        .with_state(state.clone())
        .merge(mcp::router(state.clone(), config, shutdown.clone()))
        .merge(legacy_sse::router(
            state,
            host_check::Allowed::new(&config.allowed_hosts, &config.allowed_origins),
            shutdown,
        ))
}

/// Loads the server, starts following the registry, serves until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Redis restarted empty: keep serving the tools loaded.
    let registry = config.redis.registry()?.guard_data_loss();
    let adapter = mcp_adapter::http::HttpAdapter::new(config.adapter_settings())
        .context("building the HTTP client")?;
    let mut state = WorkerState::new(config.server.clone(), registry, adapter);
    state.started_hold = Duration::from_millis(config.started_hold_ms);
    state.audit = mcp_core::audit::start(
        state.registry.clone(),
        &config.audit,
        shutdown.child_token(),
    );
    let state = Arc::new(state);
    if let Err(err) = reload::load(&state).await {
        // Serve anyway: the follower keeps trying, and /healthz says what is loaded.
        tracing::warn!(event = "worker.reload.failed", server = %config.server, error = %err);
    }
    let follower = tokio::spawn(reload::follow(
        state.clone(),
        config.reconcile_every(),
        shutdown.child_token(),
    ));
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    if !config.supervisor_id.is_empty() && config.orphan_timeout_secs > 0 {
        let timeout = Duration::from_secs(config.orphan_timeout_secs);
        let me = orphan::Identity {
            replica_idx: config.replica,
            pid: std::process::id(),
            port: addr.port(),
            host: Some(config.advertise_host.clone()).filter(|h| !h.is_empty()),
        };
        tokio::spawn(orphan::watch(
            state.clone(),
            config.supervisor_id.clone(),
            me,
            timeout,
            shutdown.clone(),
        ));
    }
    tracing::info!(event = "worker.listening", server = %config.server, addr = %addr, port = addr.port(),
        replica = config.replica, pid = std::process::id(), tools = state.current().tools.len());
    let router = app(state, &config, shutdown.clone());
    let graceful = shutdown.clone();
    // SSE frames are small writes: without TCP_NODELAY, Nagle holds each one until the
    // previous is acknowledged, and delayed ACKs make that 40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { graceful.cancelled().await });
    let timeout = Duration::from_millis(config.shutdown_timeout_ms);
    tokio::select! {
        result = server => result.context("serving")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(timeout).await } => {
            tracing::warn!(event = "worker.shutdown.timeout", server = %config.server);
        }
    }
    follower.abort();
    tracing::info!(event = "worker.stopped", server = %config.server);
    Ok(())
}

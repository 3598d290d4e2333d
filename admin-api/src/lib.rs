//! Admin REST API of MCP Hub (`mcp-admin`): registry CRUD, restart requests, runtime
//! status, import/export and an event stream for the dashboard. It writes the registry
//! only through `mcp_core::RedisRegistry` and never talks to workers directly.
//!
//! Layout: [`config`] (flags), [`routes`] (one file per resource), [`error`] (the JSON
//! error contract), [`body`] (JSON parsing rules), [`auth`] (bearer token), [`guard`]
//! (Host and Origin allow-lists),
//! [`request_id`] (span and id per request), [`openapi`] (the generated document),
//! [`cli`] (import/export subcommands), [`prometheus_text`] (reading the gateway's
//! metrics for `/api/metrics`); `routes::dashboard` serves the console's build.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod error;
pub mod guard;
pub mod openapi;
pub mod openapi_import;
pub mod prometheus_text;
pub mod request_id;
pub mod routes;

use axum::serve::ListenerExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use mcp_core::RedisRegistry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ApiError;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub registry: RedisRegistry,
    /// `Arc<str>`: read on every request, never changed after start-up.
    pub admin_token: Option<Arc<str>>,
    /// The console's build output, served at `/dashboard`.
    pub dashboard: routes::dashboard::Dashboard,
    /// The gateway's Prometheus metrics, summed per server by `/api/metrics`.
    pub metrics: routes::metrics::MetricsSource,
}

/// The whole HTTP surface without the Host/Origin check, to drive with `oneshot` in
/// tests (whose requests name no `Host`); [`run`] serves [`app_with_guard`].
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    app_with_guard(state, max_body_bytes, None)
}

/// The whole HTTP surface; `guard`, when given, checks every request first (inside the
/// request span, so its refusals carry a request id).
pub fn app_with_guard(
    state: AppState,
    max_body_bytes: usize,
    guard: Option<Arc<guard::WebGuard>>,
) -> Router {
    let (api, _) = routes::api_routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .split_for_parts();
    let (public, _) = routes::public_routes().split_for_parts();
    let router = Router::new()
        .merge(api)
        .merge(public)
        .merge(routes::dashboard_routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body_bytes));
    let router = match guard {
        Some(guard) => router.layer(axum::middleware::from_fn_with_state(guard, guard::check)),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn(request_id::request_span))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish for up to `shutdown_timeout`.
pub async fn run(
    config: &Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let registry = config.redis.registry()?;
    if let Some(seed) = &config.seed {
        cli::seed_if_empty(&registry, seed, config.seed_origin.as_ref()).await?;
    }
    let state = AppState {
        registry,
        admin_token: config.admin_token.as_deref().map(Arc::from),
        dashboard: routes::dashboard::Dashboard::new(config.dashboard_dir.clone()),
        metrics: routes::metrics::MetricsSource::new(config.gateway_metrics_url.clone())
            .context("building the metrics client")?,
    };
    if !state.dashboard.is_built() {
        tracing::warn!(
            event = "admin.dashboard.missing",
            dir = %config.dashboard_dir.display(),
            hint = "run scripts/build-dashboard.sh; /dashboard answers 503 until then"
        );
    }
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(event = "admin.listening", addr = %addr, auth = state.admin_token.is_some());
    let guard = guard::WebGuard::new(&config.allowed_hosts, &config.allowed_origins)
        .map_err(|e| anyhow::anyhow!("MCP_ADMIN_ALLOWED_HOSTS: {e}"))?;
    let router = app_with_guard(state, config.max_body_bytes, Some(Arc::new(guard)));
    let graceful = shutdown.clone();
    // No Nagle delay on the event stream's small writes.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move { graceful.cancelled().await });
    let timeout = Duration::from_millis(config.shutdown_timeout_ms);
    tokio::select! {
        result = server => result.context("serving the admin API")?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(timeout).await } => {
            tracing::warn!(event = "admin.shutdown.timeout", timeout_ms = config.shutdown_timeout_ms);
        }
    }
    tracing::info!(event = "admin.stopped");
    Ok(())
}

/// Binds, serves, and stops on SIGINT or SIGTERM.
pub async fn serve_until_signal(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = mcp_core::shutdown::root_token();
    run(&config, listener, shutdown).await
}

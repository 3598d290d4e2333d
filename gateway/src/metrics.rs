//! Owns the gateway's Prometheus metrics (calls, latency histogram, errors by code, per
//! server) and the separate listener that serves them at `/metrics`.

use std::net::SocketAddr;
use std::sync::LazyLock;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{Encoder, HistogramVec, IntCounterVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub errors: IntCounterVec,
}

/// One set per process. The definitions are constants, so building them cannot fail
/// at run time (the `expect`s guard against a typo, caught by every test run).
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "mcp_gateway_requests_total",
            "Requests by route, server and HTTP status",
        ),
        &["route", "server", "status"],
    )
    .expect("constant metric definition");
    let latency = HistogramVec::new(
        prometheus::HistogramOpts::new(
            "mcp_gateway_request_duration_seconds",
            "Request latency (to the end of the response) by route and server",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ]),
        &["route", "server"],
    )
    .expect("constant metric definition");
    let errors = IntCounterVec::new(
        Opts::new(
            "mcp_gateway_errors_total",
            "Error responses by code and server",
        ),
        &["code", "server"],
    )
    .expect("constant metric definition");
    let _ = registry.register(Box::new(requests.clone()));
    let _ = registry.register(Box::new(latency.clone()));
    let _ = registry.register(Box::new(errors.clone()));
    Metrics {
        registry,
        requests,
        latency,
        errors,
    }
});

pub fn render() -> String {
    let mut buffer = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&METRICS.registry.gather(), &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}

/// Serves `GET /metrics` on its own listener, bound by [`MetricsService::bind`] when the
/// server is built: a port that cannot be bound stops the gateway before it serves,
/// like its main listener, rather than leaving it running without metrics.
pub struct MetricsService {
    addr: SocketAddr,
    /// Taken once by `start`.
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
}

impl MetricsService {
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsService> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsService {
            addr,
            listener: std::sync::Mutex::new(Some(listener)),
        })
    }
}

#[async_trait]
impl BackgroundService for MetricsService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self
            .listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let listener = match taken.map(tokio::net::TcpListener::from_std) {
            Some(Ok(listener)) => listener,
            Some(Err(err)) => {
                tracing::error!(event = "gateway.metrics.failed", addr = %self.addr, error = %err);
                return;
            }
            None => return,
        };
        tracing::info!(event = "gateway.metrics.listening", addr = %self.addr);
        let app = axum::Router::new().route("/metrics", axum::routing::get(|| async { render() }));
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
    }
}

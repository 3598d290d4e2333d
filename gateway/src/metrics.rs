//! Owns the gateway's Prometheus metrics (calls, latency histogram, errors by code, per
//! server), the workers' resilience and audit counters read from the routing table's
//! runtime records ([`worker_families`]), and the separate listener that serves them at
//! `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use mcp_core::runtime::{BreakerState, Resilience, RetriesByReason};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::table::{Routes, Table};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub errors: IntCounterVec,
    /// Client connections closed or refused by the connection cap, by reason
    /// ([`crate::connections::Shed`]).
    pub connections_shed: IntCounterVec,
    /// Client connections holding a slot of the cap.
    pub connections_open: IntGauge,
    /// Of those, the ones that have not sent a byte yet (the first to be evicted).
    pub connections_idle: IntGauge,
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
    let connections_shed = IntCounterVec::new(
        Opts::new(
            "mcp_gateway_connections_shed_total",
            "Client connections shed at MCP_GATEWAY_MAX_CONNECTIONS or \
MCP_GATEWAY_FIRST_BYTE_TIMEOUT (reason: evicted_idle, refused, first_byte_timeout)",
        ),
        &["reason"],
    )
    .expect("constant metric definition");
    for shed in crate::connections::Shed::ALL {
        connections_shed.with_label_values(&[shed.reason()]);
    }
    let connections_open = IntGauge::new(
        "mcp_gateway_connections_open",
        "Client connections open (each holds a slot of MCP_GATEWAY_MAX_CONNECTIONS)",
    )
    .expect("constant metric definition");
    let connections_idle = IntGauge::new(
        "mcp_gateway_connections_idle",
        "Client connections open that have not sent a byte yet (evicted first at \
MCP_GATEWAY_MAX_CONNECTIONS)",
    )
    .expect("constant metric definition");
    let _ = registry.register(Box::new(requests.clone()));
    let _ = registry.register(Box::new(latency.clone()));
    let _ = registry.register(Box::new(errors.clone()));
    let _ = registry.register(Box::new(connections_shed.clone()));
    let _ = registry.register(Box::new(connections_open.clone()));
    let _ = registry.register(Box::new(connections_idle.clone()));
    Metrics {
        registry,
        requests,
        latency,
        errors,
        connections_shed,
        connections_open,
        connections_idle,
    }
});

/// Said in the HELP of every metric [`worker_families`] makes.
const AS_OF: &str = "as of the worker's last health probe (the supervisor copies its \
/healthz into its runtime record at each probe; the gateway's table takes the record at \
its next MCP_GATEWAY_RECONCILE_INTERVAL reload, or at once on a breaker state change); \
replica=\"gateway\": the gateway's own, in rollback mode, since it started, read at the scrape";

/// `mcp_breaker_state`'s value for a state.
pub fn breaker_state_value(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

/// The `replica` label of the gateway's own counters in rollback mode: never a worker's
/// (theirs are numbers).
pub const GATEWAY_REPLICA: &str = "gateway";

/// What the gateway counts itself in rollback mode, where it runs the calls: the retry
/// budgets, breakers and counters of its own adapter, and its audit writer's counts.
/// Cheap to clone (both share their counters with the proxy's copies).
#[derive(Clone)]
pub struct Own {
    pub adapter: mcp_adapter::http::HttpAdapter,
    pub audit: mcp_core::audit::Sink,
}

/// The workers' circuit breaker, retry and audit counters, by server and replica, from
/// the runtime records of `table`'s routable workers (running or unhealthy): what each
/// worker's `/healthz` showed at its last health probe. Built afresh at each scrape (no
/// state kept here: a worker that restarts starts its counters from zero, which
/// Prometheus reads as a counter reset). Resilience metrics appear once a call of a
/// server with `retry` or `circuitBreaker` made them; audit ones when auditing is on.
/// In rollback mode (`own`), the gateway's own counters are added under the same names
/// with `replica="gateway"`, read live at the scrape: its guard of each server in
/// `table` that a guarded call made, and its audit writer's counts (`server=""`: one
/// writer for every server).
pub fn worker_families(table: &Table, own: Option<&Own>) -> Vec<MetricFamily> {
    // `None` only for a bad definition (constants: every test run would see it).
    worker_registry(table, own)
        .map(|registry| registry.gather())
        .unwrap_or_default()
}

/// The metric vectors [`worker_registry`] fills.
struct Families {
    retries: IntCounterVec,
    refused: IntCounterVec,
    opened: IntCounterVec,
    rejected: IntCounterVec,
    audit_written: IntCounterVec,
    audit_dropped: IntCounterVec,
    state: IntGaugeVec,
    failures: IntGaugeVec,
}

impl Families {
    fn resilience(&self, server: &str, replica: &str, r: &Resilience) -> Option<()> {
        for (reason, count) in RetriesByReason::REASONS
            .into_iter()
            .zip(r.retries_by_reason.counts())
        {
            self.retries
                .get_metric_with_label_values(&[server, replica, reason])
                .ok()?
                .inc_by(count);
        }
        let labels = [server, replica];
        for (vec, n) in [
            (&self.refused, r.retries_refused_by_budget),
            (&self.opened, r.opened),
            (&self.rejected, r.rejected),
        ] {
            vec.get_metric_with_label_values(&labels).ok()?.inc_by(n);
        }
        self.state
            .get_metric_with_label_values(&labels)
            .ok()?
            .set(breaker_state_value(r.state));
        self.failures
            .get_metric_with_label_values(&labels)
            .ok()?
            .set(i64::from(r.consecutive_failures));
        Some(())
    }

    fn audit(&self, server: &str, replica: &str, written: u64, dropped: u64) -> Option<()> {
        for (vec, n) in [
            (&self.audit_written, written),
            (&self.audit_dropped, dropped),
        ] {
            vec.get_metric_with_label_values(&[server, replica])
                .ok()?
                .inc_by(n);
        }
        Some(())
    }
}

fn worker_registry(table: &Table, own: Option<&Own>) -> Option<Registry> {
    let registry = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| {
        let vec = IntCounterVec::new(
            Opts::new(
                name,
                format!("{help}, since the worker process started; {AS_OF}"),
            ),
            labels,
        )
        .ok()?;
        registry.register(Box::new(vec.clone())).ok()?;
        Some(vec)
    };
    let per_worker: &[&str] = &["server", "replica"];
    let retries = counter(
        "mcp_worker_retries_total",
        "Retries of REST API calls by each worker, by the failure retried (reason: connect, \
timeout, status_502, status_503, status_504)",
        &["server", "replica", "reason"],
    )?;
    let refused = counter(
        "mcp_worker_retries_refused_total",
        "Retries not made because the server's retry budget (retry.budgetPercent) was spent",
        per_worker,
    )?;
    let opened = counter(
        "mcp_breaker_opened_total",
        "Times each worker's circuit breaker opened (from closed, or again after a failed \
half-open probe)",
        per_worker,
    )?;
    let rejected = counter(
        "mcp_breaker_rejected_total",
        "Calls failed fast with circuit_open by each worker's open circuit breaker",
        per_worker,
    )?;
    let audit_written = counter(
        "mcp_audit_written_total",
        "Audit entries each worker's audit writer appended to the Redis Stream",
        per_worker,
    )?;
    let audit_dropped = counter(
        "mcp_audit_dropped_total",
        "Audit entries each worker dropped because Redis was slow or down (the buffer \
MCP_AUDIT_BUFFER was full, or their batch failed to be written)",
        per_worker,
    )?;
    let gauge = |name: &str, help: &str| {
        let vec = IntGaugeVec::new(Opts::new(name, format!("{help}; {AS_OF}")), per_worker).ok()?;
        registry.register(Box::new(vec.clone())).ok()?;
        Some(vec)
    };
    let state = gauge(
        "mcp_breaker_state",
        "State of each worker's circuit breaker towards its REST API, one gauge per worker: \
0 closed, 1 half_open, 2 open",
    )?;
    let failures = gauge(
        "mcp_breaker_consecutive_failures",
        "Failed attempts in a row counted by each worker's circuit breaker",
    )?;
    let families = Families {
        retries,
        refused,
        opened,
        rejected,
        audit_written,
        audit_dropped,
        state,
        failures,
    };
    for (server, route) in &table.servers {
        for record in route.records.values() {
            if !record.status.is_routable() {
                continue;
            }
            let replica = record.replica_idx.to_string();
            if let Some(r) = &record.resilience {
                families.resilience(server, &replica, r)?;
            }
            if let Some(a) = &record.audit {
                families.audit(server, &replica, a.written, a.dropped)?;
            }
        }
        // One read lock per server, at scrape time only.
        if let Some(guard) = own.and_then(|own| own.adapter.find_guard(server)) {
            families.resilience(server, GATEWAY_REPLICA, &guard.snapshot())?;
        }
    }
    if let Some(own) = own.filter(|own| own.audit.is_enabled()) {
        let stats = own.audit.stats();
        families.audit(
            "",
            GATEWAY_REPLICA,
            stats.written.load(Ordering::Relaxed),
            stats.dropped.load(Ordering::Relaxed),
        )?;
    }
    Some(registry)
}

/// The Prometheus text of the gateway's own metrics and of the workers' in `table`
/// (with, in rollback mode, the gateway's own resilience and audit counters).
pub fn render(table: &Table, own: Option<&Own>) -> String {
    let mut families = METRICS.registry.gather();
    families.extend(worker_families(table, own));
    let mut buffer = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&families, &mut buffer);
    String::from_utf8(buffer).unwrap_or_default()
}

/// Serves `GET /metrics` on its own listener, bound by [`MetricsService::bind`] when the
/// server is built: a port that cannot be bound stops the gateway before it serves,
/// like its main listener, rather than leaving it running without metrics.
pub struct MetricsService {
    addr: SocketAddr,
    /// The routing table, whose runtime records hold the workers' counters.
    routes: Arc<Routes>,
    /// The gateway's own counters, in rollback mode.
    own: Option<Own>,
    /// Taken once by `start`.
    listener: std::sync::Mutex<Option<std::net::TcpListener>>,
}

impl MetricsService {
    pub fn bind(
        addr: SocketAddr,
        routes: Arc<Routes>,
        own: Option<Own>,
    ) -> std::io::Result<MetricsService> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsService {
            addr,
            routes,
            own,
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
        let routes = Arc::clone(&self.routes);
        let own = self.own.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || async move { render(&routes.load(), own.as_ref()) }),
        );
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.changed().await;
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Names, ServerRoute};
    use mcp_core::runtime::{AuditCounters, Resilience, WorkerRecord, WorkerStatus};

    #[test]
    fn the_workers_counters_are_rendered_by_server_and_replica() {
        let resilience = Resilience {
            state: BreakerState::Open,
            consecutive_failures: 5,
            retries: 4,
            retries_by_reason: RetriesByReason {
                connect: 1,
                status_503: 3,
                ..RetriesByReason::default()
            },
            retries_refused_by_budget: 2,
            rejected: 6,
            opened: 1,
            opened_by: Some(mcp_core::runtime::BreakerOpenReason::ConsecutiveFailures),
        };
        let mut route = ServerRoute::default();
        route.set_record(
            WorkerRecord {
                resilience: Some(resilience),
                audit: Some(AuditCounters {
                    written: 8,
                    dropped: 3,
                }),
                ..WorkerRecord::new(1, WorkerStatus::Running, "sup")
            },
            &Names::new(),
        );
        // A stopped worker's last counters are not current: left out.
        route.set_record(
            WorkerRecord {
                resilience: Some(resilience),
                ..WorkerRecord::new(0, WorkerStatus::Stopped, "sup")
            },
            &Names::new(),
        );
        let mut table = Table::default();
        table.servers.insert("api".into(), route);
        let text = render(&table, None);
        for line in [
            r#"mcp_worker_retries_total{reason="connect",replica="1",server="api"} 1"#,
            r#"mcp_worker_retries_total{reason="status_503",replica="1",server="api"} 3"#,
            r#"mcp_worker_retries_total{reason="timeout",replica="1",server="api"} 0"#,
            r#"mcp_worker_retries_refused_total{replica="1",server="api"} 2"#,
            r#"mcp_breaker_state{replica="1",server="api"} 2"#,
            r#"mcp_breaker_opened_total{replica="1",server="api"} 1"#,
            r#"mcp_breaker_rejected_total{replica="1",server="api"} 6"#,
            r#"mcp_breaker_consecutive_failures{replica="1",server="api"} 5"#,
            r#"mcp_audit_written_total{replica="1",server="api"} 8"#,
            r#"mcp_audit_dropped_total{replica="1",server="api"} 3"#,
            "# TYPE mcp_worker_retries_total counter",
            "# TYPE mcp_breaker_state gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        assert!(!text.contains(r#"replica="0""#), "{text}");
        assert!(text.contains("0 closed, 1 half_open, 2 open"), "{text}");
        assert!(
            text.contains("as of the worker's last health probe"),
            "{text}"
        );
        // Rollback mode: the gateway's own guard of a server in the table, by its name.
        let own = Own {
            adapter: mcp_adapter::http::HttpAdapter::new(Default::default()).expect("adapter"),
            audit: mcp_core::audit::Sink::disabled(),
        };
        own.adapter
            .guard("api")
            .count_retry(mcp_adapter::resilience::Failure::Timeout);
        own.adapter
            .guard("gone")
            .count_retry(mcp_adapter::resilience::Failure::Connect);
        let text = render(&table, Some(&own));
        for line in [
            r#"mcp_worker_retries_total{reason="timeout",replica="gateway",server="api"} 1"#,
            r#"mcp_breaker_state{replica="gateway",server="api"} 0"#,
            r#"mcp_worker_retries_total{reason="connect",replica="1",server="api"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
        // A server no longer in the table, and a disabled audit writer: left out.
        assert!(!text.contains("gone"), "{text}");
        assert!(!text.contains(r#"server="""#), "{text}");
        // No worker counters: only the gateway's own metrics.
        assert!(!render(&Table::default(), None).contains("mcp_breaker_state"));
    }
}

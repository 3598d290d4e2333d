//! Owns the per-request state of the gateway ([`Ctx`]) and what is written from it:
//! `tool.call.accepted`, `tool.call.proxy.start|done`, the request's metrics, and the
//! fields the gateway sets on the request it sends upstream. Every phase of the request
//! path reads and fills it; only this file formats its log lines and metrics.

use std::time::Instant;

use bytes::Bytes;

use super::body::BodyCheck;
use crate::errors::GatewayError;
use crate::metrics::METRICS;
use crate::routes::Route;
use crate::table::Endpoint;

/// Per-request state.
pub struct Ctx {
    pub(super) started: Instant,
    pub(super) request_id: String,
    pub(super) route: Route,
    pub(super) server_id: String,
    pub(super) tool: String,
    pub(super) check: BodyCheck,
    /// Written by `fail_to_proxy` when the request fails after routing.
    pub(super) pending_error: Option<GatewayError>,
    /// Chosen upstream of the current attempt.
    pub(super) endpoint: Option<Endpoint>,
    /// Path and query sent to the upstream.
    pub(super) upstream_path: String,
    /// Replica pinned by an MCP session id or a legacy-SSE message URL.
    pub(super) pinned_replica: Option<u32>,
    /// Session id to send upstream (the gateway's `r{n}.` prefix removed).
    pub(super) upstream_session: Option<String>,
    /// Workers that failed this request (a restarted one is a new endpoint).
    pub(super) failed: Vec<Endpoint>,
    pub(super) attempts: u32,
    /// Pooled connections that turned out closed; the first such failure does not
    /// count against the worker (it may have closed an idle connection and live on).
    pub(super) stale_reuses: u32,
    /// Where `tool.call.accepted` stands: the arguments passed (`Due`), it was written.
    pub(super) accepted: Accepted,
    pub(super) args_size: usize,
    /// The validated body of a checked route, which [`forward`] sends.
    pub(super) held_body: Option<Bytes>,
    /// Body bytes passed through unchecked so far (routes without a body check).
    pub(super) passed_bytes: usize,
    pub(super) status: u16,
    /// One sampling decision per request (taken on first use), so the success-path
    /// events of a request (`accepted`, `proxy.start`, `proxy.done`) come together.
    pub(super) sampled: Option<bool>,
    /// The request's metrics and `tool.call.proxy.done` line are written (by `forward`,
    /// before the answer's last bytes; otherwise by `logging`).
    pub(super) recorded: bool,
    /// The client's IP address, sent to the worker as `X-Forwarded-For` (its audit
    /// entries name the caller); set once the request is admitted to a server.
    pub(crate) client_addr: Option<String>,
}

/// `tool.call.accepted` of a request: not (yet) earned, due, written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Accepted {
    No,
    Due,
    Written,
}

/// The fields the gateway sets on a request to an upstream, replacing the client's: the
/// same on both ways out (Pingora's `upstream_request_filter` and [`forward`]).
pub(super) struct UpstreamFields<'a> {
    pub(super) request_id: &'a str,
    /// The worker's address: a worker checks the Host it is called by.
    pub(super) host: Option<&'a str>,
    /// Where a legacy SSE stream's message URLs must point (through the gateway, to
    /// the same replica).
    pub(super) forwarded_prefix: Option<String>,
    /// The worker's own MCP session id (the gateway's `r{n}.` prefix removed).
    pub(super) session: Option<&'a str>,
    /// The client's address (any `X-Forwarded-For` the client sent is replaced).
    pub(super) forwarded_for: Option<&'a str>,
}

pub(super) fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "0",
        s if s < 300 => "2xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}

impl Ctx {
    pub(super) fn new() -> Ctx {
        Ctx {
            started: Instant::now(),
            request_id: String::new(),
            route: Route::NotFound,
            server_id: String::new(),
            tool: String::new(),
            check: BodyCheck::None,
            pending_error: None,
            endpoint: None,
            upstream_path: String::new(),
            pinned_replica: None,
            upstream_session: None,
            failed: Vec::new(),
            attempts: 0,
            stale_reuses: 0,
            accepted: Accepted::No,
            args_size: 0,
            held_body: None,
            passed_bytes: 0,
            status: 0,
            sampled: None,
            recorded: false,
            client_addr: None,
        }
    }

    /// The worker URL of the current attempt, for logs (empty before one is chosen).
    pub(super) fn target_url(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => {
                let mut url =
                    String::with_capacity(7 + endpoint.host.len() + self.upstream_path.len());
                url.push_str("http://");
                url.push_str(&endpoint.host);
                url.push_str(&self.upstream_path);
                url
            }
            None => String::new(),
        }
    }
    /// Whether this request's success-path events are logged: decided once, on first use.
    pub(super) fn sampled(&mut self) -> bool {
        *self.sampled.get_or_insert_with(mcp_core::log::sampled)
    }
    /// Writes `tool.call.accepted` if it is due. A forwarded call writes it once its
    /// request has left for the worker, so the line's formatting is not on the call's
    /// path; every other event of the request that can come before that calls this first,
    /// so the lines keep their order.
    pub(crate) fn log_accepted(&mut self) {
        if self.accepted != Accepted::Due {
            return;
        }
        self.accepted = Accepted::Written;
        if self.sampled() {
            tracing::info!(
                event = "tool.call.accepted",
                request_id = self.request_id.as_str(),
                server = self.server_id.as_str(),
                tool = self.tool.as_str(),
                args_size = self.args_size
            );
        }
    }

    /// What [`UpstreamFields`] this request's upstream gets (an admin call only its id).
    pub(super) fn upstream_fields(&self) -> UpstreamFields<'_> {
        let mut fields = UpstreamFields {
            request_id: &self.request_id,
            host: None,
            forwarded_prefix: None,
            session: None,
            forwarded_for: None,
        };
        if self.route == Route::Admin {
            return fields;
        }
        if let Some(endpoint) = &self.endpoint {
            fields.host = Some(&endpoint.host);
            if let Route::LegacySse { server_id } = &self.route {
                fields.forwarded_prefix = Some(format!(
                    "/mcp-servers/{server_id}/r{}",
                    endpoint.replica_idx
                ));
            }
        }
        fields.session = self.upstream_session.as_deref();
        fields.forwarded_for = self.client_addr.as_deref();
        fields
    }

    pub(super) fn log_proxy_start(&mut self) {
        self.log_accepted();
        if self.sampled() {
            tracing::info!(
                event = "tool.call.proxy.start",
                request_id = self.request_id.as_str(),
                server = self.server_id.as_str(),
                tool = self.tool.as_str(),
                target_url = self.target_url().as_str(),
                attempt = self.attempts
            );
        }
    }

    pub(super) fn server_label(&self) -> &str {
        if self.server_id.is_empty() {
            "-"
        } else {
            self.server_id.as_str()
        }
    }

    pub(super) fn count_error(&self, status: u16) {
        METRICS
            .errors
            .with_label_values(&[&status.to_string(), self.server_label()])
            .inc();
    }

    /// Counts the finished request in the metrics and writes its `tool.call.proxy.done`
    /// line (sampled with its `proxy.start`, one decision per request; failures always).
    pub(super) fn record(&mut self, status: u16, failed: bool) {
        self.log_accepted();
        self.recorded = true;
        self.status = status;
        let latency = self.started.elapsed();
        let server = self.server_label();
        let label = self.route.label();
        METRICS
            .requests
            .with_label_values(&[label, server, status_label(status)])
            .inc();
        METRICS
            .latency
            .with_label_values(&[label, server])
            .observe(latency.as_secs_f64());
        if status >= 400 || failed {
            self.count_error(status);
        }
        if self.endpoint.is_some() && (status >= 500 || self.sampled == Some(true)) {
            tracing::info!(
                event = "tool.call.proxy.done",
                request_id = self.request_id.as_str(),
                server = self.server_id.as_str(),
                tool = self.tool.as_str(),
                target_url = self.target_url().as_str(),
                status,
                latency = latency.as_secs_f64() * 1000.0,
                attempts = self.attempts
            );
        }
    }

    // What rollback mode (outside this module) reads and sets of a request.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
    pub fn server_id(&self) -> &str {
        &self.server_id
    }
    pub fn route(&self) -> &Route {
        &self.route
    }
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }
}

//! Pingora front door of MCP Hub (`mcp-gateway`): validates tool arguments against the
//! tool's JSON Schema from an in-memory table, assigns the request id, finds a worker
//! and streams its SSE back; fronts the admin API; serves Prometheus metrics on its own
//! listener. It never writes the registry (its one publish is `server.wake`).
//!
//! Layout: [`config`] (flags), [`routes`] (URL space), [`table`] (routing table),
//! [`watcher`] (keeps the table equal to Redis), [`connections`] (the connection cap
//! in front of the request path), [`proxy`] (the request path),
//! [`rollback`] (calls without workers), [`guard`] (Host, Origin and content-type
//! rules), [`errors`] (JSON errors), [`metrics`].
#![forbid(unsafe_code)]

pub mod config;
pub mod connections;
pub mod errors;
pub mod guard;
pub mod metrics;
pub mod proxy;
pub mod rollback;
pub mod routes;
pub mod table;
pub mod watcher;

use std::sync::Arc;

use anyhow::Context;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::Config;
use crate::table::Routes;

/// In-flight requests' grace after SIGTERM when neither the flag nor the YAML says.
const DEFAULT_GRACE_PERIOD_SECS: u64 = 5;

/// Write buffer of each client connection. Pingora flushes a streamed (chunked)
/// response at every chunk whatever this is; a sized one (a worker's call that was over
/// within its hold, an admin answer) is flushed once, at its end, if head and body fit
/// here: one write to the client instead of two. Pingora's default is one MSS (1460).
const CLIENT_WRITE_BUFFER: usize = 8 * 1024;

/// The read buffer of each client connection (Pingora's default: 64 KiB), held from the
/// accept on. Pingora's HTTP/1 reader reads into its own buffer, past this one when that
/// is larger, so it only serves the first-byte check and small reads.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// The flag wins, then the YAML; Pingora's own default of 300 s is never wanted.
fn grace_period(flag: Option<u64>, yaml: Option<u64>) -> u64 {
    flag.or(yaml).unwrap_or(DEFAULT_GRACE_PERIOD_SECS)
}

/// Builds the Pingora server with its three services: the proxy, the registry
/// watcher and the metrics listener. Must be called outside any Tokio runtime
/// (Pingora runs its own).
/// `audit` takes the audit entries of calls run in rollback mode.
pub fn build(
    config: &Config,
    registry: mcp_core::RedisRegistry,
    audit: mcp_core::audit::Sink,
) -> anyhow::Result<Server> {
    let mut conf = match &config.pingora_conf {
        Some(path) => ServerConf::load_from_yaml(path.display().to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("reading {}", path.display()))?,
        None => ServerConf::default(),
    };
    let grace = grace_period(config.grace_period_secs, conf.grace_period_seconds);
    conf.grace_period_seconds = Some(grace);
    if config.grace_period_secs.is_some() || conf.graceful_shutdown_timeout_seconds.is_none() {
        conf.graceful_shutdown_timeout_seconds = Some(grace.max(1));
    }
    if config.threads > 0 {
        conf.threads = config.threads;
    } else if config.pingora_conf.is_none() {
        conf.threads = 1;
    }
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let routes = Arc::new(Routes::default());
    let admin_addr = std::net::ToSocketAddrs::to_socket_addrs(&config.admin_upstream)
        .context("MCP_ADMIN_UPSTREAM")?
        .next()
        .context("MCP_ADMIN_UPSTREAM resolves to no address")?;
    let rollback = if config.supervisor_enabled {
        None
    } else {
        Some(
            mcp_adapter::http::HttpAdapter::new(Default::default())
                .context("building the HTTP client")?,
        )
    };
    // Rollback mode's adapter and audit writer count what the gateway does itself.
    let own = rollback.as_ref().map(|adapter| metrics::Own {
        adapter: adapter.clone(),
        audit: audit.clone(),
    });
    let settings = proxy::Settings {
        admin_addr,
        max_body_bytes: config.max_body_bytes,
        worker_wait: config.worker_wait,
        connect_timeout: config.connect_timeout,
        read_timeout: config.read_timeout,
        allowed_origins: config.allowed_origins.clone(),
        allowed_hosts: guard::HostList::parse(&config.allowed_hosts)
            .map_err(|e| anyhow::anyhow!("MCP_GATEWAY_ALLOWED_HOSTS: {e}"))?,
        rollback,
        audit,
    };
    let gateway = proxy::Gateway::new(
        routes.clone(),
        registry.clone(),
        settings,
        &server.configuration,
    );
    let capped = connections::Capped::new(
        pingora::proxy::http_proxy(&server.configuration, gateway),
        config.max_connections,
        config.first_byte_timeout,
    );
    let mut proxy_service = Service::new("mcp-gateway".to_string(), capped);
    proxy_service.endpoints().add_listener(
        ListenerConfig::tcp(config.listen.to_string()).l4_buffer(L4BufferSettings::new(
            CLIENT_READ_BUFFER,
            CLIENT_WRITE_BUFFER,
        )),
    );

    let watcher = watcher::Watcher {
        registry,
        routes: routes.clone(),
        reconcile_interval: config.reconcile_interval,
    };
    server.add_service(proxy_service);
    server.add_service(background_service("registry watcher", watcher));
    let metrics =
        metrics::MetricsService::bind(config.metrics_listen, routes, own).with_context(|| {
            format!(
                "binding the metrics listener {} (MCP_GATEWAY_METRICS_LISTEN)",
                config.metrics_listen
            )
        })?;
    server.add_service(background_service("metrics", metrics));
    Ok(server)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_grace_period_comes_from_the_flag_then_the_yaml() {
        assert_eq!(super::grace_period(Some(1), Some(30)), 1);
        assert_eq!(super::grace_period(None, Some(30)), 30);
        assert_eq!(super::grace_period(None, None), 5);
        let conf = pingora::server::configuration::ServerConf::load_from_yaml(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../conf/gateway.yaml"
        ))
        .expect("conf/gateway.yaml loads");
        assert_eq!(super::grace_period(None, conf.grace_period_seconds), 5);
        assert_eq!(conf.threads, 1);
    }
}

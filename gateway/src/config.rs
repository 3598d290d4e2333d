//! Owns the configuration of `mcp-gateway`: our flags plus Pingora's own server
//! configuration (threads, grace period) from `conf/gateway.yaml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};
use mcp_core::config::{parse_duration, LogArgs, RedisArgs};

/// Pingora front door of MCP Hub: validates tool arguments, assigns request ids, routes
/// calls to workers and streams SSE back; fronts the admin API.
#[derive(Parser, Debug, Clone)]
#[command(name = "mcp-gateway", version, args_override_self = true)]
pub struct Config {
    /// Address the gateway listens on.
    #[arg(long, env = "MCP_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the Prometheus metrics listener.
    #[arg(
        long,
        env = "MCP_GATEWAY_METRICS_LISTEN",
        default_value = "127.0.0.1:9091"
    )]
    pub metrics_listen: SocketAddr,
    /// The admin API behind `/api/*` and the dashboard (host:port).
    #[arg(long, env = "MCP_ADMIN_UPSTREAM", default_value = "127.0.0.1:8081")]
    pub admin_upstream: String,
    /// Pingora server configuration (YAML: threads, grace_period_seconds, ...).
    #[arg(long, env = "MCP_GATEWAY_PINGORA_CONF")]
    pub pingora_conf: Option<PathBuf>,
    /// `false`: run tool calls inside the gateway on the workers' call engine (mcp-adapter)
    /// (rollback mode, no workers needed).
    #[arg(long, env = "MCP_SUPERVISOR_ENABLED", default_value_t = true, action = ArgAction::Set)]
    pub supervisor_enabled: bool,
    /// Largest request body of a call, in bytes (413 above).
    #[arg(long, env = "MCP_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long a call waits for a worker (restarting, waking from idle) before 503.
    #[arg(long, env = "MCP_GATEWAY_WORKER_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub worker_wait: Duration,
    /// Time to connect to a worker.
    #[arg(long, env = "MCP_GATEWAY_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Longest silence on a worker's response before 504.
    #[arg(long, env = "MCP_GATEWAY_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// Browser origins allowed on every route but `/healthz`: tool calls, MCP, the
    /// admin API and the dashboard (comma-separated; an entry without a port allows
    /// every port; `*` = any). The gateway's own origin (the one its `Host` names)
    /// always passes, and so do requests without an `Origin` header.
    #[arg(
        long,
        env = "MCP_GATEWAY_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = mcp_core::web_guard::DEFAULT_ALLOWED_ORIGINS
    )]
    pub allowed_origins: Vec<String>,
    /// `Host` values the gateway answers to on every route but `/healthz`
    /// (comma-separated `host` or `host:port`; `*` = any): against DNS rebinding, a
    /// name that is not this machine's is refused with 403. Add the names clients use
    /// when the gateway is reached from elsewhere.
    #[arg(
        long,
        env = "MCP_GATEWAY_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = mcp_core::web_guard::DEFAULT_ALLOWED_HOSTS
    )]
    pub allowed_hosts: Vec<String>,
    /// Full reload of the routing table from Redis on this interval, besides events.
    #[arg(long, env = "MCP_GATEWAY_RECONCILE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// Seconds Pingora keeps serving in-flight requests after SIGTERM (unset: the
    /// YAML's `grace_period_seconds`, else 5; never Pingora's own 300).
    #[arg(long, env = "MCP_GATEWAY_GRACE_PERIOD_SECS")]
    pub grace_period_secs: Option<u64>,
    /// Most client connections open at once (0 = no cap). At the cap the oldest
    /// connection that has not sent a byte yet is closed for the newcomer; when all
    /// have sent data the newcomer gets 503 `too_many_connections`. Each connection
    /// holds about 72 KiB of buffers, so 4096 bound them to about 290 MiB.
    #[arg(long, env = "MCP_GATEWAY_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// A new client connection that sends nothing for this long is closed (0 = off:
    /// only Pingora's own 60 s). Applies to a connection's first byte only; idle
    /// keep-alive connections are Pingora's.
    #[arg(long, env = "MCP_GATEWAY_FIRST_BYTE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub first_byte_timeout: Duration,
    /// Pingora worker threads (0 = from the YAML, else 1).
    #[arg(long, env = "MCP_GATEWAY_THREADS", default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// The audit log of calls run in rollback mode (workers write their own).
    #[command(flatten)]
    pub audit: mcp_core::audit::AuditArgs,
}

impl Config {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_body_bytes < 1024 {
            return Err("MCP_MAX_BODY_BYTES must be at least 1024".into());
        }
        if self.listen == self.metrics_listen {
            return Err("MCP_GATEWAY_LISTEN and MCP_GATEWAY_METRICS_LISTEN must differ".into());
        }
        if std::net::ToSocketAddrs::to_socket_addrs(&self.admin_upstream)
            .map(|mut a| a.next().is_none())
            .unwrap_or(true)
        {
            return Err(format!(
                "MCP_ADMIN_UPSTREAM={} is not a host:port",
                self.admin_upstream
            ));
        }
        if let Some(path) = &self.pingora_conf {
            if !path.is_file() {
                return Err(format!(
                    "MCP_GATEWAY_PINGORA_CONF={} is not a readable file",
                    path.display()
                ));
            }
        }
        if let Err(err) = crate::guard::HostList::parse(&self.allowed_hosts) {
            return Err(format!("MCP_GATEWAY_ALLOWED_HOSTS: {err}"));
        }
        if self.connect_timeout.is_zero()
            || self.read_timeout.is_zero()
            || self.reconcile_interval.is_zero()
        {
            return Err("timeouts and intervals must be greater than 0".into());
        }
        Ok(())
    }
}

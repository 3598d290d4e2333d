//! Owns the configuration of `mcp-worker`. The supervisor passes `--server`, `--listen`
//! and its identity; everything else has a default that works on a laptop.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use mcp_core::config::{LogArgs, RedisArgs};

/// One MCP Hub worker: serves one registered server's tools over MCP and the hub call
/// protocol, and performs the real HTTP calls to its REST API.
#[derive(Parser, Debug, Clone)]
#[command(name = "mcp-worker", version)]
pub struct Config {
    /// Id of the registered server this worker serves.
    #[arg(long, env = "MCP_WORKER_SERVER", value_parser = parse_server_id)]
    pub server: String,
    /// Address to listen on (port 0 picks a free one; the bound address is logged).
    #[arg(long, env = "MCP_WORKER_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Replica index of this worker among its server's workers.
    #[arg(long, env = "MCP_WORKER_REPLICA", default_value_t = 0)]
    pub replica: u32,
    /// Id of the supervisor that started this worker (empty when started by hand).
    #[arg(long, env = "MCP_WORKER_SUPERVISOR_ID", default_value = "")]
    pub supervisor_id: String,
    /// Exit when this worker's owner has not renewed its heartbeat in Redis for this
    /// many seconds, so nothing is orphaned forever. The owner is the supervisor the
    /// worker's runtime record names (so a worker taken over follows its new owner),
    /// else `--supervisor-id`. 0 = never; no watch without `--supervisor-id`; a Redis
    /// outage restarts the count.
    #[arg(long, env = "MCP_WORKER_ORPHAN_TIMEOUT_SECS", default_value_t = 60)]
    pub orphan_timeout_secs: u64,
    /// Host its runtime record names it by (the supervisor passes its own
    /// `MCP_WORKER_ADVERTISE_HOST`): a record with the same pid and port but another host
    /// is another machine's worker. Empty = not compared.
    #[arg(long, env = "MCP_WORKER_ADVERTISE_HOST", default_value = "")]
    pub advertise_host: String,
    /// Host names accepted in `Host` by the MCP endpoints (comma-separated); the
    /// gateway rewrites Host, so loopback names are enough behind it.
    #[arg(
        long,
        env = "MCP_WORKER_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1",
        value_parser = parse_host_entry
    )]
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted by the MCP endpoints (comma-separated; empty = any).
    #[arg(long, env = "MCP_WORKER_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Connect timeout of REST calls, in milliseconds.
    #[arg(long, env = "MCP_WORKER_CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    pub connect_timeout_ms: u64,
    /// Largest REST response read into memory, in bytes.
    #[arg(long, env = "MCP_WORKER_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// A hub call (`/call/{tool}`) holds its response head and `tool_call.started` back
    /// this long, in milliseconds, so that a REST API that answers within it costs one
    /// write (and one wake-up at each hop downstream) instead of two; a slower one gets
    /// `tool_call.started` when the hold ends. 0 sends it at once.
    #[arg(long, env = "MCP_WORKER_STARTED_HOLD_MS", default_value_t = 5)]
    pub started_hold_ms: u64,
    /// Full reload from Redis every this many seconds, besides events.
    #[arg(long, env = "MCP_WORKER_RECONCILE_SECS", default_value_t = 30)]
    pub reconcile_secs: u64,
    /// Time in-flight calls get on SIGTERM, in milliseconds.
    #[arg(long, env = "MCP_WORKER_SHUTDOWN_TIMEOUT_MS", default_value_t = 5_000)]
    pub shutdown_timeout_ms: u64,
    /// Runtime threads. 1 (the default) runs everything on one thread: no cross-thread
    /// wake-ups on the call path and the smallest footprint; a server that needs more
    /// than a core gets more replicas, or more threads here.
    #[arg(long, env = "MCP_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub audit: mcp_core::audit::AuditArgs,
}

/// One `MCP_WORKER_ALLOWED_HOSTS` entry, refused at start-up unless it is a host or
/// `host:port` (`mcp_core::web_guard::HostList`'s rule, which the guard applies).
fn parse_host_entry(entry: &str) -> Result<String, String> {
    let entry = entry.trim();
    if !entry.is_empty() {
        mcp_core::web_guard::HostList::parse(&[entry.to_owned()])?;
    }
    Ok(entry.to_owned())
}

fn parse_server_id(id: &str) -> Result<String, String> {
    if mcp_core::validate::is_valid_server_id(id) {
        Ok(id.to_owned())
    } else {
        Err("must match [A-Za-z0-9_-]{1,64}".into())
    }
}

impl Config {
    pub fn reconcile_every(&self) -> Duration {
        Duration::from_secs(self.reconcile_secs.max(1))
    }

    pub fn adapter_settings(&self) -> mcp_adapter::http::Settings {
        mcp_adapter::http::Settings {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
            max_response_bytes: self.max_response_bytes.max(1024),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_allowed_host_entry_is_refused_at_start_up() {
        let parse = |hosts: &str| {
            Config::try_parse_from(["mcp-worker", "--server", "s", "--allowed-hosts", hosts])
        };
        let config = parse("localhost,hub.example:8443,::1").expect("good entries");
        assert_eq!(
            config.allowed_hosts,
            ["localhost", "hub.example:8443", "::1"]
        );
        assert!(parse("localhost,hub.example:99999").is_err());
        assert!(parse("a b").is_err());
    }
}

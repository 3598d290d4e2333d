//! Owns the configuration of `mcp-admin`: flags and environment, validated in full
//! before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mcp_core::config::{LogArgs, RedisArgs};
use mcp_core::registry::ImportMode;

/// Admin REST API of MCP Hub: registry CRUD, restart, import/export, runtime status.
#[derive(Parser, Debug, Clone)]
#[command(name = "mcp-admin", version)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address the API listens on. Without MCP_ADMIN_TOKEN it must be a loopback address.
    #[arg(
        long,
        env = "MCP_ADMIN_LISTEN",
        default_value = "127.0.0.1:8081",
        global = true
    )]
    pub listen: SocketAddr,
    /// Bearer token every /api route requires. Unset: no token, loopback only.
    #[arg(long, env = "MCP_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,
    /// Allow listening on a non-loopback address without a token (not recommended).
    #[arg(
        long,
        env = "MCP_ADMIN_ALLOW_REMOTE_WITHOUT_TOKEN",
        default_value_t = false,
        global = true
    )]
    pub allow_remote_without_token: bool,
    /// `Host` values the API answers to on every route but `/healthz` (comma-separated
    /// `host` or `host:port`; `*` = any): against DNS rebinding, a name that is not this
    /// machine's is refused with 403. Add the names clients (and the gateway, which
    /// passes its client's `Host` on) reach it by.
    #[arg(
        long,
        env = "MCP_ADMIN_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = mcp_core::web_guard::DEFAULT_ALLOWED_HOSTS,
        global = true
    )]
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed on every route but `/healthz` (comma-separated; an entry
    /// without a port allows every port; `*` = any). The API's own origin (the one its
    /// `Host` names, so the dashboard it serves) always passes, and so do requests
    /// without an `Origin` header (curl, the CLI).
    #[arg(
        long,
        env = "MCP_ADMIN_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = mcp_core::web_guard::DEFAULT_ALLOWED_ORIGINS,
        global = true
    )]
    pub allowed_origins: Vec<String>,
    /// Import this document at start-up when the registry holds no server (demo data).
    #[arg(long, env = "MCP_ADMIN_SEED", global = true)]
    pub seed: Option<PathBuf>,
    /// Rewrite the origin of every imported server's baseUrl (for example to the local
    /// mock REST API, http://127.0.0.1:8090), keeping each path.
    #[arg(long, env = "MCP_DEMO_API_URL", global = true)]
    pub seed_origin: Option<url::Url>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MCP_ADMIN_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024, global = true)]
    pub max_body_bytes: usize,
    /// Time allowed for in-flight requests to finish on shutdown, in milliseconds.
    #[arg(
        long,
        env = "MCP_ADMIN_SHUTDOWN_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub shutdown_timeout_ms: u64,
    /// Folder of the dashboard's build output (`frontend/dist`), served at /dashboard.
    #[arg(
        long,
        env = "MCP_DASHBOARD_DIR",
        default_value = "frontend/dist",
        global = true
    )]
    pub dashboard_dir: PathBuf,
    /// The gateway's Prometheus metrics, read by GET /api/metrics.
    #[arg(
        long,
        env = "MCP_ADMIN_GATEWAY_METRICS_URL",
        default_value = "http://127.0.0.1:9091/metrics",
        global = true
    )]
    pub gateway_metrics_url: url::Url,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Serve the admin API (the default).
    Serve,
    /// Import a registry document (JSON) into Redis and exit.
    Import(ImportArgs),
    /// Write the whole registry as one JSON document (secrets included) and exit.
    Export(ExportArgs),
    /// Import one tool per operation of an OpenAPI 3.0/3.1 document (JSON or YAML)
    /// into a server, print what changed (JSON) and exit.
    OpenapiImport(OpenapiImportArgs),
}

#[derive(Args, Debug, Clone)]
pub struct OpenapiImportArgs {
    /// The document; `-` reads standard input.
    pub file: PathBuf,
    /// The server the tools go to (registered first when new).
    #[arg(long)]
    pub server: String,
    /// For a new server (else the document's first server URL).
    #[arg(long)]
    pub base_url: Option<String>,
    /// `merge` keeps the server's other tools; `replace` removes them.
    #[arg(long, value_enum, default_value_t = ImportModeArg::Merge)]
    pub mode: ImportModeArg,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Only operations with one of these tags (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Only these operations (operationId or generated name; comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub operations: Vec<String>,
    /// Put before every tool name.
    #[arg(long, default_value = "")]
    pub prefix: String,
}

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The document; `-` reads standard input.
    pub file: PathBuf,
    /// `merge` upserts; `replace` also deletes what the document lacks.
    #[arg(long, value_enum, default_value_t = ImportModeArg::Merge)]
    pub mode: ImportModeArg,
    /// Rewrite the origin of every server's baseUrl to this one, keeping each path (to
    /// load the demo document against the local mock). Only when given here: an import
    /// is a migration, so `MCP_DEMO_API_URL`, which aims the start-up seed, never
    /// rewrites it.
    #[arg(long)]
    pub rebase_origin: Option<url::Url>,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// Output file; standard output when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportModeArg {
    Merge,
    Replace,
}

impl From<ImportModeArg> for ImportMode {
    fn from(mode: ImportModeArg) -> ImportMode {
        match mode {
            ImportModeArg::Merge => ImportMode::Merge,
            ImportModeArg::Replace => ImportMode::Replace,
        }
    }
}

impl Config {
    /// Checks what clap cannot: one clear line per problem.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(token) = &self.admin_token {
            if token.len() < 16 || token.chars().any(char::is_whitespace) {
                return Err("MCP_ADMIN_TOKEN must be at least 16 characters without spaces".into());
            }
        }
        if self.admin_token.is_none()
            && !self.listen.ip().is_loopback()
            && !self.allow_remote_without_token
        {
            return Err(format!(
                "MCP_ADMIN_LISTEN={} is not a loopback address: set MCP_ADMIN_TOKEN (or MCP_ADMIN_ALLOW_REMOTE_WITHOUT_TOKEN=true)",
                self.listen
            ));
        }
        if let Err(err) = crate::guard::WebGuard::new(&self.allowed_hosts, &self.allowed_origins) {
            return Err(format!("MCP_ADMIN_ALLOWED_HOSTS: {err}"));
        }
        if let Some(seed) = &self.seed {
            if !seed.is_file() {
                return Err(format!(
                    "MCP_ADMIN_SEED={} is not a readable file",
                    seed.display()
                ));
            }
        }
        if let Some(origin) = &self.seed_origin {
            if !matches!(origin.scheme(), "http" | "https") || origin.host_str().is_none() {
                return Err(format!("MCP_DEMO_API_URL={origin} must be an http(s) URL"));
            }
        }
        let metrics = &self.gateway_metrics_url;
        if !matches!(metrics.scheme(), "http" | "https") || metrics.host_str().is_none() {
            return Err(format!(
                "MCP_ADMIN_GATEWAY_METRICS_URL={metrics} must be an http(s) URL"
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err("MCP_ADMIN_MAX_BODY_BYTES must be at least 1024".into());
        }
        Ok(())
    }
}

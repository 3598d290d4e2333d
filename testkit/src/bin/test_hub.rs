//! `mcp-test-hub`: the one Rust hub launcher (`mcp_testkit::hub`) for test suites that
//! are not written in Rust (the dashboard's browser suite, `frontend/e2e/hub.ts`).
//! Starts a whole hub on free ports, prints one JSON line naming its URLs on stdout, and
//! keeps it up until SIGTERM, Ctrl-C or the end of stdin (its parent went away); then
//! stops all of it, workers included. The hub's processes inherit this one's
//! environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mcp_testkit::hub::{Hub, HubOptions};
use tokio::io::AsyncReadExt;

/// Starts a whole MCP Hub for a test suite and prints where it listens.
#[derive(Parser, Debug)]
#[command(name = "mcp-test-hub", version)]
struct Args {
    /// Folder of the hub's binaries (default: this binary's folder).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Each process logs to `{log_dir}/{name}.log`.
    #[arg(long)]
    log_dir: PathBuf,
    /// A flag of the admin API, `--name=value` (repeatable), e.g. `--dashboard-dir=dist`.
    #[arg(long = "admin-flag", value_parser = flag)]
    admin_flags: Vec<(String, String)>,
    /// A flag of the gateway, `--name=value` (repeatable).
    #[arg(long = "gateway-flag", value_parser = flag)]
    gateway_flags: Vec<(String, String)>,
    /// A flag of the supervisor, `--name=value` (repeatable).
    #[arg(long = "supervisor-flag", value_parser = flag)]
    supervisor_flags: Vec<(String, String)>,
}

fn pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

fn flag(text: &str) -> Result<(String, String), String> {
    let (name, value) = pair(text)?;
    if !name.starts_with("--") {
        return Err(format!("expected --name=value, got {text:?}"));
    }
    Ok((name, value))
}

fn into_map(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut options = HubOptions::for_tests();
    if let Some(dir) = args.bin_dir {
        options.bin_dir = dir;
    } else if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
    {
        options.bin_dir = dir;
    }
    options.log_dir = Some(args.log_dir);
    options.admin_flags.extend(into_map(args.admin_flags));
    options.gateway_flags.extend(into_map(args.gateway_flags));
    options
        .supervisor_flags
        .extend(into_map(args.supervisor_flags));
    let hub = match Hub::start(options).await {
        Ok(hub) => hub,
        Err(err) => {
            eprintln!("mcp-test-hub: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "gateway": hub.gateway_url,
            "admin": hub.admin_url,
            "mock": hub.mock_url,
            "metricsUrl": hub.metrics_url,
            "redisUrl": hub.redis.url(),
            "prefix": hub.prefix,
        })
    );
    let stdin_closed = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let terminated = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stdin_closed => {}
        _ = terminated => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(hub);
    ExitCode::SUCCESS
}

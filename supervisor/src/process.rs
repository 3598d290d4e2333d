//! Owns OS-level handling of worker processes: spawning `mcp-worker` in its own
//! process group (so it outlives a supervisor crash), signalling the group, telling
//! whether a pid is alive, and reading `/proc` to recognise our workers (for adoption and
//! ghost clean-up). Nothing here touches Redis.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::Ctx;

/// The identity of an `mcp-worker` process, read from its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerArgs {
    pub server_id: String,
    pub key_prefix: String,
    pub redis_url: String,
    pub supervisor_id: String,
    pub listen: String,
    pub replica: u32,
}

impl WorkerArgs {
    /// The port of `--listen` (`host:port`).
    pub fn port(&self) -> Option<u16> {
        self.listen.rsplit_once(':')?.1.parse().ok()
    }
}

/// Starts a worker for `server_id` replica `replica_idx` on `port`.
pub fn spawn(
    ctx: &Ctx,
    server_id: &str,
    replica_idx: u32,
    port: u16,
) -> std::io::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(&ctx.worker_bin);
    command
        .arg("--server")
        .arg(server_id)
        .arg("--listen")
        .arg(std::net::SocketAddr::new(ctx.bind_host, port).to_string())
        .arg("--replica")
        .arg(replica_idx.to_string())
        .arg("--supervisor-id")
        .arg(&ctx.supervisor_id)
        .arg("--redis-url")
        .arg(&ctx.redis_url)
        .arg("--key-prefix")
        .arg(&ctx.key_prefix)
        .arg("--orphan-timeout-secs")
        .arg(ctx.orphan_timeout.as_secs().max(1).to_string())
        .arg("--advertise-host")
        .arg(&ctx.advertise_host)
        .env("MCP_ENV_FILE", "/nonexistent/.env")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(false);
    command.spawn()
}

/// Sends `signal` to the worker's process group (the worker leads its own group).
pub fn signal_group(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(pid as i32);
    if killpg(pid, signal).is_err() {
        let _ = kill(pid, signal);
    }
}

/// True when the process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    if kill(Pid::from_raw(pid as i32), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => true,
    }
}

/// The worker identity of `pid`, when it is an `mcp-worker`.
pub fn worker_args(pid: u32) -> Option<WorkerArgs> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let program = Path::new(argv.first()?).file_name()?.to_str()?;
    if program != "mcp-worker" {
        return None;
    }
    let flag = |name: &str| -> Option<String> {
        let mut iter = argv.iter();
        while let Some(arg) = iter.next() {
            if arg == name {
                return iter.next().cloned();
            }
            if let Some(value) = arg.strip_prefix(&format!("{name}=")) {
                return Some(value.to_owned());
            }
        }
        None
    };
    Some(WorkerArgs {
        server_id: flag("--server")?,
        key_prefix: flag("--key-prefix")
            .unwrap_or_else(|| mcp_core::keys::Keys::DEFAULT_PREFIX.to_owned()),
        redis_url: flag("--redis-url").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
        supervisor_id: flag("--supervisor-id").unwrap_or_default(),
        listen: flag("--listen").unwrap_or_default(),
        replica: flag("--replica").and_then(|r| r.parse().ok()).unwrap_or(0),
    })
}

/// Every live `mcp-worker` process on this host that serves our registry.
pub fn scan_workers(ctx: &Ctx) -> Vec<(u32, WorkerArgs)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, WorkerArgs)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter_map(|pid| Some((pid, worker_args(pid)?)))
        .filter(|(pid, args)| {
            args.key_prefix == ctx.key_prefix && args.redis_url == ctx.redis_url && alive(*pid)
        })
        .collect();
    found.sort_by_key(|(pid, _)| *pid);
    found
}

/// True when a TCP listener can bind `host:port` right now (no foreign process holds it).
pub fn port_is_free(host: std::net::IpAddr, port: u16) -> bool {
    std::net::TcpListener::bind((host, port)).is_ok()
}

/// Resident memory of `pid` in bytes (`VmRSS` of `/proc/{pid}/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

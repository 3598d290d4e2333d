//! Owns what the chaos suite does to processes: signals by pid, the live workers of a
//! hub (found in `/proc` by the hub's unique key prefix on their command line), and
//! starting a killed part again exactly as it ran (its command line, environment and
//! folder read from `/proc` before the kill), or with flags over its own, and the
//! settings it ran with. Nothing here decides what to inject.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use mcp_testkit::ChildProcess;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub fn signal(pid: u32, signal: Signal) -> anyhow::Result<()> {
    kill(Pid::from_raw(pid as i32), signal).with_context(|| format!("kill -{signal} {pid}"))
}

pub fn alive(pid: u32) -> bool {
    // A zombie counts as gone: its /proc stat says state `Z`.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn cmdline(pid: u32) -> Option<Vec<OsString>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect(),
    )
}

/// Pids of the live `mcp-worker` processes whose command line carries `prefix`.
pub fn live_workers(prefix: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            cmdline(pid).is_some_and(|args| {
                args.first()
                    .is_some_and(|a| a.to_string_lossy().ends_with("mcp-worker"))
                    && args.iter().any(|a| a == prefix)
            }) && alive(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// How a process was started, read from `/proc` while it runs.
#[derive(Clone, Debug)]
pub struct Launch {
    pub name: String,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    log: PathBuf,
}

impl Launch {
    pub fn of(name: &str, pid: u32, log_dir: &Path) -> anyhow::Result<Launch> {
        let args = cmdline(pid).with_context(|| format!("reading the command line of {pid}"))?;
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .with_context(|| format!("reading the environment of {pid}"))?;
        let env = environ
            .split(|&b| b == 0)
            .filter_map(|pair| {
                let at = pair.iter().position(|&b| b == b'=')?;
                Some((
                    OsString::from_vec(pair[..at].to_vec()),
                    OsString::from_vec(pair[at + 1..].to_vec()),
                ))
            })
            .collect();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|_| ".".into());
        Ok(Launch {
            name: name.to_owned(),
            args,
            env,
            cwd,
            log: log_dir.join(format!("{name}.log")),
        })
    }

    /// The value of `--flag` on its command line (the last one: later flags override),
    /// else of the environment variable `env`.
    pub fn setting(&self, flag: &str, env: &str) -> Option<String> {
        let from_flag = self
            .args
            .windows(2)
            .rev()
            .find(|pair| pair[0] == flag)
            .map(|pair| pair[1].to_string_lossy().into_owned());
        from_flag.or_else(|| {
            self.env
                .iter()
                .find(|(k, _)| k == env)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        })
    }

    /// Starts it again, logging to the same file; killed on drop.
    pub fn spawn(&self) -> anyhow::Result<ChildProcess> {
        self.spawn_with(&[])
    }

    /// [`Launch::spawn`] with `extra` arguments after its own.
    pub fn spawn_with(&self, extra: &[&str]) -> anyhow::Result<ChildProcess> {
        let (program, rest) = self.args.split_first().context("empty command line")?;
        let mut command = Command::new(program);
        command
            .args(rest)
            .args(extra)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd);
        ChildProcess::spawn_logged(&self.name, command, &self.log)
            .with_context(|| format!("starting {} again", self.name))
    }
}

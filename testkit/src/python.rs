//! Owns running the official Python MCP SDK clients (`worker/tests/python/*.py`) from
//! tests: the venvs that `scripts/ensure-deps.sh --with-sdks` makes, and waiting for a
//! client's JSON summary line. A missing venv fails the test with that instruction; it
//! never skips.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::ChildProcess;

/// The python of one SDK venv (`venv-mcp2`, `venv-mcp1`).
pub fn python(venv: &str) -> PathBuf {
    let cache = std::env::var("MCP_HUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/mcp-hub")
        });
    let python = cache.join(venv).join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-deps.sh --with-sdks (make test does)",
        python.display()
    );
    python
}

/// Starts one client script of `worker/tests/python/`.
pub fn run_client(venv: &str, script: &str, args: &[&str]) -> ChildProcess {
    let path = format!(
        "{}/../worker/tests/python/{script}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut command = Command::new(python(venv));
    command.arg(path).args(args);
    ChildProcess::spawn(script, command)
}

/// Waits for the client's summary (a JSON line with `tools`); fails at once with the
/// client's stderr if it exits without one.
pub fn summary(client: &ChildProcess, name: &str) -> Value {
    crate::wait_until(
        &format!("{name}'s summary"),
        Duration::from_secs(60),
        || {
            let read = || {
                client
                    .stdout_lines()
                    .last()
                    .and_then(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|v| v.get("tools").is_some())
            };
            let summary = read();
            if summary.is_none() && client.has_exited() {
                // It may have exited before its last line was read: read to the end.
                client.drain(Duration::from_secs(2));
                if let Some(summary) = read() {
                    return Some(summary);
                }
                panic!(
                    "{name} exited without a summary:\n{}",
                    client.stderr_lines().join("\n")
                );
            }
            summary
        },
    )
}

/// Waits until the client printed `{"ready": true}` (it then waits for list_changed).
pub fn wait_ready(client: &ChildProcess, name: &str) {
    crate::wait_until(
        &format!("{name} to be ready"),
        Duration::from_secs(60),
        || {
            if client.has_exited() {
                panic!("{name} exited: {}", client.stderr_lines().join("\n"));
            }
            client
                .stdout_lines()
                .iter()
                .any(|l| l.contains("\"ready\""))
                .then_some(())
        },
    );
}

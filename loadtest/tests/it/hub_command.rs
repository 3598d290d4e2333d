//! `mcp-loadtest hub`: the suite's hub kept up by hand (a target for `run`, `perf` or
//! callgrind) must answer calls through the URL it prints, print the pids of what it
//! started, and leave none of them running after SIGTERM.

use std::time::Duration;

use mcp_testkit::{bin_path, wait_until, ChildProcess};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The pids the hub printed, SIGKILLed on drop: its processes run in process groups of
/// their own, which killing the command's group would not reach if the test failed.
struct Printed(Vec<u32>);

impl Drop for Printed {
    fn drop(&mut self) {
        for pid in &self.0 {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Running: the process exists and is not a zombie waiting to be reaped.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_hub_command_answers_calls_and_sigterm_stops_everything_it_started() {
    let logs = tempfile::tempdir().expect("tempdir");
    let mut command = std::process::Command::new(bin_path("mcp-loadtest"));
    command
        .args(["hub", "--servers", "2", "--log-dir"])
        .arg(logs.path())
        .arg("--pingora-conf")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/gateway.yaml"))
        .args(["--env", "MCP_LOG_LEVEL=warn"]);
    let mut hub = ChildProcess::spawn("mcp-loadtest hub", command);
    let lines = wait_until("the hub to say it is up", Duration::from_secs(120), || {
        assert!(!hub.has_exited(), "mcp-loadtest hub exited early");
        let lines = hub.stdout_lines();
        lines.iter().any(|l| l.starts_with("# up")).then_some(lines)
    });
    let printed = Printed(
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("pid "))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect(),
    );
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("pid ")?.split_whitespace().next())
        .collect();
    for name in [
        "mcp-gateway",
        "mcp-supervisor",
        "mcp-admin",
        "mcp-mock-api",
        "redis-server",
    ] {
        assert!(names.contains(&name), "no pid line for {name}: {lines:?}");
    }
    assert_eq!(
        names.iter().filter(|n| **n == "mcp-worker").count(),
        2,
        "one worker per server: {lines:?}"
    );
    assert!(
        lines.iter().any(
            |l| l.starts_with("REDIS_URL=redis://127.0.0.1:") && l.contains(" MCP_KEY_PREFIX=")
        ),
        "the environment of `run --direct`: {lines:?}"
    );
    assert!(printed.0.iter().all(|pid| running(*pid)), "{lines:?}");

    let gateway = lines
        .iter()
        .find_map(|l| l.strip_prefix("gateway "))
        .expect("a gateway line");
    let answer = reqwest::Client::new()
        .post(format!("{gateway}mcp/bench_01/get_fruit_by_id"))
        .json(&serde_json::json!({"args": {"id": 2}}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.expect("the stream");
    assert!(body.contains("event: tool_call.completed"), "{body}");

    hub.signal(Signal::SIGTERM);
    let status = hub.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    wait_until(
        "every process the hub started to stop",
        Duration::from_secs(15),
        || printed.0.iter().all(|pid| !running(*pid)).then_some(()),
    );
}

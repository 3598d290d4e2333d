//! Start-up configuration: a bad value is one clear line and exit code 2, before any
//! port is bound.

use std::net::TcpListener;
use std::process::Command;

/// Runs `mcp-admin` with `args` (and `env`) to completion, told to listen on a port this
/// test holds: had it tried to bind before checking its configuration, it would fail on
/// that port (exit 1, a "binding" message) instead.
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = held.local_addr().expect("addr").to_string();
    Command::new(env!("CARGO_BIN_EXE_mcp-admin"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MCP_ENV_FILE", "/nonexistent/.env")
        .envs(env.iter().copied())
        .args(["--listen", &listen])
        .args(args)
        .output()
        .expect("ran")
}

#[test]
fn a_malformed_redis_url_is_one_line_and_exit_2_before_any_port_is_bound() {
    for (args, env) in [
        (vec!["--redis-url", "not-a-url"], vec![]),
        (
            vec![],
            vec![("REDIS_URL", "http://:hunter2@127.0.0.1:6379")],
        ),
        (
            vec!["--redis-url", "redis://127.0.0.1:6379/db-zero"],
            vec![],
        ),
    ] {
        let output = run(&args, &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
        assert!(
            stderr.starts_with("mcp-admin: invalid configuration: REDIS_URL"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "the password is echoed: {stderr}"
        );
        // It stopped before setting up logs, so before binding and `admin.listening`.
        assert!(
            stdout.is_empty(),
            "nothing logged, nothing listened: {stdout}"
        );
    }
}

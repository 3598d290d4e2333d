//! schemathesis (pinned, installed by `scripts/ensure-schemathesis.sh` when missing)
//! against the admin API's own OpenAPI document: the real `mcp-admin` with
//! MCP_ADMIN_TOKEN set, the demo registry and a real Redis; every default check and every
//! phase (examples, coverage, fuzzing, stateful) with the settings of
//! `scripts/schemathesis.toml`, a fixed seed and a few examples per operation, so a
//! failure is reproduced with `scripts/schemathesis-admin.sh --seed N`. It passes only
//! when schemathesis exits 0: no failed check, no server error, no request error.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{Admin, Options};

const TOKEN: &str = "schemathesis-token-0123456789abcdef";
/// Fixed: the same cases every run (and the same command reproduces a failure).
const SEED: u64 = 24;
/// Examples per operation and phase (the coverage phase adds its own cases).
const MAX_EXAMPLES: u32 = 10;
/// The whole run, the install excluded.
const DEADLINE: Duration = Duration::from_secs(300);

/// The schemathesis binary, installed on first use (PyPI, pinned version).
fn schemathesis() -> PathBuf {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/ensure-schemathesis.sh"
    );
    let output = std::process::Command::new("bash")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/ensure-schemathesis.sh");
    assert!(
        output.status.success(),
        "scripts/ensure-schemathesis.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The seed of schemathesis's summary (`Seed: 24`).
fn seed(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix("Seed:"))
        .and_then(|rest| rest.trim().parse().ok())
}

/// The cases of schemathesis's summary: the line after `Test cases:` is
/// `  N generated, N passed`.
fn cases(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    lines.find(|line| line.trim() == "Test cases:")?;
    lines.next()?.split_whitespace().next()?.parse().ok()
}

#[tokio::test]
async fn schemathesis_finds_no_failure_in_the_admin_api() {
    let bin = schemathesis();
    let admin = Admin::start(Options {
        token: Some(TOKEN),
        ..Options::default()
    });
    // schemathesis keeps its cache (.schemathesis/, .hypothesis/) where it runs: a
    // fresh folder, so no earlier run's examples are replayed.
    let work = tempfile::tempdir().expect("tempdir");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/schemathesis.toml");
    let started = Instant::now();
    let run = tokio::process::Command::new(&bin)
        .args(["--no-color", "--config-file", config, "run"])
        .arg(format!("{}/api/openapi.json", admin.base))
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--seed", &SEED.to_string()])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .current_dir(work.path())
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {DEADLINE:?}"))
        .expect("schemathesis runs");
    let elapsed = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let cases = cases(&text);
    println!(
        "schemathesis: seed {SEED}, {} cases, {:.1} s, exit {:?}",
        cases.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        elapsed.as_secs_f64(),
        output.status.code()
    );
    assert!(output.status.success(), "schemathesis failed:\n{text}");
    assert_eq!(seed(&text), Some(SEED), "{text}");
    assert!(cases.is_some_and(|n| n > 0), "no case count in:\n{text}");
}

/// What the fuzzing leaves out (scripts/schemathesis.toml: the live streams never end)
/// answers what the document says: 200 with `text/event-stream`.
#[tokio::test]
async fn the_live_streams_left_out_of_the_run_answer_the_documented_content_type() {
    let admin = Admin::start(Options {
        token: Some(TOKEN),
        ..Options::default()
    });
    let (status, doc) = admin
        .call(reqwest::Method::GET, "/api/openapi.json", None)
        .await;
    assert_eq!(status, 200);
    for (path, query) in [
        ("/api/events", ""),
        ("/api/audit/stream", ""),
        ("/api/audit", "?follow=true"),
    ] {
        let documented = &doc["paths"][path]["get"]["responses"]["200"]["content"];
        assert!(
            documented["text/event-stream"].is_object(),
            "{path}: {documented}"
        );
        let response = admin
            .send(reqwest::Method::GET, &format!("{path}{query}"), None)
            .await;
        assert_eq!(response.status().as_u16(), 200, "{path}{query}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{path}{query}: {content_type}"
        );
    }
}

//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! `scripts/ensure-mcp-tools.sh`) and the MCP Inspector CLI against a hub this test
//! starts, through the gateway. Every server scenario the suite has is either offered
//! (and must pass: on both demo servers, and on `conformance_api`, a server whose tools
//! are the suite's fixtures, bound to the mock REST API) or listed as not offered with
//! the MCP feature it needs; a scenario the suite gains fails the test until it is
//! sorted into one list or the other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{Options, Stack};

/// Scenarios of a tools-only server that need no fixture tool: run on every server.
const OFFERED_ANYWHERE: [&str; 5] = [
    "server-initialize",
    "ping",
    "tools-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

/// Scenarios that call the suite's fixture tools (`test_*`): run on `conformance_api`.
const OFFERED_WITH_FIXTURES: [&str; 4] = [
    "tools-call-simple-text",
    "tools-call-error",
    "json-schema-2020-12",
    "server-sse-polling",
];

/// Scenarios of MCP features the hub does not offer (a registered server is a set of
/// REST-backed tools whose results are text and JSON), with the feature each needs.
const NOT_OFFERED: [(&str, &str); 23] = [
    ("logging-set-level", "logging"),
    ("completion-complete", "completions"),
    ("tools-call-image", "image content"),
    ("tools-call-audio", "audio content"),
    ("tools-call-embedded-resource", "embedded resources"),
    ("tools-call-mixed-content", "image and resource content"),
    ("tools-call-with-logging", "logging"),
    ("tools-call-with-progress", "progress notifications"),
    ("tools-call-sampling", "sampling"),
    ("tools-call-elicitation", "elicitation"),
    ("elicitation-sep1034-defaults", "elicitation"),
    ("elicitation-sep1330-enums", "elicitation"),
    ("resources-list", "resources"),
    ("resources-read-text", "resources"),
    ("resources-read-binary", "resources"),
    ("resources-templates-read", "resources"),
    ("resources-subscribe", "resources"),
    ("resources-unsubscribe", "resources"),
    ("prompts-list", "prompts"),
    ("prompts-get-simple", "prompts"),
    ("prompts-get-with-args", "prompts"),
    ("prompts-get-embedded-resource", "prompts"),
    ("prompts-get-with-image", "prompts"),
];

/// The folder of the pinned tools (installed from the npm registry on first use, once
/// per test binary: the tests here run at once).
fn tools_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(install_tools).clone()
}

fn install_tools() -> PathBuf {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/ensure-mcp-tools.sh"
    );
    let output = std::process::Command::new("bash")
        .arg(script)
        .output()
        .expect("running scripts/ensure-mcp-tools.sh");
    assert!(
        output.status.success(),
        "scripts/ensure-mcp-tools.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Runs `node <tool> args...` with a deadline; (success, stdout + stderr).
async fn node(dir: &Path, tool: &str, args: &[&str]) -> (bool, String) {
    let child = tokio::process::Command::new(dir.join("node"))
        .arg(dir.join(tool))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .unwrap_or_else(|_| panic!("{tool} {args:?} within 120 s"))
        .expect("node runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The server scenarios the installed suite lists.
async fn listed_scenarios(dir: &Path) -> Vec<String> {
    let (ok, text) = node(dir, "conformance", &["list"]).await;
    assert!(ok, "conformance list: {text}");
    let server = text
        .split("Server scenarios")
        .nth(1)
        .and_then(|rest| rest.split("Client scenarios").next())
        .expect("a server section");
    server
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// One scenario against `url`: the suite's checks, from its output folder.
async fn run_scenario(dir: &Path, url: &str, scenario: &str) -> Vec<Value> {
    let out = tempdir(scenario);
    let (_, text) = node(
        dir,
        "conformance",
        &[
            "server",
            "--url",
            url,
            "--scenario",
            scenario,
            "-o",
            out.to_str().expect("utf8"),
        ],
    )
    .await;
    let checks = std::fs::read_dir(&out)
        .ok()
        .and_then(|mut entries| entries.next())
        .and_then(|entry| entry.ok())
        .and_then(|entry| std::fs::read_to_string(entry.path().join("checks.json")).ok())
        .and_then(|json| serde_json::from_str::<Vec<Value>>(&json).ok())
        .unwrap_or_else(|| panic!("{scenario} on {url} left no checks: {text}"));
    let _ = std::fs::remove_dir_all(&out);
    checks
}

fn tempdir(scenario: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-hub-conformance-{}-{scenario}-{}",
        std::process::id(),
        mcp_testkit::free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `conformance_api`: the suite's fixture tools on the mock REST API.
async fn register_fixtures(stack: &Stack) {
    // The mock REST API's origin, from a demo server the hub seeded against it.
    let demo = stack
        .registry
        .get_server("fruits_api")
        .await
        .expect("get")
        .expect("the demo server");
    let base = reqwest::Url::parse(&demo.base_url).expect("a URL");
    let mock = base.origin().ascii_serialization();
    let server = serde_json::from_value(json!({"baseUrl": mock})).expect("server");
    stack
        .registry
        .upsert_server("conformance_api", server)
        .await
        .expect("server");
    let tools = [
        json!({"name": "test_simple_text", "description": "Returns simple text", "method": "GET", "pathTemplate": "/test/text"}),
        json!({"name": "test_error_handling", "description": "Always fails (the REST API answers 500)", "method": "GET", "pathTemplate": "/test/status/500"}),
        json!({"name": "test_reconnection", "description": "Answers after 100 ms", "method": "GET", "pathTemplate": "/test/delay/100"}),
        json!({"name": "json_schema_2020_12_tool", "description": "Tool with JSON Schema 2020-12 features", "method": "POST", "pathTemplate": "/test/echo",
        "paramMapping": {"body": {"name": "name", "address": "address"}},
        "inputSchema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": false
        }}),
    ];
    for tool in tools {
        stack
            .registry
            .upsert_tool(
                "conformance_api",
                serde_json::from_value(tool).expect("tool"),
            )
            .await
            .expect("tool");
    }
    stack.wait_routable("conformance_api", 1).await;
}

#[tokio::test]
async fn the_official_conformance_suite_passes_where_it_applies() {
    let dir = tools_dir();
    let mut sorted: Vec<&str> = OFFERED_ANYWHERE
        .iter()
        .chain(&OFFERED_WITH_FIXTURES)
        .copied()
        .chain(NOT_OFFERED.iter().map(|(s, _)| *s))
        .collect();
    sorted.sort_unstable();
    let mut listed = listed_scenarios(&dir).await;
    listed.sort_unstable();
    assert_eq!(
        listed, sorted,
        "every server scenario of the suite is offered or listed as not offered"
    );

    let stack = Stack::start(Options::default()).await;
    register_fixtures(&stack).await;
    let mut runs = Vec::new();
    for server_id in ["fruits_api", "fakestore_api", "conformance_api"] {
        let url = format!("{}/mcp-servers/{server_id}/mcp", stack.base);
        let fixtures = if server_id == "conformance_api" {
            &OFFERED_WITH_FIXTURES[..]
        } else {
            &[]
        };
        for scenario in OFFERED_ANYWHERE.iter().chain(fixtures) {
            let checks = run_scenario(&dir, &url, scenario).await;
            let count = |status: &str| checks.iter().filter(|c| c["status"] == status).count();
            let (passed, failed) = (count("SUCCESS"), count("FAILURE"));
            println!(
                "conformance {server_id} {scenario}: {passed} passed, {failed} failed, {} warnings",
                count("WARNING")
            );
            runs.push((server_id, *scenario, passed, failed, checks));
        }
    }
    let failures: Vec<String> = runs
        .iter()
        .filter(|(_, _, passed, failed, _)| *failed > 0 || *passed == 0)
        .map(|(server_id, scenario, _, _, checks)| {
            format!("{server_id} {scenario}: {}", Value::from(checks.clone()))
        })
        .collect();
    let total: usize = runs.iter().map(|r| r.2).sum();
    println!(
        "conformance: {total} checks passed over {} runs; not offered: {}",
        runs.len(),
        NOT_OFFERED
            .iter()
            .map(|(s, f)| format!("{s} ({f})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        failures.is_empty(),
        "failed scenarios:\n{}",
        failures.join("\n")
    );
}

/// The Inspector CLI's answer as JSON (it prints the result, pretty-printed).
async fn inspector(dir: &Path, args: &[&str]) -> Value {
    let (ok, text) = node(dir, "inspector-cli", args).await;
    assert!(ok, "inspector-cli {args:?}: {text}");
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("no JSON from inspector-cli {args:?}: {text}"));
    serde_json::from_str(&text[start..])
        .unwrap_or_else(|e| panic!("inspector-cli {args:?}: {e}: {text}"))
}

#[tokio::test]
async fn the_inspector_cli_lists_and_calls_tools_over_both_transports() {
    let dir = tools_dir();
    let stack = Stack::start(Options::default()).await;
    for (transport, path) in [("http", "mcp"), ("sse", "sse")] {
        let url = format!("{}/mcp-servers/fruits_api/{path}", stack.base);
        let listed = inspector(
            &dir,
            &[&url, "--transport", transport, "--method", "tools/list"],
        )
        .await;
        let mut names: Vec<&str> = listed["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{transport}: {listed}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "create_fruit",
                "delete_fruit",
                "get_fruit_by_id",
                "get_fruits",
                "update_fruit"
            ],
            "{transport}: {listed}"
        );
        let called = inspector(
            &dir,
            &[
                &url,
                "--transport",
                transport,
                "--method",
                "tools/call",
                "--tool-name",
                "get_fruit_by_id",
                "--tool-arg",
                "id=2",
            ],
        )
        .await;
        assert_ne!(called["isError"], true, "{transport}: {called}");
        let text = called["content"][0]["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("\"id\":2") || text.contains("\"id\": 2"),
            "{transport}: {called}"
        );
        // Invalid arguments come back as the session's version says, never as a hang.
        let refused = inspector(
            &dir,
            &[
                &url,
                "--transport",
                transport,
                "--method",
                "tools/call",
                "--tool-name",
                "get_fruit_by_id",
                "--tool-arg",
                "id=two",
            ],
        )
        .await;
        assert_eq!(refused["isError"], true, "{transport}: {refused}");
    }
}

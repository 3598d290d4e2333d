//! Admin API tests over real HTTP against the real `mcp-admin` binary and a real
//! `redis-server`.

mod config;
mod dashboard;
mod errors;
mod guard;
mod logs;
mod registry_io;
mod routes;
mod schemathesis;
mod token;

use std::process::Command;
use std::time::Duration;

use mcp_testkit::{ChildProcess, RedisServer};
use reqwest::{Method, Response};
use serde_json::Value;

pub const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/demo-registry.json");

/// One `mcp-admin` process on a free port, its Redis and a client.
pub struct Admin {
    pub redis: RedisServer,
    pub process: ChildProcess,
    pub base: String,
    pub prefix: String,
    pub token: Option<String>,
    pub client: reqwest::Client,
}

pub struct Options {
    pub token: Option<&'static str>,
    pub seed: bool,
    pub max_body_bytes: Option<usize>,
    /// MCP_DASHBOARD_DIR (default: an empty folder, so the console is "not built").
    pub dashboard_dir: Option<std::path::PathBuf>,
    /// MCP_ADMIN_GATEWAY_METRICS_URL.
    pub metrics_url: Option<String>,
    /// More environment variables for the process.
    pub env: Vec<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            token: None,
            seed: true,
            max_body_bytes: None,
            dashboard_dir: None,
            metrics_url: None,
            env: Vec::new(),
        }
    }
}

impl Admin {
    pub fn start(options: Options) -> Admin {
        let redis = RedisServer::start();
        let prefix = mcp_testkit::unique_prefix();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-admin"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MCP_ENV_FILE", "/nonexistent/.env")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--redis-url",
                &redis.url(),
                "--key-prefix",
                &prefix,
            ]);
        if let Some(token) = options.token {
            command.env("MCP_ADMIN_TOKEN", token);
        }
        if options.seed {
            command.args(["--seed", DEMO, "--seed-origin", "http://127.0.0.1:8090"]);
        }
        let dashboard_dir = options
            .dashboard_dir
            .unwrap_or_else(|| std::env::temp_dir().join("mcp-admin-no-dashboard"));
        command.arg("--dashboard-dir").arg(dashboard_dir);
        // Nothing listens on port 9 (discard): an unreachable gateway by default.
        command.args([
            "--gateway-metrics-url",
            options
                .metrics_url
                .as_deref()
                .unwrap_or("http://127.0.0.1:9/metrics"),
        ]);
        command.envs(options.env.iter().copied());
        if let Some(max) = options.max_body_bytes {
            command.args(["--max-body-bytes", &max.to_string()]);
        }
        let process = ChildProcess::spawn("mcp-admin", command);
        let addr = process.wait_for_listen_addr("admin.listening", Duration::from_secs(20));
        Admin {
            redis,
            process,
            base: format!("http://{addr}"),
            prefix,
            token: options.token.map(str::to_owned),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }

    pub fn registry(&self) -> mcp_core::RedisRegistry {
        mcp_core::RedisRegistry::new(
            &self.redis.url(),
            mcp_core::keys::Keys::new(&self.prefix),
            Default::default(),
        )
        .expect("registry")
    }

    /// Waits for a JSON log line that `matches` and returns it. Lines are written in
    /// batches, so a request's lines can reach stdout after its response.
    pub fn wait_for_log(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        mcp_testkit::wait_until(
            &format!("mcp-admin to log {what}"),
            Duration::from_secs(10),
            || self.process.json_lines().into_iter().find(|l| matches(l)),
        )
    }

    /// Sends a request (with the token when one is configured) and returns the response.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request sent")
    }

    /// Sends a request and returns status and JSON body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let response = self.send(method, path, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path} answered non-JSON: {text:?}"));
        (status, json)
    }
}

/// Asserts the error contract: status, stable code, message and request id.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, expected_code: &str) {
    assert_eq!(status, expected_status, "body: {body}");
    assert_eq!(body["error"]["code"], expected_code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}

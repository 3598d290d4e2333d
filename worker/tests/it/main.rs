//! Worker tests against a real `redis-server`, the real `mcp-worker` binary and the mock
//! REST API over real HTTP.

mod adapter;
mod protocol;
mod python_sdk;
mod resilience;
mod transports;

use std::process::Command;
use std::time::{Duration, Instant};

use mcp_core::keys::Keys;
use mcp_core::RedisRegistry;
use mcp_testkit::{ChildProcess, MockApi, RedisServer};
use serde_json::{json, Value};

pub struct WorkerHarness {
    pub redis: RedisServer,
    pub registry: RedisRegistry,
    pub mock: MockApi,
    pub prefix: String,
    pub process: ChildProcess,
    pub base: String,
    pub client: reqwest::Client,
}

pub const SERVER: &str = "svc";

impl WorkerHarness {
    /// A worker for server `svc` whose base URL is the mock API (+ `server_extra`).
    pub async fn start(server_extra: Value, tools: Vec<Value>) -> WorkerHarness {
        WorkerHarness::start_with(server_extra, tools, &[]).await
    }

    /// `start` with extra command-line flags for the worker.
    pub async fn start_with(
        server_extra: Value,
        tools: Vec<Value>,
        worker_args: &[&str],
    ) -> WorkerHarness {
        let redis = RedisServer::start();
        let prefix = mcp_testkit::unique_prefix();
        let registry = RedisRegistry::new(&redis.url(), Keys::new(&prefix), Default::default())
            .expect("registry");
        let mock = MockApi::start();
        // `basePath` (test-only) is appended to the mock's URL.
        let base_path = server_extra
            .get("basePath")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut server = json!({"baseUrl": format!("{}{base_path}", mock.url())});
        if let (Some(obj), Some(extra)) = (server.as_object_mut(), server_extra.as_object()) {
            obj.extend(extra.clone().into_iter().filter(|(k, _)| k != "basePath"));
        }
        registry
            .upsert_server(SERVER, serde_json::from_value(server).expect("server"))
            .await
            .expect("register");
        for tool in tools {
            registry
                .upsert_tool(SERVER, serde_json::from_value(tool).expect("tool"))
                .await
                .expect("tool");
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-worker"));
        command.env("MCP_ENV_FILE", "/nonexistent/.env").args([
            "--server",
            SERVER,
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            &redis.url(),
            "--key-prefix",
            &prefix,
            "--max-response-bytes",
            "2000000",
        ]);
        command.args(worker_args);
        let process = ChildProcess::spawn("mcp-worker", command);
        let addr = process.wait_for_listen_addr("worker.listening", Duration::from_secs(20));
        WorkerHarness {
            redis,
            registry,
            mock,
            prefix,
            process,
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// Calls a tool through the hub call protocol; returns status and parsed events.
    pub async fn call(&self, tool: &str, args: Value) -> (u16, Vec<SseEvent>) {
        let response = self
            .client
            .post(format!("{}/call/{tool}", self.base))
            .json(&json!({"args": args}))
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, parse_sse(&text))
    }

    /// Calls a tool and returns the single `output.delta` output of a completed call.
    pub async fn output(&self, tool: &str, args: Value) -> Value {
        let (status, events) = self.call(tool, args).await;
        assert_eq!(status, 200, "{events:?}");
        assert_eq!(
            events.last().map(|e| e.event.as_str()),
            Some("tool_call.completed"),
            "{events:?}"
        );
        let deltas: Vec<&SseEvent> = events
            .iter()
            .filter(|e| e.event == "output.delta")
            .collect();
        assert_eq!(deltas.len(), 1, "{events:?}");
        deltas[0].data["output"].clone()
    }

    /// Calls a tool expecting `tool_call.error`; returns the error object.
    pub async fn error(&self, tool: &str, args: Value) -> Value {
        let started = Instant::now();
        let (status, events) = self.call(tool, args).await;
        assert_eq!(status, 200);
        let last = events.last().expect("events");
        assert_eq!(last.event, "tool_call.error", "{events:?}");
        assert!(started.elapsed() < Duration::from_secs(25));
        last.data["error"].clone()
    }
}

pub use mcp_adapter::sse::{parse_json_events as parse_sse, JsonEvent as SseEvent};

/// A tool bound to the mock's echo endpoint.
pub fn echo_tool(name: &str, method: &str, template: &str, mapping: Value, schema: Value) -> Value {
    json!({"name": name, "method": method, "pathTemplate": format!("/test/echo{template}"), "paramMapping": mapping, "inputSchema": schema})
}

//! Full-stack tests: a real `redis-server`, the real `mcp-admin`, `mcp-supervisor`,
//! `mcp-worker` and `mcp-gateway` binaries, and the mock REST API, all on 127.0.0.1.

mod audit;
mod calls;
mod conformance;
mod connections;
mod errors;
mod failover;
mod legacy_sse;
mod mcp;
mod openapi;
mod resilience;
mod rollback;
mod secrets;
mod sentinel;
mod streaming;
mod web_security;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use mcp_core::keys::Keys;
use mcp_core::runtime::WorkerStatus;
use mcp_core::RedisRegistry;
use mcp_testkit::hub::{Hub, HubOptions};
use mcp_testkit::{ChildProcess, RedisServer};
use serde_json::{json, Value};

/// A whole hub (testkit's launcher) with the demo servers and `test_api`, and what the
/// tests drive it with.
pub struct Stack {
    pub hub: Hub,
    pub registry: RedisRegistry,
    /// The gateway's base URL (`http://127.0.0.1:{port}`).
    pub base: String,
    /// The gateway's metrics URL (`.../metrics`).
    pub metrics: String,
    pub client: reqwest::Client,
}

impl std::ops::Deref for Stack {
    type Target = Hub;
    fn deref(&self) -> &Hub {
        &self.hub
    }
}

impl std::ops::DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut Hub {
        &mut self.hub
    }
}

pub struct Options {
    pub workers: bool,
    /// Flag and value pairs (`["--read-timeout", "500ms"]`), over the hub's.
    pub gateway_args: Vec<String>,
    pub supervisor_args: Vec<String>,
    /// Environment of the supervisor, which its workers inherit.
    pub supervisor_env: Vec<(String, String)>,
    /// Every part's `REDIS_URL` instead of the hub's own `redis-server`'s.
    pub redis_url: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: true,
            gateway_args: Vec::new(),
            supervisor_args: Vec::new(),
            supervisor_env: Vec::new(),
            redis_url: None,
        }
    }
}

/// `["--flag", "value", ...]` as flags over a launcher's.
fn flag_pairs(args: &[String]) -> BTreeMap<String, String> {
    args.chunks(2)
        .map(|pair| match pair {
            [flag, value] if flag.starts_with("--") => (flag.clone(), value.clone()),
            _ => panic!("flags come in --flag value pairs: {args:?}"),
        })
        .collect()
}

fn base_command(binary: &str, redis: &RedisServer, prefix: &str) -> Command {
    let mut command = Command::new(mcp_testkit::bin_path(binary));
    command.env("MCP_ENV_FILE", "/nonexistent/.env").args([
        "--redis-url",
        &redis.url(),
        "--key-prefix",
        prefix,
    ]);
    command
}

impl Stack {
    /// The mock's FakeStore products (a call that reached the REST API would add one).
    pub async fn product_count(&self) -> usize {
        let products = self
            .get_json_at(&format!("{}/products", self.mock_url))
            .await;
        products.as_array().map_or(0, Vec::len)
    }

    /// The whole hub with the demo servers (pointed at the mock) plus a `test_api`
    /// server bound to the mock's test endpoints.
    pub async fn start(options: Options) -> Stack {
        let mut hub_options = HubOptions::for_tests();
        hub_options.workers = options.workers;
        hub_options.seed =
            Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/demo-registry.json").into());
        hub_options
            .gateway_flags
            .extend(flag_pairs(&options.gateway_args));
        hub_options
            .supervisor_flags
            .extend(flag_pairs(&options.supervisor_args));
        hub_options.supervisor_env = options.supervisor_env;
        hub_options.redis_url = options.redis_url;
        let hub = Hub::start(hub_options).await.expect("the hub");
        let registry =
            RedisRegistry::new(&hub.redis_url, Keys::new(&hub.prefix), Default::default())
                .expect("registry");
        mcp_testkit::wait_until_async("the demo seed", Duration::from_secs(20), || async {
            (registry.stats().await.ok()?.tools == 10).then_some(())
        })
        .await;
        register_test_api(&registry, &hub.mock_url).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let stack = Stack {
            base: hub.gateway_url.clone(),
            metrics: hub.metrics_url.clone(),
            hub,
            registry,
            client,
        };
        // The hub launcher waited for the gateway's table (`/healthz` "ok"); the gateway
        // learns `test_api` from an event: wait for it, so no test meets a 404 for a
        // server being registered.
        mcp_testkit::wait_until_async(
            "the gateway to see test_api",
            Duration::from_secs(30),
            || async {
                let test_api = stack
                    .client
                    .get(format!("{}/mcp/test_api", stack.base))
                    .send()
                    .await
                    .ok()?;
                test_api.status().is_success().then_some(())
            },
        )
        .await;
        if options.workers {
            for server in ["fruits_api", "fakestore_api", "test_api"] {
                stack.wait_routable(server, 1).await;
            }
        }
        stack
    }

    /// Waits until the gateway's table shows `n` running workers of `server_id`.
    pub async fn wait_routable(&self, server_id: &str, n: usize) {
        mcp_testkit::wait_until_async(
            &format!("{n} running worker(s) of {server_id}"),
            Duration::from_secs(30),
            || async {
                let runtime = self.registry.get_runtime(server_id).await.ok()?;
                (runtime
                    .workers
                    .iter()
                    .filter(|w| w.status == WorkerStatus::Running)
                    .count()
                    >= n)
                    .then_some(())
            },
        )
        .await;
        // The gateway learns it from the same event; give it a call to prove it.
        self.wait_gateway_workers(server_id, n).await;
    }

    /// Waits until the gateway's table holds `n` routable workers of `server_id`.
    pub async fn wait_gateway_workers(&self, server_id: &str, n: usize) {
        let info: Value = mcp_testkit::wait_until_async(
            "the gateway to see the workers",
            Duration::from_secs(10),
            || async {
                let info = self
                    .try_get_json_at(&format!("{}/mcp/{server_id}", self.base))
                    .await?;
                (info["workers"].as_u64()? as usize >= n).then_some(info)
            },
        )
        .await;
        assert_eq!(info["id"], server_id);
    }

    /// Sets a server's replicas and waits until the gateway routes to all of them.
    pub async fn set_replicas(&self, server_id: &str, replicas: u32) {
        let mut config = self
            .registry
            .get_server(server_id)
            .await
            .expect("get")
            .expect("exists");
        config.replicas = Some(replicas);
        self.registry
            .upsert_server(server_id, config)
            .await
            .expect("replicas");
        self.wait_routable(server_id, replicas as usize).await;
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.post_with(&self.client, path, body).await
    }

    async fn post_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("sent")
    }

    /// POSTs and returns (status, parsed SSE events or the JSON body as one event).
    pub async fn call(&self, path: &str, body: Value) -> (u16, Vec<SseEvent>, Option<Value>) {
        self.call_with(&self.client, path, body).await
    }

    /// `call` through a given client (a fresh one opens a new connection).
    pub async fn call_with(
        &self,
        client: &reqwest::Client,
        path: &str,
        body: Value,
    ) -> (u16, Vec<SseEvent>, Option<Value>) {
        let response = self.post_with(client, path, body).await;
        let status = response.status().as_u16();
        let is_sse = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let (text, _) = body_text(response).await;
        if is_sse {
            (status, parse_sse(&text), None)
        } else {
            (status, Vec::new(), serde_json::from_str(&text).ok())
        }
    }

    /// GET `path` on the gateway, parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get_json_at(&format!("{}{path}", self.base)).await
    }

    /// [`Stack::get_json_at`] for a wait loop: `None` while it cannot be sent or read.
    pub async fn try_get_json_at(&self, url: &str) -> Option<Value> {
        self.client.get(url).send().await.ok()?.json().await.ok()
    }

    /// GET of a whole `url` (the mock API's, the admin API's), parsed as JSON.
    pub async fn get_json_at(&self, url: &str) -> Value {
        self.client
            .get(url)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json")
    }

    /// The Prometheus text of the gateway's metrics listener.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(&self.metrics)
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text")
    }

    /// The metrics text once `ready` holds for it (but for forwarded calls, metrics are
    /// counted in the logging phase, after the response went out, so a test reading them
    /// right after its request must wait). Panics with the last text after 5 s.
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = self.metrics_text().await;
            if ready(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "metrics never matched: {text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn gateway_pid(&self) -> u32 {
        self.gateway.pid()
    }

    /// Another gateway on the same Redis (gateways keep no state of their own).
    pub async fn second_gateway(&self) -> (ChildProcess, String) {
        let (process, base, _) = self
            .hub
            .start_gateway(&BTreeMap::new())
            .await
            .expect("a second gateway");
        (process, base)
    }
}

pub use mcp_adapter::sse::{parse_json_events as parse_sse, JsonEvent as SseEvent};

/// Asserts a completed call: started, deltas, completed, request id in every event.
pub fn assert_completed(events: &[SseEvent]) -> Vec<Value> {
    assert_eq!(
        events.first().map(|e| e.event.as_str()),
        Some("tool_call.started"),
        "{events:?}"
    );
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("tool_call.completed"),
        "{events:?}"
    );
    let request_id = events[0].data["request_id"].clone();
    assert!(request_id.as_str().is_some_and(|id| !id.is_empty()));
    assert!(
        events.iter().all(|e| e.data["request_id"] == request_id),
        "request id in every event: {events:?}"
    );
    events
        .iter()
        .filter(|e| e.event == "output.delta")
        .map(|e| e.data["output"].clone())
        .collect()
}

/// `test_api`: tools bound to the mock's test endpoints.
async fn register_test_api(registry: &RedisRegistry, mock_url: &str) {
    let server =
        serde_json::from_value(json!({"baseUrl": mock_url, "timeoutMs": 20000})).expect("server");
    registry
        .upsert_server("test_api", server)
        .await
        .expect("server");
    let tools = [
        json!({"name": "chunks", "method": "GET", "pathTemplate": "/test/stream/chunks", "paramMapping": {"query": {"n": "n", "interval_ms": "interval"}}}),
        json!({"name": "large", "method": "GET", "pathTemplate": "/test/stream/chunks", "paramMapping": {"query": {"n": "n", "interval_ms": "interval", "size": "size"}}}),
        json!({"name": "echo_blob", "method": "POST", "pathTemplate": "/test/echo", "paramMapping": {"body": {"blob": "blob"}},
            "inputSchema": {"type": "object", "properties": {"blob": {"type": "string"}}, "required": ["blob"]}}),
        json!({"name": "delay", "method": "GET", "pathTemplate": "/test/delay/{ms}", "paramMapping": {"path": {"ms": "ms"}},
            "inputSchema": {"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]}}),
        json!({"name": "disabled", "method": "GET", "pathTemplate": "/test/text", "active": false}),
    ];
    for tool in tools {
        registry
            .upsert_tool("test_api", serde_json::from_value(tool).expect("tool"))
            .await
            .expect("tool");
    }
}

/// The body as far as it arrived, and whether it ended cleanly: a stream the gateway
/// cut after a worker failure ends with an error, after its `tool_call.error` event.
pub async fn body_text(mut response: reqwest::Response) -> (String, bool) {
    let mut bytes = Vec::new();
    let clean = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&bytes).into_owned(), clean)
}

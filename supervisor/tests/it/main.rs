//! Supervisor tests with real processes: a real `redis-server`, the real
//! `mcp-supervisor` and `mcp-worker` binaries, and a tiny REST API on 127.0.0.1.

mod adoption;
mod lifecycle;
mod limits;
mod redis_outage;
mod several;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use mcp_core::keys::Keys;
use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use mcp_core::RedisRegistry;
use mcp_testkit::{ChildProcess, RedisServer};
use serde_json::json;

/// A Redis, a registry prefix, a REST stub and the supervisors started on them.
pub struct Hub {
    pub redis: RedisServer,
    pub prefix: String,
    pub registry: RedisRegistry,
    pub rest_url: String,
    pub base_port: u16,
}

impl Hub {
    pub async fn start() -> Hub {
        Hub::start_on(RedisServer::start()).await
    }

    /// [`Hub::start`] on a Redis the test started itself (with persistence, say).
    pub async fn start_on(redis: RedisServer) -> Hub {
        let prefix = mcp_testkit::unique_prefix();
        let registry = RedisRegistry::new(&redis.url(), Keys::new(&prefix), Default::default())
            .expect("registry");
        let base_port = mcp_testkit::port_block();
        Hub {
            redis,
            prefix,
            registry,
            rest_url: rest_stub(),
            base_port,
        }
    }

    /// Starts a supervisor with short intervals; `extra` adds or overrides flags.
    pub fn supervisor(&self, id: &str, extra: &[&str]) -> ChildProcess {
        let mut command = Command::new(mcp_testkit::bin_path("mcp-supervisor"));
        command.env("MCP_ENV_FILE", "/nonexistent/.env").args([
            "--supervisor-id",
            id,
            "--redis-url",
            &self.redis.url(),
            "--key-prefix",
            &self.prefix,
            "--base-port",
            &self.base_port.to_string(),
            "--port-count",
            &mcp_testkit::PORT_BLOCK.to_string(),
            "--health-interval",
            "200ms",
            "--reconcile-interval",
            "300ms",
            "--lease-ttl",
            "2s",
            "--stop-timeout",
            "2s",
            "--backoff-min",
            "100ms",
            "--backoff-max",
            "2s",
            "--orphan-timeout",
            "30s",
            "--worker-bin",
            mcp_testkit::bin_path("mcp-worker")
                .to_str()
                .expect("utf8 path"),
        ]);
        command.args(extra);
        let process = ChildProcess::spawn(&format!("mcp-supervisor {id}"), command);
        process.wait_for_event("supervisor.started", Duration::from_secs(20));
        process
    }

    /// Registers a server (pointed at the REST stub) with one tool, `ping`.
    pub async fn register(&self, server_id: &str, extra: serde_json::Value) {
        let mut config = json!({"baseUrl": self.rest_url});
        if let (Some(obj), Some(more)) = (config.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        let config = serde_json::from_value(config).expect("server");
        self.registry
            .upsert_server(server_id, config)
            .await
            .expect("register");
        let tool = serde_json::from_value(
            json!({"name": "ping", "method": "GET", "pathTemplate": "/ping"}),
        )
        .expect("tool");
        self.registry
            .upsert_tool(server_id, tool)
            .await
            .expect("tool");
    }

    pub async fn records(&self, server_id: &str) -> Vec<WorkerRecord> {
        self.registry
            .get_runtime(server_id)
            .await
            .map(|r| r.workers)
            .unwrap_or_default()
    }

    /// Waits until replica 0 of `server_id` satisfies `check`.
    pub async fn wait_record(
        &self,
        what: &str,
        server_id: &str,
        timeout: Duration,
        check: impl Fn(&WorkerRecord) -> bool,
    ) -> WorkerRecord {
        mcp_testkit::wait_until_async(what, timeout, || async {
            self.records(server_id)
                .await
                .into_iter()
                .find(|r| r.replica_idx == 0 && check(r))
        })
        .await
    }

    pub async fn wait_running(&self, server_id: &str, timeout: Duration) -> WorkerRecord {
        self.wait_record(&format!("{server_id} running"), server_id, timeout, |r| {
            r.status == WorkerStatus::Running
        })
        .await
    }

    /// Live worker processes of this test's registry, by server.
    pub fn worker_pids(&self) -> BTreeMap<String, Vec<u32>> {
        let mut found: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let argv: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_ours = argv.first().is_some_and(|a| a.ends_with("mcp-worker"))
                && argv.iter().any(|a| a == &self.prefix);
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            });
            if is_ours && !zombie {
                if let Some(i) = argv.iter().position(|a| a == "--server") {
                    found.entry(argv[i + 1].clone()).or_default().push(pid);
                }
            }
        }
        found
    }
}

impl Drop for Hub {
    /// Workers run in their own process groups (they outlive supervisors by design):
    /// kill every one of this test's workers.
    fn drop(&mut self) {
        mcp_testkit::kill_processes_with_arg(&self.prefix);
    }
}

/// Calls `ping` on the worker of `record` through the hub call protocol and returns
/// the SSE text; asserts it completed.
pub async fn call_worker(record: &WorkerRecord) -> String {
    let url = format!("http://{}/call/ping", record.endpoint().expect("endpoint"));
    let text = reqwest::Client::new()
        .post(url)
        .json(&json!({"args": {}}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("call sent")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains("event: tool_call.completed"),
        "the call did not complete: {text}"
    );
    assert!(text.contains("pong"), "{text}");
    text
}

impl Hub {
    /// How many worker processes of this test's registry are alive.
    pub fn worker_count(&self) -> usize {
        self.worker_pids().values().map(Vec::len).sum()
    }
}

/// True while `pid` is a live process (a stopped one too), not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Checks `holds` every 20 ms until `window` has passed, failing at the first `false`:
/// for what must stay true over time (a process that must not die), not for waiting.
pub async fn holds_for(what: &str, window: Duration, mut holds: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < window {
        assert!(
            holds(),
            "{what}: stopped holding after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(holds(), "{what}: stopped holding at the end of {window:?}");
}

/// Log lines of `process` with `"event": event` about `server_id`.
pub fn events_of(process: &ChildProcess, event: &str, server_id: &str) -> Vec<serde_json::Value> {
    process
        .json_lines()
        .into_iter()
        .filter(|l| l["event"] == event && l["server"] == server_id)
        .collect()
}

pub fn elapsed_ms(started: Instant) -> u128 {
    started.elapsed().as_millis()
}

/// A REST API that answers every request with `{"pong": true}`.
fn rest_stub() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let mut request = Vec::new();
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = b"{\"pong\": true}";
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", body.len());
                    if stream
                        .write_all(head.as_bytes())
                        .and_then(|()| stream.write_all(body))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

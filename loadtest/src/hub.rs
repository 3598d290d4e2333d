//! Owns a whole hub started for measuring: a real `redis-server` on a free port, the
//! mock REST API, `mcp-admin`, `mcp-supervisor` (and its workers) and `mcp-gateway`,
//! from one folder of built binaries, on free ports, under a unique key prefix, with
//! every process logging to its own file. Dropping the `Hub` kills all of it, workers
//! included. Used by the benchmark suite and by the load smoke test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use mcp_core::keys::Keys;
use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use mcp_core::RedisRegistry;
use mcp_testkit::{ChildProcess, RedisServer};
use nix::sys::signal::Signal;
use reqwest::Url;
use serde_json::{json, Value};
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Folder holding `mcp-admin`, `mcp-supervisor`, `mcp-worker`, `mcp-gateway`,
    /// `mcp-mock-api`.
    pub bin_dir: PathBuf,
    /// Each process logs to `{log_dir}/{name}.log`.
    pub log_dir: PathBuf,
    /// Extra environment of every hub process (log level and sampling).
    pub env: Vec<(String, String)>,
    pub worker_max: usize,
    /// Pingora threads of the gateway; 0 leaves them to `pingora_conf` (else 1).
    pub gateway_threads: usize,
    /// Pingora YAML for the gateway (`conf/gateway.yaml`), when given.
    pub pingora_conf: Option<PathBuf>,
}

impl HubOptions {
    pub fn new(bin_dir: PathBuf, log_dir: PathBuf) -> HubOptions {
        HubOptions {
            bin_dir,
            log_dir,
            env: Vec::new(),
            worker_max: 64,
            gateway_threads: 0,
            pingora_conf: None,
        }
    }
}

pub struct Hub {
    pub registry: RedisRegistry,
    pub prefix: String,
    pub mock_url: Url,
    pub admin_url: Url,
    pub gateway_url: Url,
    pub metrics_url: Url,
    pub client: reqwest::Client,
    // Declared last: dropped after the URLs, in this order (gateway first).
    pub gateway: ChildProcess,
    pub supervisor: ChildProcess,
    pub admin: ChildProcess,
    pub mock: ChildProcess,
    pub redis: RedisServer,
}

impl Hub {
    pub async fn start(options: &HubOptions) -> anyhow::Result<Hub> {
        std::fs::create_dir_all(&options.log_dir)
            .with_context(|| format!("creating {}", options.log_dir.display()))?;
        for binary in [
            "mcp-admin",
            "mcp-supervisor",
            "mcp-worker",
            "mcp-gateway",
            "mcp-mock-api",
        ] {
            let path = options.bin_dir.join(binary);
            if !path.exists() {
                bail!("{} not found: build the workspace first", path.display());
            }
        }
        let client = crate::driver::client()?;
        let redis = RedisServer::start();
        let prefix = mcp_testkit::unique_prefix();
        let registry = RedisRegistry::new(&redis.url(), Keys::new(&prefix), Default::default())
            .context("registry client")?;
        let spawn = |name: &str, args: &[String], extra_env: &[(&str, String)]| {
            let mut command = Command::new(options.bin_dir.join(name));
            command.env("MCP_ENV_FILE", "/nonexistent/.env");
            command.envs(options.env.iter().map(|(k, v)| (k, v)));
            command.envs(extra_env.iter().map(|(k, v)| (k, v)));
            command.args(args);
            let log = options.log_dir.join(format!("{name}.log"));
            ChildProcess::spawn_logged(name, command, &log)
                .with_context(|| format!("starting {name}"))
        };
        let common = |args: &[&str]| -> Vec<String> {
            let mut all: Vec<String> = vec![
                "--redis-url".into(),
                redis.url(),
                "--key-prefix".into(),
                prefix.clone(),
            ];
            all.extend(args.iter().map(|a| a.to_string()));
            all
        };

        let mock_addr = format!("127.0.0.1:{}", mcp_testkit::free_port());
        let mock = spawn("mcp-mock-api", &["--listen".into(), mock_addr.clone()], &[])?;
        let mock_url = Url::parse(&format!("http://{mock_addr}/"))?;
        wait_healthy(&client, &mock_url, "the mock REST API").await?;

        let admin_addr = format!("127.0.0.1:{}", mcp_testkit::free_port());
        let admin = spawn("mcp-admin", &common(&["--listen", &admin_addr]), &[])?;
        let admin_url = Url::parse(&format!("http://{admin_addr}/"))?;
        wait_healthy(&client, &admin_url, "the admin API").await?;

        // Below Linux's ephemeral range (32768 and up), where free ports and the load
        // generator's own connections come from.
        let base_port =
            20_000 + (std::process::id() % 12) * 1000 + u32::from(mcp_testkit::free_port() % 50);
        let worker_bin = options.bin_dir.join("mcp-worker");
        let supervisor = spawn(
            "mcp-supervisor",
            &common(&[
                "--supervisor-id",
                "sup-bench",
                "--base-port",
                &base_port.to_string(),
                "--port-count",
                &(options.worker_max * 3 + 100).to_string(),
                "--worker-max",
                &options.worker_max.to_string(),
                "--health-interval",
                "1s",
                "--reconcile-interval",
                "1s",
                "--lease-ttl",
                "5s",
                "--backoff-min",
                "20ms",
                "--stop-timeout",
                "2s",
                "--stop-workers-on-exit",
                "true",
                "--worker-bin",
                &worker_bin.to_string_lossy(),
            ]),
            &[],
        )?;

        let gateway_addr = format!("127.0.0.1:{}", mcp_testkit::free_port());
        let metrics_addr = format!("127.0.0.1:{}", mcp_testkit::free_port());
        let mut gateway_args = common(&[
            "--listen",
            &gateway_addr,
            "--metrics-listen",
            &metrics_addr,
            "--admin-upstream",
            &admin_addr,
            "--threads",
            &options.gateway_threads.to_string(),
            "--grace-period-secs",
            "1",
        ]);
        if let Some(conf) = &options.pingora_conf {
            gateway_args.extend(["--pingora-conf".into(), conf.to_string_lossy().into_owned()]);
        }
        let gateway = spawn("mcp-gateway", &gateway_args, &[])?;
        let gateway_url = Url::parse(&format!("http://{gateway_addr}/"))?;
        wait_healthy(&client, &gateway_url, "the gateway").await?;

        Ok(Hub {
            registry,
            prefix,
            mock_url,
            admin_url,
            gateway_url,
            metrics_url: Url::parse(&format!("http://{metrics_addr}/metrics"))?,
            client,
            gateway,
            supervisor,
            admin,
            mock,
            redis,
        })
    }

    /// An import document of `ids`, each a copy of the demo Fruits API pointed at the
    /// mock, with `replicas` workers.
    pub fn bench_document(&self, ids: &[String], replicas: u32) -> Value {
        let base_url = format!("{}api", self.mock_url);
        let servers: serde_json::Map<String, Value> = ids
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    json!({"name": id, "baseUrl": base_url, "replicas": replicas, "timeoutMs": 10000}),
                )
            })
            .collect();
        let tools: serde_json::Map<String, Value> =
            ids.iter().map(|id| (id.clone(), bench_tools())).collect();
        json!({"servers": servers, "tools": tools})
    }

    /// The admin API request that registers `document`'s servers (`POST /api/import`,
    /// merge), ready to send.
    pub fn register_request(&self, document: &Value) -> anyhow::Result<reqwest::RequestBuilder> {
        let url = self.admin_url.join("api/import?mode=merge")?;
        Ok(self.client.post(url).json(document))
    }

    /// Registers servers through the admin API.
    pub async fn register(&self, document: &Value) -> anyhow::Result<()> {
        let response = self
            .register_request(document)?
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .context("POST /api/import")?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("POST /api/import: {status}: {body}");
        }
        Ok(())
    }

    /// Waits until every server of `ids` has `replicas` running workers and the gateway
    /// routes to them.
    pub async fn wait_running(
        &self,
        ids: &[String],
        replicas: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for id in ids {
            loop {
                let running = self.running_workers(id).await.len();
                let routed = running >= replicas && self.gateway_workers(id).await >= replicas;
                if routed {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("{id}: {running} of {replicas} workers running after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// The running workers of a server, from its runtime records.
    pub async fn running_workers(&self, server_id: &str) -> Vec<WorkerRecord> {
        running_workers(&self.registry, server_id).await
    }

    /// Workers the gateway's table holds for a server (`GET /mcp/{id}`).
    async fn gateway_workers(&self, server_id: &str) -> usize {
        let Ok(url) = self.gateway_url.join(&format!("mcp/{server_id}")) else {
            return 0;
        };
        let info: Option<Value> = async {
            let response = self.client.get(url).timeout(Duration::from_secs(2)).send();
            response.await.ok()?.json().await.ok()
        }
        .await;
        info.and_then(|i| i["workers"].as_u64()).unwrap_or(0) as usize
    }

    /// The base URL of each server's first running worker, in the order of `ids`.
    pub async fn worker_urls(&self, ids: &[String]) -> anyhow::Result<Vec<Url>> {
        worker_urls(&self.registry, ids).await
    }

    /// Pids of every worker process, by server.
    pub async fn worker_pids(&self) -> BTreeMap<String, Vec<u32>> {
        let mut pids = BTreeMap::new();
        for runtime in self.registry.list_runtime().await.unwrap_or_default() {
            let list: Vec<u32> = runtime.workers.iter().filter_map(|w| w.pid).collect();
            if !list.is_empty() {
                pids.insert(runtime.server_id, list);
            }
        }
        pids
    }

    /// Pids of the hub's own processes (not workers), by name.
    pub fn process_pids(&self) -> Vec<(&'static str, u32)> {
        vec![
            ("mcp-gateway", self.gateway.pid()),
            ("mcp-supervisor", self.supervisor.pid()),
            ("mcp-admin", self.admin.pid()),
            ("mcp-mock-api", self.mock.pid()),
            ("redis-server", self.redis_pid()),
        ]
    }

    /// What a person driving this hub by hand needs: its URLs, the environment that
    /// `mcp-loadtest run --direct` reads, and every pid (one line each).
    pub async fn describe(&self) -> String {
        let mut out = format!(
            "gateway {}\nmetrics {}\nadmin {}\nmock {}\nREDIS_URL={} MCP_KEY_PREFIX={}\n",
            self.gateway_url,
            self.metrics_url,
            self.admin_url,
            self.mock_url,
            self.redis.url(),
            self.prefix
        );
        for (name, pid) in self.process_pids() {
            out.push_str(&format!("pid {name} {pid}\n"));
        }
        for (server, pids) in self.worker_pids().await {
            for pid in pids {
                out.push_str(&format!("pid mcp-worker {pid} {server}\n"));
            }
        }
        out
    }

    fn redis_pid(&self) -> u32 {
        self.redis.pid().unwrap_or(0)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The supervisor stops its workers on SIGTERM (--stop-workers-on-exit); anything
        // left (a worker it could not reach) carries the unique prefix on its command line.
        self.supervisor.signal(Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.supervisor.has_exited() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        mcp_testkit::kill_processes_with_arg(&self.prefix);
    }
}

/// The bench servers' tools: the demo Fruits API's reads.
fn bench_tools() -> Value {
    json!({
        "get_fruit_by_id": {
            "name": "get_fruit_by_id",
            "description": "Get one fruit by its id.",
            "method": "GET",
            "pathTemplate": "/fruits/{id}",
            "paramMapping": {"path": {"id": "id"}},
            "inputSchema": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}},
                "required": ["id"], "additionalProperties": false}
        },
        "get_fruits": {
            "name": "get_fruits",
            "description": "List fruits, optionally filtered by family.",
            "method": "GET",
            "pathTemplate": "/fruits",
            "paramMapping": {"query": {"family": "family"}},
            "inputSchema": {"type": "object", "properties": {"family": {"type": "string"}},
                "additionalProperties": false}
        }
    })
}

/// Waits for `GET {base}healthz` to answer 200.
async fn wait_healthy(client: &reqwest::Client, base: &Url, what: &str) -> anyhow::Result<()> {
    let url = base.join("healthz")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = client
            .get(url.clone())
            .timeout(Duration::from_secs(2))
            .send();
        if let Ok(response) = probe.await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer {url} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The running workers of a server, from its runtime records in `registry`.
pub async fn running_workers(registry: &RedisRegistry, server_id: &str) -> Vec<WorkerRecord> {
    registry
        .get_runtime(server_id)
        .await
        .map(|r| {
            r.workers
                .into_iter()
                .filter(|w| w.status == WorkerStatus::Running)
                .collect()
        })
        .unwrap_or_default()
}

/// The base URL of each server's first running worker, in the order of `ids` (what
/// `mcp-loadtest run --direct` and the suite's gateway-cost run send to).
pub async fn worker_urls(registry: &RedisRegistry, ids: &[String]) -> anyhow::Result<Vec<Url>> {
    let mut urls = Vec::with_capacity(ids.len());
    for id in ids {
        let workers = running_workers(registry, id).await;
        let worker = workers
            .first()
            .with_context(|| format!("{id} has no running worker"))?;
        let host = worker.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let port = worker
            .port
            .with_context(|| format!("{id}: worker without a port"))?;
        urls.push(Url::parse(&format!("http://{host}:{port}/"))?);
    }
    Ok(urls)
}

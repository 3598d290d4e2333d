//! Owns a whole hub started for measuring, on testkit's launcher: a real
//! `redis-server`, the mock REST API, `mcp-admin`, `mcp-supervisor` (and its workers)
//! and `mcp-gateway`, from one folder of built binaries, with every process logging to
//! its own file; plus the benchmark servers' registration and worker lookups. Dropping
//! the `Hub` kills all of it, workers included. Used by the benchmark suite, `mcp-loadtest
//! hub` and the load smoke test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use mcp_core::keys::Keys;
use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use mcp_core::RedisRegistry;
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

/// A hub for measuring: testkit's launcher ([`mcp_testkit::hub`]) with each process
/// logging to its file, plus what the benchmarks drive it with.
pub struct Hub {
    pub registry: RedisRegistry,
    pub prefix: String,
    pub mock_url: Url,
    pub admin_url: Url,
    pub gateway_url: Url,
    pub metrics_url: Url,
    pub client: reqwest::Client,
    /// The processes; dropping it stops the hub, workers included.
    pub parts: mcp_testkit::hub::Hub,
}

impl Hub {
    pub async fn start(options: &HubOptions) -> anyhow::Result<Hub> {
        let mut launch = mcp_testkit::hub::HubOptions::for_bench(
            options.bin_dir.clone(),
            options.log_dir.clone(),
            options.worker_max,
        );
        launch.env = options.env.clone();
        launch
            .gateway_flags
            .insert("--threads".into(), options.gateway_threads.to_string());
        if let Some(conf) = &options.pingora_conf {
            launch
                .gateway_flags
                .insert("--pingora-conf".into(), conf.to_string_lossy().into_owned());
        }
        let parts = mcp_testkit::hub::Hub::start(launch).await?;
        let registry = RedisRegistry::new(
            &parts.redis.url(),
            Keys::new(&parts.prefix),
            Default::default(),
        )
        .context("registry client")?;
        // Base URLs end with `/`, so that `join` keeps their path.
        let url = |base: &str| Url::parse(&format!("{base}/"));
        Ok(Hub {
            registry,
            prefix: parts.prefix.clone(),
            mock_url: url(&parts.mock_url)?,
            admin_url: url(&parts.admin_url)?,
            gateway_url: url(&parts.gateway_url)?,
            metrics_url: Url::parse(&parts.metrics_url)?,
            client: crate::driver::client()?,
            parts,
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
        self.parts.process_pids()
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
            self.parts.redis.url(),
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

//! Owns starting a whole hub: a real `redis-server` on a free port, the mock REST API
//! (`mcp-mock-api`), `mcp-admin`, `mcp-supervisor` (and its workers) and `mcp-gateway`,
//! on free ports under a unique key prefix. The one launcher of the end-to-end tests
//! (gateway), the benchmark hubs and `mcp-loadtest hub` (loadtest), and, through
//! `mcp-test-hub`, the dashboard's browser suite. (The supervisor
//! tests start no hub: only a Redis and the supervisors under test.) Dropping a [`Hub`]
//! stops all of it, workers included (they carry the prefix on their command line).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;

use crate::{ChildProcess, RedisServer};

/// What to start and how.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Folder holding `mcp-admin`, `mcp-supervisor`, `mcp-worker`, `mcp-gateway` and
    /// `mcp-mock-api`.
    pub bin_dir: PathBuf,
    /// `Some`: each process logs to `{log_dir}/{name}.log` (long, busy runs); `None`:
    /// output is kept in memory for assertions (tests).
    pub log_dir: Option<PathBuf>,
    /// Extra environment of every hub process.
    pub env: Vec<(String, String)>,
    /// Environment of the supervisor only (its workers inherit it).
    pub supervisor_env: Vec<(String, String)>,
    /// `false`: no supervisor, and the gateway runs calls itself (rollback mode).
    pub workers: bool,
    /// A registry document `mcp-admin` seeds at start, its base URLs pointed at the mock.
    pub seed: Option<PathBuf>,
    /// Flags of the supervisor (`--name` -> value), over those every hub sets
    /// (`--redis-url`, `--key-prefix`, `--worker-bin`, `--base-port`, `--port-count`).
    pub supervisor_flags: BTreeMap<String, String>,
    /// Flags of the gateway, over those every hub sets (listeners, admin upstream).
    pub gateway_flags: BTreeMap<String, String>,
    /// Flags of the admin API, over those every hub sets (listener, seed, the gateway's
    /// metrics URL), such as `--dashboard-dir`.
    pub admin_flags: BTreeMap<String, String>,
    /// Worker ports reserved for the supervisor (see [`crate::port_range`]).
    pub worker_ports: u16,
    /// `Some`: every part's `REDIS_URL` (a `redis+sentinel://` group the test runs, say)
    /// instead of the hub's own `redis-server`, which still starts but stays unused.
    pub redis_url: Option<String>,
}

fn flags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl HubOptions {
    /// For tests: the binaries next to the test executable, output in memory, short
    /// intervals so that restarts and reconciles happen within a test's patience.
    pub fn for_tests() -> HubOptions {
        let bin_dir = crate::bin_path("mcp-gateway")
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        HubOptions {
            bin_dir,
            log_dir: None,
            env: Vec::new(),
            supervisor_env: Vec::new(),
            workers: true,
            seed: None,
            supervisor_flags: flags(&[
                ("--supervisor-id", "sup-test"),
                ("--health-interval", "300ms"),
                ("--reconcile-interval", "500ms"),
                ("--lease-ttl", "3s"),
                ("--backoff-min", "50ms"),
                ("--stop-timeout", "2s"),
                ("--stop-workers-on-exit", "true"),
            ]),
            gateway_flags: flags(&[
                ("--threads", "2"),
                ("--grace-period-secs", "1"),
                ("--worker-wait", "10s"),
            ]),
            admin_flags: BTreeMap::new(),
            worker_ports: crate::PORT_BLOCK,
            redis_url: None,
        }
    }

    /// For measuring: the binaries of `bin_dir`, each process logging to its file in
    /// `log_dir`, intervals of a production hub, up to `worker_max` workers.
    pub fn for_bench(bin_dir: PathBuf, log_dir: PathBuf, worker_max: usize) -> HubOptions {
        HubOptions {
            bin_dir,
            log_dir: Some(log_dir),
            env: Vec::new(),
            supervisor_env: Vec::new(),
            workers: true,
            seed: None,
            supervisor_flags: flags(&[
                ("--supervisor-id", "sup-bench"),
                ("--worker-max", &worker_max.to_string()),
                ("--health-interval", "1s"),
                ("--reconcile-interval", "1s"),
                ("--lease-ttl", "5s"),
                ("--backoff-min", "20ms"),
                ("--stop-timeout", "2s"),
                ("--stop-workers-on-exit", "true"),
            ]),
            gateway_flags: flags(&[("--threads", "0"), ("--grace-period-secs", "1")]),
            admin_flags: BTreeMap::new(),
            worker_ports: u16::try_from(worker_max * 3 + 100).unwrap_or(u16::MAX),
            redis_url: None,
        }
    }
}

/// A running hub. Fields drop in declaration order after [`Hub::drop`] has stopped
/// the supervisor (so that it stops its workers).
pub struct Hub {
    pub prefix: String,
    /// `http://127.0.0.1:{port}` of each listener.
    pub mock_url: String,
    pub admin_url: String,
    pub gateway_url: String,
    pub metrics_url: String,
    /// `127.0.0.1:{port}` of the admin API (the gateway's upstream).
    pub admin_addr: String,
    pub gateway: ChildProcess,
    pub supervisor: Option<ChildProcess>,
    pub admin: ChildProcess,
    pub mock: ChildProcess,
    pub redis: RedisServer,
    /// The `REDIS_URL` every part was given: `options.redis_url`, else `redis`'s.
    pub redis_url: String,
    options: HubOptions,
}

impl Hub {
    /// Starts every part and waits until each answers its `/healthz` (the gateway's
    /// once its routing table is loaded).
    pub async fn start(options: HubOptions) -> anyhow::Result<Hub> {
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
        if let Some(dir) = &options.log_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let redis = RedisServer::start();
        let redis_url = options.redis_url.clone().unwrap_or_else(|| redis.url());
        let prefix = crate::unique_prefix();
        let common = |name: &str| {
            let mut command = Command::new(options.bin_dir.join(name));
            command
                .env("MCP_ENV_FILE", "/nonexistent/.env")
                .envs(options.env.iter().map(|(k, v)| (k, v)))
                .args(["--redis-url", &redis_url, "--key-prefix", &prefix]);
            command
        };

        let mock_addr = format!("127.0.0.1:{}", crate::free_port());
        let mut mock = Command::new(options.bin_dir.join("mcp-mock-api"));
        mock.args(["--listen", &mock_addr]);
        let mock = spawn(&options, "mcp-mock-api", mock)?;
        let mock_url = format!("http://{mock_addr}");
        wait_healthy(&mock_addr, "the mock REST API").await?;

        let admin_addr = format!("127.0.0.1:{}", crate::free_port());
        // The gateway's metrics listener, chosen now so the admin API knows where to
        // read the gateway's figures (`GET /api/metrics`, the dashboard).
        let metrics_addr = format!("127.0.0.1:{}", crate::free_port());
        let mut admin = common("mcp-admin");
        admin.args(["--listen", &admin_addr]);
        admin.args([
            "--gateway-metrics-url",
            &format!("http://{metrics_addr}/metrics"),
        ]);
        admin.args(options.admin_flags.iter().flat_map(|(k, v)| [k, v]));
        if let Some(seed) = &options.seed {
            admin
                .arg("--seed")
                .arg(seed)
                .args(["--seed-origin", &mock_url]);
        }
        let admin = spawn(&options, "mcp-admin", admin)?;
        wait_healthy(&admin_addr, "the admin API").await?;

        let supervisor = if options.workers {
            let mut command = common("mcp-supervisor");
            let base_port = crate::port_range(options.worker_ports);
            let worker_bin = options.bin_dir.join("mcp-worker");
            command
                .args(["--base-port", &base_port.to_string()])
                .args(["--port-count", &options.worker_ports.to_string()])
                .arg("--worker-bin")
                .arg(worker_bin)
                .args(options.supervisor_flags.iter().flat_map(|(k, v)| [k, v]))
                .envs(options.supervisor_env.iter().map(|(k, v)| (k, v)));
            Some(spawn(&options, "mcp-supervisor", command)?)
        } else {
            None
        };

        let started = start_gateway(
            &options,
            &redis_url,
            &prefix,
            &admin_addr,
            Some(metrics_addr),
            &BTreeMap::new(),
        )
        .await;
        let (gateway, gateway_url, metrics_url) = match started {
            Ok(started) => started,
            Err(err) => {
                // The supervisor's workers run in process groups of their own.
                drop(supervisor);
                crate::kill_processes_with_arg(&prefix);
                return Err(err);
            }
        };
        Ok(Hub {
            prefix,
            mock_url,
            admin_url: format!("http://{admin_addr}"),
            gateway_url,
            metrics_url,
            admin_addr,
            gateway,
            supervisor,
            admin,
            mock,
            redis,
            redis_url,
            options,
        })
    }

    /// Starts another gateway on this hub's Redis and admin API, with `extra` flags
    /// over the hub's (`--admin-upstream` too), and waits until its table is loaded: (process, base URL,
    /// metrics URL). Gateways keep no state of their own, so any number can run.
    pub async fn start_gateway(
        &self,
        extra: &BTreeMap<String, String>,
    ) -> anyhow::Result<(ChildProcess, String, String)> {
        start_gateway(
            &self.options,
            &self.redis_url,
            &self.prefix,
            &self.admin_addr,
            None,
            extra,
        )
        .await
    }

    /// Pids of the hub's own processes (not workers), by name.
    pub fn process_pids(&self) -> Vec<(&'static str, u32)> {
        let mut pids = vec![("mcp-gateway", self.gateway.pid())];
        if let Some(supervisor) = &self.supervisor {
            pids.push(("mcp-supervisor", supervisor.pid()));
        }
        pids.extend([
            ("mcp-admin", self.admin.pid()),
            ("mcp-mock-api", self.mock.pid()),
            ("redis-server", self.redis.pid().unwrap_or(0)),
        ]);
        pids
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // The supervisor stops its workers on SIGTERM (--stop-workers-on-exit); anything
        // left (a worker it could not reach) carries the unique prefix on its command line.
        if let Some(supervisor) = &self.supervisor {
            supervisor.signal(Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !supervisor.has_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        crate::kill_processes_with_arg(&self.prefix);
    }
}

async fn start_gateway(
    options: &HubOptions,
    redis_url: &str,
    prefix: &str,
    admin_addr: &str,
    metrics: Option<String>,
    extra: &BTreeMap<String, String>,
) -> anyhow::Result<(ChildProcess, String, String)> {
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let metrics = metrics.unwrap_or_else(|| format!("127.0.0.1:{}", crate::free_port()));
    let mut flags = options.gateway_flags.clone();
    if !options.workers {
        flags
            .entry("--supervisor-enabled".into())
            .or_insert_with(|| "false".into());
    }
    flags.insert("--admin-upstream".into(), admin_addr.into());
    flags.extend(extra.clone());
    let mut command = Command::new(options.bin_dir.join("mcp-gateway"));
    command
        .env("MCP_ENV_FILE", "/nonexistent/.env")
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .args(["--redis-url", redis_url, "--key-prefix", prefix])
        .args(["--listen", &listen, "--metrics-listen", &metrics])
        .args(flags.iter().flat_map(|(k, v)| [k, v]));
    let gateway = spawn(options, "mcp-gateway", command)?;
    wait_healthy(&listen, "the gateway").await?;
    Ok((
        gateway,
        format!("http://{listen}"),
        format!("http://{metrics}/metrics"),
    ))
}

fn spawn(options: &HubOptions, name: &str, command: Command) -> anyhow::Result<ChildProcess> {
    match &options.log_dir {
        Some(dir) => ChildProcess::spawn_logged(name, command, &dir.join(format!("{name}.log")))
            .with_context(|| format!("starting {name}")),
        None => Ok(ChildProcess::spawn(name, command)),
    }
}

/// Waits (30 s at most) for `GET /healthz` at `addr` to answer 200 and, when its body
/// has a `status`, `ok`.
async fn wait_healthy(addr: &str, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // 200, and `"status": "ok"` where the body says (a gateway answers 200 with
        // `starting` until its routing table is loaded).
        if let Some((200, body)) = crate::raw_http::get(addr, "/healthz").await {
            // The JSON object, whatever the framing (chunk sizes around it).
            let json = match (body.find('{'), body.rfind('}')) {
                (Some(start), Some(end)) if start < end => &body[start..=end],
                _ => "",
            };
            let status = serde_json::from_str::<serde_json::Value>(json)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned));
            if status.as_deref().is_none_or(|s| s == "ok") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer http://{addr}/healthz within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! Owns the benchmark suite: starts whole hubs (release binaries, servers pointed at the
//! mock REST API), runs every scenario of the load-test issue against them, and hands
//! the figures to `markdown` for `docs/BENCHMARKS.md`. Benchmarks, not tests: nothing
//! here asserts a speed.

pub(crate) mod markdown;
pub(crate) mod stream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::time::Instant;

use crate::driver::{self, RunConfig, Target};
use crate::hub::{Hub, HubOptions};
use crate::procfs;
use crate::report::Report;
use crate::scenario::{Plan, Scenario};
use crate::schedule::Schedule;

pub struct SuiteConfig {
    /// Where the hub's release binaries are.
    pub bin_dir: PathBuf,
    /// Where every process of every hub logs.
    pub log_dir: PathBuf,
    /// The scenario file of the PRD and capacity runs.
    pub scenario: PathBuf,
    /// The MCP-path variant of it.
    pub mcp_scenario: PathBuf,
    pub pingora_conf: Option<PathBuf>,
    /// `docs/BENCHMARKS.md`.
    pub out: PathBuf,
    /// Also write every figure as JSON here.
    pub json_out: Option<PathBuf>,
    /// Shorter runs, for trying the suite out (figures are noisier).
    pub quick: bool,
    /// The command line that reproduces this run, printed in the document.
    pub command: String,
}

/// Every figure of a suite run.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub quick: bool,
    pub prd: Option<Report>,
    pub capacity: Option<Capacity>,
    pub gateway_cost: Option<GatewayCost>,
    pub mcp_path: Option<Report>,
    pub streaming: Option<stream::Streaming>,
    /// Capacity of the MCP Streamable HTTP path, on a fresh hub of its own.
    pub mcp_capacity: Option<Capacity>,
    pub spawn: Option<Spawn>,
    pub restart: Vec<Restart>,
    pub footprint: Option<Footprint>,
    pub log_cost: Vec<LogCost>,
    /// What the audit log and retries with a circuit breaker cost on the happy path.
    pub feature_cost: Option<FeatureCost>,
    /// Scenarios that could not be measured, and why.
    pub errors: Vec<String>,
    pub wall_clock_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Capacity {
    /// The highest rate whose p99 <= 50 ms and failures <= 0.1% (0 when none passed).
    pub rate: f64,
    pub steps: Vec<Step>,
    /// CPU time per call at the capacity rate, in microseconds, by process.
    pub cpu_us_per_call: BTreeMap<String, f64>,
    /// Peak RSS in bytes during the capacity step, by process (workers: the largest).
    pub rss_under_load: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub passed: bool,
    pub report: Report,
    /// Share of the machine's CPU the hypervisor took during the step, in percent.
    pub steal_percent: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct GatewayCost {
    pub rate: f64,
    /// Interleaved rounds per side, pooled into `direct` and `gateway`.
    pub rounds: u32,
    /// Share of the machine's CPU the hypervisor took during the rounds, in percent.
    pub steal_percent: Option<f64>,
    pub direct: Report,
    pub gateway: Report,
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    /// Gateway CPU time per call (user + system, all threads), in microseconds.
    pub gateway_cpu_us_per_call: f64,
    pub worker_cpu_us_per_call_direct: f64,
    pub worker_cpu_us_per_call_gateway: f64,
}

#[derive(Debug, Serialize)]
pub struct Spawn {
    /// One registration -> first successful call through the gateway, in ms.
    pub one_ms: f64,
    /// 20 registrations at once -> each one's first successful call, in ms.
    pub twenty_ms: Vec<f64>,
    pub twenty_p50_ms: f64,
    pub twenty_max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Restart {
    pub replicas: usize,
    /// `idle` or `under load`.
    pub condition: String,
    /// kill -9 -> a call answered (idle), or the slowest call of the run (under load).
    pub answering_ms: f64,
    /// kill -9 -> the replacement worker's record is `running`.
    pub running_again_ms: Option<f64>,
    pub calls: u64,
    pub failed_calls: u64,
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct Footprint {
    /// RSS in bytes of the hub's processes with 20 servers, idle.
    pub idle: BTreeMap<String, u64>,
    pub idle_worker_p50: u64,
    pub idle_worker_max: u64,
    /// Proportional set size of a worker (shared pages divided among the workers).
    pub idle_worker_pss_p50: u64,
    pub servers_200: Option<Footprint200>,
}

#[derive(Debug, Serialize)]
pub struct Footprint200 {
    pub servers: usize,
    /// One import of 200 servers -> all workers running and routed, in ms.
    pub all_running_ms: f64,
    pub worker_rss_p50: u64,
    pub worker_rss_max: u64,
    pub workers_rss_total: u64,
    /// What the 200 workers really take together (sum of PSS).
    pub workers_pss_total: u64,
    pub processes: BTreeMap<String, u64>,
    /// 200 rps spread over the 200 servers for a while: proof that all answer.
    pub load: Report,
}

#[derive(Debug, Serialize)]
pub struct LogCost {
    pub setting: String,
    pub env: Vec<(String, String)>,
    pub capacity_rps: f64,
    pub steps: Vec<Step>,
}

/// The happy-path cost of the audit log and of retries with a circuit breaker: one
/// fresh hub per variant, all up at once (an idle hub costs next to nothing), loaded in
/// turn at one rate in interleaved rounds (ABC CBA ...), pooled per variant.
#[derive(Debug, Serialize)]
pub struct FeatureCost {
    pub rate: f64,
    /// The capacity the main hub's search found (`rate` is at least a floor).
    pub capacity_rps: f64,
    pub rounds: u32,
    pub steal_percent: Option<f64>,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Serialize)]
pub struct Variant {
    pub name: String,
    /// What differs from the first variant.
    pub differs: String,
    pub report: Report,
    /// CPU µs per call by process (workers summed), over this variant's rounds.
    pub cpu_us_per_call: BTreeMap<String, f64>,
}

struct Timing {
    warmup: Duration,
    prd: Duration,
    step: Duration,
    cost: Duration,
    restart: Duration,
}

impl Timing {
    fn new(quick: bool) -> Timing {
        if quick {
            Timing {
                warmup: Duration::from_secs(1),
                prd: Duration::from_secs(10),
                step: Duration::from_secs(4),
                cost: Duration::from_secs(5),
                restart: Duration::from_secs(5),
            }
        } else {
            Timing {
                warmup: Duration::from_secs(3),
                prd: Duration::from_secs(60),
                step: Duration::from_secs(10),
                cost: Duration::from_secs(20),
                restart: Duration::from_secs(8),
            }
        }
    }
}

/// The capacity bar of the issue.
const CAPACITY_P99_MS: f64 = 50.0;
const CAPACITY_MAX_FAILURES: f64 = 0.001;
const CAPACITY_STEPS: &[f64] = &[
    500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 10000.0, 12000.0,
];
const PRD_SERVERS: usize = 20;

pub async fn run(config: SuiteConfig) -> anyhow::Result<Results> {
    let started = Instant::now();
    let timing = Timing::new(config.quick);
    let mut results = Results {
        quick: config.quick,
        ..Results::default()
    };
    let scenario_text = std::fs::read_to_string(&config.scenario)
        .with_context(|| format!("reading {}", config.scenario.display()))?;
    let mcp_text = std::fs::read_to_string(&config.mcp_scenario)
        .with_context(|| format!("reading {}", config.mcp_scenario.display()))?;
    let plan_for = |text: &str, servers: Vec<String>| -> anyhow::Result<Plan> {
        let scenario = Scenario::parse(text).map_err(|e| anyhow::anyhow!("scenario: {e}"))?;
        Ok(Plan::new(scenario.with_servers(servers)))
    };
    let bench_ids = bench_ids(PRD_SERVERS);

    // Hub A: 20 servers. PRD, capacity, gateway cost, MCP path, spawn, restart, footprint.
    match main_hub(&config, &bench_ids).await {
        Err(err) => results.errors.push(format!("the main hub: {err:#}")),
        Ok(hub) => {
            let plan = plan_for(&scenario_text, bench_ids.clone())?;

            eprintln!("suite: footprint, idle");
            // Let start-up allocations settle before reading memory.
            tokio::time::sleep(Duration::from_secs(2)).await;
            results.footprint = Some(idle_footprint(&hub).await);

            eprintln!("suite: PRD scenario");
            match load(&hub, &plan, 200.0, timing.warmup, timing.prd).await {
                Ok(report) => results.prd = Some(report),
                Err(err) => results.errors.push(format!("PRD: {err:#}")),
            }

            eprintln!("suite: gateway cost");
            match gateway_cost(&hub, &plan, &bench_ids, 500.0, &timing).await {
                Ok(cost) => results.gateway_cost = Some(cost),
                Err(err) => results.errors.push(format!("gateway cost: {err:#}")),
            }

            eprintln!("suite: MCP protocol path");
            let mcp_plan = plan_for(&mcp_text, bench_ids.clone())?;
            match load(&hub, &mcp_plan, 500.0, timing.warmup, timing.cost).await {
                Ok(report) => results.mcp_path = Some(report),
                Err(err) => results.errors.push(format!("MCP path: {err:#}")),
            }

            eprintln!("suite: streaming 10 MiB");
            match stream::run(&hub).await {
                Ok(found) => results.streaming = Some(found),
                Err(err) => results.errors.push(format!("streaming: {err:#}")),
            }

            // Last of the load runs: its final step overloads the hub on purpose (and
            // leaves thousands of idle connections in the generator's and the
            // gateway's pools), so no other figure is taken in its aftermath.
            eprintln!("suite: capacity");
            match capacity(&hub, &plan, &timing, CAPACITY_STEPS).await {
                Ok(found) => results.capacity = Some(found),
                Err(err) => results.errors.push(format!("capacity: {err:#}")),
            }

            eprintln!("suite: spawn");
            match spawn(&hub).await {
                Ok(spawn) => results.spawn = Some(spawn),
                Err(err) => results.errors.push(format!("spawn: {err:#}")),
            }

            eprintln!("suite: restart");
            match restarts(&hub, &timing).await {
                Ok(list) => results.restart = list,
                Err(err) => results.errors.push(format!("restart: {err:#}")),
            }
        }
    }

    // Hub B: 200 servers running at once.
    eprintln!("suite: footprint, 200 servers");
    match footprint_200(&config, &scenario_text, &timing).await {
        Ok(found) => {
            if let Some(footprint) = results.footprint.as_mut() {
                footprint.servers_200 = Some(found);
            }
        }
        Err(err) => results.errors.push(format!("200 servers: {err:#}")),
    }

    // Hubs C: capacity with each log setting.
    for (setting, env) in [
        (
            "full logs",
            vec![("MCP_LOG_SAMPLE", "1.0"), ("MCP_LOG_LEVEL", "info")],
        ),
        (
            "sampled 1%",
            vec![("MCP_LOG_SAMPLE", "0.01"), ("MCP_LOG_LEVEL", "info")],
        ),
        (
            "errors only",
            vec![("MCP_LOG_SAMPLE", "1.0"), ("MCP_LOG_LEVEL", "warn")],
        ),
    ] {
        eprintln!("suite: log cost, {setting}");
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        match log_cost(&config, &scenario_text, &bench_ids, setting, env, &timing).await {
            Ok(found) => results.log_cost.push(found),
            Err(err) => results
                .errors
                .push(format!("log cost ({setting}): {err:#}")),
        }
    }

    // Hub D: the MCP path's capacity, on a fresh hub (the main one's capacity search
    // leaves it overloaded once).
    eprintln!("suite: MCP path capacity");
    match mcp_capacity(&config, &mcp_text, &bench_ids, &timing).await {
        Ok(found) => results.mcp_capacity = Some(found),
        Err(err) => results.errors.push(format!("MCP path capacity: {err:#}")),
    }

    // Hubs E: the audit log and retries with a breaker, on and off, at the capacity rate.
    let capacity_rps = results.capacity.as_ref().map_or(0.0, |c| c.rate);
    let rate = capacity_rps.max(if config.quick { 500.0 } else { 2000.0 });
    eprintln!("suite: feature cost at {rate} rps");
    match feature_cost(&config, &scenario_text, &bench_ids, rate, &timing).await {
        Ok(found) => {
            results.feature_cost = Some(FeatureCost {
                capacity_rps,
                ..found
            })
        }
        Err(err) => results.errors.push(format!("feature cost: {err:#}")),
    }

    results.wall_clock_s = started.elapsed().as_secs_f64();
    markdown::write(&config, &results)?;
    if let Some(path) = &config.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(results)
}

async fn main_hub(config: &SuiteConfig, bench_ids: &[String]) -> anyhow::Result<Hub> {
    let hub = start_hub(config, "main", Vec::new(), 64).await?;
    hub.register(&hub.bench_document(bench_ids, 1)).await?;
    hub.wait_running(bench_ids, 1, Duration::from_secs(60))
        .await?;
    Ok(hub)
}

/// The ids of `n` bench servers, as the scenarios' `servers: {prefix: bench_, count: n}`
/// name them.
pub fn bench_ids(n: usize) -> Vec<String> {
    ids("bench_", n)
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    let width = n.saturating_sub(1).to_string().len().max(2);
    (0..n).map(|i| format!("{prefix}{i:0width$}")).collect()
}

async fn start_hub(
    config: &SuiteConfig,
    name: &str,
    env: Vec<(String, String)>,
    worker_max: usize,
) -> anyhow::Result<Hub> {
    let mut options = HubOptions::new(config.bin_dir.clone(), config.log_dir.join(name));
    options.env = env;
    options.worker_max = worker_max;
    options.pingora_conf = config.pingora_conf.clone();
    Hub::start(&options).await
}

fn run_config(rate: f64, warmup: Duration, duration: Duration) -> anyhow::Result<RunConfig> {
    Ok(RunConfig {
        schedule: Schedule::new(rate, warmup, duration).map_err(anyhow::Error::msg)?,
        max_in_flight: 20_000,
        connections: driver::DEFAULT_CONNECTIONS,
        timeout: Duration::from_secs(10),
        seed: 1,
        sessions_per_server: 2,
        timeline: false,
    })
}

/// One open-loop run through the gateway.
async fn load(
    hub: &Hub,
    plan: &Plan,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Report> {
    let config = run_config(rate, warmup, duration)?;
    let report = driver::run(
        plan,
        &Target::Gateway(hub.gateway_url.clone()),
        &config,
        &hub.client,
    )
    .await?;
    eprint!("{}", report.table());
    Ok(report)
}

/// The bar, on the open-loop response time (from each call's scheduled time), so a
/// generator that falls behind cannot hide the hub's queueing.
fn passes(report: &Report) -> bool {
    report.response_ms.p99 <= CAPACITY_P99_MS && report.failure_rate <= CAPACITY_MAX_FAILURES
}

/// Raises the rate step by step until a step fails the bar; measures CPU per call and
/// peak memory of each process on every step and keeps those of the last passing one.
async fn capacity(
    hub: &Hub,
    plan: &Plan,
    timing: &Timing,
    steps: &[f64],
) -> anyhow::Result<Capacity> {
    let mut found = Capacity {
        rate: 0.0,
        steps: Vec::new(),
        cpu_us_per_call: BTreeMap::new(),
        rss_under_load: BTreeMap::new(),
    };
    for &rate in steps {
        let pids = all_pids(hub).await;
        let cpu_before = cpu_by_pid(&pids);
        let machine_before = procfs::MachineCpu::read();
        let sampler = RssSampler::start(pids.clone());
        let report = load(hub, plan, rate, timing.warmup, timing.step).await?;
        let rss = sampler.stop().await;
        let cpu_after = cpu_by_pid(&pids);
        let steal_percent = stolen_since(machine_before);
        let calls = run_config(rate, timing.warmup, timing.step)?
            .schedule
            .total()
            .max(1) as f64;
        let passed = passes(&report);
        found.steps.push(Step {
            passed,
            report,
            steal_percent,
        });
        if !passed {
            break;
        }
        found.rate = rate;
        found.cpu_us_per_call = cpu_per_call(&pids, &cpu_before, &cpu_after, calls);
        found.rss_under_load = rss;
    }
    Ok(found)
}

/// The share of the machine's CPU stolen since `before` (a reading of
/// `procfs::MachineCpu`), in percent; `None` when either reading failed.
fn stolen_since(before: Option<procfs::MachineCpu>) -> Option<f64> {
    procfs::MachineCpu::read()
        .zip(before)
        .and_then(|(after, before)| after.steal_percent_since(&before))
}

/// Every process of the hub, named; workers are summed as `mcp-worker (all)` for CPU
/// and reported as their largest for memory.
async fn all_pids(hub: &Hub) -> Vec<(String, u32)> {
    let mut pids: Vec<(String, u32)> = hub
        .process_pids()
        .into_iter()
        .map(|(n, p)| (n.to_owned(), p))
        .collect();
    for list in hub.worker_pids().await.into_values() {
        pids.extend(list.into_iter().map(|p| ("mcp-worker".to_owned(), p)));
    }
    pids
}

fn cpu_by_pid(pids: &[(String, u32)]) -> BTreeMap<u32, Duration> {
    pids.iter()
        .filter_map(|(_, pid)| Some((*pid, procfs::cpu_time(*pid)?)))
        .collect()
}

/// CPU µs per call by process name (workers summed), from readings before and after;
/// a process missing from either reading (it died meanwhile) is left out rather than
/// counted as zero.
fn cpu_per_call(
    pids: &[(String, u32)],
    before: &BTreeMap<u32, Duration>,
    after: &BTreeMap<u32, Duration>,
    calls: f64,
) -> BTreeMap<String, f64> {
    let mut per_call = BTreeMap::new();
    for (name, pid) in pids {
        let (Some(b), Some(a)) = (before.get(pid), after.get(pid)) else {
            continue;
        };
        let key = if name == "mcp-worker" {
            "mcp-worker (all)".to_owned()
        } else {
            name.clone()
        };
        *per_call.entry(key).or_insert(0.0) += a.saturating_sub(*b).as_secs_f64() * 1e6 / calls;
    }
    per_call
}

/// Samples the RSS of processes every 250 ms and keeps each name's peak.
struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<BTreeMap<String, u64>>,
}

impl RssSampler {
    fn start(pids: Vec<(String, u32)>) -> RssSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak: BTreeMap<String, u64> = BTreeMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {
                        for (name, pid) in &pids {
                            if let Some(rss) = procfs::rss_bytes(*pid) {
                                let slot = peak.entry(name.clone()).or_insert(0);
                                *slot = (*slot).max(rss);
                            }
                        }
                    }
                }
            }
            peak
        });
        RssSampler { stop, task }
    }

    async fn stop(self) -> BTreeMap<String, u64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// RSS of the hub's own processes by name, and the sorted RSS and PSS of its workers.
async fn memory(hub: &Hub) -> (BTreeMap<String, u64>, Vec<u64>, Vec<u64>) {
    let mut processes = BTreeMap::new();
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for (name, pid) in all_pids(hub).await {
        let Some(bytes) = procfs::rss_bytes(pid) else {
            continue;
        };
        if name == "mcp-worker" {
            rss.push(bytes);
            pss.extend(procfs::pss_bytes(pid));
        } else {
            processes.insert(name, bytes);
        }
    }
    rss.sort_unstable();
    pss.sort_unstable();
    (processes, rss, pss)
}

async fn idle_footprint(hub: &Hub) -> Footprint {
    let (idle, workers, pss) = memory(hub).await;
    Footprint {
        idle,
        idle_worker_p50: crate::report::nearest_rank(&workers, 0.5),
        idle_worker_max: workers.last().copied().unwrap_or(0),
        idle_worker_pss_p50: crate::report::nearest_rank(&pss, 0.5),
        servers_200: None,
    }
}

/// Rounds of the gateway-cost comparison, in order: `true` goes through the gateway.
/// Each pair of rounds mirrors the one before (direct, gateway, gateway, direct, ...),
/// so a machine that slows down or speeds up during the runs weighs on both sides alike.
const COST_ROUNDS: [bool; 8] = [false, true, true, false, false, true, true, false];

/// Straight to the workers and through the gateway at the same rate, in interleaved
/// rounds pooled per side.
async fn gateway_cost(
    hub: &Hub,
    plan: &Plan,
    server_ids: &[String],
    rate: f64,
    timing: &Timing,
) -> anyhow::Result<GatewayCost> {
    let rounds_per_side = COST_ROUNDS.len() as u32 / 2;
    let round = timing.cost / rounds_per_side;
    let workers = hub.worker_urls(server_ids).await?;
    let worker_pids: Vec<u32> = hub.worker_pids().await.into_values().flatten().collect();
    let workers_cpu = || -> Duration {
        worker_pids
            .iter()
            .map(|pid| procfs::cpu_time(*pid).unwrap_or_default())
            .sum()
    };
    let gateway_pid = hub.parts.gateway.pid();
    let direct_target = Target::Direct(workers);
    let gateway_target = Target::Gateway(hub.gateway_url.clone());

    let mut direct = Vec::new();
    let mut gateway = Vec::new();
    // CPU time of the gateway and the workers, and calls sent, per side.
    let (mut gateway_cpu, mut workers_cpu_direct, mut workers_cpu_gateway) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut calls_direct, mut calls_gateway) = (0u64, 0u64);
    let machine_before = procfs::MachineCpu::read();
    for (i, through_gateway) in COST_ROUNDS.into_iter().enumerate() {
        // The first round of each side warms the connections up; later ones reuse them.
        let warmup = if i < 2 {
            timing.warmup
        } else {
            timing.warmup / 3
        };
        let config = run_config(rate, warmup, round)?;
        let target = if through_gateway {
            &gateway_target
        } else {
            &direct_target
        };
        let (g0, w0) = (
            procfs::cpu_time(gateway_pid).unwrap_or_default(),
            workers_cpu(),
        );
        let report = driver::run(plan, target, &config, &hub.client).await?;
        let (g1, w1) = (
            procfs::cpu_time(gateway_pid).unwrap_or_default(),
            workers_cpu(),
        );
        if through_gateway {
            gateway_cpu += g1.saturating_sub(g0);
            workers_cpu_gateway += w1.saturating_sub(w0);
            calls_gateway += config.schedule.total();
            gateway.push(report);
        } else {
            workers_cpu_direct += w1.saturating_sub(w0);
            calls_direct += config.schedule.total();
            direct.push(report);
        }
    }
    let steal_percent = stolen_since(machine_before);
    let (Some(direct), Some(gateway)) = (Report::pooled(&direct), Report::pooled(&gateway)) else {
        anyhow::bail!("no gateway-cost rounds ran");
    };
    eprint!("{}{}", direct.table(), gateway.table());

    let per_call = |d: Duration, calls: u64| d.as_secs_f64() * 1e6 / calls.max(1) as f64;
    Ok(GatewayCost {
        rate,
        rounds: rounds_per_side,
        steal_percent,
        added_p50_ms: gateway.latency_ms.p50 - direct.latency_ms.p50,
        added_p99_ms: gateway.latency_ms.p99 - direct.latency_ms.p99,
        gateway_cpu_us_per_call: per_call(gateway_cpu, calls_gateway),
        worker_cpu_us_per_call_direct: per_call(workers_cpu_direct, calls_direct),
        worker_cpu_us_per_call_gateway: per_call(workers_cpu_gateway, calls_gateway),
        direct,
        gateway,
    })
}

/// Calls `get_fruit_by_id` on `server_id` through the gateway until one completes;
/// returns when it did.
async fn first_success(hub: &Hub, server_id: &str, deadline: Instant) -> anyhow::Result<Instant> {
    first_success_with(&hub.client, &hub.gateway_url, server_id, deadline).await
}

async fn first_success_with(
    client: &reqwest::Client,
    gateway: &reqwest::Url,
    server_id: &str,
    deadline: Instant,
) -> anyhow::Result<Instant> {
    Ok(first_success_counted(client, gateway, server_id, deadline)
        .await?
        .at)
}

/// When the first completed call came, after how many attempts, how many of which
/// failed (a retry every 2 ms until then).
struct FirstSuccess {
    at: Instant,
    attempts: u64,
    failures: BTreeMap<String, u64>,
}

async fn first_success_counted(
    client: &reqwest::Client,
    gateway: &reqwest::Url,
    server_id: &str,
    deadline: Instant,
) -> anyhow::Result<FirstSuccess> {
    let url = gateway.join(&format!("mcp/{server_id}/get_fruit_by_id"))?;
    let mut attempts = 0;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    loop {
        attempts += 1;
        let response = client
            .post(url.clone())
            .header("content-type", "application/json")
            .body(r#"{"args":{"id":1}}"#)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        let failure = match response {
            Ok(response) if response.status().is_success() => match response.text().await {
                Ok(text) if text.contains("event: tool_call.completed") => {
                    return Ok(FirstSuccess {
                        at: Instant::now(),
                        attempts,
                        failures,
                    });
                }
                Ok(_) => "tool_error".to_owned(),
                Err(_) => "connection".to_owned(),
            },
            Ok(response) => format!("http_{}", response.status().as_u16()),
            Err(_) => "connection".to_owned(),
        };
        *failures.entry(failure).or_insert(0) += 1;
        if Instant::now() > deadline {
            bail!("{server_id} did not answer in time");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn spawn(hub: &Hub) -> anyhow::Result<Spawn> {
    let one = vec!["spawn_one".to_owned()];
    let t0 = Instant::now();
    hub.register(&hub.bench_document(&one, 1)).await?;
    let answered = first_success(hub, "spawn_one", t0 + Duration::from_secs(30)).await?;
    let one_ms = ms(answered - t0);
    eprintln!("spawn: one registration -> first call {one_ms:.1} ms");

    let twenty = ids("spawn_many_", 20);
    let mut tasks = tokio::task::JoinSet::new();
    for id in twenty {
        let document = hub.bench_document(std::slice::from_ref(&id), 1);
        let register = hub.register_request(&document)?;
        let call = hub.gateway_url.clone();
        let client = hub.client.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let response = register.send().await.context("POST /api/import")?;
            if !response.status().is_success() {
                bail!("POST /api/import: {}", response.status());
            }
            let answered =
                first_success_with(&client, &call, &id, t0 + Duration::from_secs(30)).await?;
            Ok(ms(answered - t0))
        });
    }
    let mut twenty_ms = Vec::new();
    while let Some(done) = tasks.join_next().await {
        twenty_ms.push(done.context("spawn task")??);
    }
    twenty_ms.sort_by(f64::total_cmp);
    let p50 = twenty_ms[twenty_ms.len() / 2];
    let max = twenty_ms.last().copied().unwrap_or(0.0);
    eprintln!("spawn: 20 registrations at once -> p50 {p50:.1} ms, max {max:.1} ms");
    Ok(Spawn {
        one_ms,
        twenty_p50_ms: p50,
        twenty_max_ms: max,
        twenty_ms,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// kill -9 of a worker: idle and under load, with 1 and 2 replicas.
async fn restarts(hub: &Hub, timing: &Timing) -> anyhow::Result<Vec<Restart>> {
    let mut list = Vec::new();
    for replicas in [1usize, 2] {
        let server_id = format!("restart_r{replicas}");
        let one = vec![server_id.clone()];
        hub.register(&hub.bench_document(&one, replicas as u32))
            .await?;
        hub.wait_running(&one, replicas, Duration::from_secs(30))
            .await?;

        // Idle: kill, then one call; it answers when a worker does.
        let victim = victim_pid(hub, &server_id).await?;
        let t0 = Instant::now();
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).context("kill -9")?;
        let first = first_success_counted(
            &hub.client,
            &hub.gateway_url,
            &server_id,
            t0 + Duration::from_secs(30),
        )
        .await?;
        let running_again = wait_replaced(hub, &server_id, victim, replicas, t0).await;
        let entry = Restart {
            replicas,
            condition: "idle".into(),
            answering_ms: ms(first.at - t0),
            running_again_ms: running_again,
            calls: first.attempts,
            failed_calls: first.failures.values().sum(),
            failures: first.failures,
        };
        eprintln!(
            "restart: {replicas} replica(s), idle: answering after {:.1} ms",
            entry.answering_ms
        );
        list.push(entry);
        hub.wait_running(&one, replicas, Duration::from_secs(30))
            .await?;

        // Under load: 200 rps on this server, kill one worker a third of the way in.
        let plan = Plan::new(
            Scenario::parse(&format!(
                "name: restart\nservers: [{server_id}]\nrequests: [{{tool: get_fruit_by_id, args: {{id: 1}}}}]"
            ))
            .map_err(anyhow::Error::msg)?,
        );
        let mut config = run_config(200.0, Duration::ZERO, timing.restart)?;
        config.timeline = true;
        let victim = victim_pid(hub, &server_id).await?;
        let kill_after = timing.restart / 3;
        let kill_and_wait = async {
            tokio::time::sleep(kill_after).await;
            let at = Instant::now();
            let _ = kill(Pid::from_raw(victim as i32), Signal::SIGKILL);
            wait_replaced(hub, &server_id, victim, replicas, at).await
        };
        let target = Target::Gateway(hub.gateway_url.clone());
        let (report, running_again) = tokio::join!(
            driver::run(&plan, &target, &config, &hub.client),
            kill_and_wait
        );
        let report = report?;
        eprint!("{}", report.table());
        list.push(Restart {
            replicas,
            condition: "under load".into(),
            answering_ms: answering_after(&report.timeline, kill_after).unwrap_or(f64::NAN),
            running_again_ms: running_again,
            calls: report.offered,
            failed_calls: report.failed,
            failures: report.failures.clone(),
        });
        hub.wait_running(&one, replicas, Duration::from_secs(30))
            .await?;
    }
    Ok(list)
}

/// From the kill (at `kill_at` into the run) until the server answers again, in ms:
/// the completion of the first successful call sent after the kill and after the last
/// call that failed (so quick failures cannot pass for an answer).
fn answering_after(timeline: &[driver::Call], kill_at: Duration) -> Option<f64> {
    let after_failures = timeline
        .iter()
        .filter(|call| call.sent >= kill_at && !call.ok)
        .map(|call| call.sent)
        .max()
        .unwrap_or(kill_at);
    timeline
        .iter()
        .filter(|call| call.sent >= after_failures && call.ok)
        .min_by_key(|call| call.sent)
        .map(|call| ms(call.ended.saturating_sub(kill_at)))
}

async fn victim_pid(hub: &Hub, server_id: &str) -> anyhow::Result<u32> {
    hub.running_workers(server_id)
        .await
        .first()
        .and_then(|w| w.pid)
        .with_context(|| format!("{server_id} has no running worker to kill"))
}

/// Time from `since` until `server_id` has `replicas` running workers again, none of
/// them `victim`.
async fn wait_replaced(
    hub: &Hub,
    server_id: &str,
    victim: u32,
    replicas: usize,
    since: Instant,
) -> Option<f64> {
    let deadline = since + Duration::from_secs(30);
    loop {
        let running = hub.running_workers(server_id).await;
        if running.len() >= replicas && running.iter().all(|w| w.pid != Some(victim)) {
            return Some(ms(Instant::now() - since));
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn footprint_200(
    config: &SuiteConfig,
    scenario_text: &str,
    timing: &Timing,
) -> anyhow::Result<Footprint200> {
    let hub = start_hub(config, "servers-200", Vec::new(), 256).await?;
    let ids = ids("fp_", 200);
    let t0 = Instant::now();
    hub.register(&hub.bench_document(&ids, 1)).await?;
    hub.wait_running(&ids, 1, Duration::from_secs(180)).await?;
    let all_running_ms = ms(t0.elapsed());
    eprintln!("200 servers: all running after {all_running_ms:.0} ms");
    // Let start-up allocations settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (processes, workers, pss) = memory(&hub).await;
    let scenario = Scenario::parse(scenario_text).map_err(anyhow::Error::msg)?;
    let plan = Plan::new(scenario.with_servers(ids.clone()));
    let load = load(&hub, &plan, 200.0, timing.warmup, timing.step).await?;
    Ok(Footprint200 {
        servers: ids.len(),
        all_running_ms,
        worker_rss_p50: crate::report::nearest_rank(&workers, 0.5),
        worker_rss_max: workers.last().copied().unwrap_or(0),
        workers_rss_total: workers.iter().sum(),
        workers_pss_total: pss.iter().sum(),
        processes,
        load,
    })
}

async fn log_cost(
    config: &SuiteConfig,
    scenario_text: &str,
    bench_ids: &[String],
    setting: &str,
    env: Vec<(String, String)>,
    timing: &Timing,
) -> anyhow::Result<LogCost> {
    let name = format!("logs-{}", setting.replace([' ', '%'], "-"));
    let hub = start_hub(config, &name, env.clone(), 64).await?;
    hub.register(&hub.bench_document(bench_ids, 1)).await?;
    hub.wait_running(bench_ids, 1, Duration::from_secs(60))
        .await?;
    let scenario = Scenario::parse(scenario_text).map_err(anyhow::Error::msg)?;
    let plan = Plan::new(scenario.with_servers(bench_ids.to_vec()));
    let found = capacity(&hub, &plan, timing, CAPACITY_STEPS).await?;
    Ok(LogCost {
        setting: setting.to_owned(),
        env,
        capacity_rps: found.rate,
        steps: found.steps,
    })
}

async fn mcp_capacity(
    config: &SuiteConfig,
    mcp_text: &str,
    bench_ids: &[String],
    timing: &Timing,
) -> anyhow::Result<Capacity> {
    let hub = start_hub(config, "mcp-capacity", Vec::new(), 64).await?;
    hub.register(&hub.bench_document(bench_ids, 1)).await?;
    hub.wait_running(bench_ids, 1, Duration::from_secs(60))
        .await?;
    let scenario = Scenario::parse(mcp_text).map_err(anyhow::Error::msg)?;
    let plan = Plan::new(scenario.with_servers(bench_ids.to_vec()));
    capacity(&hub, &plan, timing, CAPACITY_STEPS).await
}

/// One variant of [`feature_cost`]: its hub's extra environment, and whether its
/// servers are registered with `retry` and `circuitBreaker`.
struct FeatureVariant {
    name: &'static str,
    differs: &'static str,
    env: &'static [(&'static str, &'static str)],
    resilient: bool,
}

const FEATURE_VARIANTS: [FeatureVariant; 3] = [
    FeatureVariant {
        name: "as shipped",
        differs: "audit log on (the default); no retry, no breaker",
        env: &[],
        resilient: false,
    },
    FeatureVariant {
        name: "audit off",
        differs: "`MCP_AUDIT_ENABLED=false`",
        env: &[("MCP_AUDIT_ENABLED", "false")],
        resilient: false,
    },
    FeatureVariant {
        name: "retries + breaker",
        differs: "every server registered with `retry: {maxAttempts: 3}` and \
                  `circuitBreaker: {failureThreshold: 5, errorRatePercent: 50}` (the rolling error-rate window on)",
        env: &[],
        resilient: true,
    },
];

/// Rounds per variant of [`feature_cost`]; the order mirrors itself (ABC CBA ABC CBA)
/// so a drifting machine weighs on every variant alike.
const FEATURE_ROUNDS: usize = 4;

async fn feature_cost(
    config: &SuiteConfig,
    scenario_text: &str,
    bench_ids: &[String],
    rate: f64,
    timing: &Timing,
) -> anyhow::Result<FeatureCost> {
    let scenario = Scenario::parse(scenario_text).map_err(anyhow::Error::msg)?;
    let plan = Plan::new(scenario.with_servers(bench_ids.to_vec()));
    // Per variant: its hub, its processes, its rounds' reports and CPU µs per call.
    let mut hubs = Vec::new();
    for (i, variant) in FEATURE_VARIANTS.iter().enumerate() {
        let env = variant
            .env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let hub = start_hub(config, &format!("feature-{i}"), env, 64).await?;
        let mut document = hub.bench_document(bench_ids, 1);
        if variant.resilient {
            if let Some(servers) = document["servers"].as_object_mut() {
                for server in servers.values_mut() {
                    server["retry"] = serde_json::json!({"maxAttempts": 3});
                    server["circuitBreaker"] =
                        serde_json::json!({"failureThreshold": 5, "errorRatePercent": 50});
                }
            }
        }
        hub.register(&document).await?;
        hub.wait_running(bench_ids, 1, Duration::from_secs(60))
            .await?;
        let pids = all_pids(&hub).await;
        hubs.push((hub, pids, Vec::new(), BTreeMap::new()));
    }
    let round = timing.cost / FEATURE_ROUNDS as u32;
    let order: Vec<usize> = (0..FEATURE_ROUNDS)
        .flat_map(|r| {
            let forward: Vec<usize> = (0..hubs.len()).collect();
            if r % 2 == 0 {
                forward
            } else {
                forward.into_iter().rev().collect()
            }
        })
        .collect();
    let machine_before = procfs::MachineCpu::read();
    let mut seen = vec![false; hubs.len()];
    for i in order {
        let warmup = if seen[i] {
            timing.warmup / 3
        } else {
            timing.warmup
        };
        seen[i] = true;
        let (hub, pids, reports, cpu) = &mut hubs[i];
        let before = cpu_by_pid(pids);
        let report = load(hub, &plan, rate, warmup, round).await?;
        let after = cpu_by_pid(pids);
        let calls = run_config(rate, warmup, round)?.schedule.total().max(1) as f64;
        for (name, us) in cpu_per_call(pids, &before, &after, calls) {
            // Summed over rounds of equal length; divided by the rounds below.
            *cpu.entry(name).or_insert(0.0) += us;
        }
        reports.push(report);
    }
    let steal_percent = stolen_since(machine_before);
    let mut variants = Vec::new();
    for (variant, (_hub, _, reports, cpu)) in FEATURE_VARIANTS.iter().zip(hubs) {
        let report = Report::pooled(&reports).context("no feature-cost rounds ran")?;
        variants.push(Variant {
            name: variant.name.to_owned(),
            differs: variant.differs.to_owned(),
            report,
            cpu_us_per_call: cpu
                .into_iter()
                .map(|(k, v)| (k, v / FEATURE_ROUNDS as f64))
                .collect(),
        });
    }
    Ok(FeatureCost {
        rate,
        capacity_rps: rate,
        rounds: FEATURE_ROUNDS as u32,
        steal_percent,
        variants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sent_ms: u64, ended_ms: u64, ok: bool) -> driver::Call {
        driver::Call {
            sent: Duration::from_millis(sent_ms),
            ended: Duration::from_millis(ended_ms),
            ok,
        }
    }

    #[test]
    fn answering_again_is_measured_past_the_last_failure() {
        let kill = Duration::from_millis(1000);
        // Calls wait for the restart and all succeed: the first one sent after the kill.
        let waited = [
            call(995, 997, true),
            call(1000, 1080, true),
            call(1005, 1081, true),
            call(1090, 1092, true),
        ];
        assert_eq!(answering_after(&waited, kill), Some(80.0));
        // Quick failures first: only a success after the last of them counts.
        let failed = [
            call(1000, 1001, false),
            call(1005, 1006, true),
            call(1010, 1011, false),
            call(1200, 1203, true),
        ];
        assert_eq!(answering_after(&failed, kill), Some(203.0));
        assert_eq!(answering_after(&[call(1000, 1001, false)], kill), None);
    }

    #[test]
    fn cpu_per_call_leaves_out_processes_that_died() {
        let pids = vec![
            ("mcp-gateway".to_owned(), 1),
            ("mcp-worker".to_owned(), 2),
            ("mcp-worker".to_owned(), 3),
        ];
        let before: BTreeMap<u32, Duration> = [(1, 0), (2, 100), (3, 100)]
            .into_iter()
            .map(|(p, ms)| (p, Duration::from_millis(ms)))
            .collect();
        let after: BTreeMap<u32, Duration> = [(1, 500), (2, 300)]
            .into_iter()
            .map(|(p, ms)| (p, Duration::from_millis(ms)))
            .collect();
        let per_call = cpu_per_call(&pids, &before, &after, 1000.0);
        assert_eq!(per_call["mcp-gateway"], 500.0);
        assert_eq!(per_call["mcp-worker (all)"], 200.0);
    }
}

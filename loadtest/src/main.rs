//! `mcp-loadtest`: parses the command line and hands over to the library (`run`: one
//! open-loop run of a scenario; `suite`: the benchmarks that write docs/BENCHMARKS.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mcp_core::config::parse_duration;
use mcp_loadtest::{chaos, driver, suite, Plan, RunConfig, Scenario, Schedule, Target};

/// mimalloc, as in the gateway and the worker: under glibc, malloc and free were a sixth
/// of the generator's instructions per call, CPU taken from the hub on the same machine.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Open-loop, SSE-aware load generator and benchmark suite for MCP Hub.
#[derive(Parser, Debug)]
#[command(name = "mcp-loadtest", version)]
struct Cli {
    /// Threads of the generator's runtime (leave the rest of the machine to the hub).
    #[arg(long, global = true, env = "MCP_LOADTEST_THREADS", default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One run of a scenario against a running hub; prints a table (and JSON with --json).
    Run(RunArgs),
    /// The benchmark suite: starts hubs itself, runs every scenario, writes the report.
    Suite(SuiteArgs),
    /// Starts the suite's hub (N bench servers on the mock REST API) and keeps it up
    /// until Ctrl-C or SIGTERM, printing its URLs and pids: a target for `run`, `perf`
    /// or callgrind at a chosen rate.
    Hub(HubArgs),
    /// The chaos suite: starts a hub, offers the PRD load and injects each fault in
    /// turn; writes the figures (exit 1 when a promise is broken: calls failed where
    /// none may, registrations lost, processes left behind).
    Chaos(ChaosArgs),
}

#[derive(clap::Args, Debug)]
struct ChaosArgs {
    /// The Markdown report to (re)write.
    #[arg(long, default_value = "docs/RELIABILITY.md")]
    out: PathBuf,
    /// Write no report (the quick run of `make test`).
    #[arg(long)]
    no_report: bool,
    /// Also write every figure as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Folder of the hub's binaries (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the hub's processes log.
    #[arg(long, default_value = "target/bench-logs")]
    log_dir: PathBuf,
    #[arg(long, default_value = "loadtest/scenarios/prd.yaml")]
    scenario: PathBuf,
    /// Pingora YAML for the gateway.
    #[arg(long, default_value = "conf/gateway.yaml")]
    pingora_conf: PathBuf,
    /// Short fault windows (Redis paused 3 s instead of 30 s).
    #[arg(long)]
    quick: bool,
    /// The command printed in the report as the way to reproduce it.
    #[arg(long, default_value = "make chaos")]
    command: String,
}

#[derive(clap::Args, Debug)]
struct HubArgs {
    /// Bench servers to register (`bench_00` ...), each a copy of the demo Fruits API.
    #[arg(long, default_value_t = 20)]
    servers: usize,
    /// Workers per server.
    #[arg(long, default_value_t = 1)]
    replicas: u32,
    /// Folder of the hub's binaries (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the hub's processes log.
    #[arg(long, default_value = "target/bench-logs/hub")]
    log_dir: PathBuf,
    /// Pingora YAML for the gateway.
    #[arg(long, default_value = "conf/gateway.yaml")]
    pingora_conf: PathBuf,
    /// Extra environment of every hub process, `NAME=VALUE` (repeatable), such as
    /// `MCP_LOG_SAMPLE=0.01`.
    #[arg(long = "env", value_parser = parse_env_pair)]
    env: Vec<(String, String)>,
}

fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Base URL of the gateway.
    #[arg(
        long,
        env = "MCP_LOADTEST_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    target: String,
    /// Scenario file (YAML or JSON): servers, tools, arguments, weights.
    #[arg(long, default_value = "loadtest/scenarios/demo.yaml")]
    scenario: PathBuf,
    /// Offered requests per second (constant arrival rate).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Measured window.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Sent before the measured window, not recorded.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    warmup: Duration,
    /// Requests in flight at most; arrivals beyond count as `dropped` failures.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: u64,
    /// Connections at most (requests on the wire at once, as wrk2's fixed connections);
    /// an arrival beyond waits for one, and its wait counts in the response time.
    #[arg(long, default_value_t = driver::DEFAULT_CONNECTIONS)]
    connections: usize,
    /// A call without its completion this long after it was due is a `timeout`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Seed of the tool and argument choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// MCP mode: sessions per server, opened before the clock starts.
    #[arg(long, default_value_t = 2)]
    sessions_per_server: usize,
    /// Also write the report as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also print calls, failures and p50/p99/max latency for each second of the run
    /// (stalls show up as one bad second), and add them to the JSON as `per_second`.
    #[arg(long)]
    per_second: bool,
    /// Send straight to the workers (each server's first running worker, found in the
    /// registry at REDIS_URL) instead of through the gateway: what the gateway adds is
    /// the difference between a run with and one without this flag.
    #[arg(long)]
    direct: bool,
    #[command(flatten)]
    redis: mcp_core::config::RedisArgs,
}

#[derive(clap::Args, Debug)]
struct SuiteArgs {
    /// The Markdown report to (re)write.
    #[arg(long, default_value = "docs/BENCHMARKS.md")]
    out: PathBuf,
    /// Also write every figure as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Folder of the hub's binaries (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where the hubs' processes log (one folder per hub).
    #[arg(long, default_value = "target/bench-logs")]
    log_dir: PathBuf,
    #[arg(long, default_value = "loadtest/scenarios/prd.yaml")]
    scenario: PathBuf,
    #[arg(long, default_value = "loadtest/scenarios/prd-mcp.yaml")]
    mcp_scenario: PathBuf,
    /// Pingora YAML for the gateways.
    #[arg(long, default_value = "conf/gateway.yaml")]
    pingora_conf: PathBuf,
    /// Short runs (about a third of the time); figures are noisier.
    #[arg(long)]
    quick: bool,
    /// The command printed in the report as the way to reproduce it.
    #[arg(long, default_value = "make bench")]
    command: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread: a current-thread runtime, so the schedule loop and the requests it
    // starts share the thread instead of waking each other across threads.
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mcp-loadtest: starting the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::Suite(args) => run_suite(args).await,
            Command::Hub(args) => run_hub(args).await,
            Command::Chaos(args) => run_chaos(args).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("mcp-loadtest: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::load(&args.scenario)?;
    let plan = Plan::new(scenario);
    let base = reqwest::Url::parse(&args.target)
        .and_then(|u| {
            if u.path().ends_with('/') {
                Ok(u)
            } else {
                reqwest::Url::parse(&format!("{}/", args.target))
            }
        })
        .with_context(|| format!("--target {}", args.target))?;
    let config = RunConfig {
        schedule: Schedule::new(args.rate, args.warmup, args.duration)
            .map_err(anyhow::Error::msg)?,
        max_in_flight: args.max_in_flight,
        connections: args.connections,
        timeout: args.timeout,
        seed: args.seed,
        sessions_per_server: args.sessions_per_server,
        timeline: args.per_second,
    };
    let client = driver::client()?;
    let target = if args.direct {
        let registry = args.redis.registry()?;
        Target::Direct(mcp_loadtest::hub::worker_urls(&registry, &plan.servers).await?)
    } else {
        Target::Gateway(base)
    };
    let report = driver::run(&plan, &target, &config, &client).await?;
    print!("{}", report.table());
    let seconds = args
        .per_second
        .then(|| mcp_loadtest::report::per_second(&report.timeline));
    if let Some(seconds) = &seconds {
        print!("{}", mcp_loadtest::report::per_second_table(seconds));
    }
    if let Some(path) = &args.json {
        let mut json = serde_json::to_value(&report)?;
        if let Some(seconds) = &seconds {
            json["per_second"] = serde_json::to_value(seconds)?;
        }
        let json = serde_json::to_string_pretty(&json)?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The hub's binaries: `--bin-dir`, or the folder of this one.
fn bin_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => Ok(std::env::current_exe()
            .context("locating this binary")?
            .parent()
            .context("this binary has no folder")?
            .to_path_buf()),
    }
}

async fn run_hub(args: HubArgs) -> anyhow::Result<ExitCode> {
    let mut options = mcp_loadtest::hub::HubOptions::new(bin_dir(args.bin_dir)?, args.log_dir);
    options.env = args.env;
    options.worker_max = (args.servers * args.replicas as usize).max(1);
    options.pingora_conf = args.pingora_conf.exists().then_some(args.pingora_conf);
    let hub = mcp_loadtest::hub::Hub::start(&options).await?;
    let ids = suite::bench_ids(args.servers);
    hub.register(&hub.bench_document(&ids, args.replicas))
        .await?;
    hub.wait_running(&ids, args.replicas as usize, Duration::from_secs(120))
        .await?;
    print!("{}", hub.describe().await);
    println!(
        "# up: Ctrl-C or SIGTERM stops it all; logs in {}",
        options.log_dir.display()
    );
    mcp_core::shutdown::signalled().await;
    drop(hub);
    Ok(ExitCode::SUCCESS)
}

async fn run_suite(args: SuiteArgs) -> anyhow::Result<ExitCode> {
    let bin_dir = bin_dir(args.bin_dir)?;
    let pingora_conf = args.pingora_conf.exists().then_some(args.pingora_conf);
    let results = suite::run(suite::SuiteConfig {
        bin_dir,
        log_dir: args.log_dir,
        scenario: args.scenario,
        mcp_scenario: args.mcp_scenario,
        pingora_conf,
        out: args.out.clone(),
        json_out: args.json,
        quick: args.quick,
        command: args.command,
    })
    .await?;
    eprintln!(
        "suite: wrote {} in {:.0} s",
        args.out.display(),
        results.wall_clock_s
    );
    for error in &results.errors {
        eprintln!("suite: not measured: {error}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_chaos(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let config = chaos::ChaosConfig {
        bin_dir: bin_dir(args.bin_dir)?,
        log_dir: args.log_dir,
        scenario: args.scenario,
        pingora_conf: args.pingora_conf.exists().then_some(args.pingora_conf),
        out: (!args.no_report).then(|| args.out.clone()),
        quick: args.quick,
        command: args.command,
    };
    let results = chaos::run(config).await?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let violations = results.violations();
    let broken = results
        .faults
        .iter()
        .filter(|f| !f.violations().is_empty())
        .count();
    // One line for `make test` to count: a fault that could not be measured is broken,
    // and so is the whole run when processes outlived the hub.
    eprintln!(
        "chaos: faults: {} held, {} broken",
        results.faults.len() - broken,
        broken + results.errors.len() + usize::from(results.left_after_stop > 0)
    );
    eprintln!(
        "chaos: {} faults in {:.0} s{}",
        results.faults.len(),
        results.wall_clock_s,
        if args.no_report {
            String::new()
        } else {
            format!("; wrote {}", args.out.display())
        }
    );
    if violations.is_empty() {
        eprintln!("chaos: PASS (no call failed where none may, nothing lost, nothing left behind)");
        Ok(ExitCode::SUCCESS)
    } else {
        for violation in &violations {
            eprintln!("chaos: FAIL: {violation}");
        }
        Ok(ExitCode::FAILURE)
    }
}

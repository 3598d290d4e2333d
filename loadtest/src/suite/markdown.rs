//! Owns `docs/BENCHMARKS.md`: the machine, the commit, the command and every figure of
//! a suite run, as Markdown. Text below the `KEEP_MARKER` line of the existing file
//! (profiling notes, before/after) is written by people and kept as it is.

use std::fmt::Write as _;

use anyhow::Context;

use super::{FeatureCost, Results, Step, SuiteConfig, CAPACITY_MAX_FAILURES, CAPACITY_P99_MS};
use crate::report::Report;

pub const KEEP_MARKER: &str = "<!-- Written by hand below this line; the suite keeps it. -->";

pub fn write(config: &SuiteConfig, results: &Results) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(&config.out).unwrap_or_default();
    let kept = old
        .split_once(KEEP_MARKER)
        .map(|(_, tail)| tail.to_owned())
        .unwrap_or_default();
    let mut doc = with_previous(&render(config, results, &machine(&config.out)), &old);
    doc.push('\n');
    doc.push_str(KEEP_MARKER);
    doc.push_str(&kept);
    if !doc.ends_with('\n') {
        doc.push('\n');
    }
    std::fs::write(&config.out, doc).with_context(|| format!("writing {}", config.out.display()))
}

/// What the figures were measured on.
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub commit: String,
    pub date: String,
}

/// `report`, the file being rewritten, does not count as an uncommitted change: a
/// report from the last run must not mark the next one's commit as modified.
pub(crate) fn machine(report: &std::path::Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let mut commit = run("git", &["rev-parse", "--short=12", "HEAD"]);
    if commit.is_empty() {
        commit = "unknown".into();
    } else if !run(
        "git",
        &[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            &format!(":(exclude){}", report.display()),
        ],
    )
    .is_empty()
    {
        commit.push_str(" (with uncommitted changes)");
    }
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_default(),
        commit,
        date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

fn failures(report: &Report) -> String {
    if report.failures.is_empty() {
        return "none".into();
    }
    report
        .failures
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cargo's profile of the binaries measured: the name of their folder (`dist`,
/// `release`) under the target directory.
fn build_profile(bin_dir: &std::path::Path) -> String {
    bin_dir.file_name().map_or_else(
        || "unknown".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    )
}

/// A share in percent, or a dash when it could not be read.
fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}%"))
}

fn steps_table(out: &mut String, steps: &[Step]) {
    let _ = writeln!(
        out,
        "| offered rps | achieved rps | failures | p50 ms | p99 ms | p99.9 ms | max ms | response p99 ms | generator lag p99 ms | CPU stolen | bar |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for step in steps {
        let r = &step.report;
        let _ = writeln!(
            out,
            "| {:.0} | {:.0} | {} ({:.3}%) | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.rate_offered,
            r.achieved_rps,
            r.failed,
            r.failure_rate * 100.0,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.p999,
            r.latency_ms.max,
            r.response_ms.p99,
            r.schedule_lag_ms.p99,
            percent(step.steal_percent),
            if step.passed { "met" } else { "missed" }
        );
    }
}

fn latency_row(out: &mut String, label: &str, r: &Report) {
    let _ = writeln!(
        out,
        "| {label} | {:.0} | {} / {} ({:.3}%) | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        r.rate_offered,
        r.failed,
        r.offered,
        r.failure_rate * 100.0,
        r.latency_ms.p50,
        r.latency_ms.p90,
        r.latency_ms.p99,
        r.latency_ms.p999,
        r.latency_ms.max
    );
}

const LATENCY_HEADER: &str = "| run | offered rps | failed / offered | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |\n|---|---:|---|---:|---:|---:|---:|---:|";

pub fn render(config: &SuiteConfig, results: &Results, machine: &Machine) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Generated by the benchmark suite of `loadtest/` (`mcp-loadtest suite`); do not edit \
         above the marker line at the end. Reproduce with:\n\n```sh\n{}\n```\n",
        config.command
    );
    let _ = writeln!(
        out,
        "- machine: {} ({} cores), {} RAM, Linux {}\n- commit: `{}`\n- date: {}\n- wall clock of the suite: {:.0} s{}\n\
         - everything on this one machine: Redis, mock REST API, admin API, supervisor, workers, gateway \
         and the load generator (binaries of the `{}` profile). Latency is from the moment a request is sent to the \
         arrival of its `tool_call.completed` event (or its MCP result); a call counts as a success only \
         then. The generator is open-loop: request *k* is due at *k / rate* whatever the others do; \
         like wrk2 it keeps at most {} connections (one request on each at a time), so a call due while \
         all are busy waits for one, and that wait counts in its response time (from when it was due), \
         not in its latency; \"generator lag\" is how late it left.\n",
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.kernel,
        machine.commit,
        machine.date,
        results.wall_clock_s,
        if results.quick {
            "\n- **quick mode**: short runs, noisy figures; not for comparison"
        } else {
            ""
        },
        build_profile(&config.bin_dir),
        crate::driver::DEFAULT_CONNECTIONS
    );

    let _ = writeln!(out, "## Summary against the targets\n");
    let _ = writeln!(out, "| target | measured | met |\n|---|---|---|");
    if let Some(prd) = &results.prd {
        let _ = writeln!(
            out,
            "| PRD scenario (20 servers, 200 rps, {:.0} s): 0 failures (bar < 1%) | {} failed of {} | {} |",
            prd.duration_s,
            prd.failed,
            prd.offered,
            yes(prd.failed == 0)
        );
    }
    if let Some(capacity) = &results.capacity {
        let _ = writeln!(
            out,
            "| full-path capacity >= 5,000 rps (p99 response <= {CAPACITY_P99_MS} ms, failures <= {}%) | {:.0} rps | {} |",
            CAPACITY_MAX_FAILURES * 100.0,
            capacity.rate,
            yes(capacity.rate >= 5000.0)
        );
    }
    if let Some(cost) = &results.gateway_cost {
        let _ = writeln!(
            out,
            "| gateway added latency at {:.0} rps: p50 < 0.2 ms | p50 {:+.3} ms, p99 {:+.3} ms | {} |",
            cost.rate,
            cost.added_p50_ms,
            cost.added_p99_ms,
            yes(cost.added_p50_ms < 0.2)
        );
    }
    if let Some(spawn) = &results.spawn {
        let _ = writeln!(
            out,
            "| registration -> first successful call < 300 ms | {:.1} ms (20 at once: p50 {:.1} ms, max {:.1} ms) | {} |",
            spawn.one_ms,
            spawn.twenty_p50_ms,
            spawn.twenty_max_ms,
            yes(spawn.one_ms < 300.0)
        );
    }
    for restart in results
        .restart
        .iter()
        .filter(|r| r.condition == "idle" && r.replicas == 1)
    {
        let _ = writeln!(
            out,
            "| `kill -9` -> answering < 500 ms | {:.1} ms | {} |",
            restart.answering_ms,
            yes(restart.answering_ms < 500.0)
        );
    }
    for restart in results
        .restart
        .iter()
        .filter(|r| r.condition != "idle" && r.replicas == 2)
    {
        let _ = writeln!(
            out,
            "| `kill -9` with 2 replicas under load: zero failed calls | {} failed of {} | {} |",
            restart.failed_calls,
            restart.calls,
            yes(restart.failed_calls == 0)
        );
    }
    if let Some(footprint) = &results.footprint {
        let under_load = results
            .capacity
            .as_ref()
            .and_then(|c| c.rss_under_load.get("mcp-worker"))
            .copied()
            .unwrap_or(0);
        let worst = footprint.idle_worker_max.max(under_load);
        let _ = writeln!(
            out,
            "| worker RSS < 15 MiB | idle: p50 {}, max {}{} | {} |",
            mib(footprint.idle_worker_p50),
            mib(footprint.idle_worker_max),
            results
                .capacity
                .as_ref()
                .and_then(|c| c.rss_under_load.get("mcp-worker"))
                .map(|b| format!("; under load: max {}", mib(*b)))
                .unwrap_or_default(),
            yes(worst < 15 * 1024 * 1024)
        );
    }
    performance_rows(&mut out, results);
    out.push('\n');

    if let Some(prd) = &results.prd {
        let _ = writeln!(out, "## PRD scenario\n");
        let _ = writeln!(
            out,
            "`loadtest/scenarios/prd.yaml` over 20 servers (each its own worker), {:.0} rps for {:.0} s after {:.0} s of warm-up. \
             Achieved {:.1} rps; failures: {}.\n",
            prd.rate_offered,
            prd.duration_s,
            prd.warmup_s,
            prd.achieved_rps,
            failures(prd)
        );
        let _ = writeln!(out, "{LATENCY_HEADER}");
        latency_row(&mut out, "PRD, through the gateway", prd);
        let _ = writeln!(
            out,
            "\nTime to the first SSE event (`tool_call.started`): p50 {:.3} ms, p99 {:.3} ms.\n",
            prd.first_event_ms.p50, prd.first_event_ms.p99
        );
    }

    if let Some(capacity) = &results.capacity {
        let _ = writeln!(out, "## Capacity\n");
        let _ = writeln!(
            out,
            "The PRD mix, the rate raised step by step until the p99 response time (from each call's scheduled \
             time, so a generator that falls behind cannot hide queueing) exceeds {CAPACITY_P99_MS} ms or failures \
             exceed {}%; the last rate that met both is the capacity: **{:.0} rps**. Latency columns run from \
             the send. \"CPU stolen\" is the share of the machine's CPU time the hypervisor gave to others during \
             the step (`/proc/stat`): the same hub loses steps to a busy host.\n",
            CAPACITY_MAX_FAILURES * 100.0,
            capacity.rate
        );
        steps_table(&mut out, &capacity.steps);
        if !capacity.cpu_us_per_call.is_empty() {
            let _ = writeln!(
                out,
                "\nAt {:.0} rps, CPU time per call (user + system, from `/proc/<pid>/stat`) and peak RSS:\n",
                capacity.rate
            );
            let _ = writeln!(
                out,
                "| process | CPU µs per call | peak RSS |\n|---|---:|---:|"
            );
            for (name, us) in &capacity.cpu_us_per_call {
                let rss_key = if name == "mcp-worker (all)" {
                    "mcp-worker"
                } else {
                    name.as_str()
                };
                let rss = capacity
                    .rss_under_load
                    .get(rss_key)
                    .map(|b| mib(*b))
                    .unwrap_or_default();
                let _ = writeln!(out, "| {name} | {us:.1} | {rss} |");
            }
            let _ = writeln!(
                out,
                "\n(`mcp-worker (all)` sums the 20 workers' CPU; its RSS is the largest worker's. \
                 `mcp-loadtest` itself uses the rest of the machine.)"
            );
        }
        out.push('\n');
    }

    if let Some(cost) = &results.gateway_cost {
        let _ = writeln!(out, "## Gateway cost\n");
        let _ = writeln!(
            out,
            "The same mix at {:.0} rps straight to the workers' `/call/{{tool}}` and through the gateway, \
             in {} rounds per side taken in turn (direct, gateway, gateway, direct, ...: a machine whose speed \
             drifts during the runs weighs on both sides alike); each row pools its rounds' calls.\n",
            cost.rate,
            cost.rounds
        );
        let _ = writeln!(out, "{LATENCY_HEADER}");
        latency_row(&mut out, "client -> worker", &cost.direct);
        latency_row(&mut out, "client -> gateway -> worker", &cost.gateway);
        let _ = writeln!(
            out,
            "\nAdded by the gateway: p50 **{:+.3} ms**, p99 **{:+.3} ms**. Gateway CPU time per call: **{:.1} µs** \
             (workers: {:.1} µs per call direct, {:.1} µs through the gateway). CPU time the hypervisor \
             took from this VM during the rounds (steal): {}.\n",
            cost.added_p50_ms,
            cost.added_p99_ms,
            cost.gateway_cpu_us_per_call,
            cost.worker_cpu_us_per_call_direct,
            cost.worker_cpu_us_per_call_gateway,
            percent(cost.steal_percent)
        );
    }

    if let Some(mcp) = &results.mcp_path {
        let _ = writeln!(out, "## MCP protocol path\n");
        let _ = writeln!(
            out,
            "`loadtest/scenarios/prd-mcp.yaml`: `tools/call` over Streamable HTTP at `/mcp-servers/{{id}}/mcp` \
             (2 sessions per server, opened before the clock starts). Failures: {}.\n",
            failures(mcp)
        );
        let _ = writeln!(out, "{LATENCY_HEADER}");
        latency_row(&mut out, "MCP tools/call, through the gateway", mcp);
        out.push('\n');
    }
    if let Some(capacity) = &results.mcp_capacity {
        let _ = writeln!(
            out,
            "Capacity of the MCP path, on a fresh hub of its own (same search and bar as the hub call API's): \
             **{:.0} rps**.\n",
            capacity.rate
        );
        steps_table(&mut out, &capacity.steps);
        out.push('\n');
    }

    if let Some(spawn) = &results.spawn {
        let _ = writeln!(out, "## Spawn\n");
        let _ = writeln!(
            out,
            "From `POST /api/import` of a server (a copy of the demo Fruits API) to its first completed call \
             through the gateway (the client retries every 2 ms until then).\n"
        );
        let _ = writeln!(out, "| registration | p50 ms | max ms |\n|---|---:|---:|");
        let _ = writeln!(
            out,
            "| one server | {:.1} | {:.1} |",
            spawn.one_ms, spawn.one_ms
        );
        let _ = writeln!(
            out,
            "| 20 servers at once (each timed on its own) | {:.1} | {:.1} |\n",
            spawn.twenty_p50_ms, spawn.twenty_max_ms
        );
    }

    if !results.restart.is_empty() {
        let _ = writeln!(out, "## Restart after `kill -9`\n");
        let _ = writeln!(
            out,
            "Idle: calls sent right after the kill (one at a time, retried every 2 ms on a failure) until one \
             completes; the gateway waits for the restart instead of failing. Under load: 200 rps on that one \
             server, one worker killed a third of the way in; \"answering\" is when the first call sent after the \
             kill, and after the last failure, completed.\n"
        );
        let _ = writeln!(
            out,
            "| replicas | condition | answering ms | replacement running ms | failed calls | failures |\n|---:|---|---:|---:|---:|---|"
        );
        for r in &results.restart {
            let kinds = if r.failures.is_empty() {
                "none".to_owned()
            } else {
                r.failures
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} | {} of {} | {} |",
                r.replicas,
                r.condition,
                r.answering_ms,
                r.running_again_ms
                    .map(|v| format!("{v:.1}"))
                    .unwrap_or_else(|| "not within 30 s".into()),
                r.failed_calls,
                r.calls,
                kinds
            );
        }
        out.push('\n');
    }

    if let Some(footprint) = &results.footprint {
        let _ = writeln!(out, "## Footprint\n");
        let _ = writeln!(
            out,
            "RSS with 20 servers registered, idle, and peak during the capacity step:\n"
        );
        let _ = writeln!(out, "| process | idle | under load |\n|---|---:|---:|");
        let under = results.capacity.as_ref().map(|c| &c.rss_under_load);
        for (name, rss) in &footprint.idle {
            let load = under
                .and_then(|u| u.get(name))
                .map(|b| mib(*b))
                .unwrap_or_default();
            let _ = writeln!(out, "| {name} | {} | {load} |", mib(*rss));
        }
        let _ = writeln!(
            out,
            "| mcp-worker (p50 / max of 20) | {} / {} | max {} |\n",
            mib(footprint.idle_worker_p50),
            mib(footprint.idle_worker_max),
            under
                .and_then(|u| u.get("mcp-worker"))
                .map(|b| mib(*b))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "Most of a worker's RSS is the binary's pages, shared by every worker: its proportional share \
             (PSS, shared pages divided among the processes mapping them) is {} (p50).\n",
            mib(footprint.idle_worker_pss_p50)
        );
        if let Some(big) = &footprint.servers_200 {
            let _ = writeln!(
                out,
                "**{} servers running at once** (one import; all running and routed after {:.0} ms): workers p50 {}, \
                 max {}, {} RSS in all but {} PSS (what they take together); supervisor {}, gateway {}. Then 200 rps spread over them for {:.0} s: {} failed of {} \
                 (p50 {:.2} ms, p99 {:.2} ms).\n",
                big.servers,
                big.all_running_ms,
                mib(big.worker_rss_p50),
                mib(big.worker_rss_max),
                mib(big.workers_rss_total),
                mib(big.workers_pss_total),
                big.processes.get("mcp-supervisor").map(|b| mib(*b)).unwrap_or_default(),
                big.processes.get("mcp-gateway").map(|b| mib(*b)).unwrap_or_default(),
                big.load.duration_s,
                big.load.failed,
                big.load.offered,
                big.load.latency_ms.p50,
                big.load.latency_ms.p99
            );
        }
    }

    if !results.log_cost.is_empty() {
        let _ = writeln!(out, "## Log cost\n");
        let _ = writeln!(
            out,
            "Capacity (same search, same bar) of a fresh hub per log setting; every process writes its JSON \
             lines to a file.\n"
        );
        let _ = writeln!(out, "| logs | settings | capacity rps |\n|---|---|---:|");
        for cost in &results.log_cost {
            let env: Vec<String> = cost.env.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} |",
                cost.setting,
                env.join(" "),
                cost.capacity_rps
            );
        }
        out.push('\n');
        for cost in &results.log_cost {
            let _ = writeln!(out, "Steps with {}:\n", cost.setting);
            steps_table(&mut out, &cost.steps);
            out.push('\n');
        }
    }

    if let Some(streaming) = &results.streaming {
        let _ = writeln!(out, "## Streaming 10 MiB\n");
        let _ = writeln!(
            out,
            "One call whose REST API streams {:.0} MiB (the mock's `/test/stream/chunks`: 1 KiB chunks, no \
             `Content-Length`, so the worker passes each on as an `output.delta` as it comes) through one worker \
             and the gateway, on a connection of its own with a 64 KiB receive buffer. Resident memory is sampled \
             every 50 ms; \"held\" is its peak above the level before the call.\n",
            streaming.rest_bytes as f64 / MIB
        );
        let _ = writeln!(
            out,
            "| client | read | seconds | REST MiB/s | completed | worker RSS before -> peak (held) | gateway RSS before -> peak (held) |\n\
             |---|---:|---:|---:|---|---|---|"
        );
        for (label, run) in [("fast", &streaming.fast), ("slow", &streaming.slow)] {
            let _ = writeln!(
                out,
                "| {label} | {} | {:.2} | {:.1} | {} | {} | {} |",
                run.read_rate.map_or_else(
                    || "as fast as it can".to_owned(),
                    |rate| format!("{:.1} MiB/s", rate / MIB)
                ),
                run.seconds,
                run.rest_mib_per_s,
                if run.completed { "yes" } else { "**no**" },
                held(run.worker_rss_before, run.worker_rss_peak),
                held(run.gateway_rss_before, run.gateway_rss_peak),
            );
        }
        out.push('\n');
    }

    if let Some(cost) = &results.feature_cost {
        feature_cost(&mut out, cost);
    }

    if !results.errors.is_empty() {
        let _ = writeln!(out, "## Not measured\n");
        for error in &results.errors {
            let _ = writeln!(out, "- {error}");
        }
        out.push('\n');
    }
    out
}

/// `before -> peak (+held)` in MiB.
fn held(before: u64, peak: u64) -> String {
    format!(
        "{:.1} -> {} (+{:.1})",
        before as f64 / MIB,
        mib(peak),
        peak.saturating_sub(before) as f64 / MIB
    )
}

/// The raised bars of the performance issue (8,000 rps, CPU per call, a gateway under
/// 0.1 ms, 8 MiB workers, the MCP path, streaming), after the PRD's own.
fn performance_rows(out: &mut String, results: &Results) {
    if let Some(capacity) = &results.capacity {
        // The highest step before the first one that misses the stricter bar.
        let strict = capacity
            .steps
            .iter()
            .take_while(|s| {
                s.report.response_ms.p99 <= 25.0 && s.report.failure_rate <= CAPACITY_MAX_FAILURES
            })
            .map(|s| s.report.rate_offered)
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| full-path capacity >= 8,000 rps (p99 response <= 25 ms, failures <= {}%) | {strict:.0} rps | {} |",
            CAPACITY_MAX_FAILURES * 100.0,
            yes(strict >= 8000.0)
        );
        let cpu = |name: &str| capacity.cpu_us_per_call.get(name).copied();
        if let (Some(workers), Some(gateway)) = (cpu("mcp-worker (all)"), cpu("mcp-gateway")) {
            let _ = writeln!(
                out,
                "| CPU per call at the capacity rate: workers <= 60 µs, gateway <= 35 µs | workers {workers:.1} µs, \
                 gateway {gateway:.1} µs (at {:.0} rps) | {} |",
                capacity.rate,
                yes(workers <= 60.0 && gateway <= 35.0)
            );
        }
    }
    if let Some(cost) = &results.gateway_cost {
        let _ = writeln!(
            out,
            "| gateway added latency at {:.0} rps: p50 <= 0.1 ms, p99 <= 0.15 ms | p50 {:+.3} ms, p99 {:+.3} ms | {} |",
            cost.rate,
            cost.added_p50_ms,
            cost.added_p99_ms,
            yes(cost.added_p50_ms <= 0.1 && cost.added_p99_ms <= 0.15)
        );
    }
    if let Some(footprint) = &results.footprint {
        let _ = writeln!(
            out,
            "| worker RSS <= 8 MiB idle | p50 {}, max {} | {} |",
            mib(footprint.idle_worker_p50),
            mib(footprint.idle_worker_max),
            yes(footprint.idle_worker_max <= 8 * 1024 * 1024)
        );
    }
    if let (Some(call), Some(mcp)) = (&results.capacity, &results.mcp_capacity) {
        let ratio = if mcp.rate > 0.0 {
            call.rate / mcp.rate
        } else {
            f64::INFINITY
        };
        let _ = writeln!(
            out,
            "| MCP path capacity within 1.3x of the hub call API's | {:.0} rps against {:.0} rps ({ratio:.2}x) | {} |",
            mcp.rate,
            call.rate,
            yes(ratio <= 1.3)
        );
    }
    if let Some(streaming) = &results.streaming {
        let slow = &streaming.slow;
        let held = slow
            .worker_rss_peak
            .saturating_sub(slow.worker_rss_before)
            .max(
                slow.gateway_rss_peak
                    .saturating_sub(slow.gateway_rss_before),
            );
        let _ = writeln!(
            out,
            "| streaming 10 MiB to a slow client: memory bounded (<= {} held by the worker or the gateway) | \
             at most {} held; {:.1} MiB/s to a fast client | {} |",
            mib(STREAM_HELD_BOUND),
            mib(held),
            streaming.fast.rest_mib_per_s,
            yes(slow.completed && streaming.fast.completed && held <= STREAM_HELD_BOUND)
        );
    }
}

/// What a slow client may make the worker or the gateway hold while 10 MiB stream
/// through: a fifth of the stream, so the bar fails if either buffers it.
const STREAM_HELD_BOUND: u64 = 2 * 1024 * 1024;

fn feature_cost(out: &mut String, cost: &FeatureCost) {
    let _ = writeln!(out, "## Audit log and retries: the happy path's cost\n");
    let _ = writeln!(
        out,
        "One fresh hub per variant (20 servers each, all up at once), the same mix at {:.0} rps ({}) offered to \
         each in turn, {} rounds per variant in a mirrored order (ABC CBA ...); each row pools its rounds' calls. \
         CPU time is µs per call of each kind of process, over that variant's rounds. CPU time the hypervisor \
         took during the rounds (steal): {}.\n",
        cost.rate,
        if cost.rate > cost.capacity_rps {
            format!(
                "the suite's floor: the capacity found above was {:.0} rps",
                cost.capacity_rps
            )
        } else {
            "the capacity found above".to_owned()
        },
        cost.rounds,
        percent(cost.steal_percent)
    );
    let _ = writeln!(
        out,
        "| variant | what differs | failed / offered | p50 ms | p99 ms | response p99 ms | workers µs | gateway µs | Redis µs | mock API µs |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for variant in &cost.variants {
        let r = &variant.report;
        let cpu = |name: &str| {
            variant
                .cpu_us_per_call
                .get(name)
                .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} ({:.3}%) | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} |",
            variant.name,
            variant.differs,
            r.failed,
            r.offered,
            r.failure_rate * 100.0,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.response_ms.p99,
            cpu("mcp-worker (all)"),
            cpu("mcp-gateway"),
            cpu("redis-server"),
            cpu("mcp-mock-api")
        );
    }
    out.push('\n');
}

const SUMMARY: &str = "## Summary against the targets";

/// What stays the same of a summary row across versions of the file: its target up to
/// the bar (`full-path capacity >= 5,000 rps` -> `full-path capacity`), so a row whose
/// bar was raised still finds its previous figure.
fn row_key(target: &str) -> String {
    let end = [">=", " < ", ":", " ("]
        .iter()
        .filter_map(|sep| target.find(sep))
        .min()
        .unwrap_or(target.len());
    target[..end].trim().to_owned()
}

/// The cells of the summary table's rows in `doc`.
fn summary_rows(doc: &str) -> Vec<Vec<String>> {
    let Some((_, after)) = doc.split_once(SUMMARY) else {
        return Vec::new();
    };
    after
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and its rule
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// `rendered` with a column of the figures of the file it replaces (`old`), from that
/// file's own summary: the new run's figures beside the previous ones, each with the
/// commit it was measured on. Unchanged when `old` has no summary.
pub fn with_previous(rendered: &str, old: &str) -> String {
    let previous: std::collections::HashMap<String, String> = summary_rows(old)
        .into_iter()
        .filter(|cells| cells.len() >= 3)
        .map(|cells| (row_key(&cells[0]), cells[1].clone()))
        .collect();
    if previous.is_empty() {
        return rendered.to_owned();
    }
    let old_commit = old
        .lines()
        .find_map(|l| l.strip_prefix("- commit: "))
        .unwrap_or("?");
    let old_date = old
        .lines()
        .find_map(|l| l.strip_prefix("- date: "))
        .unwrap_or("?");
    let Some((head, tail)) = rendered.split_once(SUMMARY) else {
        return rendered.to_owned();
    };
    let mut out = format!("{head}{SUMMARY}");
    let mut row = 0;
    let mut columns = 0;
    for line in tail.split_inclusive('\n') {
        let in_table = line.starts_with('|') && row < usize::MAX;
        if !in_table {
            if row > 0 {
                row = usize::MAX; // past the table
            }
            out.push_str(line);
            continue;
        }
        if row == 1 {
            // The rule under the header: one more column.
            row += 1;
            out.push_str(&format!("|{}\n", "---|".repeat(columns + 1)));
            continue;
        }
        let cells: Vec<&str> = line.trim_end().trim_matches('|').split(" | ").collect();
        if row == 0 {
            columns = cells.len();
        }
        let extra = match row {
            0 => format!("previous ({old_commit}, {old_date})"),
            _ => previous
                .get(&row_key(cells[0].trim()))
                .cloned()
                .unwrap_or_else(|| "-".into()),
        };
        row += 1;
        let mut cells: Vec<String> = cells.iter().map(|c| c.trim().to_owned()).collect();
        let at = cells.len().saturating_sub(1).max(1).min(cells.len());
        cells.insert(at, extra);
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Recorder, RunMeta, Success};
    use crate::scenario::Mode;

    fn report(failed: u64) -> Report {
        let mut recorder = Recorder::default();
        for ms in 1..=100u64 {
            recorder.success(Success {
                latency: std::time::Duration::from_millis(ms),
                first_event: std::time::Duration::from_millis(1),
                response: std::time::Duration::from_millis(ms),
            });
        }
        for _ in 0..failed {
            recorder.failure(&crate::report::Failure::Http(503));
        }
        recorder.into_report(RunMeta {
            scenario: "prd".into(),
            mode: Mode::Call,
            target: "http://gw".into(),
            rate: 200.0,
            warmup: std::time::Duration::from_secs(1),
            duration: std::time::Duration::from_secs(1),
            offered: 100 + failed,
        })
    }

    fn config(out: std::path::PathBuf) -> SuiteConfig {
        SuiteConfig {
            bin_dir: "target/dist".into(),
            log_dir: "logs".into(),
            scenario: "s.yaml".into(),
            mcp_scenario: "m.yaml".into(),
            pingora_conf: None,
            out,
            json_out: None,
            quick: false,
            command: "make bench".into(),
        }
    }

    #[test]
    fn the_summary_shows_the_previous_figures_beside_the_new_ones() {
        let old = "# Benchmarks\n\n- commit: `aaa111`\n- date: 2026-12-04 05:46 UTC\n\n## Summary against the targets\n\n\
                   | target | measured | met |\n|---|---|---|\n\
                   | full-path capacity >= 5,000 rps (p99 response <= 50 ms) | 5000 rps | yes |\n\
                   | worker RSS < 15 MiB | idle: max 11.0 MiB | yes |\n\n## PRD scenario\n";
        let new = "# Benchmarks\n\n## Summary against the targets\n\n\
                   | target | measured | met |\n|---|---|---|\n\
                   | full-path capacity >= 8,000 rps (p99 response <= 25 ms) | 8000 rps | yes |\n\
                   | gateway added latency at 500 rps: p50 < 0.1 ms | p50 +0.090 ms | yes |\n\n## PRD scenario\nbody | with | pipes\n";
        let merged = with_previous(new, old);
        assert!(
            merged.contains(
                "| target | measured | previous (`aaa111`, 2026-12-04 05:46 UTC) | met |\n|---|---|---|---|\n\
                 | full-path capacity >= 8,000 rps (p99 response <= 25 ms) | 8000 rps | 5000 rps | yes |\n\
                 | gateway added latency at 500 rps: p50 < 0.1 ms | p50 +0.090 ms | - | yes |\n\n## PRD scenario\nbody | with | pipes\n"
            ),
            "{merged}"
        );
        assert_eq!(with_previous(new, "no summary here"), new);
        assert_eq!(
            row_key("`kill -9` -> answering < 500 ms"),
            "`kill -9` -> answering"
        );
    }

    #[test]
    fn the_report_says_which_targets_were_met_and_keeps_hand_written_notes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("BENCHMARKS.md");
        std::fs::write(
            &out,
            format!("# old figures\n{KEEP_MARKER}\n## Profiling\nbefore and after\n"),
        )
        .expect("old file");
        let results = Results {
            prd: Some(report(0)),
            restart: vec![super::super::Restart {
                replicas: 2,
                condition: "under load".into(),
                answering_ms: 12.0,
                running_again_ms: Some(80.0),
                calls: 1000,
                failed_calls: 3,
                failures: [("http_502".to_owned(), 3)].into_iter().collect(),
            }],
            errors: vec!["spawn: refused".into()],
            ..Results::default()
        };
        write(&config(out.clone()), &results).expect("written");
        let text = std::fs::read_to_string(&out).expect("read");
        assert!(text.contains("make bench"), "{text}");
        assert!(text.contains("binaries of the `dist` profile"), "{text}");
        assert!(
            text.contains("| PRD scenario (20 servers, 200 rps, 1 s): 0 failures (bar < 1%) | 0 failed of 100 | yes |"),
            "{text}"
        );
        assert!(
            text.contains("zero failed calls | 3 failed of 1000 | **no** |"),
            "{text}"
        );
        assert!(
            text.contains("## Not measured\n\n- spawn: refused"),
            "{text}"
        );
        assert!(!text.contains("old figures"), "{text}");
        assert!(
            text.ends_with(&format!("{KEEP_MARKER}\n## Profiling\nbefore and after\n")),
            "{text}"
        );
    }

    #[test]
    fn the_feature_cost_has_one_row_per_variant_with_its_cpu_per_call() {
        let variant = |name: &str, workers: f64| super::super::Variant {
            name: name.into(),
            differs: format!("{name} differs"),
            report: report(0),
            cpu_us_per_call: [
                ("mcp-worker (all)".to_owned(), workers),
                ("redis-server".to_owned(), 9.25),
            ]
            .into_iter()
            .collect(),
        };
        let mut out = String::new();
        feature_cost(
            &mut out,
            &FeatureCost {
                rate: 4000.0,
                capacity_rps: 4000.0,
                rounds: 4,
                steal_percent: Some(1.0),
                variants: vec![variant("as shipped", 140.0), variant("audit off", 138.04)],
            },
        );
        assert!(out.contains("at 4000 rps"), "{out}");
        assert!(out.contains("4 rounds per variant"), "{out}");
        assert!(
            out.contains("| audit off | audit off differs | 0 / 100 (0.000%) | 50.015 | 99.007 | 99.007 | 138.0 | - | 9.2 | - |"),
            "{out}"
        );
        assert_eq!(out.matches("differs |").count(), 3, "{out}");
    }
}

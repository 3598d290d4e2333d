//! Owns the chaos suite's resource-limit faults: more registrations than
//! `MCP_WORKER_MAX` and the worker port range exhausted (one window, both limits), and a
//! worker driven past `MCP_WORKER_MAX_RSS_MB`. For each, the supervisor is killed (its
//! workers stay up) and started again with the limit set just above what the hub runs,
//! extra servers are registered while the PRD load runs, and what the hub does with
//! them is read where an operator would: the runtime record (`GET
//! /api/servers/{id}/runtime`), the supervisor's log, the answer to a call. The
//! supervisor is started again with its own settings after the window.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use mcp_core::runtime::{WorkerRecord, WorkerStatus};
use mcp_testkit::ChildProcess;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::procs::{self, Launch};
use super::{ms_since, settle, window, Ctx, Fault, Injected};
use crate::hub::Hub;

/// Servers registered beside the PRD's for the limit faults (deleted in the window).
const RUNNING: [&str; 2] = ["limit_a", "limit_b"];
const NO_PORT: &str = "limit_no_port";
const OVER_MAX: &str = "limit_over_max";
const RSS: &str = "limit_rss";
/// What one call to `RSS` makes its worker buffer: a text answer of 12 MiB from the
/// mock (within MCP_WORKER_MAX_RESPONSE_BYTES, 16 MiB).
const LARGE_BODY: u64 = 12 * 1024 * 1024;

fn large_args() -> Value {
    json!({ "bytes": LARGE_BODY })
}

/// Calls to it at a time (the two of `worker_rss`): each costs the worker, the gateway
/// and the machine the PRD load runs on CPU, so few, and the limit close above.
const LARGE_IN_FLIGHT: usize = 2;

/// The supervisor's log and launch, read before the fault.
struct Supervisor {
    pid: u32,
    launch: Launch,
    log: PathBuf,
}

impl Supervisor {
    fn of(ctx: &Ctx) -> anyhow::Result<Supervisor> {
        let pid = ctx.pids["mcp-supervisor"];
        Ok(Supervisor {
            pid,
            launch: Launch::of("mcp-supervisor", pid, &ctx.log_dir)?,
            log: ctx.log_dir.join("mcp-supervisor.log"),
        })
    }

    /// Kills the running supervisor (SIGKILL: its workers stay up) and starts it again
    /// with `extra` flags over its own; returns once it has adopted `workers` workers.
    async fn restart(
        &self,
        pid: u32,
        extra: &[&str],
        workers: usize,
    ) -> anyhow::Result<ChildProcess> {
        let mut tail = Tail::from_end(&self.log);
        let mut adopted = 0;
        procs::signal(pid, Signal::SIGKILL)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while procs::alive(pid) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the supervisor {pid} did not die"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let child = self.launch.spawn_with(extra)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            adopted += tail
                .lines()
                .iter()
                .filter(|l| l.contains("\"worker.adopted\""))
                .count();
            if adopted >= workers {
                break;
            }
            if child.has_exited() {
                bail!("the supervisor started with {extra:?} exited");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the supervisor started with {extra:?} did not adopt {workers} workers within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(child)
    }
}

/// After the window: the supervisor back with its own settings.
async fn restore(
    ctx: &mut Ctx,
    supervisor: &Supervisor,
    limited: ChildProcess,
) -> anyhow::Result<()> {
    let workers = procs::live_workers(&ctx.hub.prefix).len();
    let child = supervisor.restart(limited.pid(), &[], workers).await?;
    drop(limited);
    ctx.pids.insert("mcp-supervisor", child.pid());
    ctx.restarted.insert("mcp-supervisor", child);
    Ok(())
}

/// A server of the bench kind (the demo Fruits API on the main mock), one replica.
async fn register(hub: &Hub, ids: &[&str]) -> anyhow::Result<()> {
    let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    hub.register(&hub.bench_document(&ids, 1)).await
}

/// `method path` on the admin API; the response, when it is a success.
async fn admin(
    hub: &Hub,
    method: reqwest::Method,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<reqwest::Response> {
    let response = hub
        .client
        .request(method.clone(), hub.admin_url.join(path)?)
        .timeout(timeout)
        .send()
        .await
        .with_context(|| format!("{method} /{path}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{method} /{path}: {}",
        response.status()
    );
    Ok(response)
}

async fn delete(hub: &Hub, id: &str) -> anyhow::Result<()> {
    let path = format!("api/servers/{id}");
    admin(hub, reqwest::Method::DELETE, &path, Duration::from_secs(10)).await?;
    Ok(())
}

/// The first worker record of `id` as the admin API shows it.
async fn runtime(hub: &Hub, id: &str) -> anyhow::Result<Value> {
    let path = format!("api/servers/{id}/runtime");
    let body: Value = admin(hub, reqwest::Method::GET, &path, Duration::from_secs(5))
        .await?
        .json()
        .await?;
    Ok(body["workers"][0].clone())
}

/// Until the first record of `id` satisfies `check`; `None` past `timeout`.
async fn wait_record(
    hub: &Hub,
    id: &str,
    timeout: Duration,
    check: impl Fn(&WorkerRecord) -> bool,
) -> Option<WorkerRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        let record = hub
            .registry
            .get_runtime(id)
            .await
            .ok()
            .and_then(|r| r.workers.into_iter().next());
        if let Some(record) = record.filter(|r| check(r)) {
            return Some(record);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn running(record: &WorkerRecord) -> bool {
    record.status == WorkerStatus::Running && record.pid.is_some()
}

/// One call through the gateway: status, JSON body (`Null` when not JSON), time taken.
pub(super) async fn call(hub: &Hub, id: &str, tool: &str, args: Value) -> (u16, Value, Duration) {
    let t0 = Instant::now();
    let Ok(url) = hub.gateway_url.join(&format!("mcp/{id}/{tool}")) else {
        return (0, Value::Null, t0.elapsed());
    };
    let sent = hub
        .client
        .post(url)
        .json(&json!({ "args": args }))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            (status, body, t0.elapsed())
        }
        Err(_) => (0, Value::Null, t0.elapsed()),
    }
}

/// A call to `RSS`'s `get_large` whose answer is dropped once its status is in: the
/// worker has built the whole answer by then, and the suite's thread (the load
/// generator's) never reads megabytes.
async fn call_head(hub: &Hub, id: &str, args: Value) -> u16 {
    let Ok(url) = hub.gateway_url.join(&format!("mcp/{id}/get_large")) else {
        return 0;
    };
    let sent = hub
        .client
        .post(url)
        .json(&json!({ "args": args }))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    sent.map_or(0, |r| r.status().as_u16())
}

/// True when `body` is the hub's JSON error with `code`, a message and a request id.
pub(super) fn is_error(body: &Value, code: &str) -> bool {
    let error = &body["error"];
    error["code"] == code
        && error["message"].as_str().is_some_and(|m| !m.is_empty())
        && error["request_id"].as_str().is_some_and(|r| !r.is_empty())
}

/// The lines a log file gained since a point, read piece by piece: the supervisor's
/// log (its workers' too) grows by megabytes, and the suite shares its thread with the
/// load generator, so the file is never read whole again.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    fn from_end(path: &Path) -> Tail {
        Tail {
            path: path.to_owned(),
            offset: std::fs::metadata(path).map_or(0, |m| m.len()),
            partial: Vec::new(),
        }
    }

    /// The complete lines written since the last call.
    fn lines(&mut self) -> Vec<String> {
        use std::io::{Read, Seek, SeekFrom};
        let mut fresh = Vec::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            if file.seek(SeekFrom::Start(self.offset)).is_ok() {
                let _ = file.read_to_end(&mut fresh);
            }
        }
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&done)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// How long a log line may take to reach the file after what it tells of.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// The supervisor's log lines of a fault that name one of its servers or a limit.
struct Log {
    tail: Tail,
    kept: Vec<Value>,
}

impl Log {
    fn new(path: &Path) -> Log {
        Log {
            tail: Tail::from_end(path),
            kept: Vec::new(),
        }
    }

    /// [`Log::logged`] once there is one, or what there is (none) after `timeout`: a
    /// line reaches the file up to the log writer's batch window after the state it
    /// tells of is visible in Redis.
    async fn wait_logged(&mut self, event: &str, server: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.logged(event, server);
            if !lines.is_empty() || Instant::now() >= deadline {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Lines with `event` for `server` so far.
    fn logged(&mut self, event: &str, server: &str) -> Vec<Value> {
        for line in self.tail.lines() {
            if line.contains("\"limit_") || line.contains("\"worker.rss.exceeded\"") {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    self.kept.push(value);
                }
            }
        }
        self.kept
            .iter()
            .filter(|v| v["event"] == event && (server.is_empty() || v["server"] == server))
            .cloned()
            .collect()
    }
}

/// Most worker processes of the hub seen at once until `stop` is set (each look at
/// `/proc` on the blocking pool, off the load generator's thread).
async fn sample_workers(prefix: &str, stop: &std::sync::atomic::AtomicBool) -> usize {
    let mut most = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let prefix = prefix.to_owned();
        let live = tokio::task::spawn_blocking(move || procs::live_workers(&prefix).len());
        most = most.max(live.await.unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    most
}

/// Until the hub runs no more than `workers` worker processes (20 s at most).
async fn wait_workers_down(prefix: &str, workers: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let owned = prefix.to_owned();
        let live = tokio::task::spawn_blocking(move || procs::live_workers(&owned).len());
        if live.await.unwrap_or(0) <= workers || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the injection of the worker-cap fault found, for the verdict.
#[derive(Default)]
struct Found {
    broken: Vec<String>,
    notes: Vec<String>,
}

impl Found {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.broken.push(what.into());
        }
    }
}

/// More registrations than `MCP_WORKER_MAX` and the worker port range exhausted, on a
/// supervisor started again with room for 3 more workers and 2 free ports.
pub async fn worker_cap_and_ports(ctx: &mut Ctx) -> anyhow::Result<Fault> {
    let supervisor = Supervisor::of(ctx)?;
    let base: u32 = supervisor
        .launch
        .setting("--base-port", "MCP_WORKER_BASE_PORT")
        .unwrap_or_else(|| "9100".into())
        .parse()?;
    let count: u32 = supervisor
        .launch
        .setting("--port-count", "MCP_WORKER_PORT_COUNT")
        .unwrap_or_else(|| "1000".into())
        .parse()?;
    // The last two ports of the hub's own range: reserved for it, and never reached by
    // the ports claimed lowest first.
    let narrow_base = base + count - 2;
    let claimed = ctx.hub.registry.claimed_ports().await?;
    if let Some(taken) = claimed.iter().find(|hp| {
        hp.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u32>().ok())
            .is_some_and(|p| p >= narrow_base)
    }) {
        bail!(
            "the narrow port range {narrow_base}..{} is already claimed: {taken}",
            base + count
        );
    }
    let workers = procs::live_workers(&ctx.hub.prefix).len();
    let cap = workers + 3;
    let (cap_s, base_s) = (cap.to_string(), narrow_base.to_string());
    let flags = [
        "--worker-max",
        cap_s.as_str(),
        "--base-port",
        base_s.as_str(),
        "--port-count",
        "2",
    ];
    let quick = ctx.timing.quick;
    let limited: Mutex<Option<ChildProcess>> = Mutex::new(None);
    let found: Mutex<Found> = Mutex::new(Found::default());
    let stop_sampling = std::sync::atomic::AtomicBool::new(false);
    let hub = &ctx.hub;
    let inject = async {
        let mut f = Found::default();
        let mut log = Log::new(&supervisor.log);
        let child = supervisor.restart(supervisor.pid, &flags, workers).await?;
        let t0 = Instant::now();
        *limited.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(child);
        f.notes.push(format!(
            "the supervisor was killed (its {workers} workers stay) and started again with MCP_WORKER_MAX={cap} ({workers} running + 3) and MCP_WORKER_BASE_PORT={narrow_base}, MCP_WORKER_PORT_COUNT=2; it adopted every worker"
        ));
        // Two servers take the two ports; a third has room but no port; a fourth no room.
        register(hub, &RUNNING).await?;
        for id in RUNNING {
            if wait_record(hub, id, Duration::from_secs(30), running)
                .await
                .is_none()
            {
                bail!("{id} did not start on the narrow port range");
            }
        }
        register(hub, &[NO_PORT]).await?;
        let starved = wait_record(hub, NO_PORT, Duration::from_secs(20), |r| {
            r.last_failure
                .as_deref()
                .is_some_and(|f| f.contains("port"))
        })
        .await;
        register(hub, &[OVER_MAX]).await?;
        let pending = wait_record(hub, OVER_MAX, Duration::from_secs(20), |r| {
            r.status == WorkerStatus::Pending
        })
        .await;
        let shown = |id: &str, record: &Value| {
            format!(
                "{id}: `{}`, reason \"{}\", last failure \"{}\"",
                record["status"].as_str().unwrap_or("?"),
                record["reason"].as_str().unwrap_or(""),
                record["lastFailure"].as_str().unwrap_or("")
            )
        };
        let starved_shown = runtime(hub, NO_PORT).await?;
        let pending_shown = runtime(hub, OVER_MAX).await?;
        f.notes.push(format!(
            "GET /api/servers/{{id}}/runtime while they wait: {}; {}",
            shown(NO_PORT, &starved_shown),
            shown(OVER_MAX, &pending_shown)
        ));
        f.check(
            starved.is_some()
                && starved_shown["status"] == "pending"
                && starved_shown.to_string().contains("no free port in the worker port range"),
            format!("{NO_PORT} (room under MCP_WORKER_MAX, no free port): not `pending` with a reason naming the exhausted port range: {starved_shown}"),
        );
        f.check(
            pending.is_some()
                && pending_shown["status"] == "pending"
                && pending_shown["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("MCP_WORKER_MAX={cap}"))),
            format!(
                "{OVER_MAX} (over MCP_WORKER_MAX): not `pending` with the reason: {pending_shown}"
            ),
        );
        // Waiting for a port is not a crash: one `worker.pending` line, no restarts.
        let port_lines = log.wait_logged("worker.pending", NO_PORT, LOG_WAIT).await;
        let pending_lines = log.wait_logged("worker.pending", OVER_MAX, LOG_WAIT).await;
        f.notes.push(format!(
            "the supervisor's log: {} `worker.pending` lines for {NO_PORT} (first: {}), {} `worker.pending` for {OVER_MAX} (first: {})",
            port_lines.len(),
            port_lines.first().map_or("none".into(), |l| l.to_string()),
            pending_lines.len(),
            pending_lines.first().map_or("none".into(), |l| l.to_string()),
        ));
        f.check(
            port_lines.iter().any(|l| l.to_string().contains("port")),
            format!("no log line of the supervisor says why {NO_PORT} does not start"),
        );
        f.check(
            !pending_lines.is_empty(),
            format!("no `worker.pending` line for {OVER_MAX}"),
        );

        // Calls to the waiting servers: the full run lets them wait it out (503
        // `no_worker` after MCP_GATEWAY_WORKER_WAIT); the quick one frees room while
        // they wait, and they are served.
        let running_call = call(hub, RUNNING[0], "get_fruits", json!({})).await;
        let waiting_calls = async {
            tokio::join!(
                call(hub, NO_PORT, "get_fruits", json!({})),
                call(hub, OVER_MAX, "get_fruits", json!({}))
            )
        };
        let free_room = async {
            if !quick {
                // Past the gateway's wait (10 s): the calls have had their answer.
                tokio::time::sleep(Duration::from_secs(11)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let freed_at = Instant::now();
            for id in RUNNING {
                delete(hub, id).await?;
            }
            let mut started = Vec::new();
            for id in [NO_PORT, OVER_MAX] {
                let record = wait_record(hub, id, Duration::from_secs(40), running).await;
                started.push(record.map(|_| ms_since(freed_at)));
            }
            Ok::<_, anyhow::Error>(started)
        };
        let ((starved_call, pending_call), started) = tokio::join!(waiting_calls, free_room);
        let started = started?;
        let answer = |(status, body, took): &(u16, Value, Duration)| {
            format!(
                "{status} {} in {:.1} s",
                if body["error"].is_object() {
                    body["error"].to_string()
                } else {
                    "(result)".into()
                },
                took.as_secs_f64()
            )
        };
        f.notes.push(format!(
            "calls sent once both were seen waiting{}: {NO_PORT}: {}; {OVER_MAX}: {}; {} (running): {}",
            if quick { "; quick run: room freed 0.3 s later" } else { "; room freed 11 s later" },
            answer(&starved_call),
            answer(&pending_call),
            RUNNING[0],
            answer(&running_call)
        ));
        f.check(
            running_call.0 == 200,
            format!(
                "the call to the running {} failed: {}",
                RUNNING[0],
                answer(&running_call)
            ),
        );
        for (id, reply) in [(NO_PORT, &starved_call), (OVER_MAX, &pending_call)] {
            if quick {
                f.check(
                    reply.0 == 200,
                    format!(
                        "the call to {id}, waiting while room was freed, was not served: {}",
                        answer(reply)
                    ),
                );
            } else {
                f.check(
                    reply.0 == 503 && is_error(&reply.1, "no_worker"),
                    format!("the call to the waiting {id} is not a JSON 503 `no_worker` with a message and a request id: {}", answer(reply)),
                );
            }
        }
        f.notes.push(format!(
            "{} and {} deleted: {NO_PORT} running {}, {OVER_MAX} running {} after the deletion",
            RUNNING[0],
            RUNNING[1],
            started[0].map_or("never (40 s)".into(), |ms| format!("{ms:.0} ms")),
            started[1].map_or("never (40 s)".into(), |ms| format!("{ms:.0} ms")),
        ));
        for (id, at) in [NO_PORT, OVER_MAX].iter().zip(&started) {
            f.check(
                at.is_some(),
                format!("{id} did not start within 40 s of room freed"),
            );
        }
        if !quick {
            for id in [NO_PORT, OVER_MAX] {
                let reply = call(hub, id, "get_fruits", json!({})).await;
                f.check(
                    reply.0 == 200,
                    format!("the call to {id} once started failed: {}", answer(&reply)),
                );
            }
        }
        for id in [NO_PORT, OVER_MAX] {
            delete(hub, id).await?;
        }
        wait_workers_down(&hub.prefix, workers).await;
        *found.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = f;
        Ok(Injected {
            hub_recovered_ms: Some(ms_since(t0)),
            notes: Vec::new(),
        })
    };
    let most_workers = std::sync::atomic::AtomicUsize::new(0);
    let sampled = async {
        let most = sample_workers(&hub.prefix, &stop_sampling).await;
        most_workers.store(most, std::sync::atomic::Ordering::Relaxed);
    };
    let after = if quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(25)
    };
    let both = async {
        let run = async {
            let injected = inject.await;
            stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
            injected
        };
        let (injected, ()) = tokio::join!(run, sampled);
        injected
    };
    let outcome = window(ctx, false, after, both).await;
    let limited = limited.into_inner().ok().flatten();
    if let Some(child) = limited {
        restore(ctx, &supervisor, child).await?;
    }
    let mut fault = outcome?;
    let f = found.into_inner().unwrap_or_default();
    fault.notes.splice(0..0, f.notes);
    fault.broken.extend(f.broken);
    let most = most_workers.into_inner();
    fault.notes.push(format!(
        "at most {most} worker processes ran at once (MCP_WORKER_MAX={cap})"
    ));
    if most > cap {
        fault.broken.push(format!(
            "{most} workers ran at once, past MCP_WORKER_MAX={cap}"
        ));
    }
    fault.notes.push("the supervisor was then killed again and started with its own settings (it adopted every worker)".into());
    fault.what = format!(
        "the supervisor started again with room for 3 more workers (MCP_WORKER_MAX) and 2 free ports (MCP_WORKER_PORT_COUNT); 4 servers registered during the PRD load: 2 run, {NO_PORT} finds no port, {OVER_MAX} no room; the runtime record and the log say why each waits, calls to them get a JSON 503 `no_worker` (full run) or are served once room frees while they wait (quick run); deleting the 2 running lets both start; the PRD load must not fail"
    );
    fault.allowed_failures = Some(0);
    settle(ctx, fault).await
}

/// A worker driven past `MCP_WORKER_MAX_RSS_MB` by large responses, on a supervisor
/// started again with the limit set well above every other worker's memory.
pub async fn worker_rss(ctx: &mut Ctx) -> anyhow::Result<Fault> {
    let supervisor = Supervisor::of(ctx)?;
    let live = procs::live_workers(&ctx.hub.prefix);
    let workers = live.len();
    let most_mb = live
        .iter()
        .filter_map(|pid| crate::procfs::rss_bytes(*pid))
        .max()
        .unwrap_or(0)
        / (1024 * 1024);
    // 20 MiB above the largest worker: the PRD's workers stay well below it, and two
    // large answers at a time take the victim past it.
    let limit_mb = most_mb + 20;
    let limit_s = limit_mb.to_string();
    let quick = ctx.timing.quick;
    let limited: Mutex<Option<ChildProcess>> = Mutex::new(None);
    let found: Mutex<Found> = Mutex::new(Found::default());
    let hub = &ctx.hub;
    let mock_url = ctx.hub.mock_url.clone();
    let inject = async {
        let mut f = Found::default();
        let mut log = Log::new(&supervisor.log);
        let child = supervisor
            .restart(supervisor.pid, &["--max-rss-mb", &limit_s], workers)
            .await?;
        *limited.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(child);
        let mut document = hub.bench_document(&[RSS.to_owned()], 1);
        document["servers"][RSS]["baseUrl"] = json!(format!("{mock_url}test"));
        document["tools"][RSS] = json!({"get_large": {
            "name": "get_large",
            "description": "A text answer of `bytes` bytes.",
            "method": "GET",
            "pathTemplate": "/large/{bytes}",
            "paramMapping": {"path": {"bytes": "bytes"}},
            "inputSchema": {"type": "object", "properties": {"bytes": {"type": "integer", "minimum": 1}},
                "required": ["bytes"], "additionalProperties": false}
        }});
        hub.register(&document).await?;
        let first = wait_record(hub, RSS, Duration::from_secs(30), running)
            .await
            .with_context(|| format!("{RSS} did not start"))?;
        let first_pid = first.pid.unwrap_or_default();
        let rss_at_start = crate::procfs::rss_bytes(first_pid).unwrap_or(0) / (1024 * 1024);
        let t0 = Instant::now();
        // Large answers, LARGE_IN_FLIGHT at a time, until the supervisor replaces it.
        let stop = std::sync::atomic::AtomicBool::new(false);
        let peak = std::sync::atomic::AtomicU64::new(0);
        let (mut served, mut failed) = (0usize, 0usize);
        let (hub_ref, stop_ref) = (hub, &stop);
        let one = move || async move {
            let (mut ok, mut bad) = (0, 0);
            while !stop_ref.load(std::sync::atomic::Ordering::Relaxed) {
                let status = call_head(hub_ref, RSS, large_args()).await;
                if status == 200 {
                    ok += 1
                } else {
                    bad += 1
                }
            }
            (ok, bad)
        };
        let drive = async {
            let (a, b) = tokio::join!(one(), one());
            [a, b]
        };
        let watch = async {
            let deadline = Instant::now() + Duration::from_secs(30);
            let replaced = loop {
                if let Some(rss) = crate::procfs::rss_bytes(first_pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                let record = hub
                    .registry
                    .get_runtime(RSS)
                    .await
                    .ok()
                    .and_then(|r| r.workers.into_iter().next());
                if record
                    .as_ref()
                    .is_some_and(|r| running(r) && r.pid != Some(first_pid))
                {
                    break record;
                }
                if Instant::now() > deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            replaced.map(|r| (r, ms_since(t0)))
        };
        let (counts, replaced) = tokio::join!(drive, watch);
        for (ok, bad) in counts {
            served += ok;
            failed += bad;
        }
        let peak_mb = peak.into_inner() / (1024 * 1024);
        let lines = log.wait_logged("worker.rss.exceeded", RSS, LOG_WAIT).await;
        let others = log
            .logged("worker.rss.exceeded", "")
            .len()
            .saturating_sub(lines.len());
        f.notes.push(format!(
            "the supervisor was killed (its {workers} workers stay) and started again with MCP_WORKER_MAX_RSS_MB={limit_mb} (the largest worker: {most_mb} MiB); {RSS}'s worker: {rss_at_start} MiB at start, driven by {LARGE_IN_FLIGHT} calls at a time, each answered {} MiB by the mock (the answer dropped once its status is in), peak seen {peak_mb} MiB",
            LARGE_BODY / (1024 * 1024)
        ));
        match &replaced {
            Some((record, ms)) => f.notes.push(format!(
                "replaced {ms:.0} ms after the large calls began (pid {first_pid} -> {}); its record: status `{}`, restarts {}, last failure \"{}\"; {served} large calls answered 200, {failed} otherwise (its own calls are not judged)",
                record.pid.unwrap_or_default(),
                record.status.as_str(),
                record.restarts,
                record.last_failure.as_deref().unwrap_or("")
            )),
            None => f.notes.push(format!("not replaced within 30 s; {served} large calls served, {failed} failed")),
        }
        f.notes.push(format!(
            "the supervisor's log: {} `worker.rss.exceeded` lines for {RSS} (first: {}), {others} for other servers",
            lines.len(),
            lines.first().map_or("none".into(), |l| l.to_string())
        ));
        f.check(replaced.is_some(), format!("{RSS}'s worker was not replaced within 30 s of passing MCP_WORKER_MAX_RSS_MB={limit_mb}"));
        f.check(
            replaced.as_ref().is_some_and(|(r, _)| {
                r.last_failure
                    .as_deref()
                    .is_some_and(|l| l.contains("MCP_WORKER_MAX_RSS_MB"))
            }),
            format!("{RSS}'s runtime record does not say the worker passed MCP_WORKER_MAX_RSS_MB"),
        );
        f.check(
            !lines.is_empty(),
            format!("no `worker.rss.exceeded` line for {RSS}"),
        );
        f.check(
            others == 0,
            format!("{others} other workers restarted for their memory"),
        );
        if !quick {
            let reply = call(hub, RSS, "get_large", json!({"bytes": 1024})).await;
            f.check(
                reply.0 == 200,
                format!(
                    "a small call to {RSS} after its restart failed: {}",
                    reply.0
                ),
            );
        }
        delete(hub, RSS).await?;
        wait_workers_down(&hub.prefix, workers).await;
        *found.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = f;
        Ok(Injected {
            hub_recovered_ms: replaced.map(|(_, ms)| ms),
            notes: Vec::new(),
        })
    };
    let after = if quick {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(15)
    };
    let outcome = window(ctx, false, after, inject).await;
    if let Some(child) = limited.into_inner().ok().flatten() {
        restore(ctx, &supervisor, child).await?;
    }
    let mut fault = outcome?;
    let f = found.into_inner().unwrap_or_default();
    fault.notes.splice(0..0, f.notes);
    fault.broken.extend(f.broken);
    fault.notes.push("the supervisor was then killed again and started with its own settings (it adopted every worker)".into());
    fault.what = format!(
        "one server's worker ({RSS}) driven past MCP_WORKER_MAX_RSS_MB by large answers: the supervisor restarts it and logs why (`worker.rss.exceeded`, the runtime record's last failure), no other worker is touched, the PRD load must not fail; recovered = its replacement `running`"
    );
    fault.allowed_failures = Some(0);
    settle(ctx, fault).await
}

//! Owns a run: sends the plan's requests on the open-loop schedule (each arrival its own
//! task, started on time whatever the ones before it are doing), judges each answer
//! SSE-aware (a success only when `tool_call.completed`, or an MCP result without
//! `isError`, arrived) and records it. The hub is only ever reached over HTTP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use rand::SeedableRng;
use reqwest::header::CONTENT_TYPE;
use reqwest::Url;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::http1::{CallTarget, Pool};
use crate::mcp::{self, Session};
use crate::report::{Failure, Recorder, Report, RunMeta, Success};
use crate::scenario::{Mode, Plan};
use crate::schedule::Schedule;
use mcp_adapter::sse;

/// Where the requests go.
#[derive(Clone, Debug)]
pub enum Target {
    /// Through the gateway: `{base}/mcp/{id}/{tool}` or `{base}/mcp-servers/{id}/mcp`.
    Gateway(Url),
    /// Straight to the workers (the gateway-cost comparison): one base URL per server
    /// of the plan, in the plan's order; `{worker}/call/{tool}` or `{worker}/mcp`.
    Direct(Vec<Url>),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Gateway(base) => base.to_string(),
            Target::Direct(workers) => format!("{} workers directly", workers.len()),
        }
    }

    fn call_url(&self, server_idx: usize, server_id: &str, tool: &str) -> anyhow::Result<Url> {
        let url = match self {
            Target::Gateway(base) => base.join(&format!("mcp/{server_id}/{tool}")),
            Target::Direct(workers) => worker(workers, server_idx)?.join(&format!("call/{tool}")),
        };
        url.context("building a call URL")
    }

    fn mcp_url(&self, server_idx: usize, server_id: &str) -> anyhow::Result<Url> {
        let url = match self {
            Target::Gateway(base) => base.join(&format!("mcp-servers/{server_id}/mcp")),
            Target::Direct(workers) => worker(workers, server_idx)?.join("mcp"),
        };
        url.context("building an MCP URL")
    }
}

fn worker(workers: &[Url], idx: usize) -> anyhow::Result<&Url> {
    workers
        .get(idx)
        .with_context(|| format!("no worker URL for server #{idx}"))
}

/// Connections a run keeps at most unless told otherwise: room for a 50 ms backlog at
/// 5,000 calls a second.
pub const DEFAULT_CONNECTIONS: usize = 256;

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub schedule: Schedule,
    /// Requests in flight at most; arrivals beyond are counted as `dropped`.
    pub max_in_flight: u64,
    /// Requests on the wire at once at most, so connections at most (HTTP/1.1 carries
    /// one request at a time), as wrk2 keeps a fixed set of connections. An arrival
    /// beyond waits for a connection to come free; its wait counts in the response time
    /// (from the schedule) and the generator lag, never in the latency from the send.
    pub connections: usize,
    /// A request without its completion this long after it was due is a `timeout`.
    pub timeout: Duration,
    /// Seed of the tool and argument choices (the same seed, the same sequence).
    pub seed: u64,
    /// MCP mode: sessions opened per server before the run, used in turn.
    pub sessions_per_server: usize,
    /// Keep every measured call's send time, end time and outcome in the report's
    /// `timeline` (the restart scenario reads it; off for long runs).
    pub timeline: bool,
}

/// The HTTP client a run uses: HTTP/1.1 keep-alive, no pool limit, no Nagle.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

/// What each request of the run is sent to, prepared before the clock starts.
enum Prepared {
    /// `targets[server_idx][spec_idx]`.
    Call(Vec<Vec<CallTarget>>),
    /// `sessions[server_idx]`.
    Mcp(Vec<Vec<Session>>),
}

struct Shared {
    /// A std Mutex: held for a histogram update, never across an await.
    collected: Mutex<Collected>,
    in_flight: AtomicU64,
}

struct Collected {
    recorder: Recorder,
    timeline: Option<Vec<Call>>,
    /// Set when the run's report is taken: a straggler that ends later records
    /// nothing (it was counted as `unfinished`).
    closed: bool,
}

/// Runs `plan` against `target` on `config.schedule` and reports the measured window.
pub async fn run(
    plan: &Plan,
    target: &Target,
    config: &RunConfig,
    client: &reqwest::Client,
) -> anyhow::Result<Report> {
    let prepared = prepare(plan, target, config, client).await?;
    let prepared = Arc::new(prepared);
    let shared = Arc::new(Shared {
        collected: Mutex::new(Collected {
            recorder: Recorder::default(),
            timeline: config.timeline.then(Vec::new),
            closed: false,
        }),
        in_flight: AtomicU64::new(0),
    });
    let schedule = config.schedule;
    let total = schedule.total();
    let first_measured = schedule.first_measured();
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let tracker = TaskTracker::new();
    let start = Instant::now();
    let mut next_rpc_id = 1u64;
    let wire = Arc::new(tokio::sync::Semaphore::new(config.connections.max(1)));
    let pool = Pool::new(config.connections.max(1))?;

    for k in 0..total {
        let due = start + schedule.due(k);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let measured = k >= first_measured;
        let in_flight = shared.in_flight.load(Ordering::Relaxed);
        if in_flight >= config.max_in_flight {
            if measured {
                lock(&shared.collected).recorder.failure(&Failure::Dropped);
            }
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let pick = plan.pick(k, &mut rng);
        let request = match &*prepared {
            Prepared::Call(targets) => Request::Call {
                pool: pool.clone(),
                target: targets[pick.server_idx][pick.spec_idx].clone(),
                body: pick.call_body,
            },
            Prepared::Mcp(sessions) => {
                let per_server = &sessions[pick.server_idx];
                let session =
                    &per_server[((k / plan.servers.len() as u64) as usize) % per_server.len()];
                next_rpc_id += 1;
                Request::Mcp {
                    builder: session.tools_call(client, next_rpc_id, pick.tool, pick.args),
                    id: next_rpc_id,
                }
            }
        };
        let shared = shared.clone();
        let timeout = config.timeout;
        let wire = wire.clone();
        tracker.spawn(async move {
            // The timeout runs from the schedule: a call that waited for a connection
            // has that much less time to complete.
            let deadline = due + timeout;
            let (sent, outcome) = match tokio::time::timeout_at(deadline, wire.acquire_owned())
                .await
            {
                Ok(Ok(_permit)) => {
                    let sent = Instant::now();
                    let outcome =
                        match tokio::time::timeout_at(deadline, request.send(sent, due)).await {
                            Ok(outcome) => outcome,
                            Err(_) => Err(Failure::Timeout),
                        };
                    (sent, outcome)
                }
                // Never closed; a wait past the deadline is a timeout.
                _ => (Instant::now(), Err(Failure::Timeout)),
            };
            let ended = Instant::now();
            let n = shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            if measured {
                let mut collected = lock(&shared.collected);
                if collected.closed {
                    return;
                }
                if let Some(timeline) = collected.timeline.as_mut() {
                    timeline.push(Call {
                        sent: sent - start,
                        ended: ended - start,
                        ok: outcome.is_ok(),
                    });
                }
                let recorder = &mut collected.recorder;
                recorder.lag(sent.saturating_duration_since(due));
                recorder.in_flight(n);
                match outcome {
                    Ok(success) => recorder.success(success),
                    Err(failure) => recorder.failure(&failure),
                }
            }
        });
    }
    tracker.close();
    // Every task ends within its timeout; the margin covers a loaded machine. One
    // that has not ended by then is counted as `unfinished`, so that what was
    // offered always equals what succeeded plus what failed.
    let _ = tokio::time::timeout(config.timeout + Duration::from_secs(5), tracker.wait()).await;

    if let Prepared::Mcp(sessions) = &*prepared {
        for session in sessions.iter().flatten() {
            session.close(client).await;
        }
    }
    let (recorder, timeline) = {
        let mut collected = lock(&shared.collected);
        collected.closed = true;
        let recorder = &mut collected.recorder;
        let counted = recorder.succeeded() + recorder.failed();
        for _ in counted..schedule.measured() {
            recorder.failure(&Failure::Unfinished);
        }
        (
            std::mem::take(&mut collected.recorder),
            collected.timeline.take(),
        )
    };
    let mut report = recorder.into_report(RunMeta {
        scenario: plan.name.clone(),
        mode: plan.mode,
        target: target.describe(),
        rate: schedule.rate(),
        warmup: schedule.warmup(),
        duration: schedule.duration(),
        offered: schedule.measured(),
    });
    report.timeline = timeline.unwrap_or_default();
    report.timeline.sort_by_key(|call| call.sent);
    Ok(report)
}

/// One measured call, as offsets from the start of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub sent: Duration,
    pub ended: Duration,
    pub ok: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn prepare(
    plan: &Plan,
    target: &Target,
    config: &RunConfig,
    client: &reqwest::Client,
) -> anyhow::Result<Prepared> {
    match plan.mode {
        Mode::Call => {
            let tools: Vec<&str> = plan.tools().collect();
            let urls = plan
                .servers
                .iter()
                .enumerate()
                .map(|(idx, server_id)| {
                    tools
                        .iter()
                        .map(|tool| CallTarget::new(&target.call_url(idx, server_id, tool)?))
                        .collect::<anyhow::Result<Vec<CallTarget>>>()
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok(Prepared::Call(urls))
        }
        Mode::Mcp => {
            let mut sessions = Vec::with_capacity(plan.servers.len());
            for (idx, server_id) in plan.servers.iter().enumerate() {
                let url = target.mcp_url(idx, server_id)?;
                let mut per_server = Vec::new();
                for _ in 0..config.sessions_per_server.max(1) {
                    per_server.push(Session::open(client, url.clone()).await?);
                }
                sessions.push(per_server);
            }
            Ok(Prepared::Mcp(sessions))
        }
    }
}

enum Request {
    /// `Pool` is a handle (an `Arc`): cloning it per request is cheap.
    Call {
        pool: Pool,
        target: CallTarget,
        body: Bytes,
    },
    Mcp {
        builder: reqwest::RequestBuilder,
        id: u64,
    },
}

impl Request {
    /// Sends it; the success's `response` time runs from `due`, the schedule's time.
    async fn send(self, sent: Instant, due: Instant) -> Result<Success, Failure> {
        let mut success = match self {
            Request::Call { pool, target, body } => call(&pool, &target, body, sent).await,
            Request::Mcp { builder, id } => mcp_call(builder, id, sent).await,
        }?;
        success.response = success.latency + sent.saturating_duration_since(due);
        Ok(success)
    }
}

/// Reads what is left of a finished answer so its connection goes back to the pool,
/// within a short bound: a stream that stays open after its last event costs its
/// connection, not the call's success.
pub(crate) async fn drain(response: &mut reqwest::Response) {
    let rest = async { while let Ok(Some(_)) = response.chunk().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), rest).await;
}

/// One hub call: `tool_call.completed` is the success, `tool_call.error` the failure.
async fn call(
    pool: &Pool,
    target: &CallTarget,
    body: Bytes,
    sent: Instant,
) -> Result<Success, Failure> {
    let (response, lease) = pool
        .post_json(target, body)
        .await
        .map_err(|_| Failure::Connection)?;
    let status = response.status();
    let event_stream = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut body = response.into_body();
    if !status.is_success() || !event_stream {
        if drain_body(&mut body).await {
            lease.release();
        }
        return Err(if status.is_success() {
            Failure::Protocol
        } else {
            Failure::Http(status.as_u16())
        });
    }
    let mut scanner = sse::Parser::new();
    let mut first_event = None;
    let mut outcome: Option<Result<Duration, Failure>> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Failure::Connection)?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        scanner
            .feed(chunk, |event| {
                let at = sent.elapsed();
                first_event.get_or_insert(at);
                if outcome.is_none() {
                    match event.name.as_str() {
                        "tool_call.completed" => outcome = Some(Ok(at)),
                        "tool_call.error" => outcome = Some(Err(Failure::ToolError)),
                        _ => {}
                    }
                }
            })
            .map_err(|_| Failure::Protocol)?;
        if outcome.is_some() {
            break;
        }
    }
    // Whatever follows the last event (usually only the end of the body) is read so
    // the connection can carry the next call.
    if drain_body(&mut body).await {
        lease.release();
    }
    match outcome {
        Some(Ok(latency)) => Ok(Success {
            latency,
            first_event: first_event.unwrap_or(latency),
            response: latency,
        }),
        Some(Err(failure)) => Err(failure),
        None => Err(Failure::Protocol),
    }
}

/// Reads a body to its end within a short bound; `true` when it ended cleanly, so its
/// connection may carry another call.
async fn drain_body(body: &mut hyper::body::Incoming) -> bool {
    let rest = async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(Duration::from_secs(1), rest)
        .await
        .unwrap_or(false)
}

/// One MCP `tools/call`: a result without `isError` is the success.
async fn mcp_call(
    builder: reqwest::RequestBuilder,
    id: u64,
    sent: Instant,
) -> Result<Success, Failure> {
    let response = builder.send().await.map_err(classify)?;
    let headers_at = sent.elapsed();
    let (answer, answered_at) = mcp::read_answer(response, id).await?;
    mcp::judge(&answer)?;
    let latency = answered_at.duration_since(sent);
    Ok(Success {
        latency,
        // MCP answers are one message: "first event" is the response headers.
        first_event: headers_at,
        response: latency,
    })
}

/// The failure kind of a transport error.
pub fn classify(err: reqwest::Error) -> Failure {
    if err.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Connection
    }
}

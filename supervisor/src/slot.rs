//! Owns one worker slot (one replica of one server) as an actor task: start (through the
//! [`crate::backend`]) on a claimed port, wait for `/healthz`, watch the process (a child's exit is noticed at once
//! through `wait`, an adopted process through a fast pid poll), probe health on an
//! interval, restart with exponential back-off, stop gracefully (SIGTERM, then SIGKILL),
//! and keep the runtime record true at every step. No free port in the worker port range
//! is no failure: the replica waits `pending` and tries again shortly, without back-off.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_core::runtime::{unix_millis, WorkerRecord, WorkerStatus};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{StartedWorker, StopSignal, WorkerSpec};
use crate::{health, status, Ctx};

/// Failures in a row after which the record says `failed` (it keeps retrying, slowly).
const FAILED_AFTER: u32 = 5;
/// A worker that stays up this long resets the back-off.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How often an adopted (non-child) process is checked for life.
const ADOPTED_POLL: Duration = Duration::from_millis(100);
/// How often a replica waiting `pending` for a free port tries to claim one again (no
/// failure counted, no back-off).
const PORT_RETRY: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub server_id: String,
    pub replica_idx: u32,
}

#[derive(Debug)]
pub enum Command {
    Stop { reason: String, then: AfterStop },
    Restart { reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterStop {
    /// Record stays with status `stopped` (server inactive).
    Stopped,
    /// Record says `idle` (no calls for the idle TTL); a call wakes it.
    Idle,
    /// Record removed (server deleted, replica no longer wanted).
    Remove,
    /// Record left alone: another supervisor owns the server now and writes it.
    Forget,
}

/// What a slot tells the supervisor when it ends.
#[derive(Debug)]
pub struct Ended {
    pub key: SlotKey,
    /// The `SlotHandle::id` of the slot that ended, so a late message from a replaced
    /// slot never removes its successor.
    pub slot_id: u64,
    pub then: Option<AfterStop>,
}

/// How a slot begins.
pub enum Start {
    Spawn {
        reason: &'static str,
    },
    /// A live worker found at start-up, adopted without a restart (boxed: a record is
    /// large next to `Spawn`).
    Adopt {
        record: Box<WorkerRecord>,
    },
}

pub struct SlotHandle {
    /// Unique per slot in this process (see `Ended::slot_id`).
    pub id: u64,
    commands: mpsc::Sender<Command>,
    pub task: tokio::task::JoinHandle<()>,
    /// Pid of the slot's current process (0 = none), so ghost scans spare it. Atomic:
    /// written by the slot task, read by the supervisor loop.
    pub pid: Arc<AtomicU32>,
}

impl SlotHandle {
    pub fn send(&self, command: Command) {
        if self.commands.try_send(command).is_err() {
            tracing::warn!(event = "supervisor.slot.busy", "a slot command was dropped");
        }
    }
}

enum Proc {
    Child(Box<dyn StartedWorker>),
    Adopted,
}

struct Slot {
    ctx: Arc<Ctx>,
    key: SlotKey,
    record: WorkerRecord,
    proc: Option<Proc>,
    commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    failures_in_a_row: u32,
    running_since: Option<Instant>,
    shared_pid: Arc<AtomicU32>,
    /// Pid and port of the last process that ended, for the `worker.restart` line that
    /// follows (the record's are cleared when the process is forgotten).
    ended: (Option<u32>, Option<u16>),
}

pub fn start(
    ctx: Arc<Ctx>,
    key: SlotKey,
    start: Start,
    ended: mpsc::UnboundedSender<Ended>,
    cancel: CancellationToken,
) -> SlotHandle {
    let (tx, rx) = mpsc::channel(8);
    let (record, proc, reason) = match start {
        Start::Spawn { reason } => (new_record(&ctx, &key), None, reason),
        Start::Adopt { record } => (*record, Some(Proc::Adopted), "adopted"),
    };
    let adopted = proc.is_some();
    let shared_pid = Arc::new(AtomicU32::new(record.pid.unwrap_or(0)));
    let slot = Slot {
        ctx,
        key: key.clone(),
        record,
        proc,
        commands: rx,
        cancel,
        failures_in_a_row: 0,
        running_since: adopted.then(Instant::now),
        shared_pid: shared_pid.clone(),
        ended: (None, None),
    };
    static NEXT_SLOT_ID: AtomicU64 = AtomicU64::new(1);
    let slot_id = NEXT_SLOT_ID.fetch_add(1, Ordering::Relaxed);
    let task = tokio::spawn(async move {
        let then = slot.run(reason).await;
        let _ = ended.send(Ended { key, slot_id, then });
    });
    SlotHandle {
        id: slot_id,
        commands: tx,
        task,
        pid: shared_pid,
    }
}

fn new_record(ctx: &Ctx, key: &SlotKey) -> WorkerRecord {
    WorkerRecord {
        host: Some(ctx.advertise_host.clone()),
        ..WorkerRecord::new(key.replica_idx, WorkerStatus::Stopped, &ctx.supervisor_id)
    }
}

enum SpawnResult {
    Running,
    /// Every port of the worker port range is taken: not a failure, the replica waits.
    NoPort,
    Failed(String),
    Ended(Option<AfterStop>),
}

enum MonitorEnd {
    Exited(String),
    Unhealthy(String),
    Restart(String),
    Stop(AfterStop, String),
    Detach,
}

impl Slot {
    async fn run(mut self, first_reason: &'static str) -> Option<AfterStop> {
        let mut reason: String = first_reason.to_owned();
        if self.proc.is_some() {
            self.take_adopted().await;
        } else {
            self.continue_from_stored().await;
        }
        loop {
            if self.proc.is_none() {
                match self.spawn_and_wait(&reason).await {
                    SpawnResult::Running => {}
                    SpawnResult::NoPort => {
                        if let Some(end) = self.wait_for_port().await {
                            return end;
                        }
                        continue;
                    }
                    SpawnResult::Failed(why) => {
                        self.failure(&why).await;
                        if let Some(end) = self.back_off().await {
                            return end;
                        }
                        reason = "crash".into();
                        continue;
                    }
                    SpawnResult::Ended(then) => return then,
                }
            }
            match self.monitor().await {
                MonitorEnd::Exited(why) => {
                    self.log_terminated(&why);
                    self.forget_process().await;
                    self.failure(&why).await;
                    if let Some(end) = self.back_off().await {
                        return end;
                    }
                    reason = "crash".into();
                }
                MonitorEnd::Unhealthy(why) => {
                    self.stop_process(&why).await;
                    self.failure(&why).await;
                    if let Some(end) = self.back_off().await {
                        return end;
                    }
                    reason = "health".into();
                }
                MonitorEnd::Restart(why) => {
                    self.transition(WorkerStatus::Restarting, Some(why.clone()))
                        .await;
                    self.stop_process(&why).await;
                    self.record.restarts += 1;
                    let (pid, port) = self.ended;
                    tracing::info!(event = "worker.restart", server = %self.key.server_id, replica = self.key.replica_idx, pid, port, reason = %why, restarts = self.record.restarts);
                    reason = why;
                }
                MonitorEnd::Stop(then, why) => {
                    self.stop(then, &why).await;
                    return Some(then);
                }
                MonitorEnd::Detach => return None,
            }
        }
    }

    /// Claims a port, spawns, and waits until `/healthz` answers for this server.
    async fn spawn_and_wait(&mut self, reason: &str) -> SpawnResult {
        // Until a process starts, a failure has no pid or port to report.
        self.ended = (None, None);
        // The port first: with none free the replica waits `pending`, never `starting`.
        let port = match self.claim_port().await {
            Ok(Some(port)) => port,
            Ok(None) => return SpawnResult::NoPort,
            Err(why) => {
                self.transition(WorkerStatus::Starting, None).await;
                return SpawnResult::Failed(why);
            }
        };
        self.transition(WorkerStatus::Starting, None).await;
        let spec = WorkerSpec {
            server_id: &self.key.server_id,
            replica_idx: self.key.replica_idx,
            port,
        };
        let child = match self.ctx.backend.start(&self.ctx, spec) {
            Ok(child) => child,
            Err(err) => {
                self.release_port(port).await;
                return SpawnResult::Failed(format!(
                    "could not start {}: {err}",
                    self.ctx.worker_bin.display()
                ));
            }
        };
        let pid = child.pid();
        self.record.pid = Some(pid);
        self.shared_pid.store(pid, Ordering::Relaxed);
        self.record.port = Some(port);
        self.record.started_at = Some(unix_millis());
        // A new process starts with a closed breaker and no counters.
        self.record.resilience = None;
        self.record.audit = None;
        self.proc = Some(Proc::Child(child));
        tracing::info!(event = "worker.spawned", server = %self.key.server_id, replica = self.key.replica_idx, pid, port, reason);
        let deadline = tokio::time::Instant::now() + self.ctx.start_timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        loop {
            tokio::select! {
                exit = wait_child(&mut self.proc) => {
                    self.forget_process().await;
                    return SpawnResult::Failed(format!("exited during start-up ({exit})"));
                }
                command = self.commands.recv() => match command {
                    Some(Command::Stop { reason, then }) => {
                        self.stop(then, &reason).await;
                        return SpawnResult::Ended(Some(then));
                    }
                    Some(Command::Restart { .. }) => {}
                    None => return SpawnResult::Ended(None),
                },
                () = self.cancel.cancelled() => {
                    if self.ctx.stop_workers_on_exit {
                        self.stop(AfterStop::Stopped, "supervisor shutdown").await;
                    }
                    return SpawnResult::Ended(None);
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.stop_process("start timeout").await;
                    return SpawnResult::Failed(format!("did not answer /healthz within {:?}", self.ctx.start_timeout));
                }
                _ = tick.tick() => {
                    if let Ok(health) = self.probe(port, Duration::from_millis(500)).await {
                        if health.pid == pid {
                            self.running_since = Some(Instant::now());
                            self.record.last_heartbeat = Some(unix_millis());
                            self.transition(WorkerStatus::Running, None).await;
                            return SpawnResult::Running;
                        }
                    }
                }
            }
        }
    }

    /// Watches a running worker until something ends its run. A probe of a hung worker
    /// takes its whole timeout; a stop, restart or shutdown that comes meanwhile is
    /// handled at once, not after it (nor after the health ticks missed while it waited).
    async fn monitor(&mut self) -> MonitorEnd {
        let mut health_tick = tokio::time::interval(self.ctx.health_interval);
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health_tick.tick().await;
        let mut adopted_tick = tokio::time::interval(ADOPTED_POLL);
        let mut failed_probes = 0u32;
        loop {
            let port = tokio::select! {
                biased;
                exit = wait_child(&mut self.proc) => return MonitorEnd::Exited(exit),
                command = self.commands.recv() => return self.on_command(command),
                () = self.cancel.cancelled() => return self.on_shutdown(),
                _ = adopted_tick.tick(), if matches!(self.proc, Some(Proc::Adopted)) => {
                    if !self.record.pid.is_some_and(|pid| self.ctx.backend.alive(pid)) {
                        return MonitorEnd::Exited("process is gone".into());
                    }
                    continue;
                }
                _ = health_tick.tick() => {
                    let Some(port) = self.record.port else { continue };
                    port
                }
            };
            let probe = self.probe(port, self.ctx.health_interval.min(Duration::from_secs(2)));
            let probed = tokio::select! {
                biased;
                exit = wait_child(&mut self.proc) => return MonitorEnd::Exited(exit),
                command = self.commands.recv() => return self.on_command(command),
                () = self.cancel.cancelled() => return self.on_shutdown(),
                probed = probe => probed,
            };
            if let Some(over) = self.rss_over_limit() {
                return MonitorEnd::Unhealthy(over);
            }
            match probed {
                Ok(health) => {
                    failed_probes = 0;
                    self.record.last_heartbeat = Some(unix_millis());
                    // A change of the breaker's state is published (the dashboard
                    // follows events); its counters ride on the quiet heartbeat.
                    let breaker_changed = self.record.resilience.map(|r| r.state)
                        != health.resilience.map(|r| r.state);
                    self.record.resilience = health.resilience;
                    self.record.audit = health.audit;
                    if self
                        .running_since
                        .is_some_and(|t| t.elapsed() >= STABLE_AFTER)
                    {
                        self.failures_in_a_row = 0;
                    }
                    if self.record.status == WorkerStatus::Unhealthy {
                        self.transition(WorkerStatus::Running, None).await;
                    } else {
                        self.write(breaker_changed).await;
                    }
                    if !self.ctx.idle_ttl.is_zero()
                        && health.idle_ms >= self.ctx.idle_ttl.as_millis() as u64
                    {
                        return MonitorEnd::Stop(
                            AfterStop::Idle,
                            format!("no call for {:?}", self.ctx.idle_ttl),
                        );
                    }
                }
                Err(failure) => {
                    failed_probes += 1;
                    tracing::warn!(event = "worker.health.fail", server = %self.key.server_id, replica = self.key.replica_idx,
                        pid = self.record.pid, port, response_code = failure.response_code.unwrap_or(0), error = %failure.error, failed_probes);
                    if failed_probes >= self.ctx.health_failures {
                        return MonitorEnd::Unhealthy(format!(
                            "{failed_probes} failed health probes: {}",
                            failure.error
                        ));
                    }
                    self.transition(WorkerStatus::Unhealthy, Some(failure.error))
                        .await;
                }
            }
        }
    }

    /// `Some(why)` when the worker's resident memory is past `MCP_WORKER_MAX_RSS_MB`
    /// (logged here, once per restart).
    fn rss_over_limit(&self) -> Option<String> {
        let limit = self.ctx.max_rss_bytes;
        let pid = self.record.pid?;
        if limit == 0 {
            return None;
        }
        let rss = self.ctx.backend.rss_bytes(pid)?;
        if rss <= limit {
            return None;
        }
        let (rss_mb, limit_mb) = (rss / (1024 * 1024), limit / (1024 * 1024));
        tracing::warn!(event = "worker.rss.exceeded", server = %self.key.server_id, replica = self.key.replica_idx,
            pid, port = self.record.port, rss_mb, limit_mb, "restarting the worker: its memory passed MCP_WORKER_MAX_RSS_MB");
        Some(format!(
            "resident memory {rss_mb} MiB past MCP_WORKER_MAX_RSS_MB={limit_mb}"
        ))
    }

    /// How a command to a monitored worker ends its run.
    fn on_command(&self, command: Option<Command>) -> MonitorEnd {
        match command {
            Some(Command::Stop { reason, then }) => MonitorEnd::Stop(then, reason),
            Some(Command::Restart { reason }) => MonitorEnd::Restart(reason),
            None => MonitorEnd::Detach,
        }
    }

    /// How the supervisor's shutdown ends a monitored worker's run.
    fn on_shutdown(&self) -> MonitorEnd {
        if self.ctx.stop_workers_on_exit {
            MonitorEnd::Stop(AfterStop::Stopped, "supervisor shutdown".into())
        } else {
            MonitorEnd::Detach
        }
    }

    /// Records a failure and the back-off ahead.
    async fn failure(&mut self, why: &str) {
        self.failures_in_a_row += 1;
        self.record.last_failure = Some(why.to_owned());
        self.record.last_failure_at = Some(unix_millis());
        let delay = self.backoff_delay();
        let status = if self.failures_in_a_row >= FAILED_AFTER {
            WorkerStatus::Failed
        } else {
            WorkerStatus::Restarting
        };
        let reason = format!(
            "{why}; restarting in {} ms ({} failures in a row)",
            delay.as_millis(),
            self.failures_in_a_row
        );
        if self.record.status == WorkerStatus::Running
            || self.record.status == WorkerStatus::Unhealthy
        {
            self.transition(WorkerStatus::Restarting, Some(reason.clone()))
                .await;
        }
        self.transition(status, Some(reason)).await;
    }

    fn backoff_delay(&self) -> Duration {
        let exponent = self.failures_in_a_row.saturating_sub(1).min(20);
        self.ctx
            .backoff_min
            .saturating_mul(1u32 << exponent)
            .min(self.ctx.backoff_max)
    }

    /// Sleeps the back-off; `Some` when the slot must end instead of restarting.
    async fn back_off(&mut self) -> Option<Option<AfterStop>> {
        let delay = self.backoff_delay();
        let (pid, port) = self.ended;
        tracing::info!(event = "worker.restart", server = %self.key.server_id, replica = self.key.replica_idx, pid,
            port, reason = self.record.last_failure.as_deref().unwrap_or(""), backoff_ms = delay.as_millis() as u64, restarts = self.record.restarts + 1);
        self.record.restarts += 1;
        self.wait_or_command(delay).await
    }

    /// Waits `delay` while answering commands: `None` to go on (the wait is over, or a
    /// restart was asked for: now), `Some` when the slot must end (stopped, cancelled).
    async fn wait_or_command(&mut self, delay: Duration) -> Option<Option<AfterStop>> {
        tokio::select! {
            () = tokio::time::sleep(delay) => None,
            () = self.cancel.cancelled() => Some(None),
            command = self.commands.recv() => match command {
                Some(Command::Stop { reason, then }) => {
                    self.stop(then, &reason).await;
                    Some(Some(then))
                }
                Some(Command::Restart { .. }) => None,
                None => Some(None),
            },
        }
    }

    /// Stops the process (if any) and finishes the record as `then` says.
    async fn stop(&mut self, then: AfterStop, why: &str) {
        if then != AfterStop::Forget
            && self.record.status != WorkerStatus::Stopping
            && status::allowed(self.record.status, WorkerStatus::Stopping)
        {
            self.transition(WorkerStatus::Stopping, Some(why.to_owned()))
                .await;
        }
        self.stop_process(why).await;
        match then {
            AfterStop::Remove => {
                if let Err(err) = self
                    .ctx
                    .registry
                    .remove_worker_record(&self.key.server_id, self.key.replica_idx)
                    .await
                {
                    tracing::warn!(event = "supervisor.record.failed", server = %self.key.server_id, error = %err);
                }
            }
            AfterStop::Forget => {}
            AfterStop::Stopped => {
                self.transition(WorkerStatus::Stopped, Some(why.to_owned()))
                    .await
            }
            AfterStop::Idle => {
                if self.record.status != WorkerStatus::Stopping {
                    self.transition(WorkerStatus::Stopping, Some(why.to_owned()))
                        .await;
                }
                self.transition(WorkerStatus::Idle, Some(why.to_owned()))
                    .await;
            }
        }
    }

    /// SIGTERM to the group, SIGKILL after the stop timeout; the port is released.
    async fn stop_process(&mut self, why: &str) {
        let Some(pid) = self.record.pid else {
            self.proc = None;
            return;
        };
        if self.proc.is_some() {
            self.ctx.backend.signal(pid, StopSignal::Graceful);
            let deadline = tokio::time::Instant::now() + self.ctx.stop_timeout;
            let exited = loop {
                match &mut self.proc {
                    Some(Proc::Child(child)) => {
                        match tokio::time::timeout_at(deadline, child.wait()).await {
                            Ok(status) => break status,
                            Err(_) => {
                                self.ctx.backend.signal(pid, StopSignal::Kill);
                                let _ = child.wait().await;
                                break "killed after the stop timeout".to_owned();
                            }
                        }
                    }
                    _ => {
                        if !self.ctx.backend.alive(pid) {
                            break "exited".to_owned();
                        }
                        if tokio::time::Instant::now() >= deadline {
                            self.ctx.backend.signal(pid, StopSignal::Kill);
                            break "killed after the stop timeout".to_owned();
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            tracing::info!(event = "worker.terminated", server = %self.key.server_id, replica = self.key.replica_idx, pid, port = self.record.port, reason = %why, exit = %exited);
        }
        self.forget_process().await;
    }

    /// Drops the process handle and releases its port.
    async fn forget_process(&mut self) {
        self.ended = (self.record.pid, self.record.port);
        self.proc = None;
        self.running_since = None;
        if let Some(port) = self.record.port.take() {
            self.release_port(port).await;
        }
        self.record.pid = None;
        self.shared_pid.store(0, Ordering::Relaxed);
    }

    fn log_terminated(&self, why: &str) {
        tracing::warn!(event = "worker.terminated", server = %self.key.server_id, replica = self.key.replica_idx, pid = self.record.pid, port = self.record.port, reason = %why);
    }

    /// A port of the worker port range for a new process: `Ok(None)` when every one is
    /// claimed or held by another process, `Err` when Redis could not say.
    async fn claim_port(&mut self) -> Result<Option<u16>, String> {
        let mut skip: Vec<u16> = Vec::new();
        for _ in 0..32 {
            let claimed = match self
                .ctx
                .registry
                .claim_port(
                    &self.ctx.advertise_host,
                    self.ctx.base_port,
                    self.ctx.port_count,
                    &skip,
                )
                .await
            {
                Ok(Some(claimed)) => claimed,
                Ok(None) => return Ok(None),
                Err(err) => {
                    tracing::warn!(event = "supervisor.port.failed", server = %self.key.server_id, error = %err);
                    return Err(format!("could not claim a port: {err}"));
                }
            };
            if self.ctx.backend.port_is_free(self.ctx.bind_host, claimed) {
                return Ok(Some(claimed));
            }
            tracing::info!(
                event = "supervisor.port.foreign",
                port = claimed,
                "port held by another process; skipping"
            );
            self.release_port(claimed).await;
            skip.push(claimed);
        }
        Ok(None)
    }

    /// Why a replica waits for a port, naming the range and its settings.
    fn no_port_reason(&self) -> String {
        let last = u32::from(self.ctx.base_port) + u32::from(self.ctx.port_count) - 1;
        format!(
            "no free port in the worker port range {}-{last} (MCP_WORKER_BASE_PORT, MCP_WORKER_PORT_COUNT); waiting for one to free up",
            self.ctx.base_port
        )
    }

    /// No port is free: the replica waits `pending` (no failure counted, no back-off)
    /// and tries again after [`PORT_RETRY`]. The record and the `worker.pending` line
    /// are written when it begins to wait, not at every try. `Some` when the slot must
    /// end instead.
    async fn wait_for_port(&mut self) -> Option<Option<AfterStop>> {
        let why = self.no_port_reason();
        if self.record.status != WorkerStatus::Pending
            || self.record.reason.as_deref() != Some(why.as_str())
        {
            // A record that cannot say `pending` at once (a restart after a crash)
            // passes through the states the state machine names.
            let path = crate::servers::status_path(Some(self.record.status), WorkerStatus::Pending)
                .unwrap_or_default();
            self.record.last_failure = Some(why.clone());
            self.record.last_failure_at = Some(unix_millis());
            for step in path {
                self.transition(step, Some(why.clone())).await;
            }
            tracing::info!(event = "worker.pending", server = %self.key.server_id, replica = self.key.replica_idx,
                base_port = self.ctx.base_port, port_count = self.ctx.port_count, reason = %why);
        }
        self.wait_or_command(PORT_RETRY).await
    }

    async fn release_port(&self, port: u16) {
        if let Err(err) = self
            .ctx
            .registry
            .release_port(&self.ctx.advertise_host, port)
            .await
        {
            tracing::warn!(event = "supervisor.port.failed", port, error = %err);
        }
    }

    /// A health probe of the worker on `port`, as a future that borrows nothing, so the
    /// monitor can wait on it and on its commands at once.
    fn probe(
        &self,
        port: u16,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<health::Health, health::ProbeFailure>> + 'static
    {
        let host = if self.ctx.bind_host.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            self.ctx.bind_host.to_string()
        };
        let (http, server_id) = (self.ctx.http.clone(), self.key.server_id.clone());
        async move { health::probe(&http, &host, port, &server_id, timeout).await }
    }

    /// The status Redis holds for this replica now (`None`: no record).
    async fn stored_status(&self) -> mcp_core::registry::Result<Option<WorkerStatus>> {
        let runtime = self.ctx.registry.get_runtime(&self.key.server_id).await?;
        Ok(runtime
            .workers
            .iter()
            .find(|r| r.replica_idx == self.key.replica_idx)
            .map(|r| r.status))
    }

    /// Writes an adopted worker's record under this supervisor's name, if the state
    /// machine allows it over what Redis holds now (the record was read before the
    /// health probe; another writer may have moved it since).
    async fn take_adopted(&mut self) {
        self.record.supervisor_id = Some(self.ctx.supervisor_id.clone());
        self.record.reason = None;
        match self.stored_status().await {
            Ok(stored) => match status::check_replace(stored, self.record.status) {
                Ok(()) => self.write(true).await,
                Err(err) => {
                    tracing::error!(event = "supervisor.illegal_transition", server = %self.key.server_id, replica = self.key.replica_idx, error = %err);
                }
            },
            // Not written blind; the next heartbeat writes it.
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %self.key.server_id, error = %err)
            }
        }
        tracing::info!(event = "worker.adopted", server = %self.key.server_id, replica = self.key.replica_idx, pid = self.record.pid, port = self.record.port);
    }

    /// A new slot goes on from the replica's stored record: the slot's state machine
    /// starts at the stored status and first writes the moves
    /// [`status::path_to_starting`] names, so its `Starting` is a legal move from what
    /// Redis holds (a `pending` record left by `hold`, an `idle` one, or a stale
    /// `running` one). Without a readable record it starts from `stopped`.
    async fn continue_from_stored(&mut self) {
        let stored = match self.stored_status().await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %self.key.server_id, error = %err);
                return;
            }
        };
        self.record.status = stored;
        for &step in status::path_to_starting(Some(stored)) {
            self.transition(step, Some("taken over by a new slot".into()))
                .await;
        }
    }

    /// Moves to `to` (refusing an illegal move) and writes the record with its event.
    async fn transition(&mut self, to: WorkerStatus, reason: Option<String>) {
        if let Err(err) = status::check(self.record.status, to) {
            tracing::error!(event = "supervisor.illegal_transition", server = %self.key.server_id, replica = self.key.replica_idx, error = %err);
            return;
        }
        let changed = self.record.status != to || self.record.reason != reason;
        self.record.status = to;
        self.record.reason = reason;
        self.write(changed).await;
    }

    /// Writes the record; `publish` sends a `worker.status` event (status changes),
    /// otherwise it is a quiet heartbeat.
    async fn write(&mut self, publish: bool) {
        self.record.updated_at = unix_millis();
        self.record.supervisor_id = Some(self.ctx.supervisor_id.clone());
        let result = if publish {
            self.ctx
                .registry
                .put_worker_record(&self.key.server_id, &self.record)
                .await
                .map(drop)
        } else {
            self.ctx
                .registry
                .touch_worker_record(&self.key.server_id, &self.record)
                .await
        };
        if let Err(err) = result {
            tracing::warn!(event = "supervisor.record.failed", server = %self.key.server_id, error = %err);
        }
    }
}

/// Resolves when the child exits (never for adopted or absent processes).
async fn wait_child(proc: &mut Option<Proc>) -> String {
    match proc {
        Some(Proc::Child(child)) => child.wait().await,
        _ => std::future::pending().await,
    }
}

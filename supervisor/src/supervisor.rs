//! Owns the reconcile loop, as the executor of [`crate::plan`]: it reads Redis and the
//! backend, asks the plan what to do and does it (slots, leases, records). Desired state (active servers times their replicas, among
//! those this supervisor holds the lease of, within `MCP_WORKER_MAX`) against actual
//! state (slots). Start-up order: adopt live workers from runtime records and clean up
//! ghosts, subscribe to events, then reconcile on every relevant event and on a timer.
//!
//! `MCP_WORKER_MAX` counts every worker process this supervisor has: slots (also those on
//! their way out) and processes it is still killing. A replica of an owned server that
//! finds no room (a woken idle server, a raised replica count) waits `pending` and starts
//! as soon as room frees up (or says `idle` with its server when that goes idle); owned
//! servers come before new ones.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_core::events::EventKind;
use mcp_core::registry::Snapshot;
use mcp_core::runtime::{unix_millis, ServerRuntime, WorkerRecord, WorkerStatus};
use mcp_core::subscription::Update;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{StopSignal, WorkerArgs};
use crate::plan::{self, Desired, Fate, Liveness, Room};
use crate::slot::{self, AfterStop, Command, Ended, SlotHandle, SlotKey, Start};
use crate::{health, status, Ctx};

pub struct Supervisor {
    ctx: Arc<Ctx>,
    lease_ttl: Duration,
    reconcile_interval: Duration,
    slots: BTreeMap<SlotKey, SlotHandle>,
    /// Servers whose lease this supervisor holds.
    owned: BTreeSet<String>,
    /// Owned servers whose workers were stopped as idle (woken by `server.wake`).
    idle: BTreeSet<String>,
    /// Servers this supervisor marked `pending` (over `MCP_WORKER_MAX`, owner-less).
    pending: BTreeSet<String>,
    /// Replicas of owned servers that want a worker but wait for room under
    /// `MCP_WORKER_MAX`; their records say `pending`.
    held: BTreeSet<SlotKey>,
    /// When the runtime records of deleted servers were last swept (see `sweep_deleted`).
    last_sweep: Option<Instant>,
    /// Worker processes with no desired server, and when they were first seen so.
    ghost_candidates: BTreeMap<u32, Instant>,
    /// Pids being stopped by `kill_worker` tasks. A std Mutex: held for one set
    /// operation, never across an await.
    stopping: Arc<std::sync::Mutex<BTreeSet<u32>>>,
    ended_tx: mpsc::UnboundedSender<Ended>,
    ended_rx: mpsc::UnboundedReceiver<Ended>,
    cancel: CancellationToken,
}

impl Supervisor {
    pub fn new(
        ctx: Arc<Ctx>,
        lease_ttl: Duration,
        reconcile_interval: Duration,
        cancel: CancellationToken,
    ) -> Supervisor {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Supervisor {
            ctx,
            lease_ttl,
            reconcile_interval,
            slots: BTreeMap::new(),
            owned: BTreeSet::new(),
            idle: BTreeSet::new(),
            pending: BTreeSet::new(),
            held: BTreeSet::new(),
            last_sweep: None,
            ghost_candidates: BTreeMap::new(),
            stopping: Arc::default(),
            ended_tx,
            ended_rx,
            cancel,
        }
    }

    pub async fn run(mut self) {
        let mut subscription = self.ctx.registry.subscribe();
        let mut adopted = false;
        let mut timer = tokio::time::interval(self.reconcile_interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                update = subscription.next() => match update {
                    Some(Update::Reload(reason)) => {
                        tracing::info!(event = "supervisor.reload", reason = ?reason);
                        if !adopted {
                            adopted = self.adopt().await;
                        }
                        self.reconcile().await;
                    }
                    Some(Update::Event(event)) => self.on_event(event.kind).await,
                    None => break,
                },
                Some(ended) = self.ended_rx.recv() => {
                    self.on_slot_ended(ended);
                    // A slot that ended made room: start what waits for it now.
                    if !self.held.is_empty() || !self.pending.is_empty() {
                        self.reconcile().await;
                    }
                }
                _ = timer.tick() => {
                    if !adopted {
                        adopted = self.adopt().await;
                    }
                    self.reconcile().await;
                }
            }
        }
        self.shutdown().await;
    }

    async fn on_event(&mut self, kind: EventKind) {
        match kind {
            EventKind::ServerRestart { server_id } => {
                for (key, slot) in &self.slots {
                    if key.server_id == server_id {
                        slot.send(Command::Restart {
                            reason: "restart requested".into(),
                        });
                    }
                }
                if self.idle.remove(&server_id) {
                    self.reconcile().await;
                }
            }
            EventKind::ServerWake { server_id } => {
                if self.idle.remove(&server_id) || !self.owned.contains(&server_id) {
                    self.reconcile().await;
                }
            }
            EventKind::ServerUpsert { .. } | EventKind::ServerDelete { .. } => {
                self.reconcile().await
            }
            EventKind::ToolUpsert { .. } | EventKind::ToolDelete { .. } => {}
            EventKind::WorkerStatus { .. } | EventKind::WorkerRemoved { .. } => {}
        }
    }

    fn on_slot_ended(&mut self, ended: Ended) {
        if self
            .slots
            .get(&ended.key)
            .is_some_and(|slot| slot.id == ended.slot_id)
        {
            self.slots.remove(&ended.key);
        }
        if ended.then == Some(AfterStop::Idle) {
            self.idle.insert(ended.key.server_id.clone());
            tracing::info!(event = "worker.idle", server = %ended.key.server_id, replica = ended.key.replica_idx);
        }
    }

    /// Start-up scan: take over the servers whose records name this supervisor or a dead
    /// one (adopting their live workers), then stop ghosts: our own workers nobody
    /// adopted and workers of servers nobody wants ([`plan::adoption`],
    /// [`plan::ghosts_at_start`]). Returns false when Redis could not be read (retried on
    /// the next tick).
    async fn adopt(&mut self) -> bool {
        let (records, snapshot, supervisors) = match tokio::try_join!(
            self.ctx.registry.list_runtime(),
            self.ctx.registry.snapshot(),
            self.ctx.registry.supervisors()
        ) {
            Ok(all) => all,
            Err(err) => {
                tracing::warn!(event = "supervisor.adopt.failed", error = %err);
                return false;
            }
        };
        let me = self.ctx.supervisor_id.clone();
        let live = self.liveness(&me, &supervisors);
        let live_workers = self.live_workers();
        let desired = plan::desired_replicas(&snapshot);
        let claimed = live.claims(&records);
        let adoption = plan::adoption(&records, &desired, &live);
        let mut handled = BTreeSet::new();
        for (server_id, replicas) in adoption.take {
            if self.take_lease(&server_id).await == Some(true) {
                self.owned.insert(server_id.clone());
                handled.extend(self.take_over(&server_id, replicas, &live_workers).await);
            }
        }
        for server_id in adoption.clear {
            handled.extend(self.take_over(&server_id, 0, &live_workers).await);
        }
        for pid in plan::ghosts_at_start(&live_workers, &handled, &claimed, &desired, &me) {
            if let Some(args) = live_workers.get(&pid) {
                self.kill_worker(pid, &args.server_id, args.port(), "ghost");
            }
        }
        tracing::info!(
            event = "supervisor.adopted",
            workers = self.slots.len(),
            servers = self.owned.len()
        );
        true
    }

    fn liveness<'a>(&self, me: &'a str, seen: &'a BTreeMap<String, u64>) -> Liveness<'a> {
        Liveness {
            me,
            seen,
            now: unix_millis(),
            dead_after: self.lease_ttl.as_millis() as u64,
        }
    }

    fn live_workers(&self) -> BTreeMap<u32, WorkerArgs> {
        self.ctx.backend.scan(&self.ctx).into_iter().collect()
    }

    /// Makes this supervisor the owner of what `server_id`'s records describe
    /// ([`plan::take_over`]): live, healthy workers for wanted replicas are adopted;
    /// other live ones are stopped; records of processes that are gone are removed.
    /// Returns the pids it dealt with.
    async fn take_over(
        &mut self,
        server_id: &str,
        replicas: u32,
        live_workers: &BTreeMap<u32, WorkerArgs>,
    ) -> BTreeSet<u32> {
        let mut handled = BTreeSet::new();
        let records = match self.ctx.registry.get_runtime(server_id).await {
            Ok(runtime) => runtime.workers,
            Err(err) => {
                tracing::warn!(event = "supervisor.adopt.failed", server = %server_id, error = %err);
                return handled;
            }
        };
        let slot_pids = self.slot_pids();
        let plan = plan::take_over(
            server_id,
            replicas,
            records,
            live_workers,
            |key| self.slots.contains_key(key),
            &slot_pids,
        );
        for (record, pid) in plan.probe {
            handled.insert(pid);
            if self.healthy(server_id, &record, pid).await {
                let key = SlotKey {
                    server_id: server_id.to_owned(),
                    replica_idx: record.replica_idx,
                };
                let handle = slot::start(
                    self.ctx.clone(),
                    key.clone(),
                    Start::Adopt {
                        record: Box::new(record),
                    },
                    self.ended_tx.clone(),
                    self.cancel.child_token(),
                );
                self.slots.insert(key, handle);
            } else {
                self.kill_worker(pid, server_id, record.port, "unhealthy at adoption");
                self.forget_record(server_id, &record).await;
            }
        }
        for (record, pid) in plan.unwanted {
            handled.insert(pid);
            self.kill_worker(pid, server_id, record.port, "not wanted");
            self.forget_record(server_id, &record).await;
        }
        for record in plan.forget {
            self.forget_record(server_id, &record).await;
        }
        // An idle server stays idle until a call wakes it, across our restarts; a
        // replica held for room when it went idle sleeps with it (records an earlier
        // run left `pending`).
        if plan.idle {
            self.idle.insert(server_id.to_owned());
        }
        if self.idle.contains(server_id) {
            self.put_to_sleep(server_id, plan.held_back).await;
        }
        for (pid, port) in plan.duplicates {
            handled.insert(pid);
            self.kill_worker(pid, server_id, port, "duplicate");
        }
        handled
    }

    fn slot_pids(&self) -> BTreeSet<u32> {
        self.slots
            .values()
            .map(|s| s.pid.load(Ordering::Relaxed))
            .filter(|&p| p != 0)
            .collect()
    }

    async fn healthy(&self, server_id: &str, record: &WorkerRecord, pid: u32) -> bool {
        let Some(port) = record.port else {
            return false;
        };
        let host = if self.ctx.bind_host.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            self.ctx.bind_host.to_string()
        };
        match health::probe(
            &self.ctx.http,
            &host,
            port,
            server_id,
            Duration::from_secs(2),
        )
        .await
        {
            Ok(health) => health.pid == pid,
            Err(_) => false,
        }
    }

    async fn forget_record(&self, server_id: &str, record: &WorkerRecord) {
        if let (Some(host), Some(port)) = (&record.host, record.port) {
            let _ = self.ctx.registry.release_port(host, port).await;
        }
        if let Err(err) = self
            .ctx
            .registry
            .remove_worker_record(server_id, record.replica_idx)
            .await
        {
            tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
        }
    }

    /// SIGTERM, then SIGKILL after the stop timeout, in a task of its own: a process
    /// slow to die must not stall this loop, which renews the leases.
    fn kill_worker(&self, pid: u32, server_id: &str, port: Option<u16>, reason: &str) {
        if !lock(&self.stopping).insert(pid) {
            return; // already on its way out
        }
        let stopping = self.stopping.clone();
        let stop_timeout = self.ctx.stop_timeout;
        let server_id = server_id.to_owned();
        let reason = reason.to_owned();
        tracing::info!(event = "worker.stopping", server = %server_id, pid, port, reason = %reason);
        let backend = self.ctx.backend.clone();
        tokio::spawn(async move {
            backend.signal(pid, StopSignal::Graceful);
            let deadline = Instant::now() + stop_timeout;
            while backend.alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if backend.alive(pid) {
                backend.signal(pid, StopSignal::Kill);
            }
            tracing::info!(event = "worker.terminated", server = %server_id, pid, port, reason = %reason);
            lock(&stopping).remove(&pid);
        });
    }

    async fn take_lease(&self, server_id: &str) -> Option<bool> {
        crate::servers::take_lease(
            &self.ctx.registry,
            server_id,
            &self.ctx.supervisor_id,
            self.lease_ttl,
        )
        .await
    }

    /// Brings the slots in line with the registry. Safe to call at any time.
    pub async fn reconcile(&mut self) {
        let snapshot = match self.ctx.registry.snapshot().await {
            Ok(snapshot) => snapshot,
            Err(err) => {
                // Keep what runs; Redis will be back.
                tracing::warn!(event = "supervisor.reconcile.failed", error = %err);
                return;
            }
        };
        let desired = plan::desired_replicas(&snapshot);

        // Servers we own: still wanted, still ours?
        let fates = plan::owned_fates(&self.owned, &desired, |id| {
            snapshot.servers.contains_key(id)
        });
        for (server_id, fate) in fates {
            match fate {
                Fate::Release { deleted, then, why } => {
                    self.stop_server(&server_id, then, why);
                    self.settle_slotless(&server_id, deleted).await;
                    self.owned.remove(&server_id);
                    self.idle.remove(&server_id);
                    let _ = self
                        .ctx
                        .registry
                        .release_lease(&server_id, &self.ctx.supervisor_id)
                        .await;
                }
                Fate::Keep => {
                    if self.take_lease(&server_id).await == Some(false) {
                        tracing::warn!(event = "supervisor.lease.lost", server = %server_id);
                        self.stop_server(
                            &server_id,
                            AfterStop::Forget,
                            "lease lost to another supervisor",
                        );
                        self.owned.remove(&server_id);
                        self.idle.remove(&server_id);
                    }
                }
            }
        }

        let mut room = Room {
            used: self.workers_used(),
            max: self.ctx.worker_max,
        };
        let mut to_start: Vec<SlotKey> = Vec::new();
        let mut to_hold: Vec<SlotKey> = Vec::new();
        // Owned servers first: replicas without a slot (a woken idle server, a raised
        // replica count, a server adopted without its workers).
        for server_id in self.owned.difference(&self.idle) {
            let replicas = desired.get(server_id).copied().unwrap_or(0);
            let (start, hold) = plan::place_replicas(
                server_id,
                replicas,
                |key| self.slots.contains_key(key),
                &mut room,
            );
            to_start.extend(start);
            to_hold.extend(hold);
        }
        // New servers: all their replicas fit, or they wait pending.
        for (server_id, replicas) in &desired {
            if self.owned.contains(server_id) {
                continue;
            }
            if !room.fits(*replicas) {
                self.mark_pending(server_id).await;
                continue;
            }
            if self.take_lease(server_id).await == Some(true) {
                self.owned.insert(server_id.clone());
                self.pending.remove(server_id);
                let live_workers = self.live_workers();
                self.take_over(server_id, *replicas, &live_workers).await;
                if self.idle.contains(server_id) {
                    continue;
                }
                // Count again: take-over adopted live workers (slots now) and may have
                // begun killing unhealthy or duplicate ones (stopping now), and a
                // replacement must not run beside the process it replaces.
                room.used = self.workers_used() + to_start.len();
                let (start, hold) = plan::place_replicas(
                    server_id,
                    *replicas,
                    |key| self.slots.contains_key(key),
                    &mut room,
                );
                to_start.extend(start);
                to_hold.extend(hold);
            }
        }
        // Servers marked pending here that are not ours to mark any more.
        for server_id in self.pending.clone() {
            if desired.contains_key(&server_id) {
                self.drop_pending_taken(&server_id).await;
            } else {
                self.pending.remove(&server_id);
                self.remove_own_pending_record(&server_id).await;
            }
        }

        // Slots of owned servers.
        for key in to_start {
            self.held.remove(&key);
            let handle = slot::start(
                self.ctx.clone(),
                key.clone(),
                Start::Spawn {
                    reason: "registered",
                },
                self.ended_tx.clone(),
                self.cancel.child_token(),
            );
            self.slots.insert(key, handle);
        }
        for key in to_hold {
            self.hold(key).await;
        }
        for key in plan::surplus(self.slots.keys(), &self.owned, &desired) {
            if let Some(slot) = self.slots.get(&key) {
                slot.send(Command::Stop {
                    reason: "replica no longer wanted".into(),
                    then: AfterStop::Remove,
                });
            }
        }
        self.release_held(&desired).await;
        self.clean_ghosts(&desired).await;
        self.sweep_deleted(&snapshot).await;
    }

    /// Every worker process this supervisor has, for `MCP_WORKER_MAX`: slots (those on
    /// their way out too) and processes still being killed.
    fn workers_used(&self) -> usize {
        self.slots.len() + lock(&self.stopping).len()
    }

    fn stop_server(&self, server_id: &str, then: AfterStop, why: &str) {
        for (key, slot) in &self.slots {
            if key.server_id == server_id {
                slot.send(Command::Stop {
                    reason: why.into(),
                    then,
                });
            }
        }
    }

    /// Marks a replica of an owned server `pending` until there is room for its worker.
    async fn hold(&mut self, key: SlotKey) {
        if self.held.contains(&key) {
            return;
        }
        let record = self.pending_record(key.replica_idx);
        if !self.may_write(&key.server_id, &record).await {
            return;
        }
        match self
            .ctx
            .registry
            .put_worker_record(&key.server_id, &record)
            .await
        {
            Ok(_) => {
                tracing::info!(event = "worker.pending", server = %key.server_id, replica = key.replica_idx,
                    reason = record.reason.as_deref().unwrap_or(""));
                self.held.insert(key);
            }
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %key.server_id, error = %err)
            }
        }
    }

    /// Forgets held replicas nobody wants from us any more ([`plan::release_held`]); the
    /// pending record of a replica no longer wanted goes, and that of a replica whose
    /// server went idle says `idle` with it (a server no longer ours is settled
    /// elsewhere).
    async fn release_held(&mut self, desired: &Desired) {
        let release = plan::release_held(&self.held, &self.owned, &self.idle, desired);
        for key in &release.dropped {
            self.held.remove(key);
        }
        for key in release.remove_record {
            let _ = self
                .ctx
                .registry
                .remove_worker_record(&key.server_id, key.replica_idx)
                .await;
        }
        for server_id in release.asleep {
            let records = match self.ctx.registry.get_runtime(&server_id).await {
                Ok(runtime) => runtime.workers,
                Err(err) => {
                    tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
                    continue;
                }
            };
            let replicas = desired.get(&server_id).copied().unwrap_or(0);
            self.put_to_sleep(&server_id, plan::sleepers(records, replicas))
                .await;
        }
    }

    /// Marks `idle` the `pending` records of replicas held for room whose server went
    /// idle (its other replicas were stopped as idle). The server then looks idle as a
    /// whole, so a call wakes it; a `pending` record left behind would keep callers
    /// waiting for a worker nobody starts.
    async fn put_to_sleep(&self, server_id: &str, held_back: Vec<WorkerRecord>) {
        for mut record in held_back {
            if !status::allowed(record.status, WorkerStatus::Idle) {
                continue;
            }
            record.status = WorkerStatus::Idle;
            record.reason = Some("server idle; the next call wakes it".into());
            record.supervisor_id = Some(self.ctx.supervisor_id.clone());
            record.updated_at = unix_millis();
            match self
                .ctx
                .registry
                .put_worker_record(server_id, &record)
                .await
            {
                Ok(_) => {
                    tracing::info!(event = "worker.idle", server = %server_id, replica = record.replica_idx, reason = "held replica of an idle server")
                }
                Err(err) => {
                    tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err)
                }
            }
        }
    }

    /// Finishes the records of a server no longer wanted that no slot of ours will
    /// finish (idle or pending replicas): removed when the server is deleted, `stopped`
    /// when it is inactive.
    async fn settle_slotless(&mut self, server_id: &str, deleted: bool) {
        self.held.retain(|key| key.server_id != server_id);
        let records = match self.ctx.registry.get_runtime(server_id).await {
            Ok(runtime) => runtime.workers,
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
                return;
            }
        };
        for mut record in records {
            let key = SlotKey {
                server_id: server_id.to_owned(),
                replica_idx: record.replica_idx,
            };
            if self.slots.contains_key(&key)
                || record.supervisor_id.as_deref() != Some(self.ctx.supervisor_id.as_str())
            {
                continue;
            }
            if deleted {
                self.forget_record(server_id, &record).await;
            } else if record.status != WorkerStatus::Stopped
                && record.pid.is_none()
                && status::allowed(record.status, WorkerStatus::Stopped)
            {
                record.status = WorkerStatus::Stopped;
                record.reason = Some("server inactive".into());
                record.updated_at = unix_millis();
                if let Err(err) = self
                    .ctx
                    .registry
                    .put_worker_record(server_id, &record)
                    .await
                {
                    tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
                }
            }
        }
    }

    /// Removes the records (and port claims) of deleted servers whose owner is gone
    /// ([`plan::sweepable`]) and that no lease names. A live owner finishes its own
    /// records; start-up adoption does the same for what it finds. At most once per
    /// lease TTL (it scans every runtime record).
    async fn sweep_deleted(&mut self, snapshot: &Snapshot) {
        if self
            .last_sweep
            .is_some_and(|at| at.elapsed() < self.lease_ttl)
        {
            return;
        }
        self.last_sweep = Some(Instant::now());
        let (records, supervisors) = match tokio::try_join!(
            self.ctx.registry.list_runtime(),
            self.ctx.registry.supervisors()
        ) {
            Ok(both) => both,
            Err(err) => {
                tracing::warn!(event = "supervisor.sweep.failed", error = %err);
                return;
            }
        };
        let me = self.ctx.supervisor_id.clone();
        let live = self.liveness(&me, &supervisors);
        let sweep: Vec<ServerRuntime> = plan::sweepable(
            &records,
            |id| snapshot.servers.contains_key(id),
            &live,
            |key| self.slots.contains_key(key),
        )
        .into_iter()
        .cloned()
        .collect();
        for runtime in sweep {
            let server_id = &runtime.server_id;
            match self.ctx.registry.lease_holder(server_id).await {
                Ok(None) => {}
                _ => continue,
            }
            for record in &runtime.workers {
                tracing::info!(event = "supervisor.record.swept", server = %server_id, replica = record.replica_idx,
                    supervisor_id = record.supervisor_id.as_deref().unwrap_or(""), port = record.port, reason = "server deleted, owner gone");
                self.forget_record(server_id, record).await;
            }
        }
    }

    /// Whether `record` may replace what Redis holds for its replica: the state machine
    /// ([`status::check`]) must allow the move from the stored status (no record: any).
    /// A refused write is logged and not made, as a slot refuses one.
    async fn may_write(&self, server_id: &str, record: &WorkerRecord) -> bool {
        let current = match self.ctx.registry.get_runtime(server_id).await {
            Ok(runtime) => runtime
                .workers
                .into_iter()
                .find(|r| r.replica_idx == record.replica_idx),
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
                return false;
            }
        };
        match status::check_replace(current.map(|r| r.status), record.status) {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(event = "supervisor.illegal_transition", server = %server_id, replica = record.replica_idx, error = %err);
                false
            }
        }
    }

    fn pending_record(&self, replica_idx: u32) -> WorkerRecord {
        WorkerRecord {
            reason: Some(format!(
                "MCP_WORKER_MAX={} reached on supervisor {}",
                self.ctx.worker_max, self.ctx.supervisor_id
            )),
            ..WorkerRecord::new(replica_idx, WorkerStatus::Pending, &self.ctx.supervisor_id)
        }
    }

    /// Marks an owner-less server `pending` when this supervisor has no room for it.
    async fn mark_pending(&mut self, server_id: &str) {
        if self.pending.contains(server_id) {
            return;
        }
        match self.ctx.registry.lease_holder(server_id).await {
            Ok(None) => {}
            _ => return,
        }
        let record = self.pending_record(0);
        if !self.may_write(server_id, &record).await {
            return;
        }
        match self
            .ctx
            .registry
            .put_worker_record(server_id, &record)
            .await
        {
            Ok(_) => {
                tracing::info!(event = "worker.pending", server = %server_id, reason = record.reason.as_deref().unwrap_or(""));
                self.pending.insert(server_id.to_owned());
            }
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err)
            }
        }
    }

    /// Drops `server_id` from the servers this supervisor marked `pending` once another
    /// supervisor holds its lease: that one runs the server and writes its records now.
    async fn drop_pending_taken(&mut self, server_id: &str) {
        if !self.pending.contains(server_id) {
            return;
        }
        match self.ctx.registry.lease_holder(server_id).await {
            Ok(Some(holder)) if holder != self.ctx.supervisor_id => {
                self.pending.remove(server_id);
                tracing::info!(event = "supervisor.pending.dropped", server = %server_id, supervisor_id = %holder,
                    reason = "taken by another supervisor");
            }
            _ => {}
        }
    }

    /// Removes the `pending` record this supervisor wrote for a server no longer wanted,
    /// and only that: a record another supervisor wrote since is that one's to finish.
    async fn remove_own_pending_record(&self, server_id: &str) {
        let records = match self.ctx.registry.get_runtime(server_id).await {
            Ok(runtime) => runtime.workers,
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
                return;
            }
        };
        let ours = records.iter().any(|r| {
            r.replica_idx == 0
                && r.status == WorkerStatus::Pending
                && r.supervisor_id.as_deref() == Some(self.ctx.supervisor_id.as_str())
        });
        if ours {
            if let Err(err) = self.ctx.registry.remove_worker_record(server_id, 0).await {
                tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
            }
        }
    }

    /// Stops worker processes of servers nobody wants, once they have looked like
    /// ghosts for two reconcile intervals (so a stale snapshot never kills a new worker),
    /// and never one a live other supervisor's record claims ([`plan::ghosts`]).
    async fn clean_ghosts(&mut self, desired: &Desired) {
        let ours = self.slot_pids();
        let scan = self.ctx.backend.scan(&self.ctx);
        let claimed = if plan::ghost_suspects(&scan, &ours, desired) {
            match tokio::try_join!(
                self.ctx.registry.list_runtime(),
                self.ctx.registry.supervisors()
            ) {
                Ok((records, supervisors)) => {
                    let me = self.ctx.supervisor_id.clone();
                    self.liveness(&me, &supervisors).claims(&records)
                }
                Err(err) => {
                    // Who claims what is unknown: stop nothing this round.
                    tracing::warn!(event = "supervisor.ghosts.failed", error = %err);
                    return;
                }
            }
        } else {
            BTreeSet::new()
        };
        let round = plan::ghosts(
            &scan,
            &ours,
            desired,
            &claimed,
            &self.ghost_candidates,
            Instant::now(),
            self.reconcile_interval * 2,
        );
        for (pid, server_id, port) in round.kill {
            self.kill_worker(pid, &server_id, port, "ghost");
        }
        self.ghost_candidates = round.candidates;
    }

    async fn shutdown(&mut self) {
        let stop = self.ctx.stop_workers_on_exit;
        tracing::info!(
            event = "supervisor.stopping",
            workers = self.slots.len(),
            stop_workers = stop
        );
        let deadline = tokio::time::Instant::now() + self.ctx.stop_timeout + Duration::from_secs(2);
        for (_, slot) in std::mem::take(&mut self.slots) {
            let _ = tokio::time::timeout_at(deadline, slot.task).await;
        }
        // Processes being killed (ghosts, duplicates) finish dying first, too.
        while !lock(&self.stopping).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give up the lease of every owned server none of whose workers still runs
        // here, so another supervisor takes it at its next reconcile instead of after
        // the lease TTL. A server with a live worker keeps its lease: with
        // MCP_SUPERVISOR_STOP_WORKERS_ON_EXIT=false (the default) its workers are left
        // for this supervisor to adopt when it is back (another one, on another
        // machine, would start a second set beside them), and a worker that did not
        // die within the stop timeout must not get a replacement beside it.
        let running: BTreeSet<String> = self
            .live_workers()
            .into_values()
            .map(|args| args.server_id)
            .collect();
        let free: BTreeSet<String> = self.owned.difference(&running).cloned().collect();
        let released = crate::servers::release_leases(
            &self.ctx.registry,
            &free,
            &self.ctx.supervisor_id,
            "supervisor shutdown, no worker left running",
        )
        .await;
        tracing::info!(
            event = "supervisor.leases.released",
            released,
            kept = self.owned.len() - free.len()
        );
        if stop {
            let _ = self
                .ctx
                .registry
                .remove_supervisor(&self.ctx.supervisor_id)
                .await;
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

//! Owns the reconcile loop of a [`ServerBackend`], a backend that runs each server's
//! workers as one whole (Kubernetes: a Deployment of N replicas). The supervisor's
//! logic is the process backend's: a server is run by the one supervisor holding its
//! lease (taken, renewed every reconcile, released when the server goes; another
//! supervisor takes it over once a dead one's lease expires), `MCP_WORKER_MAX` caps the
//! workers of the servers it owns ([`cap_replicas`]; a server it has no room for waits
//! `pending`, owner-less), `MCP_WORKER_IDLE_TTL` scales a server whose workers all served
//! no call for that long to 0 (records `idle`; `server.wake`, which the gateway publishes
//! on a call, brings it back), and every record write follows the state machine from the
//! stored status ([`write_records`]). Only "apply N workers, remove, observe" is the
//! backend's. It never starts a process itself.
//!
//! Layout: pure parts ([`cap_replicas`], [`desired_records`], [`idle_records`],
//! [`status_path`], [`same_record`], [`ghost_round`]), [`write_records`] and
//! [`ServerSupervisor`] (the executor: events, timer and the backend's watch trigger
//! [`ServerSupervisor::reconcile`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_core::events::EventKind;
use mcp_core::runtime::{unix_millis, WorkerRecord, WorkerStatus};
use mcp_core::subscription::Update;
use mcp_core::RedisRegistry;
use tokio_util::sync::CancellationToken;

use crate::backend::{Placement, ServerBackend};
use crate::health::Health;
use crate::{health, plan, status};

/// What the loop needs besides the registry and the backend.
#[derive(Clone, Debug)]
pub struct Options {
    pub supervisor_id: String,
    /// `MCP_WORKER_MAX`: workers of the servers this supervisor owns, together.
    pub worker_max: usize,
    /// `MCP_WORKER_IDLE_TTL`; zero: never idle.
    pub idle_ttl: Duration,
    /// `MCP_SUPERVISOR_LEASE_TTL`.
    pub lease_ttl: Duration,
    /// `MCP_SUPERVISOR_RECONCILE_INTERVAL`: the full reconcile and the lease renewal.
    pub reconcile_interval: Duration,
}

/// One server's replicas under `MCP_WORKER_MAX`: what it asks for, what it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub wanted: u32,
    pub granted: u32,
}

/// The replicas each server gets when the workers of all of them together may not pass
/// `max` (`MCP_WORKER_MAX`), pure and deterministic: while the wanted replicas fit, each
/// server gets all of its own; otherwise replicas are handed out one per server per
/// round, servers in id order (byte order), so every server gets one before any gets a
/// second, and the servers last in id order are the ones left short.
pub fn cap_replicas(desired: &BTreeMap<String, u32>, max: usize) -> BTreeMap<String, Grant> {
    let mut grants: BTreeMap<String, Grant> = desired
        .iter()
        .map(|(id, wanted)| {
            let wanted = *wanted;
            (id.clone(), Grant { wanted, granted: 0 })
        })
        .collect();
    let mut room = max;
    let mut round = 0;
    loop {
        let mut handed = false;
        for grant in grants.values_mut().filter(|g| g.wanted > round) {
            if room == 0 {
                return grants;
            }
            grant.granted += 1;
            room -= 1;
            handed = true;
        }
        if !handed {
            return grants;
        }
        round += 1;
    }
}

/// The reason a `pending` record gives (the process backend's words).
pub fn pending_reason(worker_max: usize, supervisor_id: &str) -> String {
    format!("MCP_WORKER_MAX={worker_max} reached on supervisor {supervisor_id}")
}

/// Every server's records (pure): the `running` records of its serving workers, a
/// `starting` record for each granted replica without one (a pod not Ready yet, or
/// being restarted: callers wait for it instead of finding no record), then a `pending`
/// record (with `reason`) for each replica `MCP_WORKER_MAX` left out, numbered after
/// the workers the backend may have.
pub fn desired_records(
    mut running: BTreeMap<String, Vec<WorkerRecord>>,
    grants: &BTreeMap<String, Grant>,
    supervisor_id: &str,
    reason: &str,
) -> BTreeMap<String, Vec<WorkerRecord>> {
    for (id, grant) in grants {
        let records = running.entry(id.clone()).or_default();
        for replica_idx in records.len() as u32..grant.granted {
            records.push(WorkerRecord::new(
                replica_idx,
                WorkerStatus::Starting,
                supervisor_id,
            ));
        }
        if grant.granted >= grant.wanted {
            continue;
        }
        let first = (records.len() as u32).max(grant.granted);
        for replica_idx in first..grant.wanted {
            records.push(WorkerRecord {
                reason: Some(reason.to_owned()),
                ..WorkerRecord::new(replica_idx, WorkerStatus::Pending, supervisor_id)
            });
        }
    }
    running.retain(|_, records| !records.is_empty());
    running
}

/// The records of a server scaled to 0 as idle (pure): every wanted replica `idle`.
pub fn idle_records(wanted: u32, supervisor_id: &str, idle_ttl: Duration) -> Vec<WorkerRecord> {
    (0..wanted)
        .map(|replica_idx| WorkerRecord {
            reason: Some(format!("no call for {idle_ttl:?}; the next call wakes it")),
            ..WorkerRecord::new(replica_idx, WorkerStatus::Idle, supervisor_id)
        })
        .collect()
}

/// The statuses to write, in order, to go from the stored record's status (`None`: no
/// record) to `to` following the state machine ([`status::allowed`]): the shortest such
/// path, ending with `to` (just `to` when the move is allowed as it is, e.g. a heartbeat
/// of a `running` record); `None` when there is none.
pub fn status_path(stored: Option<WorkerStatus>, to: WorkerStatus) -> Option<Vec<WorkerStatus>> {
    use WorkerStatus::*;
    const ALL: [WorkerStatus; 9] = [
        Pending, Starting, Running, Unhealthy, Restarting, Stopping, Stopped, Failed, Idle,
    ];
    let Some(from) = stored else {
        return Some(vec![to]);
    };
    if status::allowed(from, to) {
        return Some(vec![to]);
    }
    // Breadth first over the nine statuses: the first path found is a shortest one, and
    // the order of ALL makes it the same every time.
    let mut paths: Vec<Vec<WorkerStatus>> = vec![vec![from]];
    let mut seen = vec![from];
    while !paths.is_empty() {
        let mut next = Vec::new();
        for path in paths {
            let last = path[path.len() - 1];
            for step in ALL {
                if seen.contains(&step) || !status::allowed(last, step) {
                    continue;
                }
                let mut longer = path.clone();
                longer.push(step);
                if step == to {
                    longer.remove(0);
                    return Some(longer);
                }
                seen.push(step);
                next.push(longer);
            }
        }
        paths = next;
    }
    None
}

/// Whether two records say the same apart from when they were written and probed: a
/// fresh one equal to the stored one is a heartbeat, not a change.
/// The worker's counters (retries, audit entries) are heartbeat too; only the
/// breaker's state is a change (published: the dashboard follows events).
pub fn same_record(a: &WorkerRecord, b: &WorkerRecord) -> bool {
    let quiet = |r: &WorkerRecord| WorkerRecord {
        updated_at: 0,
        last_heartbeat: None,
        resilience: None,
        audit: None,
        ..r.clone()
    };
    let breaker = |r: &WorkerRecord| r.resilience.map(|r| (r.state, r.opened_by));
    quiet(a) == quiet(b) && breaker(a) == breaker(b)
}

/// Copies what each probed worker reports (its breaker and retry counters, its audit
/// writer's counters) into its record, as the process backend's health check does.
pub fn apply_health(records: &mut [WorkerRecord], health: &BTreeMap<u32, Health>) {
    for record in records {
        if let Some(health) = health.get(&record.replica_idx) {
            record.resilience = health.resilience;
            record.audit = health.audit;
        }
    }
}

/// One round of ghost clean-up (pure): the placements to remove now, and those to keep
/// watching. A placement is a ghost when its server is not wanted (deleted, inactive,
/// or not named). At the first reconcile ghosts go at once; later only one that looked
/// like a ghost for `grace` (two reconcile intervals), so a placement another
/// supervisor applied for a server newer than our snapshot is never removed.
pub fn ghost_round(
    placements: &[Placement],
    desired: &BTreeMap<String, u32>,
    candidates: &BTreeMap<String, Instant>,
    first: bool,
    now: Instant,
    grace: Duration,
) -> (Vec<Placement>, BTreeMap<String, Instant>) {
    let mut remove = Vec::new();
    let mut watching = BTreeMap::new();
    for placement in placements {
        let wanted = placement
            .server_id
            .as_deref()
            .is_some_and(|id| desired.contains_key(id));
        if wanted {
            continue;
        }
        let since = candidates.get(&placement.name).copied().unwrap_or(now);
        if first || now.duration_since(since) >= grace {
            remove.push(placement.clone());
        } else {
            watching.insert(placement.name.clone(), since);
        }
    }
    (remove, watching)
}

/// Whether a server's stored records say it sleeps: some record `idle`, every other one
/// `pending` (what the gateway wakes; [`plan::take_over`] reads it the same way).
fn sleeping(records: &[WorkerRecord]) -> bool {
    records.iter().any(|r| r.status == WorkerStatus::Idle)
        && records
            .iter()
            .all(|r| matches!(r.status, WorkerStatus::Idle | WorkerStatus::Pending))
}

/// Puts `fresh` and removes the other replicas of `old` (the stored records). Each
/// write follows the state machine from the stored status: through [`status_path`]
/// (e.g. a `pending` replica whose pod is Ready: `starting`, then `running`), every
/// step checked with [`status::check_replace`]; a refused one is logged as
/// `supervisor.illegal_transition` and not written. A record that says what the stored
/// one says ([`same_record`]) is not written again: a `running` one is touched (its
/// heartbeat, no event), any other left as it is.
pub async fn write_records(
    registry: &RedisRegistry,
    server_id: &str,
    fresh: &[WorkerRecord],
    old: &[WorkerRecord],
) -> anyhow::Result<()> {
    for record in fresh {
        let stored_record = old.iter().find(|r| r.replica_idx == record.replica_idx);
        if let Some(stored_record) = stored_record.filter(|s| same_record(s, record)) {
            if record.status == WorkerStatus::Running
                && (record.last_heartbeat != stored_record.last_heartbeat
                    || record.resilience != stored_record.resilience
                    || record.audit != stored_record.audit)
            {
                registry.touch_worker_record(server_id, record).await?;
            }
            continue;
        }
        let stored = stored_record.map(|r| r.status);
        let path = status_path(stored, record.status).unwrap_or_else(|| vec![record.status]);
        let mut from = stored;
        for step in path {
            if let Err(err) = status::check_replace(from, step) {
                tracing::error!(event = "supervisor.illegal_transition", server = %server_id, replica = record.replica_idx, error = %err);
                break;
            }
            let write = WorkerRecord {
                status: step,
                ..record.clone()
            };
            registry.put_worker_record(server_id, &write).await?;
            from = Some(step);
        }
        if record.status == WorkerStatus::Pending
            && stored != Some(WorkerStatus::Pending)
            && from == Some(WorkerStatus::Pending)
        {
            tracing::info!(event = "worker.pending", server = %server_id, replica = record.replica_idx,
                reason = record.reason.as_deref().unwrap_or(""));
        }
    }
    for record in old {
        if !fresh.iter().any(|r| r.replica_idx == record.replica_idx) {
            registry
                .remove_worker_record(server_id, record.replica_idx)
                .await?;
        }
    }
    Ok(())
}

/// The executor over a [`ServerBackend`]: leases, `MCP_WORKER_MAX`, idle stop, ghosts
/// and records, as described at the top of this module.
pub struct ServerSupervisor {
    registry: RedisRegistry,
    backend: Arc<dyn ServerBackend>,
    options: Options,
    /// One pooled client for the idle probes of serving workers.
    http: reqwest::Client,
    /// Servers whose lease this supervisor holds.
    owned: BTreeSet<String>,
    /// Owned servers scaled to 0 as idle (woken by `server.wake`).
    idle: BTreeSet<String>,
    /// Owner-less servers this supervisor marked `pending` (no room for them here).
    pending: BTreeSet<String>,
    /// Placements that looked like ghosts, and since when ([`ghost_round`]).
    ghost_candidates: BTreeMap<String, Instant>,
    /// No reconcile has completed yet (ghosts then go at once).
    first: bool,
    cancel: CancellationToken,
}

impl ServerSupervisor {
    pub fn new(
        registry: RedisRegistry,
        backend: Arc<dyn ServerBackend>,
        options: Options,
        cancel: CancellationToken,
    ) -> ServerSupervisor {
        ServerSupervisor {
            registry,
            backend,
            options,
            http: reqwest::Client::new(),
            owned: BTreeSet::new(),
            idle: BTreeSet::new(),
            pending: BTreeSet::new(),
            ghost_candidates: BTreeMap::new(),
            first: true,
            cancel,
        }
    }

    /// Reconciles on events, on the backend's watch and every reconcile interval, until
    /// cancelled; records this supervisor's liveness every second meanwhile. The
    /// workers keep running after it returns (the backend owns them); its leases are
    /// given up ([`release_leases`]), so another supervisor applies the same
    /// placements at its next reconcile instead of after `MCP_SUPERVISOR_LEASE_TTL`.
    pub async fn run(mut self) {
        let heartbeat = tokio::spawn(heartbeat(
            self.registry.clone(),
            self.options.supervisor_id.clone(),
            self.cancel.child_token(),
        ));
        let mut subscription = self.registry.subscribe();
        let mut timer = tokio::time::interval(self.options.reconcile_interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let backend = self.backend.clone();
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                update = subscription.next() => match update {
                    Some(Update::Reload(reason)) => {
                        tracing::info!(event = "supervisor.reload", reason = ?reason);
                        self.reconcile().await;
                    }
                    Some(Update::Event(event)) => self.on_event(event.kind).await,
                    None => break,
                },
                () = backend.changed() => self.reconcile().await,
                _ = timer.tick() => self.reconcile().await,
            }
        }
        heartbeat.abort();
        // No round runs any more: nothing of ours writes after the release.
        release_leases(
            &self.registry,
            &self.owned,
            &self.options.supervisor_id,
            "supervisor shutdown",
        )
        .await;
        let _ = self
            .registry
            .remove_supervisor(&self.options.supervisor_id)
            .await;
    }

    async fn on_event(&mut self, kind: EventKind) {
        match kind {
            EventKind::ServerWake { server_id } | EventKind::ServerRestart { server_id } => {
                if self.idle.remove(&server_id) || !self.owned.contains(&server_id) {
                    tracing::info!(event = "supervisor.wake", server = %server_id);
                    self.reconcile().await;
                }
            }
            EventKind::ServerUpsert { .. } | EventKind::ServerDelete { .. } => {
                self.reconcile().await
            }
            EventKind::ToolUpsert { .. } | EventKind::ToolDelete { .. } => {}
            // Our own record writes among them: reacting would loop.
            EventKind::WorkerStatus { .. } | EventKind::WorkerRemoved { .. } => {}
        }
    }

    async fn take_lease(&self, server_id: &str) -> Option<bool> {
        take_lease(
            &self.registry,
            server_id,
            &self.options.supervisor_id,
            self.options.lease_ttl,
        )
        .await
    }

    /// Brings the backend and the records in line with the registry. Safe to call at
    /// any time; a Redis or backend error ends this round (the next one repairs).
    pub async fn reconcile(&mut self) {
        if let Err(err) = self.reconcile_round().await {
            tracing::warn!(event = "supervisor.reconcile.failed", backend = self.backend.name(), error = %err);
        }
    }

    async fn reconcile_round(&mut self) -> anyhow::Result<()> {
        let me = self.options.supervisor_id.clone();
        let servers = self.registry.list_servers().await?;
        let desired: BTreeMap<String, u32> = servers
            .iter()
            .filter(|(_, s)| s.active)
            .map(|(id, s)| (id.clone(), s.replicas().max(1)))
            .collect();
        let mut stored: BTreeMap<String, Vec<WorkerRecord>> = self
            .registry
            .list_runtime()
            .await?
            .into_iter()
            .map(|r| (r.server_id, r.workers))
            .collect();

        // Servers we own: still wanted, still ours?
        let fates = plan::owned_fates(&self.owned, &desired, |id| servers.contains_key(id));
        for (server_id, fate) in fates {
            match fate {
                plan::Fate::Release { why, .. } => {
                    self.release(&server_id, why, stored.remove(&server_id))
                        .await;
                }
                plan::Fate::Keep => {
                    if self.take_lease(&server_id).await == Some(false) {
                        // The new owner applies the server and writes its records.
                        tracing::warn!(event = "supervisor.lease.lost", server = %server_id);
                        self.owned.remove(&server_id);
                        self.idle.remove(&server_id);
                    }
                }
            }
        }

        // New servers, in id order, while each can have a worker here; the others wait
        // `pending` for a supervisor with room.
        for (server_id, replicas) in &desired {
            if self.owned.contains(server_id) {
                continue;
            }
            let awake = self.owned.difference(&self.idle).count();
            let records = stored.get(server_id).map(Vec::as_slice).unwrap_or(&[]);
            if awake >= self.options.worker_max && !sleeping(records) {
                self.mark_pending(server_id, *replicas, records).await;
                continue;
            }
            if self.take_lease(server_id).await == Some(true) {
                tracing::info!(event = "supervisor.lease.taken", server = %server_id, replicas);
                self.owned.insert(server_id.clone());
                self.pending.remove(server_id);
                // An idle server stays idle under its new owner until a call wakes it.
                if sleeping(records) {
                    self.idle.insert(server_id.clone());
                }
            }
        }
        // Servers marked pending here that are not ours to mark any more.
        for server_id in self.pending.clone() {
            if !desired.contains_key(&server_id) {
                self.pending.remove(&server_id);
                self.remove_own_pending(&server_id, stored.get(&server_id))
                    .await;
            } else if self.owned.contains(&server_id)
                || self
                    .registry
                    .lease_holder(&server_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|holder| holder != me)
            {
                self.pending.remove(&server_id);
            }
        }

        // Apply what the owned servers get under MCP_WORKER_MAX (idle ones: 0).
        let awake: BTreeMap<String, u32> = self
            .owned
            .difference(&self.idle)
            .filter_map(|id| Some((id.clone(), *desired.get(id)?)))
            .collect();
        let grants = cap_replicas(&awake, self.options.worker_max);
        for server_id in &self.owned {
            let replicas = grants.get(server_id).map_or(0, |g| g.granted);
            if let Err(err) = self.backend.apply(server_id, replicas).await {
                tracing::warn!(event = "supervisor.apply.failed", backend = self.backend.name(), server = %server_id, replicas, error = %err);
            }
        }

        let observed = self.backend.observe().await?;
        let health = self.probe_serving(&observed.serving).await;
        let asleep = self.stop_idle(&grants, &observed.serving, &health);
        self.clean_ghosts(&observed.placements, &desired).await;

        // Records of the servers we own.
        let now = unix_millis();
        let mut serving: BTreeMap<String, Vec<WorkerRecord>> = observed
            .serving
            .into_iter()
            .filter(|(id, _)| self.owned.contains(id) && !self.idle.contains(id))
            .collect();
        for (server_id, records) in serving.iter_mut() {
            for record in records.iter_mut() {
                record.supervisor_id = Some(me.clone());
                record.last_heartbeat = Some(now);
            }
            if let Some(health) = health.get(server_id) {
                apply_health(records, health);
            }
        }
        let reason = pending_reason(self.options.worker_max, &me);
        let mut fresh = desired_records(serving, &grants, &me, &reason);
        for server_id in &self.idle {
            let wanted = desired.get(server_id).copied().unwrap_or(0);
            fresh.insert(
                server_id.clone(),
                idle_records(wanted, &me, self.options.idle_ttl),
            );
        }
        for server_id in &self.owned {
            let old = stored.remove(server_id).unwrap_or_default();
            let new = fresh.get(server_id).map(Vec::as_slice).unwrap_or(&[]);
            write_records(&self.registry, server_id, new, &old).await?;
        }
        for server_id in asleep {
            if let Err(err) = self.backend.apply(&server_id, 0).await {
                // The next round applies 0 again.
                tracing::warn!(event = "supervisor.apply.failed", backend = self.backend.name(), server = %server_id, replicas = 0, error = %err);
            }
        }
        // Records of servers nobody wants and nobody holds (their owner died before
        // it released them): removed.
        for (server_id, old) in stored {
            if desired.contains_key(&server_id) || old.is_empty() {
                continue;
            }
            if self.registry.lease_holder(&server_id).await?.is_none() {
                tracing::info!(event = "supervisor.record.swept", server = %server_id, reason = "server not wanted, no owner");
                write_records(&self.registry, &server_id, &[], &old).await?;
            }
        }
        self.first = false;
        Ok(())
    }

    /// A server we owned is deleted or inactive: its workers go, then its records
    /// (none is left `stopped`: nothing runs it any more), then the lease.
    async fn release(&mut self, server_id: &str, why: &str, records: Option<Vec<WorkerRecord>>) {
        let name = self.backend.placement_name(server_id);
        tracing::info!(event = "supervisor.placement.removed", backend = self.backend.name(), server = %server_id, placement = %name, reason = why);
        if let Err(err) = self.backend.remove(&name).await {
            // Left for the ghost clean-up.
            tracing::warn!(event = "supervisor.remove.failed", server = %server_id, placement = %name, error = %err);
        }
        if let Some(records) = records {
            if let Err(err) = write_records(&self.registry, server_id, &[], &records).await {
                tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err);
            }
        }
        self.owned.remove(server_id);
        self.idle.remove(server_id);
        let _ = self
            .registry
            .release_lease(server_id, &self.options.supervisor_id)
            .await;
    }

    /// Probes the `/healthz` of every serving worker of the owned, awake servers, all
    /// at once (a hung one costs one probe timeout in a round that also renews the
    /// leases): what they report goes into their records and decides idle stops. A
    /// worker that does not answer is left out (its pod's probes are the kubelet's).
    async fn probe_serving(
        &self,
        serving: &BTreeMap<String, Vec<WorkerRecord>>,
    ) -> BTreeMap<String, BTreeMap<u32, Health>> {
        let probes = serving
            .iter()
            .filter(|(id, _)| self.owned.contains(*id) && !self.idle.contains(*id))
            .flat_map(|(server_id, workers)| workers.iter().map(move |w| (server_id, w)))
            .filter_map(|(server_id, worker)| {
                let host = worker.host.clone()?;
                let port = worker.port?;
                let replica = worker.replica_idx;
                Some(async move {
                    let probed =
                        health::probe(&self.http, &host, port, server_id, PROBE_TIMEOUT).await;
                    (server_id, replica, probed.ok())
                })
            });
        let mut health: BTreeMap<String, BTreeMap<u32, Health>> = BTreeMap::new();
        for (server_id, replica, probed) in futures::future::join_all(probes).await {
            if let Some(probed) = probed {
                health
                    .entry(server_id.clone())
                    .or_default()
                    .insert(replica, probed);
            }
        }
        health
    }

    /// Puts to sleep each owned server whose wanted workers all serve and all report
    /// (`/healthz` `idle_ms`, from this round's [`Self::probe_serving`]) no call for
    /// `MCP_WORKER_IDLE_TTL`, and returns them: the caller writes their records
    /// (`stopping`, then `idle`) and only then scales them to 0, so the gateways stop
    /// routing to a worker before it goes.
    fn stop_idle(
        &mut self,
        grants: &BTreeMap<String, Grant>,
        serving: &BTreeMap<String, Vec<WorkerRecord>>,
        health: &BTreeMap<String, BTreeMap<u32, Health>>,
    ) -> Vec<String> {
        let mut asleep = Vec::new();
        if self.options.idle_ttl.is_zero() {
            return asleep;
        }
        let ttl_ms = self.options.idle_ttl.as_millis() as u64;
        for (server_id, grant) in grants {
            let workers = serving.get(server_id).map(Vec::as_slice).unwrap_or(&[]);
            if grant.granted == 0 || (workers.len() as u32) < grant.granted {
                continue;
            }
            let reported = health.get(server_id);
            let all_idle = workers.iter().all(|worker| {
                reported
                    .and_then(|h| h.get(&worker.replica_idx))
                    .is_some_and(|h| h.idle_ms >= ttl_ms)
            });
            if !all_idle {
                continue;
            }
            tracing::info!(event = "worker.idle", server = %server_id, replicas = grant.granted,
                reason = %format!("no call for {:?}", self.options.idle_ttl));
            self.idle.insert(server_id.clone());
            asleep.push(server_id.clone());
        }
        asleep
    }

    async fn clean_ghosts(&mut self, placements: &[Placement], desired: &BTreeMap<String, u32>) {
        let (remove, watching) = ghost_round(
            placements,
            desired,
            &self.ghost_candidates,
            self.first,
            Instant::now(),
            self.options.reconcile_interval * 2,
        );
        self.ghost_candidates = watching;
        for placement in remove {
            tracing::info!(event = "supervisor.placement.removed", backend = self.backend.name(), placement = %placement.name,
                server = placement.server_id.as_deref().unwrap_or(""), reason = "ghost");
            if let Err(err) = self.backend.remove(&placement.name).await {
                tracing::warn!(event = "supervisor.remove.failed", placement = %placement.name, error = %err);
            }
        }
    }

    /// Marks every replica of an owner-less server `pending` when this supervisor has
    /// no room for it (a supervisor with room takes its lease and rewrites them).
    async fn mark_pending(&mut self, server_id: &str, replicas: u32, stored: &[WorkerRecord]) {
        if self.pending.contains(server_id) {
            return;
        }
        match self.registry.lease_holder(server_id).await {
            Ok(None) => {}
            _ => return,
        }
        let me = &self.options.supervisor_id;
        let reason = pending_reason(self.options.worker_max, me);
        let fresh: Vec<WorkerRecord> = (0..replicas)
            .map(|replica_idx| WorkerRecord {
                reason: Some(reason.clone()),
                ..WorkerRecord::new(replica_idx, WorkerStatus::Pending, me)
            })
            .collect();
        match write_records(&self.registry, server_id, &fresh, stored).await {
            Ok(()) => {
                self.pending.insert(server_id.to_owned());
            }
            Err(err) => {
                tracing::warn!(event = "supervisor.record.failed", server = %server_id, error = %err)
            }
        }
    }

    /// Removes the `pending` records this supervisor wrote for a server no longer
    /// wanted, and only those.
    async fn remove_own_pending(&self, server_id: &str, stored: Option<&Vec<WorkerRecord>>) {
        for record in stored.into_iter().flatten() {
            if record.status == WorkerStatus::Pending
                && record.supervisor_id.as_deref() == Some(self.options.supervisor_id.as_str())
            {
                let _ = self
                    .registry
                    .remove_worker_record(server_id, record.replica_idx)
                    .await;
            }
        }
    }
}

/// Takes or renews the lease of `server_id` for `supervisor_id` (both backends' loops):
/// `Some(true)` held, `Some(false)` held by another supervisor, `None` when Redis could
/// not say (keep what runs).
pub(crate) async fn take_lease(
    registry: &RedisRegistry,
    server_id: &str,
    supervisor_id: &str,
    ttl: Duration,
) -> Option<bool> {
    match registry
        .acquire_lease(server_id, supervisor_id, ttl.as_millis() as u64)
        .await
    {
        Ok(held) => Some(held),
        Err(err) => {
            tracing::warn!(event = "supervisor.lease.failed", server = %server_id, error = %err);
            None
        }
    }
}

/// Gives up `supervisor_id`'s leases of `server_ids` (both backends, at a clean
/// shutdown, once nothing of theirs runs here any more), so another supervisor takes
/// those servers at its next reconcile instead of after `MCP_SUPERVISOR_LEASE_TTL`.
/// Each is a compare-and-delete: a lease another supervisor holds by now is left alone.
/// All of them together get [`RELEASE_WITHIN`]; what is left then expires by itself.
pub(crate) async fn release_leases(
    registry: &RedisRegistry,
    server_ids: &BTreeSet<String>,
    supervisor_id: &str,
    reason: &str,
) -> usize {
    let release = async {
        let mut released = 0;
        for server_id in server_ids {
            match registry.release_lease(server_id, supervisor_id).await {
                Ok(true) => {
                    released += 1;
                    tracing::info!(event = "supervisor.lease.released", server = %server_id, reason);
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(event = "supervisor.lease.failed", server = %server_id, error = %err);
                }
            }
        }
        released
    };
    match tokio::time::timeout(RELEASE_WITHIN, release).await {
        Ok(released) => released,
        Err(_) => {
            tracing::warn!(
                event = "supervisor.lease.failed",
                reason = "release timed out; the rest expire by themselves"
            );
            0
        }
    }
}

/// How long a round waits for a worker's `/healthz`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a shutdown spends giving up leases at most (Redis may be away).
const RELEASE_WITHIN: Duration = Duration::from_secs(5);

/// Records supervisor `id`'s liveness every second (other supervisors read it).
async fn heartbeat(registry: RedisRegistry, id: String, cancel: CancellationToken) {
    let mut timer = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = timer.tick() => {
                if let Err(err) = registry.supervisor_heartbeat(&id, unix_millis()).await {
                    tracing::warn!(event = "supervisor.heartbeat.failed", error = %err);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

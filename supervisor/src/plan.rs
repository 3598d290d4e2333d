//! Owns the supervisor's decisions, as pure functions: from what the registry wants
//! (active servers and their replicas), what this supervisor holds (slots, leases, idle,
//! held and pending servers) and what it observed (runtime records, other supervisors'
//! heartbeats, live worker processes), what to do. Nothing here reads Redis or `/proc`,
//! spawns or signals: [`crate::supervisor`] gathers the facts, calls these functions and
//! carries out what they return. Each one is unit-tested below with a table of cases.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mcp_core::registry::Snapshot;
use mcp_core::runtime::{ServerRuntime, WorkerRecord, WorkerStatus};

use crate::backend::WorkerArgs;
use crate::slot::{AfterStop, SlotKey};

/// Active servers and how many workers each wants.
pub type Desired = BTreeMap<String, u32>;

/// Active servers of `snapshot` and their replicas (at least one).
pub fn desired_replicas(snapshot: &Snapshot) -> Desired {
    snapshot
        .servers
        .iter()
        .filter(|(_, entry)| entry.config.active)
        .map(|(id, entry)| (id.clone(), entry.config.replicas().max(1)))
        .collect()
}

/// Who is alive among the supervisors: their last heartbeats, read at `now`.
pub struct Liveness<'a> {
    pub me: &'a str,
    /// Supervisor id -> its last heartbeat (ms since the epoch).
    pub seen: &'a BTreeMap<String, u64>,
    pub now: u64,
    /// A supervisor silent this long (the lease TTL) is dead.
    pub dead_after: u64,
}

impl Liveness<'_> {
    /// Whether `record` names another supervisor that is alive.
    pub fn live_other(&self, record: &WorkerRecord) -> bool {
        record
            .supervisor_id
            .as_deref()
            .is_some_and(|owner| owner != self.me && self.alive(owner))
    }

    fn alive(&self, owner: &str) -> bool {
        self.seen
            .get(owner)
            .is_some_and(|seen| self.now.saturating_sub(*seen) < self.dead_after)
    }

    /// The processes (pid, port) the records of live other supervisors claim: theirs,
    /// whatever their command line says (a worker one of them took over from us while
    /// we were down is not ours to stop).
    pub fn claims(&self, records: &[ServerRuntime]) -> BTreeSet<(u32, Option<u16>)> {
        records
            .iter()
            .flat_map(|runtime| &runtime.workers)
            .filter(|record| self.live_other(record))
            .filter_map(|record| Some((record.pid?, record.port)))
            .collect()
    }
}

/// What becomes of a server this supervisor owns, at a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Still wanted: renew its lease (and stop its workers if that fails).
    Keep,
    /// No longer wanted: stop its workers, settle its records, release the lease.
    Release {
        deleted: bool,
        then: AfterStop,
        why: &'static str,
    },
}

/// The fate of each owned server: kept while active, released when inactive or deleted.
pub fn owned_fates(
    owned: &BTreeSet<String>,
    desired: &Desired,
    registered: impl Fn(&str) -> bool,
) -> Vec<(String, Fate)> {
    owned
        .iter()
        .map(|server_id| {
            let fate = if desired.contains_key(server_id) {
                Fate::Keep
            } else if registered(server_id) {
                Fate::Release {
                    deleted: false,
                    then: AfterStop::Stopped,
                    why: "server inactive",
                }
            } else {
                Fate::Release {
                    deleted: true,
                    then: AfterStop::Remove,
                    why: "server deleted",
                }
            };
            (server_id.clone(), fate)
        })
        .collect()
}

/// Room under `MCP_WORKER_MAX`: every worker process this supervisor has counts (slots,
/// those on their way out, processes being killed, and workers planned this round), so
/// a server that replaces a stopping one never runs beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    pub used: usize,
    pub max: usize,
}

impl Room {
    /// Whether all `replicas` of a new server fit (a new server starts whole or waits).
    pub fn fits(&self, replicas: u32) -> bool {
        self.used + replicas as usize <= self.max
    }
}

/// Which replicas of an owned server without a slot start now (while there is room,
/// taking it) and which are held `pending` for room.
pub fn place_replicas(
    server_id: &str,
    replicas: u32,
    has_slot: impl Fn(&SlotKey) -> bool,
    room: &mut Room,
) -> (Vec<SlotKey>, Vec<SlotKey>) {
    let (mut start, mut hold) = (Vec::new(), Vec::new());
    for replica_idx in 0..replicas {
        let key = SlotKey {
            server_id: server_id.to_owned(),
            replica_idx,
        };
        if has_slot(&key) {
            continue;
        }
        if room.used < room.max {
            room.used += 1;
            start.push(key);
        } else {
            hold.push(key);
        }
    }
    (start, hold)
}

/// Slots of owned servers whose replica is no longer wanted (a lowered replica count).
pub fn surplus<'a>(
    slots: impl IntoIterator<Item = &'a SlotKey>,
    owned: &BTreeSet<String>,
    desired: &Desired,
) -> Vec<SlotKey> {
    slots
        .into_iter()
        .filter(|key| {
            owned.contains(&key.server_id)
                && key.replica_idx >= desired.get(&key.server_id).copied().unwrap_or(0)
        })
        .cloned()
        .collect()
}

/// What becomes of replicas held for room that nobody wants from us any more.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeldRelease {
    /// No longer held (every case below, and replicas of servers no longer ours).
    pub dropped: Vec<SlotKey>,
    /// Their `pending` record goes: the replica is no longer wanted.
    pub remove_record: Vec<SlotKey>,
    /// Servers gone idle whose held replicas' records must say `idle` with them.
    pub asleep: BTreeSet<String>,
}

/// Sorts the held replicas: kept while owned, awake and wanted; otherwise dropped, with
/// their record removed (not wanted) or put to sleep (server idle).
pub fn release_held(
    held: &BTreeSet<SlotKey>,
    owned: &BTreeSet<String>,
    idle: &BTreeSet<String>,
    desired: &Desired,
) -> HeldRelease {
    let mut release = HeldRelease::default();
    for key in held {
        let is_owned = owned.contains(&key.server_id);
        let is_idle = idle.contains(&key.server_id);
        let wanted = key.replica_idx < desired.get(&key.server_id).copied().unwrap_or(0);
        if is_owned && !is_idle && wanted {
            continue;
        }
        release.dropped.push(key.clone());
        if !is_owned {
            continue;
        }
        if wanted {
            release.asleep.insert(key.server_id.clone());
        } else {
            release.remove_record.push(key.clone());
        }
    }
    release
}

/// The `pending` records of wanted replicas: those that sleep with an idle server.
pub fn sleepers(records: Vec<WorkerRecord>, replicas: u32) -> Vec<WorkerRecord> {
    records
        .into_iter()
        .filter(|r| r.status == WorkerStatus::Pending && r.replica_idx < replicas)
        .collect()
}

/// The start-up scan: which servers to take over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    /// Wanted servers no live supervisor runs: take the lease, then take over their
    /// records with this many replicas.
    pub take: Vec<(String, u32)>,
    /// Servers nobody wants any more whose records no live supervisor finishes: take
    /// over with no replica (their workers stop, their records go).
    pub clear: Vec<String>,
}

/// Decides the start-up take-over from every runtime record: a server whose records
/// name a live other supervisor is that one's; the rest are ours to take (wanted) or to
/// clear (not wanted).
pub fn adoption(records: &[ServerRuntime], desired: &Desired, live: &Liveness) -> Adoption {
    let mut plan = Adoption::default();
    for runtime in records {
        if runtime.workers.iter().any(|r| live.live_other(r)) {
            continue;
        }
        match desired.get(&runtime.server_id) {
            Some(replicas) => plan.take.push((runtime.server_id.clone(), *replicas)),
            None => plan.clear.push(runtime.server_id.clone()),
        }
    }
    plan
}

/// Live worker processes left after the start-up take-over that must stop: those of
/// servers nobody wants, and our own (by command line) that no take-over adopted;
/// never one a live other supervisor claims.
pub fn ghosts_at_start(
    live_workers: &BTreeMap<u32, WorkerArgs>,
    handled: &BTreeSet<u32>,
    claimed: &BTreeSet<(u32, Option<u16>)>,
    desired: &Desired,
    me: &str,
) -> Vec<u32> {
    live_workers
        .iter()
        .filter(|(pid, args)| {
            !handled.contains(pid)
                && !claimed.contains(&(**pid, args.port()))
                && (!desired.contains_key(&args.server_id) || args.supervisor_id == me)
        })
        .map(|(pid, _)| *pid)
        .collect()
}

/// How one server's records are taken over.
#[derive(Debug, Default, PartialEq)]
pub struct TakeOver {
    /// Live workers of wanted replicas: adopted if their `/healthz` answers with their
    /// pid, else stopped ("unhealthy at adoption") and their record forgotten.
    pub probe: Vec<(WorkerRecord, u32)>,
    /// Live workers of replicas no longer wanted: stopped, record forgotten.
    pub unwanted: Vec<(WorkerRecord, u32)>,
    /// A record says `idle`: the server stays idle until a call wakes it.
    pub idle: bool,
    /// `pending` records of wanted replicas (put to sleep if the server is idle).
    pub held_back: Vec<WorkerRecord>,
    /// Records of processes that are gone: removed with their port claims.
    pub forget: Vec<WorkerRecord>,
    /// Live workers of this server that no record names (a lost previous owner's):
    /// stopped (pid, port).
    pub duplicates: Vec<(u32, Option<u16>)>,
}

/// Plans the take-over of `server_id` with `replicas` wanted, from its `records`, the
/// live worker processes and this supervisor's slots (records of replicas that have a
/// slot are already ours and left alone).
pub fn take_over(
    server_id: &str,
    replicas: u32,
    records: Vec<WorkerRecord>,
    live_workers: &BTreeMap<u32, WorkerArgs>,
    has_slot: impl Fn(&SlotKey) -> bool,
    slot_pids: &BTreeSet<u32>,
) -> TakeOver {
    let mut plan = TakeOver::default();
    let mut handled = BTreeSet::new();
    for record in records {
        let key = SlotKey {
            server_id: server_id.to_owned(),
            replica_idx: record.replica_idx,
        };
        if has_slot(&key) {
            continue;
        }
        let wanted = record.replica_idx < replicas;
        let live_pid = record.pid.filter(|pid| {
            live_workers
                .get(pid)
                .is_some_and(|a| a.server_id == server_id)
        });
        match live_pid {
            Some(pid) if wanted => {
                handled.insert(pid);
                plan.probe.push((record, pid));
            }
            Some(pid) => {
                handled.insert(pid);
                plan.unwanted.push((record, pid));
            }
            None if wanted && record.status == WorkerStatus::Idle => plan.idle = true,
            None if wanted && record.status == WorkerStatus::Pending => plan.held_back.push(record),
            None => plan.forget.push(record),
        }
    }
    plan.duplicates = live_workers
        .iter()
        .filter(|(pid, args)| {
            args.server_id == server_id && !handled.contains(pid) && !slot_pids.contains(pid)
        })
        .map(|(pid, args)| (*pid, args.port()))
        .collect();
    plan
}

/// The periodic ghost clean-up, one round.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ghosts {
    /// Processes to stop now (pid, server, port).
    pub kill: Vec<(u32, String, Option<u16>)>,
    /// Processes that look like ghosts, and since when (the next round's input).
    pub candidates: BTreeMap<u32, Instant>,
}

/// Worker processes that are none of our slots' and serve no wanted server, once they
/// have looked so for `grace` (so a stale snapshot never kills a new worker), unless a
/// live other supervisor's record claims them (that one stops its own).
pub fn ghosts(
    scan: &[(u32, WorkerArgs)],
    ours: &BTreeSet<u32>,
    desired: &Desired,
    claimed: &BTreeSet<(u32, Option<u16>)>,
    candidates: &BTreeMap<u32, Instant>,
    now: Instant,
    grace: Duration,
) -> Ghosts {
    let mut round = Ghosts::default();
    for (pid, args) in scan {
        if ours.contains(pid)
            || desired.contains_key(&args.server_id)
            || claimed.contains(&(*pid, args.port()))
        {
            continue;
        }
        let first_seen = candidates.get(pid).copied().unwrap_or(now);
        if now.saturating_duration_since(first_seen) >= grace {
            round.kill.push((*pid, args.server_id.clone(), args.port()));
        } else {
            round.candidates.insert(*pid, first_seen);
        }
    }
    round
}

/// Whether the periodic clean-up must read the claims first: some process is neither
/// ours nor a wanted server's (rare; the read costs two Redis calls).
pub fn ghost_suspects(scan: &[(u32, WorkerArgs)], ours: &BTreeSet<u32>, desired: &Desired) -> bool {
    scan.iter()
        .any(|(pid, args)| !ours.contains(pid) && !desired.contains_key(&args.server_id))
}

/// Deleted servers whose records nobody will finish: every record names a dead
/// supervisor, no supervisor, or this one without a slot for it. (The executor then
/// checks that no lease is held before removing them.)
pub fn sweepable<'r>(
    records: &'r [ServerRuntime],
    registered: impl Fn(&str) -> bool,
    live: &Liveness,
    has_slot: impl Fn(&SlotKey) -> bool,
) -> Vec<&'r ServerRuntime> {
    records
        .iter()
        .filter(|runtime| !registered(&runtime.server_id))
        .filter(|runtime| {
            !runtime
                .workers
                .iter()
                .any(|record| match record.supervisor_id.as_deref() {
                    Some(owner) if owner == live.me => has_slot(&SlotKey {
                        server_id: runtime.server_id.clone(),
                        replica_idx: record.replica_idx,
                    }),
                    Some(owner) => live.alive(owner),
                    None => false,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkerStatus::*;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn desired(items: &[(&str, u32)]) -> Desired {
        items.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    fn key(server_id: &str, replica_idx: u32) -> SlotKey {
        SlotKey {
            server_id: server_id.into(),
            replica_idx,
        }
    }

    fn record(
        replica_idx: u32,
        status: WorkerStatus,
        owner: &str,
        pid: Option<u32>,
    ) -> WorkerRecord {
        WorkerRecord {
            pid,
            port: pid.map(|p| p as u16),
            ..WorkerRecord::new(replica_idx, status, owner)
        }
    }

    fn args(server_id: &str, supervisor_id: &str, port: u16) -> WorkerArgs {
        WorkerArgs {
            server_id: server_id.into(),
            key_prefix: "mcp:".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            supervisor_id: supervisor_id.into(),
            listen: format!("127.0.0.1:{port}"),
            replica: 0,
        }
    }

    fn runtime(server_id: &str, workers: Vec<WorkerRecord>) -> ServerRuntime {
        ServerRuntime {
            server_id: server_id.into(),
            workers,
        }
    }

    /// `me`, `alive` (beat 1 s ago) and `dead` (beat 60 s ago), with a 15 s TTL.
    fn seen() -> BTreeMap<String, u64> {
        [("me", 99_000), ("alive", 99_000), ("dead", 40_000)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn live(seen: &BTreeMap<String, u64>) -> Liveness<'_> {
        Liveness {
            me: "me",
            seen,
            now: 100_000,
            dead_after: 15_000,
        }
    }

    #[test]
    fn liveness_names_live_others_only() {
        let seen = seen();
        let live = live(&seen);
        for (owner, expected) in [
            (Some("me"), false),
            (Some("alive"), true),
            (Some("dead"), false),
            (Some("never-seen"), false),
            (None, false),
        ] {
            let mut r = record(0, Running, "x", Some(7));
            r.supervisor_id = owner.map(str::to_owned);
            assert_eq!(live.live_other(&r), expected, "{owner:?}");
        }
        let records = [
            runtime("a", vec![record(0, Running, "alive", Some(7))]),
            runtime("b", vec![record(0, Running, "dead", Some(8))]),
            runtime("c", vec![record(0, Pending, "alive", None)]),
        ];
        assert_eq!(live.claims(&records), BTreeSet::from([(7, Some(7))]));
    }

    #[test]
    fn owned_servers_are_kept_while_active_and_released_otherwise() {
        let owned = set(&["active", "inactive", "deleted"]);
        let fates = owned_fates(&owned, &desired(&[("active", 1)]), |s| s != "deleted");
        assert_eq!(
            fates,
            vec![
                ("active".into(), Fate::Keep),
                (
                    "deleted".into(),
                    Fate::Release {
                        deleted: true,
                        then: AfterStop::Remove,
                        why: "server deleted"
                    }
                ),
                (
                    "inactive".into(),
                    Fate::Release {
                        deleted: false,
                        then: AfterStop::Stopped,
                        why: "server inactive"
                    }
                ),
            ]
        );
    }

    #[test]
    fn replicas_start_while_there_is_room_and_wait_after() {
        /// (replicas, slots there, used, max) -> (started, held, used after)
        type Case = (
            u32,
            &'static [u32],
            usize,
            usize,
            &'static [u32],
            &'static [u32],
            usize,
        );
        let cases: [Case; 5] = [
            (1, &[], 0, 4, &[0], &[], 1),
            (3, &[], 2, 4, &[0, 1], &[2], 4),
            (3, &[0, 2], 3, 4, &[1], &[], 4),
            (2, &[], 4, 4, &[], &[0, 1], 4),
            (2, &[0, 1], 4, 4, &[], &[], 4),
        ];
        for (replicas, slots, used, max, started, held, after) in cases {
            let slots: BTreeSet<SlotKey> = slots.iter().map(|i| key("s", *i)).collect();
            let mut room = Room { used, max };
            let (start, hold) = place_replicas("s", replicas, |k| slots.contains(k), &mut room);
            let idx =
                |keys: Vec<SlotKey>| keys.into_iter().map(|k| k.replica_idx).collect::<Vec<_>>();
            assert_eq!(idx(start), started, "{replicas} replicas, slots {slots:?}");
            assert_eq!(idx(hold), held);
            assert_eq!(room.used, after);
        }
    }

    #[test]
    fn a_new_server_starts_whole_or_waits() {
        for (used, max, replicas, fits) in [
            (0, 1, 1, true),
            (1, 1, 1, false),
            (1, 4, 3, true),
            (2, 4, 3, false),
        ] {
            assert_eq!(
                Room { used, max }.fits(replicas),
                fits,
                "{used}/{max} + {replicas}"
            );
        }
    }

    #[test]
    fn surplus_replicas_of_owned_servers_stop() {
        let slots = [
            key("a", 0),
            key("a", 1),
            key("a", 2),
            key("b", 3),
            key("gone", 0),
        ];
        let stop = surplus(
            &slots,
            &set(&["a", "gone"]),
            &desired(&[("a", 2), ("b", 1)]),
        );
        // b is not ours; gone is ours but no longer wanted at all (its fate stops it).
        assert_eq!(stop, vec![key("a", 2), key("gone", 0)]);
    }

    #[test]
    fn held_replicas_are_kept_dropped_removed_or_put_to_sleep() {
        let held: BTreeSet<SlotKey> = [
            key("awake", 1),
            key("asleep", 1),
            key("fewer", 2),
            key("lost", 0),
        ]
        .into_iter()
        .collect();
        let release = release_held(
            &held,
            &set(&["awake", "asleep", "fewer"]),
            &set(&["asleep"]),
            &desired(&[("awake", 2), ("asleep", 2), ("fewer", 2), ("lost", 1)]),
        );
        assert_eq!(
            release,
            HeldRelease {
                dropped: vec![key("asleep", 1), key("fewer", 2), key("lost", 0)],
                remove_record: vec![key("fewer", 2)],
                asleep: set(&["asleep"]),
            }
        );
        let records = vec![
            record(0, Idle, "me", None),
            record(1, Pending, "me", None),
            record(2, Pending, "me", None),
        ];
        let sleeping: Vec<u32> = sleepers(records, 2).iter().map(|r| r.replica_idx).collect();
        assert_eq!(sleeping, vec![1]);
    }

    #[test]
    fn adoption_takes_what_no_live_supervisor_runs() {
        let seen = seen();
        let records = [
            runtime("mine", vec![record(0, Running, "me", Some(1))]),
            runtime("orphan", vec![record(0, Running, "dead", Some(2))]),
            runtime("theirs", vec![record(0, Running, "alive", Some(3))]),
            runtime(
                "mixed",
                vec![
                    record(0, Running, "dead", Some(4)),
                    record(1, Running, "alive", Some(5)),
                ],
            ),
            runtime("deleted", vec![record(0, Running, "dead", Some(6))]),
            runtime(
                "deleted-theirs",
                vec![record(0, Stopping, "alive", Some(7))],
            ),
        ];
        let plan = adoption(
            &records,
            &desired(&[("mine", 1), ("orphan", 2), ("theirs", 1), ("mixed", 2)]),
            &live(&seen),
        );
        assert_eq!(
            plan,
            Adoption {
                take: vec![("mine".into(), 1), ("orphan".into(), 2)],
                clear: vec!["deleted".into()],
            }
        );
    }

    #[test]
    fn start_up_ghosts_spare_claims_adoptions_and_others_wanted_workers() {
        let live_workers: BTreeMap<u32, WorkerArgs> = [
            (1, args("wanted", "me", 1)),     // ours, adopted
            (2, args("wanted", "me", 2)),     // ours, not adopted: a ghost
            (3, args("wanted", "other", 3)),  // another's worker of a wanted server
            (4, args("deleted", "other", 4)), // nobody wants it
            (5, args("deleted", "other", 5)), // ... but a live supervisor claims it
            (6, args("wanted", "me", 6)),     // claimed by a live other (taken over from us)
        ]
        .into_iter()
        .collect();
        let kill = ghosts_at_start(
            &live_workers,
            &BTreeSet::from([1]),
            &BTreeSet::from([(5, Some(5)), (6, Some(6))]),
            &desired(&[("wanted", 1)]),
            "me",
        );
        assert_eq!(kill, vec![2, 4]);
    }

    #[test]
    fn a_take_over_adopts_stops_sleeps_holds_and_forgets() {
        let live_workers: BTreeMap<u32, WorkerArgs> = [
            (10, args("s", "dead", 10)),
            (11, args("s", "dead", 11)),
            (12, args("s", "dead", 12)), // named by no record: a duplicate
            (13, args("other", "dead", 13)), // pid reused by another server's worker
            (14, args("s", "me", 14)),   // our own slot's process
        ]
        .into_iter()
        .collect();
        let records = vec![
            record(0, Running, "dead", Some(10)), // wanted, live: probe
            record(1, Idle, "dead", None),        // wanted, idle
            record(2, Pending, "dead", None),     // wanted, held back
            record(3, Running, "dead", Some(11)), // not wanted, live: stop
            record(4, Running, "dead", Some(99)), // process gone: forget
            record(5, Running, "dead", Some(13)), // pid now another server's: forget
            record(6, Running, "me", Some(14)),   // has a slot: left alone
        ];
        let plan = take_over(
            "s",
            3,
            records.clone(),
            &live_workers,
            |k| *k == key("s", 6),
            &BTreeSet::from([14]),
        );
        assert_eq!(plan.probe, vec![(records[0].clone(), 10)]);
        assert_eq!(plan.unwanted, vec![(records[3].clone(), 11)]);
        assert!(plan.idle);
        assert_eq!(plan.held_back, vec![records[2].clone()]);
        assert_eq!(plan.forget, vec![records[4].clone(), records[5].clone()]);
        assert_eq!(plan.duplicates, vec![(12, Some(12))]);

        // No replica wanted (a server nobody wants): every live worker stops.
        let plan = take_over(
            "s",
            0,
            records[..2].to_vec(),
            &live_workers,
            |_| false,
            &BTreeSet::new(),
        );
        assert_eq!(plan.unwanted, vec![(records[0].clone(), 10)]);
        assert!(
            !plan.idle,
            "an idle record of an unwanted replica is forgotten"
        );
        assert_eq!(plan.forget, vec![records[1].clone()]);
        assert_eq!(
            plan.duplicates,
            vec![(11, Some(11)), (12, Some(12)), (14, Some(14))]
        );
    }

    #[test]
    fn ghosts_are_stopped_after_their_grace_unless_claimed() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(2);
        let scan = vec![
            (1, args("wanted", "me", 1)),
            (2, args("deleted", "me", 2)),
            (3, args("deleted", "other", 3)),
            (4, args("deleted", "me", 4)),
            (5, args("deleted", "me", 5)),
        ];
        let ours = BTreeSet::from([4]);
        let wanted = desired(&[("wanted", 1)]);
        let claimed = BTreeSet::from([(3, Some(3))]);
        assert!(ghost_suspects(&scan, &ours, &wanted));
        assert!(!ghost_suspects(&scan[..1], &ours, &wanted));

        let first = ghosts(&scan, &ours, &wanted, &claimed, &BTreeMap::new(), t0, grace);
        assert!(first.kill.is_empty(), "first seen: wait");
        assert_eq!(first.candidates, BTreeMap::from([(2, t0), (5, t0)]));

        let early = ghosts(
            &scan,
            &ours,
            &wanted,
            &claimed,
            &first.candidates,
            t0 + grace / 2,
            grace,
        );
        assert!(early.kill.is_empty());
        assert_eq!(early.candidates, first.candidates, "first-seen times kept");

        // Pid 5 went away meanwhile: it is no candidate any more.
        let late = ghosts(
            &scan[..4],
            &ours,
            &wanted,
            &claimed,
            &first.candidates,
            t0 + grace,
            grace,
        );
        assert_eq!(late.kill, vec![(2, "deleted".into(), Some(2))]);
        assert!(late.candidates.is_empty());
    }

    #[test]
    fn deleted_servers_are_swept_only_when_nobody_finishes_them() {
        let seen = seen();
        let records = [
            runtime("registered", vec![record(0, Running, "dead", Some(1))]),
            runtime("dead-owner", vec![record(0, Running, "dead", Some(2))]),
            runtime("live-owner", vec![record(0, Stopping, "alive", Some(3))]),
            runtime("mine-with-slot", vec![record(0, Stopping, "me", Some(4))]),
            runtime("mine-no-slot", vec![record(0, Pending, "me", None)]),
            runtime("no-owner", vec![record(0, Stopped, "x", None)]),
        ];
        let mut records = records.to_vec();
        records[5].workers[0].supervisor_id = None;
        let swept: Vec<&str> = sweepable(
            &records,
            |s| s == "registered",
            &live(&seen),
            |k| *k == key("mine-with-slot", 0),
        )
        .iter()
        .map(|r| r.server_id.as_str())
        .collect();
        assert_eq!(swept, vec!["dead-owner", "mine-no-slot", "no-owner"]);
    }
}

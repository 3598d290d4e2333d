//! The pure parts of the server-level loop: records of granted replicas without a
//! serving worker, idle records, what counts as a heartbeat, ghost rounds, sleeping
//! servers. (`cap_replicas`, `status_path` and the pending records are table-tested in
//! `kubernetes/tests.rs`, where they were born.)

use super::*;

fn running(idx: u32) -> WorkerRecord {
    WorkerRecord {
        host: Some(format!("10.0.0.{idx}")),
        port: Some(9100),
        ..WorkerRecord::new(idx, WorkerStatus::Running, "sup")
    }
}

#[test]
fn granted_replicas_without_a_serving_worker_say_starting() {
    use WorkerStatus::{Pending as P, Running as R, Starting as S};
    let grant = |wanted, granted| Grant { wanted, granted };
    // (serving workers, grant, statuses by replica index)
    type Case<'a> = (u32, Grant, &'a [(u32, WorkerStatus)]);
    let cases: &[Case] = &[
        (0, grant(1, 1), &[(0, S)]),
        (1, grant(3, 3), &[(0, R), (1, S), (2, S)]),
        (1, grant(3, 2), &[(0, R), (1, S), (2, P)]),
        (0, grant(2, 0), &[(0, P), (1, P)]),
        // Scaled down: a pod still serving keeps its record, nothing is added.
        (2, grant(1, 1), &[(0, R), (1, R)]),
    ];
    for (pods, grant, expected) in cases {
        let mut serving = BTreeMap::new();
        if *pods > 0 {
            serving.insert("s".to_owned(), (0..*pods).map(running).collect());
        }
        let grants = BTreeMap::from([("s".to_owned(), *grant)]);
        let records = desired_records(serving, &grants, "sup", "full");
        let got: Vec<(u32, WorkerStatus)> = records["s"]
            .iter()
            .map(|r| (r.replica_idx, r.status))
            .collect();
        assert_eq!(&got, expected, "{pods} serving, {grant:?}");
    }
    // A server with nothing granted, wanted or serving has no entry at all.
    let grants = BTreeMap::from([("none".to_owned(), grant(0, 0))]);
    assert!(desired_records(BTreeMap::new(), &grants, "sup", "r").is_empty());
}

#[test]
fn idle_records_cover_every_wanted_replica_and_leave_running_through_stopping() {
    let records = idle_records(2, "sup", Duration::from_secs(5));
    assert_eq!(records.len(), 2);
    for (idx, record) in records.iter().enumerate() {
        assert_eq!(record.replica_idx, idx as u32);
        assert_eq!(record.status, WorkerStatus::Idle);
        assert_eq!(record.supervisor_id.as_deref(), Some("sup"));
        assert!(record.reason.as_deref().is_some_and(|r| r.contains("5s")));
    }
    use WorkerStatus::*;
    assert_eq!(status_path(Some(Running), Idle), Some(vec![Stopping, Idle]));
    assert_eq!(
        status_path(Some(Starting), Idle),
        Some(vec![Stopping, Idle])
    );
    assert_eq!(status_path(Some(Pending), Idle), Some(vec![Idle]));
    // Woken: idle -> starting -> running, or pending when there is no room.
    assert_eq!(status_path(Some(Idle), Starting), Some(vec![Starting]));
    assert_eq!(
        status_path(Some(Idle), Running),
        Some(vec![Starting, Running])
    );
    assert_eq!(status_path(Some(Idle), Pending), Some(vec![Pending]));
}

#[test]
fn a_record_that_differs_only_in_its_times_is_a_heartbeat() {
    let a = running(0);
    let b = WorkerRecord {
        updated_at: a.updated_at + 10,
        last_heartbeat: Some(42),
        ..a.clone()
    };
    assert!(same_record(&a, &b));
    let moved = WorkerRecord {
        host: Some("10.0.0.9".into()),
        ..a.clone()
    };
    assert!(!same_record(&a, &moved));
    let restarted = WorkerRecord {
        restarts: 1,
        ..a.clone()
    };
    assert!(!same_record(&a, &restarted));
    let other_owner = WorkerRecord {
        supervisor_id: Some("other".into()),
        ..a.clone()
    };
    assert!(!same_record(&a, &other_owner));
    // The worker's counters ride on the heartbeat; its breaker's state is a change.
    let breaker = |state| mcp_core::runtime::Resilience {
        state,
        consecutive_failures: 0,
        retries: 0,
        retries_by_reason: Default::default(),
        retries_refused_by_budget: 0,
        rejected: 0,
        opened: 0,
        opened_by: None,
    };
    let counted = WorkerRecord {
        resilience: Some(mcp_core::runtime::Resilience {
            retries: 7,
            ..breaker(mcp_core::runtime::BreakerState::Closed)
        }),
        ..a.clone()
    };
    let closed = WorkerRecord {
        resilience: Some(breaker(mcp_core::runtime::BreakerState::Closed)),
        ..a.clone()
    };
    assert!(same_record(&closed, &counted));
    let open = WorkerRecord {
        resilience: Some(breaker(mcp_core::runtime::BreakerState::Open)),
        ..a.clone()
    };
    assert!(!same_record(&closed, &open));
    // Why it opened is a change too (a probe failed after an error rate opened it).
    let opened_by = |reason| WorkerRecord {
        resilience: Some(mcp_core::runtime::Resilience {
            opened_by: Some(reason),
            ..breaker(mcp_core::runtime::BreakerState::Open)
        }),
        ..a.clone()
    };
    let by_rate = opened_by(mcp_core::runtime::BreakerOpenReason::ErrorRate {
        failed: 6,
        calls: 10,
    });
    assert!(!same_record(&open, &by_rate));
    assert!(same_record(&by_rate, &by_rate.clone()));
    assert!(!same_record(
        &by_rate,
        &opened_by(mcp_core::runtime::BreakerOpenReason::ProbeFailed)
    ));
}

#[test]
fn probed_health_fills_the_records_it_names() {
    let mut records = vec![running(0), running(1)];
    let audit: mcp_core::runtime::AuditCounters =
        serde_json::from_value(serde_json::json!({"written": 3})).expect("audit");
    let health = BTreeMap::from([(
        1,
        crate::health::Health {
            pid: 9,
            idle_ms: 0,
            resilience: None,
            audit: Some(audit),
        },
    )]);
    apply_health(&mut records, &health);
    assert_eq!(records[0].audit, None);
    assert_eq!(records[1].audit, Some(audit));
}

#[test]
fn ghosts_go_at_the_first_reconcile_and_later_only_after_the_grace() {
    let placement = |name: &str, server: Option<&str>| Placement {
        name: name.to_owned(),
        server_id: server.map(str::to_owned),
    };
    let placements = [
        placement("d-wanted", Some("wanted")),
        placement("d-gone", Some("gone")),
        placement("d-unnamed", None),
    ];
    let desired = BTreeMap::from([("wanted".to_owned(), 1)]);
    let t0 = Instant::now();
    let grace = Duration::from_secs(4);
    let names =
        |list: &[Placement]| -> Vec<String> { list.iter().map(|p| p.name.clone()).collect() };

    // First reconcile: every ghost at once.
    let (remove, watching) = ghost_round(&placements, &desired, &BTreeMap::new(), true, t0, grace);
    assert_eq!(names(&remove), ["d-gone", "d-unnamed"]);
    assert!(watching.is_empty());

    // Later: first seen now, kept; removed once seen so for the grace.
    let (remove, watching) = ghost_round(&placements, &desired, &BTreeMap::new(), false, t0, grace);
    assert!(remove.is_empty());
    assert_eq!(
        watching.keys().cloned().collect::<Vec<_>>(),
        ["d-gone", "d-unnamed"]
    );
    let (remove, still) = ghost_round(
        &placements,
        &desired,
        &watching,
        false,
        t0 + Duration::from_secs(1),
        grace,
    );
    assert!(remove.is_empty());
    assert_eq!(still, watching, "first-seen times are kept");
    let (remove, watching) = ghost_round(&placements, &desired, &still, false, t0 + grace, grace);
    assert_eq!(names(&remove), ["d-gone", "d-unnamed"]);
    assert!(watching.is_empty());

    // A candidate whose server became wanted is forgotten.
    let candidates = BTreeMap::from([("d-gone".to_owned(), t0)]);
    let both = BTreeMap::from([("wanted".to_owned(), 1), ("gone".to_owned(), 1)]);
    let (remove, watching) = ghost_round(
        &placements[..2],
        &both,
        &candidates,
        false,
        t0 + grace,
        grace,
    );
    assert!(remove.is_empty() && watching.is_empty());
}

#[test]
fn a_server_sleeps_when_some_record_is_idle_and_the_rest_pending() {
    use WorkerStatus::*;
    let records = |statuses: &[WorkerStatus]| -> Vec<WorkerRecord> {
        statuses
            .iter()
            .enumerate()
            .map(|(i, s)| WorkerRecord::new(i as u32, *s, "sup"))
            .collect()
    };
    assert!(sleeping(&records(&[Idle])));
    assert!(sleeping(&records(&[Idle, Pending])));
    assert!(!sleeping(&records(&[Pending])));
    assert!(!sleeping(&records(&[Idle, Running])));
    assert!(!sleeping(&[]));
}

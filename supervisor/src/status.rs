//! Owns the worker state machine: which status may follow which. The supervisor refuses
//! (and logs) an illegal transition instead of writing a record that lies.

use mcp_core::runtime::WorkerStatus::{self, *};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal worker transition {from:?} -> {to:?}")]
pub struct IllegalTransition {
    pub from: WorkerStatus,
    pub to: WorkerStatus,
}

/// Whether `to` may follow `from`. Staying in a status is always allowed.
pub fn allowed(from: WorkerStatus, to: WorkerStatus) -> bool {
    if from == to {
        return true;
    }
    match from {
        // Idle: a replica held for room whose server went idle sleeps with it.
        Pending => matches!(to, Starting | Stopped | Idle),
        Starting => matches!(to, Running | Restarting | Failed | Stopping),
        Running => matches!(to, Unhealthy | Restarting | Stopping),
        Unhealthy => matches!(to, Running | Restarting | Stopping),
        Restarting => matches!(to, Starting | Failed | Stopping),
        Failed => matches!(to, Starting | Restarting | Stopping),
        Stopping => matches!(to, Stopped | Idle),
        Stopped => matches!(to, Starting | Pending),
        // Pending: woken while MCP_WORKER_MAX leaves no room.
        Idle => matches!(to, Starting | Stopped | Pending),
    }
}

pub fn check(from: WorkerStatus, to: WorkerStatus) -> Result<(), IllegalTransition> {
    if allowed(from, to) {
        Ok(())
    } else {
        Err(IllegalTransition { from, to })
    }
}

/// Whether a record saying `to` may replace the stored one (`None`: no record yet, any
/// status may be written first).
pub fn check_replace(
    stored: Option<WorkerStatus>,
    to: WorkerStatus,
) -> Result<(), IllegalTransition> {
    stored.map_or(Ok(()), |from| check(from, to))
}

/// The statuses a slot that takes a replica over writes, in order, before its own
/// `Starting`, so that every write follows the state machine from what Redis holds
/// (`None`: no record, nothing to pass through). A record still saying `Running` or
/// `Unhealthy` (its process gone, or another owner's view) goes through `Restarting`;
/// one saying `Stopping` through `Stopped`.
pub fn path_to_starting(stored: Option<WorkerStatus>) -> &'static [WorkerStatus] {
    match stored {
        Some(Running | Unhealthy) => &[Restarting],
        Some(Stopping) => &[Stopped],
        None | Some(Pending | Starting | Restarting | Failed | Stopped | Idle) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [WorkerStatus; 9] = [
        Pending, Starting, Running, Unhealthy, Restarting, Stopping, Stopped, Failed, Idle,
    ];

    #[test]
    fn the_life_of_a_worker() {
        let path = [
            Pending, Starting, Running, Unhealthy, Running, Restarting, Starting, Running,
            Stopping, Idle, Pending, Starting, Failed, Restarting, Starting, Stopping, Idle,
            Starting, Stopping, Idle, Pending, Idle, Starting, Stopping, Stopped,
        ];
        for pair in path.windows(2) {
            assert!(allowed(pair[0], pair[1]), "{:?} -> {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn illegal_transitions_are_refused() {
        for (from, to) in [
            (Pending, Running),
            (Stopped, Running),
            (Idle, Running),
            (Running, Starting),
            (Running, Stopped),
            (Stopping, Running),
            (Stopping, Starting),
            (Failed, Running),
            (Starting, Idle),
            (Unhealthy, Idle),
        ] {
            assert_eq!(check(from, to), Err(IllegalTransition { from, to }));
        }
    }

    #[test]
    fn a_pending_record_replaces_only_what_may_become_pending() {
        // What `hold` and `mark_pending` may write over.
        for (stored, ok) in [
            (None, true),
            (Some(Pending), true),
            (Some(Stopped), true),
            (Some(Idle), true),
            (Some(Running), false),
            (Some(Starting), false),
            (Some(Stopping), false),
            (Some(Failed), false),
        ] {
            assert_eq!(check_replace(stored, Pending).is_ok(), ok, "{stored:?}");
        }
    }

    #[test]
    fn a_new_slot_reaches_starting_from_any_stored_record() {
        for stored in ALL.map(Some).into_iter().chain([None]) {
            let path = path_to_starting(stored);
            let mut from = stored;
            for &step in path.iter().chain([&Starting]) {
                assert!(
                    check_replace(from, step).is_ok(),
                    "{stored:?}: {from:?} -> {step:?} in {path:?}"
                );
                from = Some(step);
            }
        }
        // Only the records that cannot go to `Starting` directly get extra writes.
        assert_eq!(path_to_starting(Some(Running)), &[Restarting]);
        assert_eq!(path_to_starting(Some(Stopping)), &[Stopped]);
        assert!(path_to_starting(Some(Pending)).is_empty());
        assert!(path_to_starting(None).is_empty());
    }

    #[test]
    fn every_status_can_be_stopped_or_is_on_its_way() {
        for from in ALL {
            let reaches_stopped =
                allowed(from, Stopping) || allowed(from, Stopped) || from == Stopping;
            assert!(reaches_stopped, "{from:?} cannot be stopped");
        }
    }
}

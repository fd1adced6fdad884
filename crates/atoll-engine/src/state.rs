//! From what an agent observes to the states the platform shows.

use atoll_core::WsrepStatus;
use atoll_core::{ClusterStatus, ServerState};

/// `wsrep_local_state` values (Galera's node state machine).
const LOCAL_JOINING: u32 = 1;
const LOCAL_DONOR: u32 = 2;
const LOCAL_JOINED: u32 = 3;
const LOCAL_SYNCED: u32 = 4;

/// A server's state from its `wsrep_%` status and whether its process runs.
///
/// Being outside the primary component outranks the local state: a
/// non-Primary node refuses queries whatever its `wsrep_local_state` says.
/// `Crashed` and `CrashLoop` are the supervisor's to decide (it saw the
/// exit), `Unknown` the server's (it lost the agent).
pub fn server_state(wsrep: Option<&WsrepStatus>, process_running: bool) -> ServerState {
    if !process_running {
        return ServerState::Stopped;
    }
    let Some(w) = wsrep else {
        // Running but not answering SQL yet: still starting (or recovering).
        return ServerState::Starting;
    };
    if !w.cluster_status.eq_ignore_ascii_case("Primary") {
        return ServerState::NonPrimary;
    }
    match w.local_state {
        LOCAL_SYNCED => ServerState::Synced,
        LOCAL_JOINING | LOCAL_JOINED => ServerState::Joining,
        LOCAL_DONOR => ServerState::Donor,
        // 0 (initialised) and anything newer providers add: not serving yet.
        _ => ServerState::Starting,
    }
}

/// A cluster's health from its servers' states. `Creating` is the caller's
/// to decide (it knows about the create task).
///
/// Any Synced server means a primary component exists (Synced implies
/// Primary), so writes are accepted somewhere: Degraded, not Unavailable.
/// No servers at all is Unavailable: there is nothing to write to.
pub fn cluster_status(states: &[ServerState]) -> ClusterStatus {
    if states.is_empty() {
        ClusterStatus::Unavailable
    } else if states.iter().all(|s| *s == ServerState::Stopped) {
        ClusterStatus::Stopped
    } else if states.iter().all(|s| *s == ServerState::Synced) {
        ClusterStatus::Healthy
    } else if states.contains(&ServerState::Synced) {
        ClusterStatus::Degraded
    } else {
        ClusterStatus::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wsrep(cluster_status: &str, local_state: u32) -> WsrepStatus {
        WsrepStatus { ready: local_state == 4, cluster_status: cluster_status.into(), local_state, ..WsrepStatus::default() }
    }

    #[test]
    fn server_state_table() {
        use ServerState::*;
        let cases: &[(Option<WsrepStatus>, bool, ServerState)] = &[
            (Some(wsrep("Primary", 4)), true, Synced),
            (Some(wsrep("Primary", 1)), true, Joining),
            (Some(wsrep("Primary", 3)), true, Joining),
            (Some(wsrep("Primary", 2)), true, Donor),
            (Some(wsrep("Primary", 0)), true, Starting),
            (Some(wsrep("non-Primary", 4)), true, NonPrimary),
            (Some(wsrep("non-Primary", 1)), true, NonPrimary),
            (Some(wsrep("Disconnected", 0)), true, NonPrimary),
            (None, true, Starting),
            (None, false, Stopped),
            // A stale status from before the process exited does not count.
            (Some(wsrep("Primary", 4)), false, Stopped),
        ];
        for (w, running, want) in cases {
            assert_eq!(server_state(w.as_ref(), *running), *want, "{w:?} running={running}");
        }
    }

    #[test]
    fn cluster_status_table() {
        use ServerState::*;
        assert_eq!(cluster_status(&[Synced, Synced, Synced]), ClusterStatus::Healthy);
        assert_eq!(cluster_status(&[Synced, Joining, Synced]), ClusterStatus::Degraded);
        assert_eq!(cluster_status(&[Synced, Crashed, Stopped]), ClusterStatus::Degraded);
        assert_eq!(cluster_status(&[NonPrimary, NonPrimary, Crashed]), ClusterStatus::Unavailable);
        assert_eq!(cluster_status(&[Donor, Joining, Unknown]), ClusterStatus::Unavailable);
        assert_eq!(cluster_status(&[Stopped, Stopped, Stopped]), ClusterStatus::Stopped);
        assert_eq!(cluster_status(&[Stopped, Crashed, Stopped]), ClusterStatus::Unavailable);
        assert_eq!(cluster_status(&[]), ClusterStatus::Unavailable);
        assert_eq!(cluster_status(&[Synced]), ClusterStatus::Healthy);
    }
}

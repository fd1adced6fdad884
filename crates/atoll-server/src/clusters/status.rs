//! What state a cluster's servers are in, from their agents' reports.

use atoll_api::db::DbServerStatus;
use atoll_core::time::now_ms;
use atoll_core::{ClusterStatus, ServerState};
use atoll_store::DbServerRecord;

use crate::state::AppState;

/// The state a server is in, from its agent's last report; a report older
/// than the offline threshold means nobody knows.
pub fn server_state(state: &AppState, s: &DbServerRecord) -> (ServerState, Option<DbServerStatus>) {
    let status: Option<DbServerStatus> = s.status.clone().and_then(|v| serde_json::from_value(v).ok());
    let fresh = s.status_at_ms.is_some_and(|t| now_ms() - t <= state.config.offline_after_ms as i64);
    match (&status, fresh) {
        (Some(st), true) => (st.state, status),
        _ => (ServerState::Unknown, status),
    }
}

/// Whether a cluster's status is derived from its servers (not while it is
/// being created or deliberately stopped).
pub fn is_live(status: ClusterStatus) -> bool {
    !matches!(status, ClusterStatus::Creating | ClusterStatus::Stopped)
}

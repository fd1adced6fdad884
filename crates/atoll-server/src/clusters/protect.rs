//! The cluster that holds the platform's own MetaDB: the platform runs on
//! it, so a change that would take it away, or leave it unable to lose a
//! server, is refused with the reason.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The setting naming MetaDB's cluster (written by `atoll deploy`).
pub const METADB_CLUSTER_SETTING: &str = "platform.metadb_cluster";

/// Whether `name` is MetaDB's cluster.
pub async fn is_platform(state: &AppState, name: &str) -> ApiResult<bool> {
    Ok(state.store.get_setting(METADB_CLUSTER_SETTING).await?.as_deref() == Some(name))
}

/// Refuses `what` on MetaDB's cluster.
pub async fn refuse(state: &AppState, name: &str, what: &str) -> ApiResult<()> {
    if is_platform(state, name).await? {
        return Err(ApiError::Conflict(format!(
            "cluster {name} holds the platform's own metadata (MetaDB): {what} would stop the platform itself; \
             restarts, parameter changes, writer moves and adding servers are allowed"
        )));
    }
    Ok(())
}

/// Refuses leaving MetaDB's cluster with fewer than three servers: it must
/// keep a majority when one is lost.
pub async fn refuse_below_three(state: &AppState, name: &str, remaining: usize) -> ApiResult<()> {
    if remaining < 3 && is_platform(state, name).await? {
        return Err(ApiError::Conflict(format!(
            "cluster {name} holds the platform's own metadata (MetaDB): it keeps at least three servers so that losing one \
             leaves a majority; add a server first, then remove this one"
        )));
    }
    Ok(())
}

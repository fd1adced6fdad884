//! Derives each cluster's status from what agents report about its
//! servers, and records the changes.

use std::collections::BTreeMap;

use atoll_core::time::now_ms;
use atoll_store::Fence;
use serde_json::json;

use super::routing;
use super::status::{is_live, server_state};
use crate::state::AppState;

/// One pass over every live cluster.
pub async fn pass(state: &AppState, fence: &Fence) -> anyhow::Result<()> {
    for c in state.store.list_clusters().await? {
        if !is_live(c.status) {
            continue;
        }
        routing::failover(state, &c).await?;
        let servers = state.store.cluster_servers(&c.name).await?;
        let states: Vec<_> = servers.iter().map(|s| server_state(state, s).0).collect();
        let derived = atoll_engine::cluster_status(&states);
        if derived != c.status {
            state.store.set_cluster_status(&c.name, derived, now_ms(), Some(fence)).await?;
            routing::changed(state);
            let per_server: BTreeMap<&str, &str> = servers.iter().zip(&states).map(|(s, st)| (s.name.as_str(), st.as_str())).collect();
            tracing::warn!(cluster = %c.name, from = %c.status, to = %derived, "cluster status changed");
            state
                .audit(
                    "platform",
                    std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                    "cluster.status",
                    &c.name,
                    json!({ "from": c.status, "to": derived, "servers": per_server }),
                    "ok",
                )
                .await;
        }
    }
    Ok(())
}

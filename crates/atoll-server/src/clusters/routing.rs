//! Routing: which server takes a cluster's writes, failing over when it
//! stops being Synced, and the routing table proxies long-poll.

use std::time::Duration;

use atoll_api::routing::{Backend, RoutingTable};
use atoll_core::routing::{next_writer, preference_order};
use atoll_core::time::now_ms;
use atoll_store::{ClusterRecord, DbServerRecord, RoutingRecord};
use serde_json::json;

use super::secrets::{MONITOR_USER, SealedSecrets};
use super::status::{is_live, server_state};
use crate::error::ApiResult;
use crate::state::AppState;

/// The longest a routing request waits for a change.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Tells long-polling proxies to look again; cheap, so called on every
/// report that may change a table.
pub fn changed(state: &AppState) {
    state.routing.send_modify(|n| *n = n.wrapping_add(1));
}

/// The cluster's routing table as proxies see it.
pub async fn table(state: &AppState, c: &ClusterRecord, servers: &[DbServerRecord]) -> ApiResult<RoutingTable> {
    let routing = state.store.get_routing(&c.name).await?.unwrap_or_default();
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    let order = preference_order(routing.writer.as_deref(), &names);
    let backends: Vec<Backend> = order
        .iter()
        .filter_map(|n| servers.iter().find(|s| s.name == *n))
        .map(|s| Backend {
            name: s.name.clone(),
            zone: s.zone.clone(),
            address: s.address.clone(),
            port: s.ports.sql,
            state: server_state(state, s).0,
        })
        .collect();
    let monitor_password = SealedSecrets::of(c)?.monitor(state)?;
    let mut t = RoutingTable {
        cluster: c.name.clone(),
        version: String::new(),
        writer: routing.writer,
        moving_to: routing.moving_to,
        backends,
        monitor_user: MONITOR_USER.into(),
        monitor_password,
        servers: {
            let mut peers = state.platform.peers();
            peers.sort();
            peers
        },
    };
    t.version = version(&t);
    Ok(t)
}

/// A digest of everything a proxy acts on, so equal tables have equal
/// versions on every platform server sharing MetaDB.
fn version(t: &RoutingTable) -> String {
    let canonical = json!([t.writer, t.moving_to, t.backends, t.monitor_user, t.monitor_password, t.servers]).to_string();
    atoll_core::secret::sha256_hex(&canonical)[..16].to_string()
}

/// Moves the writer away from a server that is no longer Synced (to the
/// next Synced one in preference order) and names a first writer for a
/// cluster that has none. Compare-and-set in MetaDB, so when several
/// servers see the same report only one of them moves it.
pub async fn failover(state: &AppState, c: &ClusterRecord) -> anyhow::Result<()> {
    if !is_live(c.status) {
        return Ok(());
    }
    let servers = state.store.cluster_servers(&c.name).await?;
    let current = state.store.get_routing(&c.name).await?;
    if current.as_ref().is_some_and(|r| r.moving_to.is_some()) {
        return Ok(()); // a planned move owns the writer until it ends
    }
    let states: Vec<(&str, atoll_core::ServerState)> = servers.iter().map(|s| (s.name.as_str(), server_state(state, s).0)).collect();
    let writer = current.as_ref().and_then(|r| r.writer.as_deref());
    let next = next_writer(writer, &states);
    if next == writer {
        return Ok(());
    }
    let new = RoutingRecord { writer: next.map(String::from), moving_to: None, changed_at_ms: now_ms() };
    if state.store.set_routing(&c.name, current.as_ref(), &new).await? {
        match writer {
            // Naming the first writer is routine; moving it means one failed.
            None => tracing::info!(cluster = %c.name, writer = ?next, "writer named"),
            Some(_) => tracing::warn!(cluster = %c.name, from = ?writer, to = ?next, "writer changed"),
        }
        changed(state);
        let detail = json!({ "from": writer, "to": next, "servers": states.iter().map(|(n, s)| (n.to_string(), s.as_str())).collect::<std::collections::BTreeMap<_, _>>() });
        state.audit("platform", std::net::SocketAddr::from(([0, 0, 0, 0], 0)), "cluster.writer", &c.name, detail, "ok").await;
    }
    Ok(())
}

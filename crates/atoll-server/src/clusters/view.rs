//! A cluster as the API and the console show it, read from MetaDB.

use std::collections::BTreeMap;

use atoll_api::v1::{ClusterView, ServerView, ZoneView};
use atoll_core::HostId;
use atoll_core::time::now_ms;
use atoll_store::{ClusterRecord, DbServerRecord, ProxyRecord, RoutingRecord};

use super::proxies;
use super::status::server_state;
use crate::error::ApiResult;
use crate::state::AppState;

/// Host names by id, for views: from the summary listing, so no host's
/// facts are read.
pub async fn host_names(state: &AppState) -> ApiResult<BTreeMap<HostId, String>> {
    Ok(state.store.list_host_summaries(&Default::default()).await?.into_iter().map(|h| (h.id, h.name)).collect())
}

/// Everything a cluster view shows, read from MetaDB.
pub async fn view_of(state: &AppState, c: &ClusterRecord, hosts: &BTreeMap<HostId, String>) -> ApiResult<ClusterView> {
    let servers = state.store.cluster_servers(&c.name).await?;
    let routing = state.store.get_routing(&c.name).await?.unwrap_or_default();
    let proxies = state.store.cluster_proxies(&c.name).await?;
    Ok(view(state, c, &servers, &routing, &proxies, hosts))
}

pub fn view(
    state: &AppState,
    c: &ClusterRecord,
    servers: &[DbServerRecord],
    routing: &RoutingRecord,
    proxies: &[ProxyRecord],
    hosts: &BTreeMap<HostId, String>,
) -> ClusterView {
    let mut zones: Vec<ZoneView> = Vec::new();
    for s in servers {
        let (st, status) = server_state(state, s);
        let v = ServerView {
            name: s.name.clone(),
            host: hosts.get(&s.host_id).cloned().unwrap_or_else(|| s.host_id.to_string()),
            address: s.address.clone(),
            port: s.ports.sql,
            state: st,
            status,
            status_at_ms: s.status_at_ms,
        };
        match zones.iter_mut().find(|z| z.name == s.zone) {
            Some(z) => z.servers.push(v),
            None => zones.push(ZoneView { name: s.zone.clone(), segment: s.segment, servers: vec![v] }),
        }
    }
    ClusterView {
        name: c.name.clone(),
        region: c.spec.region.clone().unwrap_or_else(|| atoll_core::DEFAULT_REGION.into()),
        engine: c.engine.clone(),
        durability: c.durability,
        status: c.status,
        zones,
        writer: routing.writer.clone(),
        moving_to: routing.moving_to.clone(),
        proxies: proxies.iter().map(|p| proxies::view(p, hosts, now_ms() - state.config.offline_after_ms as i64)).collect(),
        params: c.spec.params.clone(),
        created_by: c.created_by.clone(),
        created_at_ms: c.created_at_ms,
        updated_at_ms: c.updated_at_ms,
    }
}

//! A cluster as the API and the console show it, read from MetaDB.

use std::collections::BTreeMap;

use atoll_api::v1::{ClusterView, ReplicaChannelView, ReplicationView, ServerView, ZoneView};
use atoll_core::time::now_ms;
use atoll_core::{GtidPos, HostId};
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
    let mut v = view(state, c, &servers, &routing, &proxies, hosts);
    v.replication = replication(state, c, &servers).await?;
    Ok(v)
}

/// The pair a cluster is part of; for a standby, its channel as the
/// applier reports it, with the primary's position to measure the lag.
async fn replication(state: &AppState, c: &ClusterRecord, servers: &[DbServerRecord]) -> ApiResult<Option<ReplicationView>> {
    let Some(r) = &c.spec.replication else { return Ok(None) };
    let Some(primary) = &r.source else {
        let standbys = state
            .store
            .list_clusters()
            .await?
            .into_iter()
            .filter(|o| o.spec.replication.as_ref().and_then(|r| r.source.as_deref()) == Some(c.name.as_str()))
            .map(|o| o.name)
            .collect();
        return Ok(Some(ReplicationView { role: "primary".into(), domain: r.domain, primary: None, standbys, channel: None }));
    };
    let primary_servers = state.store.cluster_servers(primary).await?;
    // The channel as the applier reports it now, its lag against what its
    // source has logged now (stored reports lag behind the binary logs).
    // The node whose channel runs (a node that was the applier before a
    // restart still lists its stopped channel), else one with an error.
    let mut found = Vec::new();
    for s in servers {
        if let Some(rep) = super::standby::live_status(state, s).await.and_then(|st| st.replication)
            && let Some(ch) = rep.channel.clone()
        {
            found.push((s, rep, ch));
        }
    }
    found.sort_by_key(|(_, _, ch)| (!ch.running(), ch.last_error.is_none()));
    let mut channel = None;
    if let Some((s, rep, ch)) = found.into_iter().next() {
        let source = primary_servers.iter().find(|p| atoll_engine::config::host_port(&p.address, p.ports.sql) == ch.source);
        let theirs = match source {
            Some(p) => super::standby::live_status(state, p)
                .await
                .and_then(|x| x.replication)
                .and_then(|r| r.gtid_binlog_pos.parse::<GtidPos>().ok()),
            None => None,
        };
        let ours = rep.gtid_binlog_pos.parse::<GtidPos>().unwrap_or_default();
        channel = Some(ReplicaChannelView {
            applier: s.name.clone(),
            source: source.map_or_else(|| ch.source.clone(), |p| p.name.clone()),
            running: ch.running(),
            seconds_behind: ch.seconds_behind,
            transactions_behind: theirs.map(|t| ours.behind(&t.replicated_from_others(r.domain))),
            last_error: ch.last_error.clone(),
        });
    }
    Ok(Some(ReplicationView { role: "standby".into(), domain: r.domain, primary: Some(primary.clone()), standbys: Vec::new(), channel }))
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
        replication: None,
        created_by: c.created_by.clone(),
        created_at_ms: c.created_at_ms,
        updated_at_ms: c.updated_at_ms,
    }
}

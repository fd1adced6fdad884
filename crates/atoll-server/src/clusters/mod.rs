//! Database clusters: validating a request against everything the platform
//! knows, the tasks that make and operate clusters, and their health.

pub mod health;
pub mod operate;
pub mod steps;

use std::collections::{BTreeMap, BTreeSet};

use atoll_api::db::DbServerStatus;
use atoll_api::v1::{ClusterView, ServerView, ZoneView};
use atoll_core::{ClusterSpec, ClusterStatus, HostStatus, ServerState};
use atoll_plan::check::CheckStatus;
use atoll_store::{ClusterRecord, DbServerRecord, HostRecord};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::hostops;
use crate::state::{AppState, now_ms};

pub const ENGINE: &str = "mariadb-galera";
/// The platform's own account on every cluster; also handed to admins.
pub const ADMIN_USER: &str = "atoll_admin";
/// Read-only account for probes and monitoring.
pub const MONITOR_USER: &str = "atoll_monitor";

/// The cluster's passwords, sealed with the platform key in MetaDB.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedSecrets {
    pub admin_password: String,
    pub monitor_password: String,
}

/// A validated create request: the servers placed on real hosts.
pub struct Placement {
    pub spec: ClusterSpec,
    pub servers: Vec<(DbServerRecord, HostRecord)>,
}

/// Checks a create request against the topology rules, the engine's
/// parameter catalog, MetaDB (names, hosts, ports in use) and a live
/// precheck of every host, and reports every problem at once.
pub async fn validate(state: &AppState, spec: ClusterSpec) -> ApiResult<Placement> {
    let mut problems = spec.shape_problems();
    problems.extend(atoll_engine::params::check(&spec.params, spec.durability).into_iter().map(|p| p.to_string()));
    if state.store.get_cluster(&spec.name).await?.is_some() {
        problems.push(format!("a cluster named {} already exists", spec.name));
    }
    let zones: Vec<String> = spec.zones().into_iter().map(String::from).collect();
    let mut placed = Vec::new();
    let mut claimed: BTreeSet<(String, u16)> = BTreeSet::new();
    for s in &spec.servers {
        let Some(host) = state.store.find_host(&s.host).await? else {
            problems.push(format!("server {}: no host {:?} (`atoll host list` shows the hosts there are)", s.name, s.host));
            continue;
        };
        if host.host.status != HostStatus::Online {
            problems.push(format!("server {}: host {} is {}; start its agent first", s.name, host.host.name, host.host.status));
        }
        for port in s.ports.all() {
            if !claimed.insert((host.host.address.clone(), port)) {
                problems.push(format!("server {}: port {port} on {} is used twice in this request", s.name, host.host.name));
            }
        }
        for other in state.store.servers_on_host(host.host.id).await? {
            let clash: Vec<u16> = s.ports.all().into_iter().filter(|p| other.ports.all().contains(p)).collect();
            if !clash.is_empty() {
                problems.push(format!(
                    "server {}: port(s) {clash:?} on {} are already used by server {} of cluster {}",
                    s.name, host.host.name, other.name, other.cluster
                ));
            }
        }
        let segment = zones.iter().position(|z| *z == s.zone).unwrap_or(0) as u8;
        let dir = format!("{}/{}/{}", state.config.host_data_dir.trim_end_matches('/'), spec.name, s.name);
        let record = DbServerRecord {
            cluster: spec.name.clone(),
            name: s.name.clone(),
            host_id: host.host.id,
            zone: s.zone.clone(),
            segment,
            address: host.host.address.clone(),
            ports: s.ports,
            dir,
            status: None,
            status_at_ms: None,
        };
        placed.push((record, host));
    }
    // A live precheck of each host (all at once) with this cluster's ports:
    // whatever fails there would fail the deployment half-way.
    if problems.is_empty() {
        let profile = hostops::profile(None, state)?;
        let ports: Vec<[u16; 4]> = placed.iter().map(|(server, _)| server.ports.all()).collect();
        let checks = placed
            .iter()
            .zip(&ports)
            .map(|((_, host), ports)| hostops::check_host(state, host, &profile, &state.config.host_data_dir, ports));
        let reports = futures::future::join_all(checks).await;
        for ((server, host), report) in placed.iter().zip(&reports) {
            for r in report.results.iter().filter(|r| r.status == CheckStatus::Fail) {
                problems.push(format!(
                    "server {} on {}: precheck {} fails (measured {}, required {}){}",
                    server.name,
                    host.host.name,
                    r.item,
                    r.measured,
                    r.required,
                    r.fix.as_deref().map(|f| format!("; fix: {f}")).unwrap_or_default()
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    Ok(Placement { spec, servers: placed })
}

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

pub fn view(state: &AppState, c: &ClusterRecord, servers: &[DbServerRecord], hosts: &BTreeMap<atoll_core::HostId, String>) -> ClusterView {
    let spec: Option<ClusterSpec> = serde_json::from_value(c.spec.clone()).ok();
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
        engine: c.engine.clone(),
        durability: c.durability,
        status: c.status,
        zones,
        params: spec.map(|s| s.params).unwrap_or_default(),
        created_by: c.created_by.clone(),
        created_at_ms: c.created_at_ms,
        updated_at_ms: c.updated_at_ms,
    }
}

/// Whether a cluster's status is derived from its servers (not while it is
/// being created or deliberately stopped).
pub fn is_live(status: ClusterStatus) -> bool {
    !matches!(status, ClusterStatus::Creating | ClusterStatus::Stopped)
}

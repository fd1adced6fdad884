//! Database clusters: validating a request against everything the platform
//! knows, the tasks that make and operate clusters, and their health.

pub mod health;
pub mod operate;
pub mod proxies;
pub mod servers;
pub mod steps;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};

use atoll_api::db::DbServerStatus;
use atoll_api::v1::{ClusterView, ServerView, ZoneView};
use atoll_core::{ClusterSpec, ClusterStatus, EngineBuild, HostStatus, SYSTEM_BUILD, ServerState};
use atoll_plan::check::CheckStatus;
use atoll_store::{ClusterRecord, DbServerRecord, HostRecord, PackageRecord, ProxyRecord, RoutingRecord};
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
    /// The bearer token the cluster's proxies read its routing table
    /// with; absent on clusters made before proxies existed.
    #[serde(default)]
    pub proxy_token: Option<String>,
}

impl SealedSecrets {
    pub fn of(c: &ClusterRecord) -> ApiResult<SealedSecrets> {
        serde_json::from_value(c.secrets.clone()).map_err(|e| ApiError::Internal(format!("cluster {} secrets: {e}", c.name)))
    }
}

/// A validated create request: the servers placed on real hosts.
pub struct Placement {
    pub spec: ClusterSpec,
    pub servers: Vec<(DbServerRecord, HostRecord)>,
    pub proxies: Vec<ProxyRecord>,
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
    let package = package_of(state, &spec, &mut problems).await?;
    let zones: Vec<String> = spec.zones().into_iter().map(String::from).collect();
    let segment = |zone: &str| zones.iter().position(|z| z == zone).unwrap_or(0) as u8;
    let mut claimed: BTreeSet<(String, u16)> = BTreeSet::new();
    let placed = place_servers(state, &spec, &spec.servers, package.as_ref(), segment, &mut claimed, &mut problems).await?;
    let records: Vec<DbServerRecord> = placed.iter().map(|(s, _)| s.clone()).collect();
    let proxies = proxies::place(&spec, &records);
    check_proxy_ports(state, &spec, &proxies, &mut claimed, &mut problems).await?;
    // A live precheck of each host (all at once) with this cluster's ports:
    // whatever fails there would fail the deployment half-way.
    if problems.is_empty() {
        precheck(state, &placed, &proxies, &mut problems).await?;
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    Ok(Placement { spec, servers: placed, proxies })
}

/// A validated request to add servers to a cluster.
pub struct Growth {
    /// The cluster's spec with the new servers in it, stored once they are
    /// synced.
    pub spec: ClusterSpec,
    pub servers: Vec<(DbServerRecord, HostRecord)>,
    /// Proxies of zones the cluster did not have.
    pub proxies: Vec<ProxyRecord>,
}

/// Checks servers to add like a create request's (hosts known and online,
/// the cluster's engine build, ports free, a live precheck) plus the
/// topology the cluster would have, and names them CLUSTER-N after the
/// highest number in use.
pub async fn validate_add(
    state: &AppState,
    c: &ClusterRecord,
    existing: &[DbServerRecord],
    add: &[atoll_api::v1::NewServer],
) -> ApiResult<Growth> {
    let mut spec: ClusterSpec = serde_json::from_value(c.spec.clone()).map_err(|e| ApiError::Internal(format!("stored spec: {e}")))?;
    if add.is_empty() {
        return Err(ApiError::BadRequest(
            "name at least one server to add: {\"servers\": [{\"zone\": \"z4\", \"host\": \"HOST\"}]}".into(),
        ));
    }
    let default_ports = existing.first().map(|s| s.ports).unwrap_or_default();
    let prefix = format!("{}-", c.name);
    // After the highest number in use rather than the lowest free one: a
    // removed server's kept data directory is not picked up by a newcomer.
    let mut next = existing
        .iter()
        .map(|s| s.name.as_str())
        .chain(spec.servers.iter().map(|s| s.name.as_str()))
        .filter_map(|n| n.strip_prefix(&prefix).and_then(|t| t.parse::<u32>().ok()))
        .max()
        .unwrap_or(0);
    let mut new = Vec::new();
    for a in add {
        next += 1;
        new.push(atoll_core::ServerSpec {
            name: format!("{prefix}{next}"),
            zone: a.zone.clone(),
            host: a.host.clone(),
            ports: a.ports.unwrap_or(default_ports),
        });
    }
    // The stored spec lists what is running; the store may hold servers a
    // spec predating scaling lacks, so rebuild the list from the store.
    spec.servers.retain(|s| existing.iter().any(|e| e.name == s.name));
    spec.servers.extend(new.iter().cloned());
    let mut problems = spec.layout_problems();
    let package = package_of(state, &spec, &mut problems).await?;
    // Zones keep their segment; a new zone gets the next one.
    let next_segment = existing.iter().map(|s| s.segment).max().map_or(0, |m| m.saturating_add(1));
    let mut new_zones: Vec<String> = Vec::new();
    for s in &new {
        if !existing.iter().any(|e| e.zone == s.zone) && !new_zones.contains(&s.zone) {
            new_zones.push(s.zone.clone());
        }
    }
    let segment = |zone: &str| {
        existing
            .iter()
            .find(|e| e.zone == zone)
            .map(|e| e.segment)
            .or_else(|| new_zones.iter().position(|z| z == zone).map(|i| next_segment.saturating_add(i as u8)))
            .unwrap_or(next_segment)
    };
    let mut claimed: BTreeSet<(String, u16)> = BTreeSet::new();
    let placed = place_servers(state, &spec, &new, package.as_ref(), segment, &mut claimed, &mut problems).await?;
    let records: Vec<DbServerRecord> = placed.iter().map(|(s, _)| s.clone()).collect();
    let have = state.store.cluster_proxies(&c.name).await?;
    let proxies: Vec<ProxyRecord> =
        proxies::place(&spec, &records).into_iter().filter(|p| !have.iter().any(|h| h.zone == p.zone)).collect();
    check_proxy_ports(state, &spec, &proxies, &mut claimed, &mut problems).await?;
    if problems.is_empty() {
        precheck(state, &placed, &proxies, &mut problems).await?;
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    Ok(Growth { spec, servers: placed, proxies })
}

/// The registered package the spec names, if any; an unknown one is a
/// problem.
async fn package_of(state: &AppState, spec: &ClusterSpec, problems: &mut Vec<String>) -> ApiResult<Option<PackageRecord>> {
    let Some(name) = package_name(spec) else { return Ok(None) };
    let found = state.store.get_package(name).await?;
    if found.is_none() {
        problems.push(format!("engine {name}: no such package (`atoll package list` shows them; `atoll package add` registers one)"));
    }
    Ok(found)
}

/// Places requested servers on their hosts, checked against MetaDB: the
/// host is known and online and has the engine build, and no port is
/// taken twice in the request (`claimed`) or by another server there.
async fn place_servers(
    state: &AppState,
    spec: &ClusterSpec,
    servers: &[atoll_core::ServerSpec],
    package: Option<&PackageRecord>,
    segment: impl Fn(&str) -> u8,
    claimed: &mut BTreeSet<(String, u16)>,
    problems: &mut Vec<String>,
) -> ApiResult<Vec<(DbServerRecord, HostRecord)>> {
    let mut placed = Vec::new();
    for s in servers {
        let Some(host) = state.store.find_host(&s.host).await? else {
            problems.push(format!("server {}: no host {:?} (`atoll host list` shows the hosts there are)", s.name, s.host));
            continue;
        };
        if host.host.status != HostStatus::Online {
            problems.push(format!("server {}: host {} is {}; start its agent first", s.name, host.host.name, host.host.status));
        }
        if let Err(why) = engine_build(spec, package, &host) {
            problems.push(format!("server {}: {why}", s.name));
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
        let dir = format!("{}/{}/{}", state.config.host_data_dir.trim_end_matches('/'), spec.name, s.name);
        let record = DbServerRecord {
            cluster: spec.name.clone(),
            name: s.name.clone(),
            host_id: host.host.id,
            zone: s.zone.clone(),
            segment: segment(&s.zone),
            address: host.host.address.clone(),
            ports: s.ports,
            dir,
            status: None,
            status_at_ms: None,
        };
        placed.push((record, host));
    }
    Ok(placed)
}

/// Proxy ports must be free of this request's servers and of every other
/// server and proxy on the proxy's host.
async fn check_proxy_ports(
    state: &AppState,
    spec: &ClusterSpec,
    proxies: &[ProxyRecord],
    claimed: &mut BTreeSet<(String, u16)>,
    problems: &mut Vec<String>,
) -> ApiResult<()> {
    for p in proxies {
        for port in spec.proxy.ports() {
            if !claimed.insert((p.address.clone(), port)) {
                problems.push(format!("proxy {}: port {port} on {} is also used by a server of this request", p.name, p.address));
            }
        }
        for other in state.store.proxies_on_host(p.host_id).await? {
            let clash: Vec<u16> =
                spec.proxy.ports().into_iter().filter(|x| [other.rw_port, other.ro_port, other.admin_port].contains(x)).collect();
            if !clash.is_empty() {
                problems.push(format!(
                    "proxy {}: port(s) {clash:?} on {} are already used by proxy {} of cluster {}; choose other [proxy] ports",
                    p.name, p.address, other.name, other.cluster
                ));
            }
        }
        for other in state.store.servers_on_host(p.host_id).await? {
            let clash: Vec<u16> = spec.proxy.ports().into_iter().filter(|x| other.ports.all().contains(x)).collect();
            if !clash.is_empty() {
                problems.push(format!(
                    "proxy {}: port(s) {clash:?} on {} are already used by server {} of cluster {}; choose other [proxy] ports",
                    p.name, p.address, other.name, other.cluster
                ));
            }
        }
    }
    Ok(())
}

/// A live precheck of each placed server's host (all at once) with the
/// ports it and its zone's proxy will take: whatever fails there would
/// fail the deployment half-way.
async fn precheck(
    state: &AppState,
    placed: &[(DbServerRecord, HostRecord)],
    proxies: &[ProxyRecord],
    problems: &mut Vec<String>,
) -> ApiResult<()> {
    let profile = hostops::profile(None, state)?;
    let ports: Vec<Vec<u16>> = placed
        .iter()
        .map(|(server, _)| {
            let mut ports = server.ports.all().to_vec();
            if let Some(p) = proxies.iter().find(|p| p.host_id == server.host_id && p.zone == server.zone) {
                ports.extend([p.rw_port, p.ro_port, p.admin_port]);
            }
            ports
        })
        .collect();
    let checks =
        placed.iter().zip(&ports).map(|((_, host), ports)| hostops::check_host(state, host, &profile, &state.config.host_data_dir, ports));
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
    Ok(())
}

/// The package a cluster runs; `None` for the hosts' system build.
pub fn package_name(spec: &ClusterSpec) -> Option<&str> {
    spec.engine.as_deref().filter(|e| *e != SYSTEM_BUILD)
}

/// The engine build a cluster's servers run on `host`, from its facts:
/// `Ok(None)` for the system build, the build otherwise. `Err` says what
/// the host lacks and how to fix it. `package` is the registered package
/// the spec names (unknown packages are reported by the caller).
pub fn engine_build(spec: &ClusterSpec, package: Option<&PackageRecord>, host: &HostRecord) -> Result<Option<EngineBuild>, String> {
    let h = &host.host.name;
    let facts = host.host.facts.as_ref();
    let Some(name) = package_name(spec) else {
        return match facts.and_then(|f| f.engine(SYSTEM_BUILD)) {
            Some(_) => Ok(None),
            None => Err(format!(
                "host {h} has no system engine build (mariadbd, mariadb-install-db and {}); install mariadb-server galera-4 there, or push a package (`atoll package push NAME --host {h}`) and set engine = \"NAME\"",
                atoll_engine::PROVIDER
            )),
        };
    };
    match facts.and_then(|f| f.engine(name)) {
        None => Err(format!("host {h} has no engine build {name}; push it with `atoll package push {name} --host {h}`")),
        Some(b) => match package {
            Some(p) if b.sha256.as_deref() != Some(p.sha256.as_str()) => Err(format!(
                "host {h} has another build named {name} (sha256 {}) than the registered package (sha256 {})",
                b.sha256.as_deref().unwrap_or("unknown"),
                p.sha256
            )),
            _ => Ok(Some(b.clone())),
        },
    }
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

/// Host names by id, for views: from the summary listing, so no host's
/// facts are read.
pub async fn host_names(state: &AppState) -> ApiResult<BTreeMap<atoll_core::HostId, String>> {
    Ok(state.store.list_host_summaries().await?.into_iter().map(|h| (h.id, h.name)).collect())
}

/// Everything a cluster view shows, read from MetaDB.
pub async fn view_of(state: &AppState, c: &ClusterRecord, hosts: &BTreeMap<atoll_core::HostId, String>) -> ApiResult<ClusterView> {
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
    hosts: &BTreeMap<atoll_core::HostId, String>,
) -> ClusterView {
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
        writer: routing.writer.clone(),
        moving_to: routing.moving_to.clone(),
        proxies: proxies.iter().map(|p| proxies::view(p, hosts, now_ms() - state.config.offline_after_ms as i64)).collect(),
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

//! Checking a request to create a cluster, or to add servers to one,
//! against everything the platform knows, and reporting every problem at
//! once: the topology rules, the engine's parameter catalog, MetaDB (names,
//! hosts, ports in use) and a live precheck of every host.

use std::collections::{BTreeMap, BTreeSet};

use atoll_api::v1::NewServer;
use atoll_core::{ClusterSpec, DEFAULT_REGION, HostStatus, ServerSpec};
use atoll_plan::check::CheckStatus;
use atoll_store::{ClusterRecord, DbServerRecord, HostRecord, PackageRecord, ProxyRecord};

use super::{builds, proxies};
use crate::error::{ApiError, ApiResult};
use crate::hostops;
use crate::state::AppState;

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
    let mut spec = spec;
    match one_region(&spec.name, spec.region.as_deref(), &regions_of(&placed)) {
        Ok(region) => spec.region = (region != DEFAULT_REGION).then_some(region),
        Err(p) => problems.push(p),
    }
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
pub async fn validate_add(state: &AppState, c: &ClusterRecord, existing: &[DbServerRecord], add: &[NewServer]) -> ApiResult<Growth> {
    let mut spec = c.spec.clone();
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
        new.push(ServerSpec {
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
    let region = spec.region.clone().unwrap_or_else(|| DEFAULT_REGION.to_string());
    if let Err(p) = one_region(&c.name, Some(&region), &regions_of(&placed)) {
        problems.push(p);
    }
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

/// Each placed server's name and its host's region.
fn regions_of(placed: &[(DbServerRecord, HostRecord)]) -> Vec<(&str, &str)> {
    placed.iter().map(|(s, h)| (s.name.as_str(), h.host.region_name())).collect()
}

/// The one region a cluster's `servers` (name, host's region) are in, or
/// why there is none: a cluster lives in one region (its standby clusters
/// serve others). `wanted`: the region asked for, or the cluster's.
fn one_region(cluster: &str, wanted: Option<&str>, servers: &[(&str, &str)]) -> Result<String, String> {
    let mut by_region: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (server, region) in servers {
        by_region.entry(region).or_default().push(server);
    }
    let listed = || by_region.iter().map(|(r, s)| format!("{r} ({})", s.join(", "))).collect::<Vec<_>>().join(", ");
    match wanted {
        Some(w) if by_region.keys().any(|r| *r != w) => Err(format!(
            "cluster {cluster} is in region {w}, but servers would run on hosts of region {}: use hosts of region {w} \
             (`atoll host list` shows each host's region)",
            listed()
        )),
        Some(w) => Ok(w.to_string()),
        None if by_region.len() > 1 => Err(format!(
            "cluster {cluster} would span regions {}: a cluster lives in one region (a standby cluster serves another); \
             put its servers on hosts of one region",
            listed()
        )),
        None => Ok(by_region.keys().next().copied().unwrap_or(DEFAULT_REGION).to_string()),
    }
}

/// The registered package the spec names, if any; an unknown one is a
/// problem.
async fn package_of(state: &AppState, spec: &ClusterSpec, problems: &mut Vec<String>) -> ApiResult<Option<PackageRecord>> {
    let Some(name) = builds::package_name(spec) else { return Ok(None) };
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
    servers: &[ServerSpec],
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
        if let Err(why) = builds::engine_build(spec, package, &host) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_lives_in_one_region() {
        assert_eq!(one_region("o", None, &[("o-1", "r1"), ("o-2", "r1")]).as_deref(), Ok("r1"));
        assert_eq!(one_region("o", None, &[]).as_deref(), Ok(DEFAULT_REGION));
        let e = one_region("o", None, &[("o-1", "r1"), ("o-2", "r2"), ("o-3", "r1")]).unwrap_err();
        assert!(e.contains("would span regions r1 (o-1, o-3), r2 (o-2)"), "{e}");
        assert_eq!(one_region("o", Some("r2"), &[("o-1", "r2")]).as_deref(), Ok("r2"));
        let e = one_region("o", Some("r2"), &[("o-1", "r2"), ("o-4", "default")]).unwrap_err();
        assert!(e.contains("is in region r2") && e.contains("default (o-4)"), "{e}");
    }
}

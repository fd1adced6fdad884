//! Operating one server of a running cluster: stop, start and restart it,
//! add servers (scale out) and remove one (scale in). Built from the same
//! steps as the whole-cluster tasks; what is new here is keeping MetaDB's
//! list of servers, the stored spec and every member's config in step with
//! the membership, and moving the writer off a server before it goes down
//! so proxies hold new read-write connections instead of failing them.

use std::collections::BTreeSet;

use async_trait::async_trait;
use atoll_api::db::StartMode;
use atoll_core::time::now_ms;
use atoll_core::{ServerSpec, ServerState};
use atoll_store::{ClusterRecord, DbServerRecord, ProxyRecord};
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::operate::{self, rolling};
use super::status::server_state;
use super::steps::{self, wait};
use super::{proxies, routing, writer};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::step_kit::{StateRef, store_err};

/// Admits a new server: its row is written when the request is accepted;
/// rolling the task back deletes it again.
pub const ADMIT: &str = "cluster.admit_server";
/// Adds a synced new server to the stored spec.
pub const RECORD: &str = "cluster.record_server";
/// Deletes a removed server from MetaDB and the stored spec.
pub const FORGET_SERVER: &str = "cluster.forget_server";

/// `cluster.admit_server`, `cluster.record_server` (with the server's
/// `spec`) and `cluster.forget_server`.
#[derive(Debug, Serialize, Deserialize)]
struct MemberStep {
    cluster: String,
    server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<ServerSpec>,
}

impl MemberStep {
    fn new(cluster: &str, server: &str) -> Self {
        Self { cluster: cluster.into(), server: server.into(), spec: None }
    }
}

/// What to do with one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    Start,
    Restart,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Restart => "restart",
        }
    }
}

/// The server a request names, or a 404 listing the cluster's servers.
pub fn find<'a>(cluster: &str, servers: &'a [DbServerRecord], server: &str) -> ApiResult<&'a DbServerRecord> {
    servers.iter().find(|s| s.name == server).ok_or_else(|| {
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        ApiError::NotFound(format!("cluster {cluster} has no server {server:?}; its servers are {}", names.join(", ")))
    })
}

/// Refuses when taking `server` out (stopped, restarted or removed) would
/// leave fewer than a majority of the cluster's servers running: the
/// primary component would be lost and writes would stop everywhere.
pub fn ensure_majority(state: &AppState, name: &str, servers: &[DbServerRecord], server: &str, total: usize, force: bool) -> ApiResult<()> {
    let running: Vec<&str> =
        servers.iter().filter(|s| s.name != server && server_state(state, s).0.in_primary()).map(|s| s.name.as_str()).collect();
    if running.len() * 2 <= total && !force {
        return Err(ApiError::Conflict(format!(
            "without {server}, {} of {name}'s {total} servers would be running ({}): no majority, so the cluster would stop taking writes; \
             start the others first, or pass --force",
            running.len(),
            if running.is_empty() { "none".to_string() } else { running.join(", ") }
        )));
    }
    Ok(())
}

/// The synced server that takes the writes when `server`, the writer,
/// goes down: the next in preference order. `None` when `server` is not
/// the writer.
pub async fn writer_after(state: &AppState, name: &str, servers: &[DbServerRecord], server: &str) -> ApiResult<Option<String>> {
    let routing = state.store.get_routing(name).await?.unwrap_or_default();
    if routing.writer.as_deref() != Some(server) && routing.moving_to.as_deref() != Some(server) {
        return Ok(None);
    }
    let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
    let synced = |n: &str| servers.iter().any(|s| s.name == n && server_state(state, s).0 == ServerState::Synced);
    match atoll_core::routing::preference_order(Some(server), &names).into_iter().find(|n| *n != server && synced(n)) {
        Some(next) => Ok(Some(next.to_string())),
        None => Err(ApiError::Conflict(format!(
            "{server} is {name}'s writer and no other server is synced to take the writes; start another server first"
        ))),
    }
}

/// Refuses a removal that would leave the cluster below three servers or
/// three zones (unless it allows a single zone), without `force`.
pub fn ensure_removable(c: &ClusterRecord, server: &str, remaining: &[DbServerRecord], force: bool) -> ApiResult<()> {
    if force {
        return Ok(());
    }
    let name = &c.name;
    if remaining.len() < 3 {
        return Err(ApiError::Conflict(format!(
            "removing {server} leaves {name} with {} server(s); an HA cluster keeps at least 3 (pass --force to go below)",
            remaining.len()
        )));
    }
    let zones: BTreeSet<&str> = remaining.iter().map(|s| s.zone.as_str()).collect();
    if zones.len() < 3 && !c.spec.allow_single_zone {
        return Err(ApiError::Conflict(format!(
            "removing {server} leaves {name} in {} zone(s); an HA cluster keeps at least 3 so that losing one keeps a majority (pass --force to go below)",
            zones.len()
        )));
    }
    Ok(())
}

/// Stops, starts (rejoining by IST, then waiting for Synced) or restarts
/// one server. `move_to` names the server that takes the writes first when
/// this one is the writer.
pub fn server_task(cluster: &str, server: &DbServerRecord, action: Action, move_to: Option<&str>) -> TaskSpec {
    let n = &server.name;
    let mut steps: Vec<StepSpec> = move_to.map(|to| writer::move_writer_first(cluster, to)).into_iter().collect();
    let after: Vec<String> = steps.iter().map(|s| s.key.clone()).collect();
    match action {
        Action::Stop => {
            let mut stop = operate::stop(cluster, n, format!("stop {n}"));
            stop.deps = after;
            steps.push(stop);
        }
        Action::Start => {
            steps.push(steps::start(cluster, n, format!("start@{n}"), format!("start {n} and rejoin"), StartMode::Join));
            steps.push(wait(cluster, n).after(format!("start@{n}")));
        }
        Action::Restart => {
            rolling(cluster, std::slice::from_ref(server), None, after, &mut steps);
        }
    }
    TaskSpec {
        kind: format!("cluster.server.{}", action.as_str()),
        title: format!("{} {n} of {cluster}", action.as_str()),
        target: cluster.into(),
        params: json!({ "cluster": cluster, "server": n }),
        steps,
    }
}

/// Rewrites the config of each member without restarting it, so a member
/// restarted later lists the current membership in
/// `wsrep_cluster_address` and its agent evicts the right peers.
fn redefine(cluster: &str, members: &[DbServerRecord], after: &str, steps: &mut Vec<StepSpec>) {
    for m in members {
        let title = format!("rewrite {}'s config for the new membership (no restart)", m.name);
        steps.push(steps::define(cluster, m, format!("redefine@{}", m.name), title, true).after(after));
    }
}

/// Adds servers one at a time: each is defined, joins with a full state
/// transfer and is waited for until Synced before the next, so donors stay
/// available; then every old member's config learns the new ones and the
/// new zones' proxies start.
pub fn add_task(
    cluster: &str,
    existing: &[DbServerRecord],
    added: &[(DbServerRecord, ServerSpec)],
    zone_proxies: &[ProxyRecord],
) -> TaskSpec {
    let mut steps = Vec::new();
    let mut previous: Option<String> = None;
    for (s, spec) in added {
        let n = &s.name;
        let mut admit = StepSpec::typed(format!("admit@{n}"), ADMIT, format!("admit {n} on {}", s.address), &MemberStep::new(cluster, n));
        if let Some(prev) = &previous {
            admit = admit.after(prev);
        }
        let define =
            steps::define(cluster, s, format!("define@{n}"), format!("write {n}'s config on {}", s.address), false).after(&admit.key);
        let join =
            steps::start(cluster, n, format!("join@{n}"), format!("start {n} and join the cluster (full state transfer)"), StartMode::Join)
                .after(&define.key);
        let synced = wait(cluster, n).after(&join.key);
        let params = MemberStep { spec: Some(spec.clone()), ..MemberStep::new(cluster, n) };
        let record = StepSpec::typed(format!("record@{n}"), RECORD, format!("record {n} in {cluster}'s spec"), &params).after(&synced.key);
        previous = Some(record.key.clone());
        steps.extend([admit, define, join, synced, record]);
    }
    if let Some(last) = &previous {
        redefine(cluster, existing, last, &mut steps);
        steps.extend(zone_proxies.iter().map(|p| proxies::up_step(p).after(last)));
    }
    let names: Vec<&str> = added.iter().map(|(s, _)| s.name.as_str()).collect();
    TaskSpec {
        kind: "cluster.scale".into(),
        title: format!("add {} to {cluster}", names.join(", ")),
        target: cluster.into(),
        params: json!({ "cluster": cluster, "add": names }),
        steps,
    }
}

/// Removes one server: the writer moves away first, the zone's proxy goes
/// when the zone empties, then the server stops, leaves its host (data
/// kept unless `purge`) and MetaDB, and the remaining members' configs
/// forget it.
pub fn remove_task(
    cluster: &str,
    server: &DbServerRecord,
    remaining: &[DbServerRecord],
    zone_proxy: Option<&ProxyRecord>,
    move_to: Option<&str>,
    purge: bool,
) -> TaskSpec {
    let n = &server.name;
    let mut steps: Vec<StepSpec> = move_to.map(|to| writer::move_writer_first(cluster, to)).into_iter().collect();
    if let Some(proxy) = zone_proxy {
        let mut down = proxies::down_step(proxy);
        down.deps = steps.iter().map(|s| s.key.clone()).collect();
        steps.push(down);
    }
    let mut stop = operate::stop(cluster, n, format!("stop {n}"));
    stop.deps = steps.iter().map(|s| s.key.clone()).collect();
    let title = if purge { format!("remove {n} and delete its data") } else { format!("remove {n} (data kept in {})", server.dir) };
    let remove = steps::remove(cluster, server, purge, title).after(&stop.key);
    let forget =
        StepSpec::typed(format!("forget@{n}"), FORGET_SERVER, format!("forget {n}"), &MemberStep::new(cluster, n)).after(&remove.key);
    let forget_key = forget.key.clone();
    steps.extend([stop, remove, forget]);
    redefine(cluster, remaining, &forget_key, &mut steps);
    TaskSpec {
        kind: "cluster.scale".into(),
        title: format!("remove {n} from {cluster}"),
        target: cluster.into(),
        params: json!({ "cluster": cluster, "remove": n, "purge": purge }),
        steps,
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Admit,
    Record,
    Forget,
}

pub(crate) struct Member(pub(crate) StateRef, pub(crate) Op);

/// Edits the stored spec's server list: drops `name`, then adds `add`.
async fn edit_spec(state: &AppState, cluster: &str, name: &str, add: Option<&ServerSpec>) -> Result<(), StepError> {
    let Some(c) = state.store.get_cluster(cluster).await.map_err(store_err)? else { return Ok(()) };
    let mut spec = c.spec;
    let mut servers = spec.servers.clone();
    servers.retain(|s| s.name != name);
    servers.extend(add.cloned());
    if servers == spec.servers {
        return Ok(());
    }
    spec.servers = servers;
    state.store.set_cluster_spec(cluster, &spec, now_ms()).await.map_err(store_err)
}

async fn forget(state: &AppState, cluster: &str, name: &str) -> Result<bool, StepError> {
    edit_spec(state, cluster, name, None).await?;
    let gone = state.store.remove_db_server(cluster, name).await.map_err(store_err)?;
    routing::changed(state);
    Ok(gone)
}

#[async_trait]
impl StepHandler for Member {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let MemberStep { cluster, server: name, spec } = ctx.params()?;
        match self.1 {
            Op::Admit => ctx.info(format!("{name} is recorded in MetaDB")).await,
            Op::Record => {
                let spec = spec.ok_or_else(|| StepError::fatal(format!("the step recording {name} carries no server spec")))?;
                edit_spec(state, &cluster, &name, Some(&spec)).await?;
                ctx.info(format!("{name} is part of {cluster}'s spec")).await;
            }
            Op::Forget => {
                let gone = forget(state, &cluster, &name).await?;
                ctx.info(if gone { format!("{name} removed from MetaDB") } else { format!("{name} was already gone from MetaDB") }).await;
            }
        }
        Ok(json!({}))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let MemberStep { cluster, server: name, .. } = ctx.params()?;
        match self.1 {
            Op::Admit => {
                forget(state, &cluster, &name).await?;
                ctx.info(format!("{name} removed from MetaDB")).await;
            }
            Op::Record => {
                edit_spec(state, &cluster, &name, None).await?;
                ctx.info(format!("{name} removed from {cluster}'s spec")).await;
            }
            // The server left its host before this step; putting the row
            // back would describe a server that no longer exists.
            Op::Forget => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::{HostId, Ports};

    fn server(n: usize) -> DbServerRecord {
        DbServerRecord {
            cluster: "c".into(),
            name: format!("c-{n}"),
            host_id: HostId::new(),
            zone: format!("z{n}"),
            segment: (n - 1) as u8,
            address: format!("127.0.0.{n}"),
            ports: Ports::default(),
            dir: format!("/d/c-{n}"),
            status: None,
            status_at_ms: None,
        }
    }

    fn deps(t: &TaskSpec, key: &str) -> Vec<String> {
        t.steps.iter().find(|s| s.key == key).map(|s| s.deps.clone()).unwrap_or_else(|| panic!("no step {key}"))
    }

    #[test]
    fn a_rolling_restart_takes_the_writer_last_after_moving_its_writes() {
        let all = [server(1), server(2), server(3)];
        let t = operate::restart_task("c", &all, Some("c-2"));
        let keys: Vec<&str> = t.steps.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "stop@c-1",
                "start@c-1",
                "wait@c-1",
                "stop@c-3",
                "start@c-3",
                "wait@c-3",
                "move-writer",
                "stop@c-2",
                "start@c-2",
                "wait@c-2",
                "ready"
            ]
        );
        assert_eq!(deps(&t, "move-writer"), ["wait@c-3"]);
        assert_eq!(deps(&t, "stop@c-2"), ["move-writer"]);
        assert_eq!(t.steps[6].params["server"], "c-1", "to the first server restarted");
        let plain = operate::restart_task("c", &all, None);
        assert!(plain.steps.iter().all(|s| s.key != "move-writer"));
    }

    #[test]
    fn the_writer_moves_before_its_server_goes_down() {
        let s = server(1);
        let t = server_task("c", &s, Action::Restart, Some("c-2"));
        assert_eq!(t.steps[0].key, "move-writer");
        assert_eq!(deps(&t, "stop@c-1"), ["move-writer"]);
        assert_eq!(deps(&t, "wait@c-1"), ["start@c-1"]);
        let t = server_task("c", &s, Action::Stop, None);
        assert_eq!(t.steps.len(), 1);
        let t = server_task("c", &s, Action::Start, Some("ignored"));
        assert!(deps(&t, "wait@c-1").contains(&"start@c-1".to_string()));
    }

    #[test]
    fn add_joins_one_at_a_time_then_rewrites_old_configs() {
        let old = [server(1), server(2), server(3)];
        let new = [server(4), server(5)];
        let specs: Vec<(DbServerRecord, ServerSpec)> = new
            .iter()
            .map(|s| (s.clone(), ServerSpec { name: s.name.clone(), zone: s.zone.clone(), host: s.address.clone(), ports: s.ports }))
            .collect();
        let t = add_task("c", &old, &specs, &[]);
        assert_eq!(deps(&t, "admit@c-5"), ["record@c-4"]);
        assert_eq!(deps(&t, "record@c-4"), ["wait@c-4"]);
        assert_eq!(deps(&t, "redefine@c-1"), ["record@c-5"]);
        let redefine = t.steps.iter().find(|s| s.key == "redefine@c-2").map(|s| s.params.clone());
        assert_eq!(redefine.map(|p| p["existing"].clone()), Some(json!(true)), "rolling back must not purge a member");
    }

    #[test]
    fn remove_stops_after_the_move_and_the_proxy() {
        let s = server(3);
        let t = remove_task("c", &s, &[server(1), server(2)], None, Some("c-1"), false);
        assert_eq!(deps(&t, "stop@c-3"), ["move-writer"]);
        assert_eq!(deps(&t, "redefine@c-1"), ["forget@c-3"]);
        assert!(!t.steps.iter().any(|s| s.key.starts_with("unproxy")));
    }
}

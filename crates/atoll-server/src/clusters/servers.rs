//! Operating one server of a running cluster: stop, start and restart it,
//! add servers (scale out) and remove one (scale in). Built from the same
//! steps as the whole-cluster tasks; what is new here is keeping MetaDB's
//! list of servers, the stored spec and every member's config in step with
//! the membership, and moving the writer off a server before it goes down
//! so proxies hold new read-write connections instead of failing them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use atoll_core::ServerSpec;
use atoll_store::{DbServerRecord, ProxyRecord};
use atoll_tasks::{Engine, StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde_json::{Value, json};

use super::operate::{STOP, rolling};
use super::steps::{DEFINE, REMOVE, START, wait};
use crate::state::{AppState, now_ms};
use crate::steps::{StateRef, param};

/// Admits a new server: its row is written when the request is accepted;
/// rolling the task back deletes it again.
pub const ADMIT: &str = "cluster.admit_server";
/// Adds a synced new server to the stored spec.
pub const RECORD: &str = "cluster.record_server";
/// Deletes a removed server from MetaDB and the stored spec.
pub const FORGET_SERVER: &str = "cluster.forget_server";

pub fn register(engine: &mut Engine, state: StateRef) {
    engine.register(ADMIT, Arc::new(Member(state.clone(), Op::Admit)));
    engine.register(RECORD, Arc::new(Member(state.clone(), Op::Record)));
    engine.register(FORGET_SERVER, Arc::new(Member(state, Op::Forget)));
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

/// The planned writer move that runs before its server goes down.
pub(crate) fn move_writer(cluster: &str, to: &str) -> StepSpec {
    let mut s = StepSpec::new(
        "move-writer",
        super::writer::MOVE,
        format!("move {cluster}'s writer to {to} first"),
        json!({ "cluster": cluster, "server": to }),
    );
    s.timeout = Duration::from_secs(120);
    s
}

/// Stops, starts (rejoining by IST, then waiting for Synced) or restarts
/// one server. `move_to` names the server that takes the writes first when
/// this one is the writer.
pub fn server_task(cluster: &str, server: &DbServerRecord, action: Action, move_to: Option<&str>) -> TaskSpec {
    let n = &server.name;
    let mut steps: Vec<StepSpec> = move_to.map(|to| move_writer(cluster, to)).into_iter().collect();
    let after: Vec<String> = steps.iter().map(|s| s.key.clone()).collect();
    match action {
        Action::Stop => {
            let mut stop = StepSpec::new(format!("stop@{n}"), STOP, format!("stop {n}"), json!({ "cluster": cluster, "server": n }));
            stop.timeout = Duration::from_secs(300);
            stop.deps = after;
            steps.push(stop);
        }
        Action::Start => {
            let mut start = StepSpec::new(
                format!("start@{n}"),
                START,
                format!("start {n} and rejoin"),
                json!({ "cluster": cluster, "server": n, "mode": "join" }),
            );
            start.timeout = Duration::from_secs(60);
            steps.push(start);
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
        steps.push(
            StepSpec::new(
                format!("redefine@{}", m.name),
                DEFINE,
                format!("rewrite {}'s config for the new membership (no restart)", m.name),
                json!({ "cluster": cluster, "server": m.name, "existing": true }),
            )
            .after(after),
        );
    }
}

/// Adds servers one at a time: each is defined, joins with a full state
/// transfer and is waited for until Synced before the next, so donors stay
/// available; then every old member's config learns the new ones and the
/// new zones' proxies start.
pub fn add_task(cluster: &str, existing: &[DbServerRecord], added: &[(DbServerRecord, ServerSpec)], proxies: &[ProxyRecord]) -> TaskSpec {
    let mut steps = Vec::new();
    let mut previous: Option<String> = None;
    for (s, spec) in added {
        let n = &s.name;
        let p = json!({ "cluster": cluster, "server": n });
        let mut admit = StepSpec::new(format!("admit@{n}"), ADMIT, format!("admit {n} on {}", s.address), p.clone());
        if let Some(prev) = &previous {
            admit = admit.after(prev);
        }
        let define =
            StepSpec::new(format!("define@{n}"), DEFINE, format!("write {n}'s config on {}", s.address), p.clone()).after(&admit.key);
        let mut join = StepSpec::new(
            format!("join@{n}"),
            START,
            format!("start {n} and join the cluster (full state transfer)"),
            json!({ "cluster": cluster, "server": n, "mode": "join" }),
        )
        .after(&define.key);
        join.timeout = Duration::from_secs(60);
        let synced = wait(cluster, n).after(&join.key);
        let record = StepSpec::new(
            format!("record@{n}"),
            RECORD,
            format!("record {n} in {cluster}'s spec"),
            json!({ "cluster": cluster, "server": n, "spec": spec }),
        )
        .after(&synced.key);
        previous = Some(record.key.clone());
        steps.extend([admit, define, join, synced, record]);
    }
    if let Some(last) = &previous {
        redefine(cluster, existing, last, &mut steps);
        steps.extend(proxies.iter().map(|p| super::proxies::up_step(p).after(last)));
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
    let p = json!({ "cluster": cluster, "server": n });
    let mut steps: Vec<StepSpec> = move_to.map(|to| move_writer(cluster, to)).into_iter().collect();
    if let Some(proxy) = zone_proxy {
        let mut down = super::proxies::down_step(proxy);
        down.deps = steps.iter().map(|s| s.key.clone()).collect();
        steps.push(down);
    }
    let mut stop = StepSpec::new(format!("stop@{n}"), STOP, format!("stop {n}"), p.clone());
    stop.timeout = Duration::from_secs(300);
    stop.deps = steps.iter().map(|s| s.key.clone()).collect();
    let mut remove = StepSpec::new(
        format!("remove@{n}"),
        REMOVE,
        if purge { format!("remove {n} and delete its data") } else { format!("remove {n} (data kept in {})", server.dir) },
        json!({ "cluster": cluster, "server": n, "purge": purge }),
    )
    .after(&stop.key);
    remove.timeout = Duration::from_secs(300);
    let forget = StepSpec::new(format!("forget@{n}"), FORGET_SERVER, format!("forget {n}"), p).after(&remove.key);
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
enum Op {
    Admit,
    Record,
    Forget,
}

struct Member(StateRef, Op);

fn store_err(e: atoll_store::StoreError) -> StepError {
    StepError::retryable(e.to_string())
}

/// Edits the stored spec's server list: drops `name`, then adds `add`.
async fn edit_spec(state: &AppState, cluster: &str, name: &str, add: Option<&ServerSpec>) -> Result<(), StepError> {
    let Some(c) = state.store.get_cluster(cluster).await.map_err(store_err)? else { return Ok(()) };
    let mut spec = c.spec.clone();
    let mut servers: Vec<Value> = spec["servers"].as_array().cloned().unwrap_or_default();
    servers.retain(|s| s["name"].as_str() != Some(name));
    if let Some(a) = add {
        servers.push(serde_json::to_value(a).map_err(|e| StepError::fatal(e.to_string()))?);
    }
    if spec.get("servers").and_then(Value::as_array) == Some(&servers) {
        return Ok(());
    }
    spec["servers"] = Value::Array(servers);
    state.store.set_cluster_spec(cluster, &spec, now_ms()).await.map_err(store_err)
}

async fn forget(state: &AppState, cluster: &str, name: &str) -> Result<bool, StepError> {
    edit_spec(state, cluster, name, None).await?;
    let gone = state.store.remove_db_server(cluster, name).await.map_err(store_err)?;
    crate::routing::changed(state);
    Ok(gone)
}

#[async_trait]
impl StepHandler for Member {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let cluster: String = param(ctx, "cluster")?;
        let name: String = param(ctx, "server")?;
        match self.1 {
            Op::Admit => ctx.info(format!("{name} is recorded in MetaDB")).await,
            Op::Record => {
                let spec: ServerSpec = param(ctx, "spec")?;
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
        let cluster: String = param(ctx, "cluster")?;
        let name: String = param(ctx, "server")?;
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
        let t = crate::clusters::operate::restart_task("c", &all, Some("c-2"));
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
        let plain = crate::clusters::operate::restart_task("c", &all, None);
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

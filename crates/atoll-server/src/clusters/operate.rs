//! Operating a whole cluster: stop, start, guided recovery, rolling
//! restart, parameter changes and deletion. Starting is also the recovery
//! of a cluster that lost quorum: every node's position is read
//! (`--wsrep-recover`), the most advanced one bootstraps, and the others
//! join it, so no committed transaction is left behind.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_api::db::{RecoveredPosition, StartMode};
use atoll_core::ClusterStatus;
use atoll_core::time::now_ms;
use atoll_store::{DbServerRecord, ProxyRecord};
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::steps::{self, ClusterStep, ServerStep, target, wait_until_synced};
use super::{proxies, writer};
use crate::step_kit::{StateRef, store_err};

pub const STOP: &str = "db.stop";
pub const POSITION: &str = "db.position";
pub const CHOOSE: &str = "cluster.choose_bootstrap";
pub const BRING_UP: &str = "db.bring_up";
pub const MARK: &str = "cluster.mark";
pub const PARAMS: &str = "cluster.params";
pub const SET_GLOBAL: &str = "db.set_global";
pub const FORGET: &str = "cluster.forget";

/// `cluster.mark`.
#[derive(Debug, Serialize, Deserialize)]
struct MarkStep {
    cluster: String,
    status: ClusterStatus,
}

/// `db.bring_up`: the chosen node bootstraps; every other joins it.
#[derive(Debug, Serialize, Deserialize)]
struct BringUpStep {
    cluster: String,
    role: Part,
    /// The joiner; the bootstrap node is what `choose` picked.
    #[serde(default)]
    server: Option<String>,
}

/// A node's part in bringing a stopped cluster up (`role` in the stored
/// parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Part {
    Bootstrap,
    Join,
}

/// `cluster.params`: the parameters before and after, so a rollback
/// restores the old ones.
#[derive(Debug, Serialize, Deserialize)]
struct ParamsStep {
    cluster: String,
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
}

/// `db.set_global`.
#[derive(Debug, Serialize, Deserialize)]
struct SetGlobalStep {
    cluster: String,
    server: String,
    params: BTreeMap<String, String>,
}

/// Stops one server cleanly.
pub fn stop(cluster: &str, server: &str, title: String) -> StepSpec {
    let mut s = StepSpec::typed(format!("stop@{server}"), STOP, title, &ServerStep::new(cluster, server));
    s.timeout = Duration::from_secs(300);
    s
}

/// Stops every server, one after another, so the last to leave knows it is
/// safe to bootstrap from.
pub fn stop_task(cluster: &str, servers: &[DbServerRecord]) -> TaskSpec {
    let mark = MarkStep { cluster: cluster.into(), status: ClusterStatus::Stopped };
    let mut steps = vec![StepSpec::typed("mark-stopping", MARK, format!("mark {cluster} stopped"), &mark)];
    let mut previous = "mark-stopping".to_string();
    for s in servers {
        let step = stop(cluster, &s.name, format!("stop {}", s.name)).after(&previous);
        previous = step.key.clone();
        steps.push(step);
    }
    TaskSpec {
        kind: "cluster.stop".into(),
        title: format!("stop {cluster}"),
        target: cluster.into(),
        params: json!({ "cluster": cluster }),
        steps,
    }
}

/// Starts a stopped cluster, or recovers one that lost quorum: stop what is
/// left (a node outside the primary component cannot be trusted to lead),
/// read every position, bootstrap the most advanced, join the rest.
pub fn start_task(cluster: &str, servers: &[DbServerRecord], kind: &str) -> TaskSpec {
    let mut steps = Vec::new();
    for s in servers {
        let n = &s.name;
        steps.push(stop(cluster, n, format!("make sure {n} is stopped")));
        let position = StepSpec::typed(format!("position@{n}"), POSITION, format!("read {n}'s position"), &ServerStep::new(cluster, n));
        steps.push(position.after(format!("stop@{n}")));
    }
    let mut choose = StepSpec::typed("choose", CHOOSE, "choose the most advanced node", &ClusterStep { cluster: cluster.into() });
    for s in servers {
        choose = choose.after(format!("position@{}", s.name));
    }
    steps.push(choose);
    // The chosen node bootstraps in its own step; every other node joins
    // after it, one at a time.
    let bring_up = |key: String, title: String, role: Part, server: Option<&str>, after: &str| {
        let params = BringUpStep { cluster: cluster.into(), role, server: server.map(String::from) };
        let mut s = StepSpec::typed(key, BRING_UP, title, &params).after(after);
        s.timeout = Duration::from_secs(600);
        s
    };
    let mut previous = "bootstrap".to_string();
    steps.push(bring_up(previous.clone(), "bootstrap the most advanced node".into(), Part::Bootstrap, None, "choose"));
    for s in servers {
        let n = &s.name;
        let join = bring_up(format!("join@{n}"), format!("start {n} and join"), Part::Join, Some(n), &previous);
        previous = join.key.clone();
        steps.push(join);
    }
    steps.push(steps::ready(cluster).after(previous));
    let verb = if kind == "cluster.recover" { "recover" } else { "start" };
    TaskSpec { kind: kind.into(), title: format!("{verb} {cluster}"), target: cluster.into(), params: json!({ "cluster": cluster }), steps }
}

/// Stop, start (joining), wait: one server at a time, so the others keep
/// a primary component and keep accepting writes. The `writer` goes last,
/// after a planned move of the writes to the first server restarted, so
/// proxies hold new writes instead of losing the writer under them.
pub fn rolling(
    cluster: &str,
    servers: &[DbServerRecord],
    writer: Option<&str>,
    after: Vec<String>,
    steps: &mut Vec<StepSpec>,
) -> Option<String> {
    let mut order: Vec<&DbServerRecord> = servers.iter().filter(|s| Some(s.name.as_str()) != writer).collect();
    let moves = order.first().map(|s| s.name.clone()).filter(|_| order.len() < servers.len());
    order.extend(servers.iter().filter(|s| Some(s.name.as_str()) == writer));
    let mut previous: Option<String> = None;
    for (i, s) in order.into_iter().enumerate() {
        let n = &s.name;
        let mut stop = stop(cluster, n, format!("stop {n}"));
        if i == 0 {
            stop.deps.extend(after.iter().cloned());
        }
        if let (Some(to), true) = (&moves, Some(n.as_str()) == writer) {
            let mut mv = writer::move_writer_first(cluster, to);
            if let Some(prev) = &previous {
                mv = mv.after(prev);
            }
            previous = Some(mv.key.clone());
            steps.push(mv);
        }
        if let Some(prev) = &previous {
            stop = stop.after(prev);
        }
        let start = steps::start(cluster, n, format!("start@{n}"), format!("start {n} and rejoin"), StartMode::Join).after(&stop.key);
        let wait = steps::wait(cluster, n).after(&start.key);
        previous = Some(wait.key.clone());
        steps.extend([stop, start, wait]);
    }
    previous
}

pub fn restart_task(cluster: &str, servers: &[DbServerRecord], writer: Option<&str>) -> TaskSpec {
    let mut steps = Vec::new();
    let last = rolling(cluster, servers, writer, Vec::new(), &mut steps);
    let mut ready = steps::ready(cluster);
    if let Some(l) = last {
        ready = ready.after(l);
    }
    steps.push(ready);
    TaskSpec {
        kind: "cluster.restart".into(),
        title: format!("rolling restart of {cluster}"),
        target: cluster.into(),
        params: json!({ "cluster": cluster }),
        steps,
    }
}

/// Records the new parameters, rewrites every config, then applies them:
/// online (`SET GLOBAL` on each server) when every change is dynamic, else
/// by a rolling restart.
pub fn set_params_task(
    cluster: &str,
    servers: &[DbServerRecord],
    writer: Option<&str>,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    changed: &BTreeMap<String, String>,
    restart: bool,
) -> TaskSpec {
    let record = ParamsStep { cluster: cluster.into(), old: old.clone(), new: new.clone() };
    let mut steps = vec![StepSpec::typed("params", PARAMS, "record the new parameters", &record)];
    for s in servers {
        steps.push(steps::define(cluster, s, format!("define@{}", s.name), format!("rewrite {}'s config", s.name), true).after("params"));
    }
    let defined: Vec<String> = servers.iter().map(|s| format!("define@{}", s.name)).collect();
    let last = if restart {
        rolling(cluster, servers, writer, defined, &mut steps)
    } else {
        let mut previous: Option<String> = None;
        for s in servers {
            let params = SetGlobalStep { cluster: cluster.into(), server: s.name.clone(), params: changed.clone() };
            let mut apply = StepSpec::typed(format!("apply@{}", s.name), SET_GLOBAL, format!("apply online on {}", s.name), &params)
                .after(format!("define@{}", s.name));
            if let Some(p) = &previous {
                apply = apply.after(p);
            }
            previous = Some(apply.key.clone());
            steps.push(apply);
        }
        previous
    };
    let mut ready = steps::ready(cluster);
    if let Some(l) = last {
        ready = ready.after(l);
    }
    steps.push(ready);
    let how = if restart { "rolling restart" } else { "online" };
    TaskSpec {
        kind: "cluster.set_param".into(),
        title: format!("change parameters of {cluster} ({how})"),
        target: cluster.into(),
        params: json!({ "cluster": cluster, "changed": changed }),
        steps,
    }
}

pub fn delete_task(cluster: &str, servers: &[DbServerRecord], proxy_records: &[ProxyRecord], purge: bool) -> TaskSpec {
    let mut forget = StepSpec::typed("forget", FORGET, format!("forget {cluster}"), &ClusterStep { cluster: cluster.into() });
    let mut steps = Vec::new();
    for p in proxy_records {
        let down = proxies::down_step(p);
        forget = forget.after(&down.key);
        steps.push(down);
    }
    for s in servers {
        let title =
            if purge { format!("stop {} and delete its data", s.name) } else { format!("stop {} (data kept in {})", s.name, s.dir) };
        let remove = steps::remove(cluster, s, purge, title);
        forget = forget.after(&remove.key);
        steps.push(remove);
    }
    steps.push(forget);
    TaskSpec {
        kind: "cluster.delete".into(),
        title: format!("delete {cluster}"),
        target: cluster.into(),
        params: json!({ "cluster": cluster, "purge": purge }),
        steps,
    }
}

pub(crate) struct Stop(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Stop {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ServerStep { cluster, server } = ctx.params()?;
        let t = target(state, &cluster, &server).await?;
        let r = t.op(ctx, HostOp::DbStop { id: t.id() }).await?;
        ctx.info(format!("{server} stopped")).await;
        Ok(r.detail)
    }
}

pub(crate) struct Position(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Position {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ServerStep { cluster, server } = ctx.params()?;
        let t = target(state, &cluster, &server).await?;
        let r = t.op(ctx, HostOp::DbRecover { id: t.id() }).await?;
        let p: RecoveredPosition =
            serde_json::from_value(r.detail.clone()).map_err(|e| StepError::fatal(format!("unexpected position report: {e}")))?;
        let safe = if p.safe_to_bootstrap { " (safe to bootstrap)" } else { "" };
        ctx.info(format!("{server} is at {}:{}{safe}", p.uuid, p.seqno)).await;
        Ok(r.detail)
    }
}

/// Picks the bootstrap node from the positions the previous steps read.
pub(crate) struct Choose(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Choose {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ClusterStep { cluster } = ctx.params()?;
        let servers = state.store.cluster_servers(&cluster).await.map_err(store_err)?;
        let mut positions = Vec::new();
        for s in &servers {
            let p = ctx.output_of(&format!("position@{}", s.name)).await.and_then(|v| serde_json::from_value::<RecoveredPosition>(v).ok());
            positions.push((s.name.clone(), p));
        }
        let chosen = atoll_engine::recovery::choose_bootstrap(&positions).map_err(|e| StepError::fatal(e.to_string()))?;
        ctx.info(format!("{chosen} has the most advanced position; it bootstraps")).await;
        let positions: Vec<Value> = positions.iter().map(|(n, p)| json!({ "server": n, "position": p })).collect();
        Ok(json!({ "bootstrap": chosen, "positions": positions }))
    }
}

/// Starts the chosen node as a new primary component, or joins another
/// node to it, and waits until it is Synced.
pub(crate) struct BringUp(pub(crate) StateRef);

#[async_trait]
impl StepHandler for BringUp {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p: BringUpStep = ctx.params()?;
        let chosen: String = ctx
            .output_of("choose")
            .await
            .and_then(|o| o["bootstrap"].as_str().map(String::from))
            .ok_or_else(|| StepError::fatal("no bootstrap node was chosen"))?;
        let (server, mode) = match (p.role, p.server) {
            (Part::Bootstrap, _) => (chosen, StartMode::Bootstrap),
            (Part::Join, Some(s)) if s == chosen => {
                ctx.info(format!("{s} bootstrapped the cluster; nothing to do")).await;
                return Ok(json!({ "skipped": true }));
            }
            (Part::Join, Some(s)) => (s, StartMode::Join),
            (Part::Join, None) => return Err(StepError::fatal("a join step names no server")),
        };
        let t = target(state, &p.cluster, &server).await?;
        t.op(ctx, HostOp::DbStart { id: t.id(), mode }).await?;
        ctx.info(format!("{server} started ({mode:?})")).await;
        wait_until_synced(ctx, &t).await
    }
}

/// Sets the cluster's status (e.g. `stopped`, so health checks leave it be).
pub(crate) struct Mark(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Mark {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let MarkStep { cluster, status } = ctx.params()?;
        state.store.set_cluster_status(&cluster, status, now_ms(), None).await.map_err(store_err)?;
        Ok(json!({ "status": status }))
    }
}

/// Stores the new parameters; its rollback restores the old ones.
pub(crate) struct Params(pub(crate) StateRef);

impl Params {
    async fn set(&self, cluster: &str, params: BTreeMap<String, String>) -> Result<(), StepError> {
        let state = self.0.get()?;
        let c = state.store.get_cluster(cluster).await.map_err(store_err)?.ok_or_else(|| StepError::fatal("cluster is gone"))?;
        let mut spec = c.spec;
        spec.params = params;
        state.store.set_cluster_spec(cluster, &spec, now_ms()).await.map_err(store_err)
    }
}

#[async_trait]
impl StepHandler for Params {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let p: ParamsStep = ctx.params()?;
        self.set(&p.cluster, p.new).await?;
        ctx.info("new parameters recorded").await;
        Ok(json!({}))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let p: ParamsStep = ctx.params()?;
        self.set(&p.cluster, p.old).await?;
        ctx.info("previous parameters restored; roll back the config steps too").await;
        Ok(())
    }
}

/// Applies dynamic parameters to a running server.
pub(crate) struct SetGlobal(pub(crate) StateRef);

#[async_trait]
impl StepHandler for SetGlobal {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let SetGlobalStep { cluster, server, params } = ctx.params()?;
        let t = target(state, &cluster, &server).await?;
        let statements = atoll_engine::sql::set_global(&params);
        t.op(ctx, HostOp::DbSql { id: t.id(), statements: statements.clone() }).await?;
        ctx.info(format!("{server}: {}", statements.join("; "))).await;
        Ok(json!({ "statements": statements }))
    }
}

/// Deletes the cluster from MetaDB once its servers are removed.
pub(crate) struct Forget(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Forget {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ClusterStep { cluster } = ctx.params()?;
        let gone = state.store.delete_cluster(&cluster).await.map_err(store_err)?;
        ctx.info(if gone { format!("cluster {cluster} deleted") } else { format!("cluster {cluster} was already gone") }).await;
        Ok(json!({ "deleted": gone }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks stored by the version before typed parameters resume after an
    /// upgrade: their JSON decodes into today's structs.
    #[test]
    fn parameters_stored_before_typing_still_decode() {
        let mark: MarkStep = serde_json::from_value(json!({ "cluster": "c", "status": "stopped" })).expect("mark");
        assert_eq!(mark.status, ClusterStatus::Stopped);
        let up: BringUpStep = serde_json::from_value(json!({ "cluster": "c", "role": "bootstrap" })).expect("bootstrap");
        assert_eq!((up.role, up.server), (Part::Bootstrap, None));
        let join: BringUpStep = serde_json::from_value(json!({ "cluster": "c", "server": "c-2", "role": "join" })).expect("join");
        assert_eq!(join.server.as_deref(), Some("c-2"));
        let p: ParamsStep =
            serde_json::from_value(json!({ "cluster": "c", "old": {}, "new": { "max_connections": "500" } })).expect("params");
        assert_eq!(p.new["max_connections"], "500");
        let d: steps::DefineStep = serde_json::from_value(json!({ "cluster": "c", "server": "c-1" })).expect("define");
        assert!(!d.existing, "a define without `existing` is a new server's");
        let s: steps::StartStep = serde_json::from_value(json!({ "cluster": "c", "server": "c-1", "mode": "join" })).expect("start");
        assert_eq!(s.mode, StartMode::Join);
    }
}

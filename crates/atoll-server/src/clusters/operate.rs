//! Stopping and starting a whole cluster. Starting is also the guided
//! recovery of a cluster that lost quorum: every node's position is read
//! (`--wsrep-recover`), the most advanced one bootstraps, and the others
//! join it, so no committed transaction is left behind.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_api::db::{RecoveredPosition, StartMode};
use atoll_core::ClusterStatus;
use atoll_store::DbServerRecord;
use atoll_tasks::{Engine, StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde_json::{Value, json};

use super::steps::{READY, db_id_of, target, wait_until_synced};
use crate::state::now_ms;
use crate::steps::{StateRef, agent_op, host_by_id, param};

pub const STOP: &str = "db.stop";
pub const POSITION: &str = "db.position";
pub const CHOOSE: &str = "cluster.choose_bootstrap";
pub const BRING_UP: &str = "db.bring_up";
pub const MARK: &str = "cluster.mark";

pub fn register(engine: &mut Engine, state: StateRef) {
    engine.register(STOP, Arc::new(Stop(state.clone())));
    engine.register(POSITION, Arc::new(Position(state.clone())));
    engine.register(CHOOSE, Arc::new(Choose(state.clone())));
    engine.register(BRING_UP, Arc::new(BringUp(state.clone())));
    engine.register(MARK, Arc::new(Mark(state)));
}

/// Stops every server, one after another, so the last to leave knows it is
/// safe to bootstrap from.
pub fn stop_task(cluster: &str, servers: &[DbServerRecord]) -> TaskSpec {
    let mut steps =
        vec![StepSpec::new("mark-stopping", MARK, format!("mark {cluster} stopped"), json!({ "cluster": cluster, "status": "stopped" }))];
    let mut previous = "mark-stopping".to_string();
    for s in servers {
        let mut step =
            StepSpec::new(format!("stop@{}", s.name), STOP, format!("stop {}", s.name), json!({ "cluster": cluster, "server": s.name }))
                .after(&previous);
        step.timeout = Duration::from_secs(300);
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
        let p = json!({ "cluster": cluster, "server": s.name });
        let mut stop = StepSpec::new(format!("stop@{}", s.name), STOP, format!("make sure {} is stopped", s.name), p.clone());
        stop.timeout = Duration::from_secs(300);
        steps.push(stop);
        steps.push(
            StepSpec::new(format!("position@{}", s.name), POSITION, format!("read {}'s position", s.name), p)
                .after(format!("stop@{}", s.name)),
        );
    }
    let mut choose = StepSpec::new("choose", CHOOSE, "choose the most advanced node", json!({ "cluster": cluster }));
    for s in servers {
        choose = choose.after(format!("position@{}", s.name));
    }
    steps.push(choose);
    // The chosen node bootstraps in its own step; every other node joins
    // after it, one at a time.
    let mut previous = "choose".to_string();
    let mut up =
        StepSpec::new("bootstrap", BRING_UP, "bootstrap the most advanced node", json!({ "cluster": cluster, "role": "bootstrap" }))
            .after(&previous);
    up.timeout = Duration::from_secs(600);
    previous = up.key.clone();
    steps.push(up);
    for s in servers {
        let mut join = StepSpec::new(
            format!("join@{}", s.name),
            BRING_UP,
            format!("start {} and join", s.name),
            json!({ "cluster": cluster, "server": s.name, "role": "join" }),
        )
        .after(&previous);
        join.timeout = Duration::from_secs(600);
        previous = join.key.clone();
        steps.push(join);
    }
    steps.push(StepSpec::new("ready", READY, format!("mark {cluster} ready"), json!({ "cluster": cluster })).after(previous));
    let verb = if kind == "cluster.recover" { "recover" } else { "start" };
    TaskSpec { kind: kind.into(), title: format!("{verb} {cluster}"), target: cluster.into(), params: json!({ "cluster": cluster }), steps }
}

struct Stop(StateRef);

#[async_trait]
impl StepHandler for Stop {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let host = host_by_id(state, t.server.host_id).await?;
        let r = agent_op(ctx, &host, HostOp::DbStop { id: db_id_of(&t) }).await?;
        ctx.info(format!("{} stopped", t.server.name)).await;
        Ok(r.detail)
    }
}

struct Position(StateRef);

#[async_trait]
impl StepHandler for Position {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let host = host_by_id(state, t.server.host_id).await?;
        let r = agent_op(ctx, &host, HostOp::DbRecover { id: db_id_of(&t) }).await?;
        let p: RecoveredPosition =
            serde_json::from_value(r.detail.clone()).map_err(|e| StepError::fatal(format!("unexpected position report: {e}")))?;
        ctx.info(format!(
            "{} is at {}:{}{}",
            t.server.name,
            p.uuid,
            p.seqno,
            if p.safe_to_bootstrap { " (safe to bootstrap)" } else { "" }
        ))
        .await;
        Ok(r.detail)
    }
}

/// Picks the bootstrap node from the positions the previous steps read.
struct Choose(StateRef);

#[async_trait]
impl StepHandler for Choose {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let cluster: String = param(ctx, "cluster")?;
        let servers = state.store.cluster_servers(&cluster).await.map_err(|e| StepError::retryable(e.to_string()))?;
        let mut positions = Vec::new();
        for s in &servers {
            let p = ctx.output_of(&format!("position@{}", s.name)).await.and_then(|v| serde_json::from_value::<RecoveredPosition>(v).ok());
            positions.push((s.name.clone(), p));
        }
        let chosen = atoll_engine::recovery::choose_bootstrap(&positions).map_err(|e| StepError::fatal(e.to_string()))?;
        ctx.info(format!("{chosen} has the most advanced position; it bootstraps")).await;
        Ok(
            json!({ "bootstrap": chosen, "positions": positions.iter().map(|(n, p)| json!({ "server": n, "position": p })).collect::<Vec<_>>() }),
        )
    }
}

/// Starts the chosen node as a new primary component, or joins another
/// node to it, and waits until it is Synced.
struct BringUp(StateRef);

#[async_trait]
impl StepHandler for BringUp {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let chosen: String = ctx
            .output_of("choose")
            .await
            .and_then(|o| o["bootstrap"].as_str().map(String::from))
            .ok_or_else(|| StepError::fatal("no bootstrap node was chosen"))?;
        let role: String = param(ctx, "role")?;
        let server = if role == "bootstrap" { chosen.clone() } else { param(ctx, "server")? };
        if role == "join" && server == chosen {
            ctx.info(format!("{server} bootstrapped the cluster; nothing to do")).await;
            return Ok(json!({ "skipped": true }));
        }
        let t = super::steps::target_named(state, &param::<String>(ctx, "cluster")?, &server).await?;
        let host = host_by_id(state, t.server.host_id).await?;
        let mode = if role == "bootstrap" { StartMode::Bootstrap } else { StartMode::Join };
        agent_op(ctx, &host, HostOp::DbStart { id: db_id_of(&t), mode }).await?;
        ctx.info(format!("{server} started ({mode:?})")).await;
        wait_until_synced(state, ctx, &t).await
    }
}

/// Sets the cluster's status (e.g. `stopped`, so health checks leave it be).
struct Mark(StateRef);

#[async_trait]
impl StepHandler for Mark {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let cluster: String = param(ctx, "cluster")?;
        let status: ClusterStatus = param::<String>(ctx, "status")?.parse().map_err(StepError::fatal)?;
        state.store.set_cluster_status(&cluster, status, now_ms()).await.map_err(|e| StepError::retryable(e.to_string()))?;
        Ok(json!({ "status": status }))
    }
}

pub const PARAMS: &str = "cluster.params";
pub const SET_GLOBAL: &str = "db.set_global";
pub const FORGET: &str = "cluster.forget";

pub fn register_more(engine: &mut Engine, state: StateRef) {
    engine.register(PARAMS, Arc::new(Params(state.clone())));
    engine.register(SET_GLOBAL, Arc::new(SetGlobal(state.clone())));
    engine.register(FORGET, Arc::new(Forget(state)));
}

/// Stop, start (joining), wait: one server at a time, so the others keep
/// a primary component and keep accepting writes. The `writer` goes last,
/// after a planned move of the writes to the first server restarted, so
/// proxies hold new writes instead of losing the writer under them.
pub(crate) fn rolling(
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
        let p = json!({ "cluster": cluster, "server": s.name });
        let mut stop = StepSpec::new(format!("stop@{}", s.name), STOP, format!("stop {}", s.name), p.clone());
        stop.timeout = Duration::from_secs(300);
        if i == 0 {
            stop.deps.extend(after.iter().cloned());
        }
        if let (Some(to), true) = (&moves, Some(s.name.as_str()) == writer) {
            let mut mv = super::servers::move_writer(cluster, to);
            if let Some(prev) = &previous {
                mv = mv.after(prev);
            }
            previous = Some(mv.key.clone());
            steps.push(mv);
        }
        if let Some(prev) = &previous {
            stop = stop.after(prev);
        }
        let mut start = StepSpec::new(
            format!("start@{}", s.name),
            super::steps::START,
            format!("start {} and rejoin", s.name),
            json!({ "cluster": cluster, "server": s.name, "mode": "join" }),
        )
        .after(&stop.key);
        start.timeout = Duration::from_secs(60);
        let mut wait =
            StepSpec::new(format!("wait@{}", s.name), super::steps::WAIT, format!("wait until {} is synced", s.name), p).after(&start.key);
        wait.timeout = Duration::from_secs(600);
        previous = Some(wait.key.clone());
        steps.extend([stop, start, wait]);
    }
    previous
}

pub fn restart_task(cluster: &str, servers: &[DbServerRecord], writer: Option<&str>) -> TaskSpec {
    let mut steps = Vec::new();
    let last = rolling(cluster, servers, writer, Vec::new(), &mut steps);
    let mut ready = StepSpec::new("ready", READY, format!("mark {cluster} ready"), json!({ "cluster": cluster }));
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
    old: &Value,
    new: &Value,
    changed: &Value,
    restart: bool,
) -> TaskSpec {
    let mut steps =
        vec![StepSpec::new("params", PARAMS, "record the new parameters", json!({ "cluster": cluster, "old": old, "new": new }))];
    for s in servers {
        steps.push(
            StepSpec::new(
                format!("define@{}", s.name),
                super::steps::DEFINE,
                format!("rewrite {}'s config", s.name),
                json!({ "cluster": cluster, "server": s.name, "existing": true }),
            )
            .after("params"),
        );
    }
    let defined: Vec<String> = servers.iter().map(|s| format!("define@{}", s.name)).collect();
    let last = if restart {
        rolling(cluster, servers, writer, defined, &mut steps)
    } else {
        let mut previous: Option<String> = None;
        for s in servers {
            let mut apply = StepSpec::new(
                format!("apply@{}", s.name),
                SET_GLOBAL,
                format!("apply online on {}", s.name),
                json!({ "cluster": cluster, "server": s.name, "params": changed }),
            )
            .after(format!("define@{}", s.name));
            if let Some(p) = &previous {
                apply = apply.after(p);
            }
            previous = Some(apply.key.clone());
            steps.push(apply);
        }
        previous
    };
    let mut ready = StepSpec::new("ready", READY, format!("mark {cluster} ready"), json!({ "cluster": cluster }));
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

pub fn delete_task(cluster: &str, servers: &[DbServerRecord], proxies: &[atoll_store::ProxyRecord], purge: bool) -> TaskSpec {
    let mut forget = StepSpec::new("forget", FORGET, format!("forget {cluster}"), json!({ "cluster": cluster }));
    let mut steps = Vec::new();
    for p in proxies {
        let down = super::proxies::down_step(p);
        forget = forget.after(&down.key);
        steps.push(down);
    }
    for s in servers {
        let mut remove = StepSpec::new(
            format!("remove@{}", s.name),
            super::steps::REMOVE,
            if purge { format!("stop {} and delete its data", s.name) } else { format!("stop {} (data kept in {})", s.name, s.dir) },
            json!({ "cluster": cluster, "server": s.name, "purge": purge }),
        );
        remove.timeout = Duration::from_secs(300);
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

/// Stores the new parameters; its rollback restores the old ones.
struct Params(StateRef);

impl Params {
    async fn set(&self, ctx: &StepContext, which: &str) -> Result<(), StepError> {
        let state = self.0.get()?;
        let cluster: String = param(ctx, "cluster")?;
        let params: Value = param(ctx, which)?;
        let c = state
            .store
            .get_cluster(&cluster)
            .await
            .map_err(|e| StepError::retryable(e.to_string()))?
            .ok_or_else(|| StepError::fatal("cluster is gone"))?;
        let mut spec = c.spec.clone();
        spec["params"] = params;
        state.store.set_cluster_spec(&cluster, &spec, now_ms()).await.map_err(|e| StepError::retryable(e.to_string()))
    }
}

#[async_trait]
impl StepHandler for Params {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        self.set(ctx, "new").await?;
        ctx.info("new parameters recorded").await;
        Ok(json!({}))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        self.set(ctx, "old").await?;
        ctx.info("previous parameters restored; roll back the config steps too").await;
        Ok(())
    }
}

/// Applies dynamic parameters to a running server.
struct SetGlobal(StateRef);

#[async_trait]
impl StepHandler for SetGlobal {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let changed: std::collections::BTreeMap<String, String> = param(ctx, "params")?;
        // Values were checked against the catalog: no quotes, no separators.
        let statements: Vec<String> =
            changed.iter().map(|(k, v)| format!("SET GLOBAL {} = {}", atoll_engine::params::normalize_key(k), sql_value(v))).collect();
        let host = host_by_id(state, t.server.host_id).await?;
        agent_op(ctx, &host, HostOp::DbSql { id: db_id_of(&t), statements: statements.clone() }).await?;
        ctx.info(format!("{}: {}", t.server.name, statements.join("; "))).await;
        Ok(json!({ "statements": statements }))
    }
}

/// Numbers and ON/OFF go as they are; anything else as a quoted string
/// (validated values never contain quotes).
fn sql_value(v: &str) -> String {
    let bare = v.chars().all(|c| c.is_ascii_digit()) || matches!(v.to_ascii_uppercase().as_str(), "ON" | "OFF");
    match atoll_engine::params::parse_size(v) {
        Some(n) if !bare => n.to_string(),
        _ if bare => v.to_string(),
        _ => format!("'{v}'"),
    }
}

/// Deletes the cluster from MetaDB once its servers are removed.
struct Forget(StateRef);

#[async_trait]
impl StepHandler for Forget {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let cluster: String = param(ctx, "cluster")?;
        let gone = state.store.delete_cluster(&cluster).await.map_err(|e| StepError::retryable(e.to_string()))?;
        ctx.info(if gone { format!("cluster {cluster} deleted") } else { format!("cluster {cluster} was already gone") }).await;
        Ok(json!({ "deleted": gone }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sql_values() {
        assert_eq!(super::sql_value("500"), "500");
        assert_eq!(super::sql_value("ON"), "ON");
        assert_eq!(super::sql_value("128M"), "134217728");
        assert_eq!(super::sql_value("STRICT_TRANS_TABLES"), "'STRICT_TRANS_TABLES'");
    }
}

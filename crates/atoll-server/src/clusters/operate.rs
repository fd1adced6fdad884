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

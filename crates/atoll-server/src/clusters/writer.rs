//! A planned writer move (`atoll cluster set-writer`): proxies hold new
//! read-write connections while it runs, the new writer catches up with
//! every write committed anywhere, then proxies switch to it. Old
//! connections keep working: the old writer is still a healthy node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_core::ServerState;
use atoll_store::RoutingRecord;
use atoll_tasks::{Engine, StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde_json::{Value, json};

use super::steps::{db_id_of, target_named};
use crate::state::now_ms;
use crate::steps::{StateRef, agent_op, host_by_id, param};

pub const MOVE: &str = "cluster.move_writer";

pub fn register(engine: &mut Engine, state: StateRef) {
    engine.register(MOVE, Arc::new(Move(state)));
}

pub fn set_writer_task(cluster: &str, server: &str) -> TaskSpec {
    let mut step =
        StepSpec::new("move", MOVE, format!("move {cluster}'s writer to {server}"), json!({ "cluster": cluster, "server": server }));
    step.timeout = Duration::from_secs(120);
    TaskSpec {
        kind: "cluster.set_writer".into(),
        title: format!("make {server} {cluster}'s writer"),
        target: cluster.into(),
        params: json!({ "cluster": cluster, "server": server }),
        steps: vec![step],
    }
}

struct Move(StateRef);

fn store_err(e: atoll_store::StoreError) -> StepError {
    StepError::retryable(e.to_string())
}

#[async_trait]
impl StepHandler for Move {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let cluster: String = param(ctx, "cluster")?;
        let server: String = param(ctx, "server")?;
        let current = state.store.get_routing(&cluster).await.map_err(store_err)?.unwrap_or_default();
        if current.writer.as_deref() == Some(server.as_str()) && current.moving_to.is_none() {
            ctx.info(format!("{server} is the writer")).await;
            return Ok(json!({ "writer": server }));
        }
        let t = target_named(state, &cluster, &server).await?;
        let st = super::server_state(state, &t.server).0;
        if st != ServerState::Synced {
            return Err(StepError::fatal(format!("{server} is {st}, not synced; a writer must be synced")));
        }
        // 1. Proxies hold new read-write connections from here on.
        let announced = RoutingRecord { writer: current.writer.clone(), moving_to: Some(server.clone()), changed_at_ms: now_ms() };
        if current.moving_to.as_deref() != Some(server.as_str()) {
            if !state.store.set_routing(&cluster, Some(&current), &announced).await.map_err(store_err)? {
                return Err(StepError::retryable("the writer changed meanwhile; trying again"));
            }
            crate::routing::changed(state);
            ctx.info(format!("proxies hold new read-write connections while {server} catches up")).await;
        }
        // 2. A causal read on the new writer returns only once it has
        // applied every write committed before it started.
        let host = host_by_id(state, t.server.host_id).await?;
        let statements = vec!["SET SESSION wsrep_sync_wait = 15".to_string(), "SELECT 1".to_string()];
        agent_op(ctx, &host, HostOp::DbSql { id: db_id_of(&t), statements }).await?;
        // 3. Switch.
        let now = state.store.get_routing(&cluster).await.map_err(store_err)?.unwrap_or_default();
        let done = RoutingRecord { writer: Some(server.clone()), moving_to: None, changed_at_ms: now_ms() };
        if !state.store.set_routing(&cluster, Some(&now), &done).await.map_err(store_err)? {
            return Err(StepError::retryable("the routing changed meanwhile; trying again"));
        }
        crate::routing::changed(state);
        ctx.info(format!("{server} is the writer (was {})", current.writer.as_deref().unwrap_or("none"))).await;
        Ok(json!({ "writer": server, "previous": current.writer }))
    }

    /// Ends the hold without moving, so proxies stop waiting.
    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let cluster: String = param(ctx, "cluster")?;
        let Some(current) = state.store.get_routing(&cluster).await.map_err(store_err)? else { return Ok(()) };
        if current.moving_to.is_some() {
            let undone = RoutingRecord { writer: current.writer.clone(), moving_to: None, changed_at_ms: now_ms() };
            state.store.set_routing(&cluster, Some(&current), &undone).await.map_err(store_err)?;
            crate::routing::changed(state);
        }
        Ok(())
    }
}

//! A planned writer move (`atoll cluster set-writer`, and before a writer's
//! server goes down): proxies hold new read-write connections while it
//! runs, the new writer catches up with every write committed anywhere,
//! then proxies switch to it. Old connections keep working: the old writer
//! is still a healthy node.

use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_core::ServerState;
use atoll_core::time::now_ms;
use atoll_store::RoutingRecord;
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde_json::{Value, json};

use super::steps::{ServerStep, target};
use super::{routing, status};
use crate::step_kit::{StateRef, store_err};

pub const MOVE: &str = "cluster.move_writer";

/// The step that moves `cluster`'s writes to `to`.
pub fn move_writer(cluster: &str, to: &str, key: &str, title: String) -> StepSpec {
    let mut s = StepSpec::typed(key, MOVE, title, &ServerStep::new(cluster, to));
    s.timeout = Duration::from_secs(120);
    s
}

/// The planned move that runs before the writer's server goes down.
pub fn move_writer_first(cluster: &str, to: &str) -> StepSpec {
    move_writer(cluster, to, "move-writer", format!("move {cluster}'s writer to {to} first"))
}

pub fn set_writer_task(cluster: &str, server: &str) -> TaskSpec {
    TaskSpec {
        kind: "cluster.set_writer".into(),
        title: format!("make {server} {cluster}'s writer"),
        target: cluster.into(),
        params: json!({ "cluster": cluster, "server": server }),
        steps: vec![move_writer(cluster, server, "move", format!("move {cluster}'s writer to {server}"))],
    }
}

pub(crate) struct Move(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Move {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let result = self.attempt(ctx).await;
        if result.is_err() {
            // The move did not finish: end any hold this step announced, so
            // proxies do not refuse new writes while the step waits to be
            // retried or for an operator (the old writer is still healthy).
            self.rollback(ctx).await?;
        }
        result
    }

    /// Ends the hold without moving, so proxies stop waiting.
    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let ServerStep { cluster, .. } = ctx.params()?;
        let Some(current) = state.store.get_routing(&cluster).await.map_err(store_err)? else { return Ok(()) };
        if current.moving_to.is_some() {
            let undone = RoutingRecord { writer: current.writer.clone(), moving_to: None, changed_at_ms: now_ms() };
            state.store.set_routing(&cluster, Some(&current), &undone).await.map_err(store_err)?;
            routing::changed(state);
        }
        Ok(())
    }
}

impl Move {
    async fn attempt(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ServerStep { cluster, server } = ctx.params()?;
        let current = state.store.get_routing(&cluster).await.map_err(store_err)?.unwrap_or_default();
        if current.writer.as_deref() == Some(server.as_str()) && current.moving_to.is_none() {
            ctx.info(format!("{server} is the writer")).await;
            return Ok(json!({ "writer": server }));
        }
        let t = target(state, &cluster, &server).await?;
        let st = status::server_state(state, &t.server).0;
        if st != ServerState::Synced {
            return Err(StepError::fatal(format!("{server} is {st}, not synced; a writer must be synced")));
        }
        // 1. Proxies hold new read-write connections from here on.
        let announced = RoutingRecord { writer: current.writer.clone(), moving_to: Some(server.clone()), changed_at_ms: now_ms() };
        if current.moving_to.as_deref() != Some(server.as_str()) {
            if !state.store.set_routing(&cluster, Some(&current), &announced).await.map_err(store_err)? {
                return Err(StepError::retryable("the writer changed meanwhile; trying again"));
            }
            routing::changed(state);
            ctx.info(format!("proxies hold new read-write connections while {server} catches up")).await;
        }
        atoll_tasks::hold_at("writer::after_announce").await;
        // 2. A causal read on the new writer returns only once it has
        // applied every write committed before it started.
        t.op(ctx, HostOp::DbSql { id: t.id(), statements: atoll_engine::sql::causal_read() }).await?;
        // 3. Switch.
        let now = state.store.get_routing(&cluster).await.map_err(store_err)?.unwrap_or_default();
        let done = RoutingRecord { writer: Some(server.clone()), moving_to: None, changed_at_ms: now_ms() };
        if !state.store.set_routing(&cluster, Some(&now), &done).await.map_err(store_err)? {
            return Err(StepError::retryable("the routing changed meanwhile; trying again"));
        }
        routing::changed(state);
        ctx.info(format!("{server} is the writer (was {})", current.writer.as_deref().unwrap_or("none"))).await;
        Ok(json!({ "writer": server, "previous": current.writer }))
    }
}

//! What every step handler uses: the server state, hosts from MetaDB, and
//! journaled operations on agents keyed by the step's idempotency key, so
//! a step resumed after a server died does not act twice. Imports no
//! handler; handlers import it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use atoll_api::agent::{HostOp, OpRequest, OpResult};
use atoll_core::HostId;
use atoll_store::{HostRecord, StoreError};
use atoll_tasks::{StepContext, StepError};

use crate::hostops;
use crate::state::AppState;

/// The executor is built before the state that holds it; handlers reach
/// the state through this once it is set.
#[derive(Clone)]
pub(crate) struct StateRef(pub(crate) Arc<OnceLock<AppState>>);

impl StateRef {
    pub(crate) fn get(&self) -> Result<&AppState, StepError> {
        self.0.get().ok_or_else(|| StepError::retryable("server still starting"))
    }
}

/// MetaDB did not answer: worth another attempt.
pub(crate) fn store_err(e: StoreError) -> StepError {
    StepError::retryable(e.to_string())
}

pub(crate) async fn host_by_id(state: &AppState, id: HostId) -> Result<HostRecord, StepError> {
    match state.store.get_host(id).await {
        Ok(Some(h)) => Ok(h),
        Ok(None) => Err(StepError::fatal(format!("host {id} no longer exists"))),
        Err(e) => Err(store_err(e)),
    }
}

/// A cluster a step acts on, read from MetaDB.
pub(crate) async fn cluster_by_name(state: &AppState, name: &str) -> Result<atoll_store::ClusterRecord, StepError> {
    state.store.get_cluster(name).await.map_err(store_err)?.ok_or_else(|| StepError::fatal(format!("cluster {name} no longer exists")))
}

/// Runs a journaled operation on a host's agent, keyed by the step.
pub(crate) async fn agent_op(ctx: &StepContext, state: &AppState, h: &HostRecord, op: HostOp) -> Result<OpResult, StepError> {
    let token = hostops::server_token(state, h).map_err(|e| StepError::fatal(e.to_string()))?;
    agent_op_with(ctx, h, &token, op).await
}

/// [`agent_op`] with the host's token already opened.
pub(crate) async fn agent_op_with(ctx: &StepContext, h: &HostRecord, token: &str, op: HostOp) -> Result<OpResult, StepError> {
    agent_op_keyed(ctx, h, token, op, None).await
}

/// [`agent_op_with`] for a step that runs several operations, or one that
/// may differ between attempts: `part` tells them apart in the journal.
pub(crate) async fn agent_op_keyed(
    ctx: &StepContext,
    h: &HostRecord,
    token: &str,
    op: HostOp,
    part: Option<&str>,
) -> Result<OpResult, StepError> {
    // Operations may wait on a database (a clean shutdown flushes); the
    // step's own timeout bounds them.
    let client = hostops::client(h, token, Duration::from_secs(600)).map_err(|e| StepError::fatal(e.to_string()))?;
    let key = match part {
        Some(p) => format!("{}/{p}", ctx.idempotency_key()),
        None => ctx.idempotency_key(),
    };
    let req = OpRequest { key, op };
    let result: OpResult = client.post("/agent/v1/ops", &req).await.map_err(|e| match e.status() {
        Some(s) if (400..500).contains(&s) => StepError::fatal(format!("{}: {e}", h.host.name)),
        _ => StepError::retryable(format!("{} does not answer: {e}", h.host.name)),
    })?;
    if result.replayed {
        ctx.info(format!("{} had already done this (attempt after a restart); using its record", h.host.name)).await;
    }
    Ok(result)
}

/// Waits for the next look at MetaDB or an agent, unless the step was
/// cancelled meanwhile.
pub(crate) async fn pause(ctx: &StepContext, every: Duration) -> Result<(), StepError> {
    if ctx.cancel.is_cancelled() {
        return Err(StepError::retryable("stopped while waiting"));
    }
    tokio::time::sleep(every).await;
    Ok(())
}

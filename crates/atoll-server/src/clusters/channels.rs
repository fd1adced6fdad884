//! The channel controller: keeps every standby's replication channel on a
//! Synced applier reading from a Synced primary node. When either end
//! leaves Synced (killed, partitioned, restarting), or no node or two
//! apply, it submits the task that moves the channel ([`standby::Channel`]);
//! the move continues from the standby's own position, so nothing is
//! skipped or applied twice. Runs on the server holding the controllers'
//! lease.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use atoll_core::ServerState;
use tokio_util::sync::CancellationToken;

use super::standby;
use super::status::{is_live, server_state};
use crate::state::AppState;

const EVERY: Duration = Duration::from_millis(500);
/// A standby whose last move did not help is tried again after this.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A fault must last this long (reports come every second; a channel being
/// restarted is stopped for a moment) before the channel is moved.
const FAULT_FOR: Duration = Duration::from_millis(1500);

pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut submitted: HashMap<String, Instant> = HashMap::new();
    let mut faulty: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        if state.platform.leading().is_none() {
            continue;
        }
        if let Err(e) = pass(&state, &mut submitted, &mut faulty).await {
            tracing::warn!(error = %e, "channel controller pass failed");
        }
    }
}

async fn pass(state: &AppState, submitted: &mut HashMap<String, Instant>, faulty: &mut HashMap<String, Instant>) -> anyhow::Result<()> {
    let clusters = state.store.list_clusters().await?;
    if !clusters.iter().any(|c| c.spec.replication.as_ref().is_some_and(|r| r.source.is_some())) {
        return Ok(());
    }
    let busy: Vec<String> = state.store.active_tasks().await?.into_iter().map(|t| t.target).collect();
    for c in &clusters {
        let Some(primary) = c.spec.replication.as_ref().and_then(|r| r.source.as_deref()) else { continue };
        if !is_live(c.status) || busy.contains(&c.name) || submitted.get(&c.name).is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            continue;
        }
        let servers = state.store.cluster_servers(&c.name).await?;
        let primary_servers = state.store.cluster_servers(primary).await?;
        let Some(why) = standby::channel_fault(state, &servers, &primary_servers) else {
            faulty.remove(&c.name);
            continue;
        };
        if faulty.entry(c.name.clone()).or_insert_with(Instant::now).elapsed() < FAULT_FOR {
            continue;
        }
        let synced = |s: &atoll_store::DbServerRecord| server_state(state, s).0 == ServerState::Synced;
        // Nothing to move to yet: the next pass looks again.
        if !servers.iter().any(synced) || !primary_servers.iter().any(synced) {
            continue;
        }
        submitted.insert(c.name.clone(), Instant::now());
        faulty.remove(&c.name);
        match state.executor.submit(standby::channel_task(&c.name, &why), "platform").await {
            Ok(t) => tracing::warn!(standby = %c.name, task = %t.id, why, "moving the replication channel"),
            Err(e) => tracing::info!(standby = %c.name, error = %e, "channel move not submitted"),
        }
    }
    Ok(())
}

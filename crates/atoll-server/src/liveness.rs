//! Turns hosts offline when their heartbeats stop, and keeps cluster
//! statuses equal to what their servers report. Runs on the server that
//! holds the controllers' lease, its writes fenced by it.

use std::time::Duration;

use atoll_core::time::now_ms;
use atoll_store::Fence;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub async fn run(state: AppState, shutdown: CancellationToken) {
    let every = Duration::from_millis((state.config.heartbeat_interval_ms / 2).max(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(fence) = state.platform.leading() else {
            continue;
        };
        if let Err(e) = pass(&state, &fence).await {
            tracing::warn!(error = %e, "liveness pass failed");
        }
        if let Err(e) = crate::clusters::health::pass(&state, &fence).await {
            tracing::warn!(error = %e, "cluster health pass failed");
        }
    }
}

async fn pass(state: &AppState, fence: &Fence) -> anyhow::Result<()> {
    let now = now_ms();
    let before = now - state.config.offline_after_ms as i64;
    for id in state.store.mark_stale_offline(before, fence, now).await? {
        let name = state.store.get_host(id).await?.map(|h| h.host.name).unwrap_or_else(|| id.to_string());
        tracing::warn!(host = %name, "host missed its heartbeats; marked offline");
        state
            .audit(
                "platform",
                std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
                "host.offline",
                &name,
                json!({ "after_ms": state.config.offline_after_ms }),
                "ok",
            )
            .await;
    }
    Ok(())
}

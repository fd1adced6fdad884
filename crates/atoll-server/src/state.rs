//! What every handler shares.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use atoll_core::time::now_ms;
use atoll_store::{MetaStore, NewAudit};
use atoll_tasks::Executor;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;

use crate::ServerConfig;
use crate::auth::Caller;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn MetaStore>,
    pub executor: Arc<Executor>,
    pub config: ServerConfig,
    pub metrics: PrometheusHandle,
    /// Seals database passwords before they reach MetaDB.
    pub secrets: crate::secrets::SecretBox,
    /// Bumped whenever a routing table may have changed; wakes long-polls.
    pub routing: tokio::sync::watch::Sender<u64>,
    /// This server among the platform's servers, and its lease.
    pub platform: crate::platform::Platform,
    /// Heartbeats waiting for the next batched write.
    pub beats: crate::beats::Beats,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Records a change (or a refused attempt) in the audit log. A lost
    /// audit line is logged, not fatal: the change itself already happened.
    pub async fn audit(&self, actor: &str, source: SocketAddr, action: &str, target: &str, detail: Value, outcome: &str) {
        let entry = NewAudit {
            at_ms: now_ms(),
            actor: actor.to_string(),
            source: source.ip().to_string(),
            action: action.to_string(),
            target: target.to_string(),
            detail,
            outcome: outcome.to_string(),
        };
        if let Err(e) = self.store.append_audit(&entry).await {
            tracing::error!(error = %e, action, target, "audit entry lost");
        }
    }

    /// [`Self::audit`] for a successful change by an authenticated caller.
    pub async fn audit_ok(&self, caller: &Caller, action: &str, target: &str, detail: Value) {
        self.audit(&caller.user, caller.source, action, target, detail, "ok").await;
    }
}

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
pub struct AppState {
    inner: Arc<Inner>,
    /// MetaDB as handlers see it: the platform's store, or, for a read
    /// while MetaDB has no quorum, this node's replica ([`Self::reading_from`]).
    pub store: Arc<dyn MetaStore>,
}

pub struct Inner {
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
    /// MonitorDB and the scrape targets.
    pub monitoring: Arc<crate::monitoring::Monitoring>,
    /// Where alert notifications are sent from.
    pub deliveries: crate::alerting::Deliveries,
    /// Refused agent registrations by source, to rate-limit them.
    pub refusals: crate::refusals::Refusals,
    /// The platform's CA: issues certificates, and is what clients trust.
    pub pki: Arc<crate::pki::Pki>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(store: Arc<dyn MetaStore>, inner: Inner) -> Self {
        Self { inner: Arc::new(inner), store }
    }

    /// The same server reading from `replica` instead.
    pub fn reading_from(&self, replica: Arc<dyn MetaStore>) -> Self {
        Self { inner: Arc::clone(&self.inner), store: replica }
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

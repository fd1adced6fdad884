//! A cluster's proxies: one `atoll proxy` per zone, run by the agent of the
//! host of the zone's first server, started by the create task once the
//! cluster is ready and removed with the cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_api::proxy::{ProxyDef, ProxyReport, ProxyState};
use atoll_api::v1::ProxyView;
use atoll_core::time::now_ms;
use atoll_core::{ClusterSpec, DbId, HostId};
use atoll_store::{DbServerRecord, ProxyRecord};
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::secrets::SealedSecrets;
use crate::state::AppState;
use crate::step_kit::{StateRef, agent_op, host_by_id, pause, store_err};

pub const UP: &str = "proxy.up";
pub const DOWN: &str = "proxy.down";

/// `proxy.up` and `proxy.down`.
#[derive(Debug, Serialize, Deserialize)]
struct ProxyStep {
    cluster: String,
    proxy: String,
}

impl ProxyStep {
    fn of(p: &ProxyRecord) -> Self {
        Self { cluster: p.cluster.clone(), proxy: p.name.clone() }
    }
}

/// Where the proxies of a validated cluster go: the first server's host in
/// each zone.
pub fn place(spec: &ClusterSpec, servers: &[DbServerRecord]) -> Vec<ProxyRecord> {
    if !spec.proxy.enabled {
        return Vec::new();
    }
    let mut out: Vec<ProxyRecord> = Vec::new();
    for s in servers {
        if out.iter().any(|p| p.zone == s.zone) {
            continue;
        }
        out.push(ProxyRecord {
            cluster: spec.name.clone(),
            name: format!("{}-proxy-{}", spec.name, s.zone),
            host_id: s.host_id,
            zone: s.zone.clone(),
            address: s.address.clone(),
            rw_port: spec.proxy.rw_port,
            ro_port: spec.proxy.ro_port,
            admin_port: spec.proxy.admin_port,
            status: None,
            status_at_ms: None,
        });
    }
    out
}

pub fn up_step(p: &ProxyRecord) -> StepSpec {
    let title = format!("start proxy {} on {}:{}", p.name, p.address, p.rw_port);
    let mut s = StepSpec::typed(format!("proxy@{}", p.zone), UP, title, &ProxyStep::of(p));
    s.timeout = Duration::from_secs(60);
    s
}

pub fn down_step(p: &ProxyRecord) -> StepSpec {
    StepSpec::typed(format!("unproxy@{}", p.zone), DOWN, format!("stop proxy {}", p.name), &ProxyStep::of(p))
}

pub fn view(p: &ProxyRecord, hosts: &BTreeMap<HostId, String>, fresh_after: atoll_core::UnixMs) -> ProxyView {
    let report: Option<ProxyReport> =
        p.status.clone().filter(|_| p.status_at_ms.is_some_and(|t| t >= fresh_after)).and_then(|v| serde_json::from_value(v).ok());
    let count = |key: &str| report.as_ref().and_then(|r| r.status.as_ref()).and_then(|s| s[key].as_u64());
    ProxyView {
        name: p.name.clone(),
        zone: p.zone.clone(),
        host: hosts.get(&p.host_id).cloned().unwrap_or_else(|| p.host_id.to_string()),
        address: p.address.clone(),
        rw_port: p.rw_port,
        ro_port: p.ro_port,
        admin_port: p.admin_port,
        state: report.as_ref().map(|r| r.state),
        pid: report.as_ref().and_then(|r| r.pid),
        rw_connections: count("rw_connections"),
        ro_connections: count("ro_connections"),
        restarts: report.as_ref().map(|r| r.restarts),
        status_at_ms: p.status_at_ms,
    }
}

async fn find(state: &AppState, ctx: &StepContext) -> Result<ProxyRecord, StepError> {
    let ProxyStep { cluster, proxy } = ctx.params()?;
    let all = state.store.cluster_proxies(&cluster).await.map_err(store_err)?;
    all.into_iter().find(|p| p.name == proxy).ok_or_else(|| StepError::fatal(format!("cluster {cluster} has no proxy {proxy}")))
}

fn id(p: &ProxyRecord) -> DbId {
    DbId::new(&p.cluster, &p.name)
}

/// Starts the proxy and waits until its agent reports it serving.
pub(crate) struct Up(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Up {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p = find(state, ctx).await?;
        let c = crate::step_kit::cluster_by_name(state, &p.cluster).await?;
        let sealed = SealedSecrets::of(&c).map_err(|e| StepError::fatal(e.to_string()))?;
        let token = sealed.proxy_token(state, &c.name).map_err(|e| StepError::fatal(e.to_string()))?;
        let def = ProxyDef {
            id: id(&p),
            cluster: p.cluster.clone(),
            zone: p.zone.clone(),
            servers: Vec::new(),
            token,
            rw_listen: format!("{}:{}", p.address, p.rw_port),
            ro_listen: format!("{}:{}", p.address, p.ro_port),
            admin_listen: format!("{}:{}", p.address, p.admin_port),
        };
        let host = host_by_id(state, p.host_id).await?;
        agent_op(ctx, state, &host, HostOp::ProxyStart { proxy: def }).await?;
        // Serving means its own status answers: the agent reports that with
        // its next heartbeat.
        let since = now_ms();
        loop {
            let now = find(state, ctx).await?;
            let report: Option<ProxyReport> = now.status.and_then(|v| serde_json::from_value(v).ok());
            let fresh = now.status_at_ms.is_some_and(|t| t >= since);
            if let Some(r) = report.filter(|r| fresh && r.state == ProxyState::Running && r.status.is_some()) {
                ctx.info(format!(
                    "proxy {} serves on {}:{} (read-write) and {}:{} (read-only)",
                    p.name, p.address, p.rw_port, p.address, p.ro_port
                ))
                .await;
                return Ok(json!({ "pid": r.pid }));
            }
            pause(ctx, Duration::from_millis(250)).await?;
        }
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        remove(self.0.get()?, ctx).await.map(|_| ())
    }
}

async fn remove(state: &AppState, ctx: &StepContext) -> Result<Value, StepError> {
    let p = find(state, ctx).await?;
    let host = host_by_id(state, p.host_id).await?;
    let r = agent_op(ctx, state, &host, HostOp::ProxyRemove { id: id(&p) }).await?;
    ctx.info(format!("proxy {} stopped on {}", p.name, host.host.name)).await;
    Ok(r.detail)
}

pub(crate) struct Down(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Down {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        remove(self.0.get()?, ctx).await
    }
}

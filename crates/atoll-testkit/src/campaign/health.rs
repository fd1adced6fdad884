//! When the system counts as recovered. Healthy means all of:
//! - the server answers `/readyz`;
//! - the platform reports the cluster `healthy`, every server `synced`
//!   and every proxy `running`, each from a report it received after the
//!   fault was healed (an older report proves nothing), a writer named,
//!   and every host online;
//! - each `mariadbd`, asked directly, is ready, Synced, in the Primary
//!   component of three;
//! - a write through each proxy's read-write port and a read through its
//!   read-only port succeed.
//!
//! Recovery time is from the injection to the first probe that finds all
//! of it (probes every 250 ms).

use std::time::{Duration, Instant};

use anyhow::Result;
use atoll_api::v1::{ClusterView, HostListItem, TaskView};
use atoll_core::{ClusterStatus, HostStatus, ServerState, TaskStatus};
use sqlx::{Executor, Row};

use super::rig::{CLUSTER, Rig};
use super::workload::{Endpoint, connect, connect_options};

const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a condition that needs an operator must last before the
/// campaign, as the operator, acts on it.
const QUORUM_GRACE: Duration = Duration::from_secs(10);

fn client(rig: &Rig) -> atoll_client::Client {
    atoll_client::Client::with_timeout(&rig.platform.url, rig.platform.token.clone(), Duration::from_secs(3))
}

pub fn direct(rig: &Rig, i: usize) -> Endpoint {
    Endpoint { host: rig.hosts[i].ip.clone(), port: rig.cr.direct_port }
}

/// `wsrep_%` of one node: (ready, cluster status, local state, size).
async fn wsrep(rig: &Rig, i: usize) -> Result<(bool, String, u32, u32), String> {
    let opts = connect_options(&direct(rig, i), &rig.cr.user, &rig.cr.password, None);
    let mut c = connect(&opts).await.ok_or_else(|| format!("{}: no connection", rig.hosts[i].server))?;
    let rows = tokio::time::timeout(Duration::from_secs(2), sqlx::query(atoll_engine::sql::WSREP_STATUS).fetch_all(&mut c))
        .await
        .map_err(|_| format!("{}: status timed out", rig.hosts[i].server))?
        .map_err(|e| format!("{}: {e}", rig.hosts[i].server))?;
    let rows: std::collections::HashMap<String, String> = rows
        .iter()
        .map(|r| (r.try_get::<String, _>(0).unwrap_or_default().to_ascii_lowercase(), r.try_get::<String, _>(1).unwrap_or_default()))
        .collect();
    let w = atoll_engine::sql::wsrep_from_rows(&rows);
    Ok((w.ready, w.cluster_status, w.local_state, w.cluster_size))
}

/// `Ok` when healthy, else the first reason it is not.
pub async fn probe(rig: &Rig, since_ms: i64) -> Result<(), String> {
    if !rig.server_running() {
        return Err("the server is not running".into());
    }
    let ready = reqwest::Client::new()
        .get(format!("{}/readyz", rig.platform.url))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    if !ready {
        return Err("the server is not ready".into());
    }
    let c = client(rig);
    let v: ClusterView = c.get(&format!("/api/v1/clusters/{CLUSTER}")).await.map_err(|e| format!("cluster view: {e}"))?;
    if v.status != ClusterStatus::Healthy {
        // Each server's state and last exit: what a failed run needs told.
        let servers: Vec<String> = v
            .zones
            .iter()
            .flat_map(|z| &z.servers)
            .map(|s| match &s.status {
                Some(st) => {
                    format!("{} {} (restarts {}, last exit {})", s.name, s.state, st.restarts, st.last_exit.as_deref().unwrap_or("none"))
                }
                None => format!("{} {}", s.name, s.state),
            })
            .collect();
        return Err(format!("the platform reports the cluster {}: {}", v.status, servers.join(", ")));
    }
    for s in v.zones.iter().flat_map(|z| &z.servers) {
        if s.state != ServerState::Synced {
            return Err(format!("the platform reports {} {}", s.name, s.state));
        }
        if s.status_at_ms.is_none_or(|t| t < since_ms) {
            return Err(format!("no report of {} since the fault was healed", s.name));
        }
    }
    if v.writer.is_none() {
        return Err("the platform names no writer".into());
    }
    if let Some(to) = &v.moving_to {
        return Err(format!("the platform's routing holds new writes for a move to {to}"));
    }
    for p in &v.proxies {
        if p.state != Some(atoll_api::proxy::ProxyState::Running) {
            return Err(format!("the platform reports proxy {} {:?}", p.name, p.state));
        }
        if p.status_at_ms.is_none_or(|t| t < since_ms) {
            return Err(format!("no report of proxy {} since the fault was healed", p.name));
        }
    }
    let hosts: Vec<HostListItem> = c.get("/api/v1/hosts").await.map_err(|e| format!("hosts: {e}"))?;
    if let Some(h) = hosts.iter().find(|h| h.status != HostStatus::Online) {
        return Err(format!("host {} is {}", h.name, h.status));
    }
    for i in 0..rig.hosts.len() {
        let (ready, status, state, size) = wsrep(rig, i).await?;
        if !ready || status != "Primary" || state != 4 || size != 3 {
            return Err(format!("{}: ready {ready}, {status}, state {state}, cluster size {size}", rig.hosts[i].server));
        }
    }
    for (i, p) in v.proxies.iter().enumerate() {
        let rw = Endpoint { host: p.address.clone(), port: p.rw_port };
        let mut c = connect(&connect_options(&rw, &rig.cr.user, &rig.cr.password, Some("campaign")))
            .await
            .ok_or_else(|| format!("no connection through proxy {} (read-write)", p.name))?;
        let w = sqlx::query("UPDATE beat SET n = n + 1 WHERE proxy = ?").bind(i as i32);
        match tokio::time::timeout(Duration::from_secs(2), c.execute(w)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("a write through proxy {}: {e}", p.name)),
            Err(_) => return Err(format!("a write through proxy {} timed out", p.name)),
        }
        let ro = Endpoint { host: p.address.clone(), port: p.ro_port };
        let mut c = connect(&connect_options(&ro, &rig.cr.user, &rig.cr.password, None))
            .await
            .ok_or_else(|| format!("no connection through proxy {} (read-only)", p.name))?;
        if !matches!(tokio::time::timeout(Duration::from_secs(2), c.execute("SELECT 1")).await, Ok(Ok(_))) {
            return Err(format!("a read through proxy {} failed", p.name));
        }
    }
    Ok(())
}

/// What it took to get healthy.
#[derive(Debug, Default)]
pub struct Recovered {
    /// An operator action the campaign took, and why.
    pub operator: Option<String>,
}

/// The operator steps a fault may need, beyond waiting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowed {
    /// Two or more database servers died at once: when no node has been
    /// in a Primary component for [`GRACE`], run the guided recovery
    /// (`atoll cluster recover`), as the platform asks an operator to.
    pub recover_quorum: bool,
    // A node voted out of the group (a write set it could not apply on a
    // full disk) is no longer an operator's step: its agent restarts it.
}

const GRACE: Duration = QUORUM_GRACE;

/// Waits until [`probe`] passes, at most until `deadline`, taking the
/// operator steps `allowed` names when their condition holds.
pub async fn wait(rig: &Rig, since_ms: i64, deadline: Instant, allowed: Allowed) -> Result<Recovered, String> {
    let mut out = Recovered::default();
    let mut no_primary_since: Option<Instant> = None;
    let mut operator_task: Option<String> = None;
    loop {
        let why = match probe(rig, since_ms).await {
            Ok(()) => return Ok(out),
            Err(why) => why,
        };
        if Instant::now() > deadline {
            return Err(why);
        }
        if allowed.recover_quorum && operator_task.is_none() {
            let mut states = Vec::new();
            for i in 0..rig.hosts.len() {
                states.push(wsrep(rig, i).await.ok());
            }
            let any_primary = states.iter().flatten().any(|(_, s, _, _)| s == "Primary");
            let primary_since = if any_primary { None } else { Some(*no_primary_since.get_or_insert_with(Instant::now)) };
            no_primary_since = primary_since;
            let action = primary_since.is_some_and(|t| t.elapsed() > GRACE).then(|| {
                (format!("/api/v1/clusters/{CLUSTER}/recover"), format!("no Primary component for {} s: cluster recover", GRACE.as_secs()))
            });
            if let Some((path, what)) = action {
                match client(rig).post::<_, TaskView>(&path, &serde_json::json!({})).await {
                    Ok(t) => {
                        eprintln!("campaign: operator step: {what} (task {})", t.id);
                        out.operator = Some(format!("operator: {what} (task {})", t.id));
                        operator_task = Some(t.id);
                    }
                    Err(e) => eprintln!("campaign: operator step refused ({what}): {e}"),
                }
            }
        }
        if let Some(id) = &operator_task
            && let Ok(t) = client(rig).get::<TaskView>(&format!("/api/v1/tasks/{id}")).await
            && t.status.is_settled()
            && t.status != TaskStatus::Succeeded
        {
            return Err(format!("the operator's task {id} ({}) ended {}: {why}", t.title, t.status));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

//! The steps that make a cluster's servers, and the create task built from
//! them. Each acts through one host's agent with a journaled operation, so
//! a step resumed after a server died does not act twice; waits are
//! observations and may simply run again.

use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::{HostOp, OpResult};
use atoll_api::db::{DbCredentials, DbServerDef, DbServerStatus, StartMode};
use atoll_core::time::now_ms;
use atoll_core::{ClusterSpec, ClusterStatus, DbId, ServerState};
use atoll_store::{ClusterRecord, DbServerRecord, HostRecord, ProxyRecord};
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::secrets::{ADMIN_USER, MONITOR_USER, SealedSecrets};
use super::{builds, proxies, routing, status};
use crate::state::AppState;
use crate::step_kit::{StateRef, agent_op_with, host_by_id, pause, store_err};

pub const RESERVE: &str = "cluster.reserve";
pub const DEFINE: &str = "db.define";
pub const INIT: &str = "db.init";
pub const START: &str = "db.start";
pub const WAIT: &str = "db.wait_synced";
pub const ACCOUNTS: &str = "db.accounts";
pub const READY: &str = "cluster.ready";
pub const REMOVE: &str = "db.remove";

/// The parameters of a step on the cluster as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStep {
    pub cluster: String,
}

/// The parameters of a step on one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStep {
    pub cluster: String,
    pub server: String,
}

impl ServerStep {
    pub fn new(cluster: &str, server: &str) -> Self {
        Self { cluster: cluster.into(), server: server.into() }
    }
}

/// `db.define`. `existing`: the server already ran, so this rewrites its
/// config and the step's rollback must not take its data with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefineStep {
    pub cluster: String,
    pub server: String,
    #[serde(default)]
    pub existing: bool,
}

/// `db.start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartStep {
    pub cluster: String,
    pub server: String,
    pub mode: StartMode,
}

/// `db.remove`: stop the server and forget it on its host; `purge`
/// deletes its directory too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoveStep {
    pub cluster: String,
    pub server: String,
    pub purge: bool,
}

/// Steps that write a server's config.
pub fn define(cluster: &str, server: &DbServerRecord, key: String, title: String, existing: bool) -> StepSpec {
    StepSpec::typed(key, DEFINE, title, &DefineStep { cluster: cluster.into(), server: server.name.clone(), existing })
}

/// Starts a server (bootstrapping a new primary component, or joining).
pub fn start(cluster: &str, server: &str, key: String, title: String, mode: StartMode) -> StepSpec {
    let mut s = StepSpec::typed(key, START, title, &StartStep { cluster: cluster.into(), server: server.into(), mode });
    s.timeout = Duration::from_secs(60);
    s
}

/// Waits until the server is Synced.
pub fn wait(cluster: &str, server: &str) -> StepSpec {
    let mut s =
        StepSpec::typed(format!("wait@{server}"), WAIT, format!("wait until {server} is synced"), &ServerStep::new(cluster, server));
    // A joiner copies the whole data set; give it time, and poll again if
    // the server restarted meanwhile.
    s.timeout = Duration::from_secs(600);
    s.max_attempts = 2;
    s
}

/// Marks the cluster ready once every server is synced, and names its
/// first writer.
pub fn ready(cluster: &str) -> StepSpec {
    StepSpec::typed("ready", READY, format!("mark {cluster} ready"), &ClusterStep { cluster: cluster.into() })
}

pub fn remove(cluster: &str, server: &DbServerRecord, purge: bool, title: String) -> StepSpec {
    let params = RemoveStep { cluster: cluster.into(), server: server.name.clone(), purge };
    let mut s = StepSpec::typed(format!("remove@{}", server.name), REMOVE, title, &params);
    s.timeout = Duration::from_secs(300);
    s
}

/// The create task: define every server (in parallel), bootstrap the first,
/// create the accounts, then join the others one at a time (each joiner
/// takes a full state transfer from a donor; one at a time keeps donors
/// available to clients), and mark the cluster ready.
pub fn create_task(cluster: &str, servers: &[DbServerRecord], proxies: &[ProxyRecord]) -> TaskSpec {
    let reserve = StepSpec::typed("reserve", RESERVE, format!("reserve the name {cluster}"), &ClusterStep { cluster: cluster.into() });
    let mut steps = vec![reserve];
    for s in servers {
        let title = format!("write {}'s config on {}", s.name, s.address);
        steps.push(define(cluster, s, format!("define@{}", s.name), title, false).after("reserve"));
    }
    let task = |steps| TaskSpec {
        kind: "cluster.create".into(),
        title: format!("create {cluster}"),
        target: cluster.into(),
        params: json!({ "cluster": cluster }),
        steps,
    };
    let Some(first) = servers.first() else { return task(steps) };
    let f = &first.name;
    let on_first = ServerStep::new(cluster, f);
    steps.push(
        StepSpec::typed(format!("init@{f}"), INIT, format!("initialise {f}'s data directory"), &on_first).after(format!("define@{f}")),
    );
    steps.push(
        start(cluster, f, format!("bootstrap@{f}"), format!("bootstrap the cluster on {f}"), StartMode::Bootstrap)
            .after(format!("init@{f}")),
    );
    steps.push(wait(cluster, f).after(format!("bootstrap@{f}")));
    steps.push(
        StepSpec::typed(format!("accounts@{f}"), ACCOUNTS, "create the admin and monitor accounts", &on_first).after(format!("wait@{f}")),
    );
    let mut previous = format!("accounts@{f}");
    for s in &servers[1..] {
        let n = &s.name;
        let join = start(cluster, n, format!("join@{n}"), format!("start {n} and join the cluster"), StartMode::Join)
            .after(format!("define@{n}"))
            .after(previous.clone());
        steps.push(join);
        steps.push(wait(cluster, n).after(format!("join@{n}")));
        previous = format!("wait@{n}");
    }
    steps.push(ready(cluster).after(previous));
    steps.extend(proxies.iter().map(|p| proxies::up_step(p).after("ready")));
    task(steps)
}

/// Everything a step needs about its server.
pub struct Target {
    pub cluster: ClusterRecord,
    pub server: DbServerRecord,
    /// The host it runs on.
    pub host: HostRecord,
    /// The platform's token for that host's agent, opened.
    pub token: String,
    pub all: Vec<DbServerRecord>,
}

impl Target {
    pub fn spec(&self) -> &ClusterSpec {
        &self.cluster.spec
    }

    /// The server's id on its host.
    pub fn id(&self) -> DbId {
        DbId::new(&self.cluster.name, &self.server.name)
    }

    /// Runs a journaled operation on the server's host, keyed by the step.
    pub async fn op(&self, ctx: &StepContext, op: HostOp) -> Result<OpResult, StepError> {
        agent_op_with(ctx, &self.host, &self.token, op).await
    }
}

/// A cluster's server, read from MetaDB.
pub async fn target(state: &AppState, cluster: &str, server: &str) -> Result<Target, StepError> {
    let c = crate::step_kit::cluster_by_name(state, cluster).await?;
    let all = state.store.cluster_servers(cluster).await.map_err(store_err)?;
    let found = all.iter().find(|s| s.name == server).cloned();
    let server = found.ok_or_else(|| StepError::fatal(format!("cluster {cluster} has no server {server:?}")))?;
    let host = host_by_id(state, server.host_id).await?;
    let token = crate::hostops::server_token(state, &host).map_err(|e| StepError::fatal(e.to_string()))?;
    Ok(Target { cluster: c, server, host, token, all })
}

/// The admin and monitor passwords in clear.
fn passwords(state: &AppState, cluster: &ClusterRecord) -> Result<(String, String), StepError> {
    let sealed = SealedSecrets::of(cluster).map_err(|e| StepError::fatal(e.to_string()))?;
    let admin = sealed.admin(state).map_err(|e| StepError::fatal(e.to_string()))?;
    let monitor = sealed.monitor(state).map_err(|e| StepError::fatal(e.to_string()))?;
    Ok((admin, monitor))
}

/// Makes the name's reservation undoable: the cluster row is written when
/// the request is accepted; rolling back the task removes it.
pub(crate) struct Reserve(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Reserve {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let ClusterStep { cluster } = ctx.params()?;
        ctx.info(format!("cluster {cluster} is recorded in MetaDB")).await;
        Ok(json!({}))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let ClusterStep { cluster } = ctx.params()?;
        let gone = state.store.delete_cluster(&cluster).await.map_err(store_err)?;
        ctx.info(if gone { format!("cluster {cluster} removed from MetaDB") } else { format!("cluster {cluster} was already gone") }).await;
        Ok(())
    }
}

/// Writes a server's config and registers it with its host's agent.
pub(crate) struct Define(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Define {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p: DefineStep = ctx.params()?;
        let t = target(state, &p.cluster, &p.server).await?;
        let (admin_password, _) = passwords(state, &t.cluster)?;
        // The build was checked when the cluster was accepted; a host that
        // lost it since cannot run this server.
        let build = builds::engine_build(t.spec(), None, &t.host).map_err(StepError::fatal)?;
        let input = atoll_engine::ConfigInput {
            cluster: t.cluster.name.clone(),
            server: t.server.name.clone(),
            server_id: 1,
            address: t.server.address.clone(),
            ports: t.server.ports,
            segment: t.server.segment,
            cluster_address: t.all.iter().map(|s| atoll_engine::config::host_port(&s.address, s.ports.gcomm)).collect(),
            dir: t.server.dir.clone(),
            durability: t.spec().durability,
            params: t.spec().params.clone(),
            build: build.as_ref().and_then(|b| {
                Some(atoll_engine::BuildPaths {
                    basedir: b.basedir.clone()?,
                    galera: b.galera.clone(),
                    messages_dir: b.messages_dir.clone(),
                })
            }),
            // A TLS platform's clusters replicate over TLS too.
            tls: state.config.tls,
            replication: t
                .spec()
                .replication
                .as_ref()
                .map(|r| atoll_engine::config::ReplicationConfig { domain: r.domain, read_only: r.source.is_some() }),
        };
        let config = atoll_engine::config::render(&input).map_err(|e| StepError::fatal(e.to_string()))?;
        let tls = match input.tls {
            true => Some(
                crate::tls::db_server_tls(&state.pki.now(), &t.cluster.name, &t.server.name, &t.server.address)
                    .map_err(StepError::fatal)?,
            ),
            false => None,
        };
        let def = DbServerDef {
            id: t.id(),
            dir: t.server.dir.clone(),
            config,
            sql_addr: atoll_engine::config::host_port(&t.server.address, t.server.ports.sql),
            peers: t
                .all
                .iter()
                .filter(|s| s.name != t.server.name)
                .map(|s| atoll_engine::config::host_port(&s.address, s.ports.sql))
                .collect(),
            admin: DbCredentials { user: ADMIN_USER.into(), password: admin_password },
            basedir: build.and_then(|b| b.basedir),
            tls,
        };
        let r = t.op(ctx, HostOp::DbDefine { server: def }).await?;
        ctx.info(format!("{} defined in {} on {}", t.server.name, t.server.dir, t.host.host.name)).await;
        Ok(r.detail)
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let p: DefineStep = ctx.params()?;
        // A rewritten config of a server that already ran must not take
        // its data with it; the next define rewrites it.
        if p.existing {
            ctx.info("config of an existing server: left as it is").await;
            return Ok(());
        }
        let state = self.0.get()?;
        let t = target(state, &p.cluster, &p.server).await?;
        // Only a directory this step made goes: without the forward step's
        // record of having created it, the definition is dropped and the
        // files stay.
        let created = ctx.output_of(&ctx.key).await.and_then(|o| o.get("created").and_then(serde_json::Value::as_bool)) == Some(true);
        t.op(ctx, HostOp::DbRemove { id: t.id(), purge: created }).await?;
        if created {
            ctx.info(format!("{} stopped and the directory this task made removed", t.server.name)).await;
        } else {
            ctx.info(format!(
                "{} stopped and forgotten; its directory {} is kept (this task did not make it)",
                t.server.name, t.server.dir
            ))
            .await;
        }
        Ok(())
    }
}

pub(crate) struct Init(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Init {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p: ServerStep = ctx.params()?;
        let t = target(state, &p.cluster, &p.server).await?;
        Ok(t.op(ctx, HostOp::DbInit { id: t.id() }).await?.detail)
    }
}

pub(crate) struct Start(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Start {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let StartStep { cluster, server, mode } = ctx.params()?;
        let t = target(state, &cluster, &server).await?;
        let r = t.op(ctx, HostOp::DbStart { id: t.id(), mode }).await?;
        ctx.info(format!("{server} started ({mode:?})")).await;
        Ok(r.detail)
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let StartStep { cluster, server, .. } = ctx.params()?;
        let t = target(state, &cluster, &server).await?;
        t.op(ctx, HostOp::DbStop { id: t.id() }).await?;
        ctx.info(format!("{server} stopped")).await;
        Ok(())
    }
}

/// Watches the agent's reports until the server is Synced.
pub(crate) struct WaitSynced(pub(crate) StateRef);

#[async_trait]
impl StepHandler for WaitSynced {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p: ServerStep = ctx.params()?;
        let t = target(state, &p.cluster, &p.server).await?;
        wait_until_synced(ctx, &t).await
    }
}

/// Polls the server's agent until the server is Synced; fails at once on a
/// crash loop or a deliberate stop.
pub async fn wait_until_synced(ctx: &StepContext, t: &Target) -> Result<Value, StepError> {
    let id = t.id();
    let host = &t.host;
    let client = crate::hostops::client(host, &t.token, std::time::Duration::from_secs(15)).map_err(|e| StepError::fatal(e.to_string()))?;
    let started = std::time::Instant::now();
    let mut last: Option<ServerState> = None;
    loop {
        match client.get::<Vec<DbServerStatus>>("/agent/v1/db").await {
            Ok(all) => {
                let Some(s) = all.into_iter().find(|s| s.id == id) else {
                    return Err(StepError::fatal(format!("the agent on {} does not know {id}", host.host.name)));
                };
                if last != Some(s.state) {
                    let detail = s
                        .wsrep
                        .as_ref()
                        .map(|w| format!(" ({}, cluster size {})", w.local_state_comment, w.cluster_size))
                        .unwrap_or_default();
                    ctx.info(format!("{} is {}{detail}", t.server.name, s.state)).await;
                    last = Some(s.state);
                }
                match s.state {
                    ServerState::Synced => {
                        return Ok(
                            json!({ "synced_after_ms": started.elapsed().as_millis() as u64, "cluster_size": s.wsrep.map(|w| w.cluster_size) }),
                        );
                    }
                    ServerState::CrashLoop => {
                        return Err(StepError::fatal(format!(
                            "{} keeps crashing ({}); see {}/error.log on {}",
                            t.server.name,
                            s.last_exit.unwrap_or_default(),
                            t.server.dir,
                            host.host.name
                        )));
                    }
                    ServerState::Stopped if !s.desired_running => {
                        return Err(StepError::fatal(format!("{} is stopped", t.server.name)));
                    }
                    _ => {}
                }
            }
            Err(e) => ctx.warn(format!("{} does not answer: {e}", host.host.name)).await,
        }
        pause(ctx, Duration::from_millis(300)).await?;
    }
}

/// Creates the platform's accounts (the engine's statements).
pub(crate) struct Accounts(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Accounts {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p: ServerStep = ctx.params()?;
        let t = target(state, &p.cluster, &p.server).await?;
        let (admin, monitor) = passwords(state, &t.cluster)?;
        let hostname = t.host.host.facts.as_ref().map(|f| f.hostname.as_str()).unwrap_or_default();
        let statements = atoll_engine::sql::create_accounts((ADMIN_USER, &admin), (MONITOR_USER, &monitor), hostname);
        t.op(ctx, HostOp::DbSql { id: t.id(), statements }).await?;
        ctx.info(format!("accounts {ADMIN_USER} and {MONITOR_USER} created; passwords are sealed in MetaDB")).await;
        Ok(json!({ "users": [ADMIN_USER, MONITOR_USER] }))
    }
}

pub(crate) struct Ready(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Ready {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ClusterStep { cluster } = ctx.params()?;
        // Each server was seen Synced by its own step; wait until the
        // agents' reports in MetaDB agree too, so the status shown and the
        // health controller never contradict the task.
        loop {
            let servers = state.store.cluster_servers(&cluster).await.map_err(store_err)?;
            if servers.iter().all(|s| status::server_state(state, s).0 == ServerState::Synced) {
                break;
            }
            pause(ctx, Duration::from_millis(200)).await?;
        }
        state.store.set_cluster_status(&cluster, ClusterStatus::Healthy, now_ms(), None).await.map_err(store_err)?;
        // Names the first writer (or keeps a synced one after a restart).
        if let Some(c) = state.store.get_cluster(&cluster).await.map_err(store_err)? {
            routing::failover(state, &c).await.map_err(|e| StepError::retryable(e.to_string()))?;
        }
        ctx.info(format!("cluster {cluster} is ready")).await;
        Ok(json!({}))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let ClusterStep { cluster } = ctx.params()?;
        state.store.set_cluster_status(&cluster, ClusterStatus::Creating, now_ms(), None).await.map_err(store_err)?;
        Ok(())
    }
}

/// Stops a server and forgets it on its host; with `purge`, deletes its
/// directory.
pub(crate) struct Remove(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Remove {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let RemoveStep { cluster, server, purge } = ctx.params()?;
        let t = target(state, &cluster, &server).await?;
        let r = t.op(ctx, HostOp::DbRemove { id: t.id(), purge }).await?;
        ctx.info(format!("{server} removed from {}{}", t.host.host.name, if purge { ", data deleted" } else { "; data kept" })).await;
        Ok(r.detail)
    }
}

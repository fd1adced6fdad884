//! The steps that make and operate a cluster. Each acts through one host's
//! agent with a journaled operation, so a step resumed after a server died
//! does not act twice; waits are observations and may simply run again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_api::db::{DbCredentials, DbServerDef, DbServerStatus, StartMode};
use atoll_core::{ClusterSpec, ClusterStatus, ServerState};
use atoll_store::{ClusterRecord, DbServerRecord};
use atoll_tasks::{Engine, StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde_json::{Value, json};

use super::{ADMIN_USER, MONITOR_USER, SealedSecrets};
use crate::state::{AppState, now_ms};
use crate::steps::{StateRef, agent_op, host_by_id, param};

pub const RESERVE: &str = "cluster.reserve";
pub const DEFINE: &str = "db.define";
pub const INIT: &str = "db.init";
pub const START: &str = "db.start";
pub const WAIT: &str = "db.wait_synced";
pub const ACCOUNTS: &str = "db.accounts";
pub const READY: &str = "cluster.ready";
pub const REMOVE: &str = "db.remove";

pub fn register(engine: &mut Engine, state: StateRef) {
    engine.register(RESERVE, Arc::new(Reserve(state.clone())));
    engine.register(DEFINE, Arc::new(Define(state.clone())));
    engine.register(INIT, Arc::new(Init(state.clone())));
    engine.register(START, Arc::new(Start(state.clone())));
    engine.register(WAIT, Arc::new(WaitSynced(state.clone())));
    engine.register(ACCOUNTS, Arc::new(Accounts(state.clone())));
    engine.register(READY, Arc::new(Ready(state.clone())));
    engine.register(REMOVE, Arc::new(Remove(state.clone())));
    super::operate::register(engine, state.clone());
    super::operate::register_more(engine, state.clone());
    super::writer::register(engine, state.clone());
    super::servers::register(engine, state.clone());
    super::proxies::register(engine, state);
}

/// The create task: define every server (in parallel), bootstrap the first,
/// create the accounts, then join the others one at a time (each joiner
/// takes a full state transfer from a donor; one at a time keeps donors
/// available to clients), and mark the cluster ready.
pub fn create_task(cluster: &str, servers: &[DbServerRecord], proxies: &[atoll_store::ProxyRecord]) -> TaskSpec {
    let p = |s: &DbServerRecord| json!({ "cluster": cluster, "server": s.name });
    let mut steps = vec![StepSpec::new("reserve", RESERVE, format!("reserve the name {cluster}"), json!({ "cluster": cluster }))];
    for s in servers {
        steps.push(
            StepSpec::new(format!("define@{}", s.name), DEFINE, format!("write {}'s config on {}", s.name, s.address), p(s))
                .after("reserve"),
        );
    }
    let Some(first) = servers.first() else {
        return TaskSpec {
            kind: "cluster.create".into(),
            title: format!("create {cluster}"),
            target: cluster.into(),
            params: json!({}),
            steps,
        };
    };
    let f = &first.name;
    steps.push(StepSpec::new(format!("init@{f}"), INIT, format!("initialise {f}'s data directory"), p(first)).after(format!("define@{f}")));
    let mut start = StepSpec::new(
        format!("bootstrap@{f}"),
        START,
        format!("bootstrap the cluster on {f}"),
        json!({ "cluster": cluster, "server": f, "mode": "bootstrap" }),
    )
    .after(format!("init@{f}"));
    start.timeout = Duration::from_secs(60);
    steps.push(start);
    steps.push(wait(cluster, f).after(format!("bootstrap@{f}")));
    steps.push(
        StepSpec::new(format!("accounts@{f}"), ACCOUNTS, "create the admin and monitor accounts", p(first)).after(format!("wait@{f}")),
    );
    let mut previous = format!("accounts@{f}");
    for s in &servers[1..] {
        let n = &s.name;
        let mut join = StepSpec::new(
            format!("join@{n}"),
            START,
            format!("start {n} and join the cluster"),
            json!({ "cluster": cluster, "server": n, "mode": "join" }),
        )
        .after(format!("define@{n}"))
        .after(previous.clone());
        join.timeout = Duration::from_secs(60);
        steps.push(join);
        steps.push(wait(cluster, n).after(format!("join@{n}")));
        previous = format!("wait@{n}");
    }
    steps.push(StepSpec::new("ready", READY, format!("mark {cluster} ready"), json!({ "cluster": cluster })).after(previous));
    steps.extend(proxies.iter().map(|p| super::proxies::up_step(p).after("ready")));
    TaskSpec {
        kind: "cluster.create".into(),
        title: format!("create {cluster}"),
        target: cluster.into(),
        params: json!({ "cluster": cluster }),
        steps,
    }
}

pub(crate) fn wait(cluster: &str, server: &str) -> StepSpec {
    let mut s = StepSpec::new(
        format!("wait@{server}"),
        WAIT,
        format!("wait until {server} is synced"),
        json!({ "cluster": cluster, "server": server }),
    );
    // A joiner copies the whole data set; give it time, and poll again if
    // the server restarted meanwhile.
    s.timeout = Duration::from_secs(600);
    s.max_attempts = 2;
    s
}

/// Everything a step needs about its server.
pub(crate) struct Target {
    pub cluster: ClusterRecord,
    pub spec: ClusterSpec,
    pub server: DbServerRecord,
    pub all: Vec<DbServerRecord>,
}

/// The step's `cluster` and `server`.
pub(crate) async fn target(state: &AppState, ctx: &StepContext) -> Result<Target, StepError> {
    let server: String = param(ctx, "server").unwrap_or_default();
    target_named(state, &param::<String>(ctx, "cluster")?, &server).await
}

pub(crate) async fn target_named(state: &AppState, name: &str, server_name: &str) -> Result<Target, StepError> {
    let store_err = |e: atoll_store::StoreError| StepError::retryable(e.to_string());
    let cluster = state
        .store
        .get_cluster(name)
        .await
        .map_err(store_err)?
        .ok_or_else(|| StepError::fatal(format!("cluster {name} no longer exists")))?;
    let spec: ClusterSpec =
        serde_json::from_value(cluster.spec.clone()).map_err(|e| StepError::fatal(format!("cluster {name}'s stored spec: {e}")))?;
    let all = state.store.cluster_servers(name).await.map_err(store_err)?;
    let server = all
        .iter()
        .find(|s| s.name == server_name)
        .cloned()
        .ok_or_else(|| StepError::fatal(format!("cluster {name} has no server {server_name:?}")))?;
    Ok(Target { cluster, spec, server, all })
}

fn secrets(state: &AppState, cluster: &ClusterRecord) -> Result<(String, String), StepError> {
    let sealed: SealedSecrets =
        serde_json::from_value(cluster.secrets.clone()).map_err(|e| StepError::fatal(format!("cluster secrets: {e}")))?;
    let open = |s: &str| state.secrets.open(s).map_err(|e| StepError::fatal(e.to_string()));
    Ok((open(&sealed.admin_password)?, open(&sealed.monitor_password)?))
}

pub(crate) fn db_id_of(t: &Target) -> String {
    db_id(t)
}

fn db_id(t: &Target) -> String {
    format!("{}/{}", t.cluster.name, t.server.name)
}

/// Makes the name's reservation undoable: the cluster row is written when
/// the request is accepted; rolling back the task removes it.
struct Reserve(StateRef);

#[async_trait]
impl StepHandler for Reserve {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let name: String = param(ctx, "cluster")?;
        ctx.info(format!("cluster {name} is recorded in MetaDB")).await;
        Ok(json!({}))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let name: String = param(ctx, "cluster")?;
        let gone = state.store.delete_cluster(&name).await.map_err(|e| StepError::retryable(e.to_string()))?;
        ctx.info(if gone { format!("cluster {name} removed from MetaDB") } else { format!("cluster {name} was already gone") }).await;
        Ok(())
    }
}

struct Define(StateRef);

#[async_trait]
impl StepHandler for Define {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let (admin_password, _) = secrets(state, &t.cluster)?;
        let host = host_by_id(state, t.server.host_id).await?;
        // The build was checked when the cluster was accepted; a host that
        // lost it since cannot run this server.
        let build = super::engine_build(&t.spec, None, &host).map_err(StepError::fatal)?;
        let input = atoll_engine::ConfigInput {
            cluster: t.cluster.name.clone(),
            server: t.server.name.clone(),
            server_id: 1,
            address: t.server.address.clone(),
            ports: t.server.ports,
            segment: t.server.segment,
            cluster_address: t.all.iter().map(|s| atoll_engine::config::host_port(&s.address, s.ports.gcomm)).collect(),
            dir: t.server.dir.clone(),
            durability: t.spec.durability,
            params: t.spec.params.clone(),
            build: build.as_ref().and_then(|b| {
                Some(atoll_engine::BuildPaths {
                    basedir: b.basedir.clone()?,
                    galera: b.galera.clone(),
                    messages_dir: b.messages_dir.clone(),
                })
            }),
        };
        let config = atoll_engine::config::render(&input).map_err(|e| StepError::fatal(e.to_string()))?;
        let def = DbServerDef {
            id: db_id(&t),
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
        };
        let r = agent_op(ctx, &host, HostOp::DbDefine { server: def }).await?;
        ctx.info(format!("{} defined in {} on {}", t.server.name, t.server.dir, host.host.name)).await;
        Ok(r.detail)
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        // A rewritten config of a server that already ran (`existing`)
        // must not take its data with it; the next define rewrites it.
        if param::<Option<bool>>(ctx, "existing")?.unwrap_or(false) {
            ctx.info("config of an existing server: left as it is").await;
            return Ok(());
        }
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let host = host_by_id(state, t.server.host_id).await?;
        agent_op(ctx, &host, HostOp::DbRemove { id: db_id(&t), purge: true }).await?;
        ctx.info(format!("{} stopped and its directory removed", t.server.name)).await;
        Ok(())
    }
}

struct Init(StateRef);

#[async_trait]
impl StepHandler for Init {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let host = host_by_id(state, t.server.host_id).await?;
        Ok(agent_op(ctx, &host, HostOp::DbInit { id: db_id(&t) }).await?.detail)
    }
}

struct Start(StateRef);

#[async_trait]
impl StepHandler for Start {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let mode: StartMode = param(ctx, "mode")?;
        let host = host_by_id(state, t.server.host_id).await?;
        let r = agent_op(ctx, &host, HostOp::DbStart { id: db_id(&t), mode }).await?;
        ctx.info(format!("{} started ({mode:?})", t.server.name)).await;
        Ok(r.detail)
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let host = host_by_id(state, t.server.host_id).await?;
        agent_op(ctx, &host, HostOp::DbStop { id: db_id(&t) }).await?;
        ctx.info(format!("{} stopped", t.server.name)).await;
        Ok(())
    }
}

/// Watches the agent's reports until the server is Synced.
struct WaitSynced(StateRef);

#[async_trait]
impl StepHandler for WaitSynced {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        wait_until_synced(state, ctx, &t).await
    }
}

/// Polls the server's agent until the server is Synced; fails at once on a
/// crash loop or a deliberate stop.
pub(crate) async fn wait_until_synced(state: &AppState, ctx: &StepContext, t: &Target) -> Result<Value, StepError> {
    let id = db_id(t);
    let host = host_by_id(state, t.server.host_id).await?;
    let client = crate::hostops::agent(&host).map_err(|e| StepError::fatal(e.to_string()))?;
    let started = std::time::Instant::now();
    let mut last: Option<ServerState> = None;
    loop {
        if ctx.cancel.is_cancelled() {
            return Err(StepError::retryable("stopped while waiting"));
        }
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
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Drops the anonymous accounts `mariadb-install-db` makes (they shadow
/// real accounts on loopback), then creates the platform's accounts.
struct Accounts(StateRef);

#[async_trait]
impl StepHandler for Accounts {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let (admin, monitor) = secrets(state, &t.cluster)?;
        let host = host_by_id(state, t.server.host_id).await?;
        // DROP USER replicates; editing mysql.global_priv (Aria) would not.
        let hostname = host
            .host
            .facts
            .as_ref()
            .map(|f| f.hostname.clone())
            .filter(|h| !h.is_empty() && !h.contains('\''))
            .unwrap_or_else(|| "localhost".into());
        let statements = vec![
            format!("DROP USER IF EXISTS ''@'localhost', ''@'{hostname}'"),
            format!("CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'%' IDENTIFIED BY '{admin}'"),
            format!("ALTER USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{admin}'"),
            format!("GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION"),
            format!("CREATE USER IF NOT EXISTS '{MONITOR_USER}'@'%' IDENTIFIED BY '{monitor}'"),
            format!("ALTER USER '{MONITOR_USER}'@'%' IDENTIFIED BY '{monitor}'"),
            format!("GRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO '{MONITOR_USER}'@'%'"),
        ];
        agent_op(ctx, &host, HostOp::DbSql { id: db_id(&t), statements }).await?;
        ctx.info(format!("accounts {ADMIN_USER} and {MONITOR_USER} created; passwords are sealed in MetaDB")).await;
        Ok(json!({ "users": [ADMIN_USER, MONITOR_USER] }))
    }
}

struct Ready(StateRef);

#[async_trait]
impl StepHandler for Ready {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let name: String = param(ctx, "cluster")?;
        // Each server was seen Synced by its own step; wait until the
        // agents' reports in MetaDB agree too, so the status shown and the
        // health controller never contradict the task.
        loop {
            let servers = state.store.cluster_servers(&name).await.map_err(|e| StepError::retryable(e.to_string()))?;
            if servers.iter().all(|s| super::server_state(state, s).0 == ServerState::Synced) {
                break;
            }
            if ctx.cancel.is_cancelled() {
                return Err(StepError::retryable("stopped while waiting"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        state.store.set_cluster_status(&name, ClusterStatus::Healthy, now_ms()).await.map_err(|e| StepError::retryable(e.to_string()))?;
        // Names the first writer (or keeps a synced one after a restart).
        if let Some(c) = state.store.get_cluster(&name).await.map_err(|e| StepError::retryable(e.to_string()))? {
            crate::routing::failover(state, &c).await.map_err(|e| StepError::retryable(e.to_string()))?;
        }
        ctx.info(format!("cluster {name} is ready")).await;
        Ok(json!({}))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let name: String = param(ctx, "cluster")?;
        state.store.set_cluster_status(&name, ClusterStatus::Creating, now_ms()).await.map_err(|e| StepError::retryable(e.to_string()))?;
        Ok(())
    }
}

/// Stops a server and forgets it on its host; with `purge`, deletes its
/// directory.
struct Remove(StateRef);

#[async_trait]
impl StepHandler for Remove {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let t = target(state, ctx).await?;
        let purge: bool = param(ctx, "purge")?;
        let host = host_by_id(state, t.server.host_id).await?;
        let r = agent_op(ctx, &host, HostOp::DbRemove { id: db_id(&t), purge }).await?;
        ctx.info(format!("{} removed from {}{}", t.server.name, host.host.name, if purge { ", data deleted" } else { "; data kept" }))
            .await;
        Ok(r.detail)
    }
}

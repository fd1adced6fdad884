//! Standby clusters: a Galera cluster in another region that follows a
//! primary by asynchronous GTID replication. Made from a hot copy of a
//! primary node streamed between agents, then fed by one channel (a
//! source node on the primary, an applier node on the standby).

use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::{HostOp, OpRequest, OpResult};
use atoll_api::db::{DbServerStatus, ExportGrant, SeedSource, Seeded, StartMode};
use atoll_core::{ClusterSpec, GtidPos, ReplicationSpec, ServerState};
use atoll_store::{ClusterRecord, DbServerRecord, ProxyRecord};
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use serde_json::{Value, json};

use super::secrets::{REPLICATION_USER, SealedSecrets};
use super::status::server_state;
use super::steps::{self, ClusterStep, ServerStep, Target, target};
use super::{builds, proxies};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::step_kit::{StateRef, cluster_by_name, store_err};

pub const ACCOUNT: &str = "standby.account";
pub const SEED: &str = "standby.seed";
pub const CHANNEL: &str = "standby.channel";

/// How long a copy grant waits for the standby's agent.
const GRANT_TTL_S: u32 = 120;
/// A seed streams the whole data set: the step's own limit.
const SEED_TIMEOUT: Duration = Duration::from_secs(3600);

/// The next free cluster domain (GTID domain and `server_id`): one past
/// the largest in use, so no two clusters of a pair share one.
pub async fn next_domain(state: &AppState) -> ApiResult<u32> {
    let used = state.store.list_clusters().await?.iter().filter_map(|c| c.spec.replication.as_ref().map(|r| r.domain)).max();
    let next = used.unwrap_or(0) + 1;
    if next > atoll_core::replication::MAX_DOMAIN {
        return Err(ApiError::Conflict("no cluster domain is left: delete clusters no longer used".into()));
    }
    Ok(next)
}

/// `major.minor` of a `mariadbd --version` string, e.g. `10.11`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut it = version.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The engine version a cluster's servers run on one of its hosts.
fn version_on(spec: &ClusterSpec, host: &atoll_store::HostRecord) -> Option<String> {
    let name = builds::package_name(spec).unwrap_or(atoll_core::SYSTEM_BUILD);
    host.host.facts.as_ref()?.engine(name)?.version.clone()
}

/// What makes a pair impossible, all at once: the primary's role and
/// binary log, engine versions, parameters a replica needs (the region is
/// checked once the hosts have given the standby one).
pub async fn pair_problems(
    state: &AppState,
    primary: &ClusterRecord,
    primary_servers: &[DbServerRecord],
    standby: &ClusterSpec,
) -> ApiResult<Vec<String>> {
    let mut p = Vec::new();
    let name = &primary.name;
    match &primary.spec.replication {
        None => p.push(format!(
            "cluster {name} was made before standbys existed and keeps no binary log from its first start (which consistent GTIDs need); make a new cluster and move the data there to give it standbys"
        )),
        Some(r) if r.source.is_some() => p.push(format!(
            "cluster {name} is itself a standby (of {}): make the standby of the primary instead",
            r.source.as_deref().unwrap_or_default()
        )),
        Some(_) => {}
    }
    match primary.status {
        atoll_core::ClusterStatus::Healthy => {}
        atoll_core::ClusterStatus::Creating => p.push(format!("cluster {name} is still being created: wait for its task")),
        other => p.push(format!("cluster {name} is {other}: a standby is made from a healthy primary")),
    }
    if standby.replication.is_some() {
        p.push("replication is set by the platform: leave it out of the request".into());
    }
    if standby.params.keys().any(|k| atoll_engine::params::normalize_key(k) == "read_only") {
        p.push("read_only is set by the cluster's role (a standby is read only): leave it out".into());
    }
    // A replica must take every event the primary writes.
    let packet = |s: &ClusterSpec| {
        s.params
            .iter()
            .find(|(k, _)| atoll_engine::params::normalize_key(k) == "max_allowed_packet")
            .and_then(|(_, v)| atoll_engine::params::parse_size(v))
            .unwrap_or(16 << 20)
    };
    if packet(standby) < packet(&primary.spec) {
        p.push(format!(
            "max_allowed_packet of {} ({} bytes) is smaller than its primary's ({} bytes): rows the primary takes would stop replication; raise it",
            standby.name,
            packet(standby),
            packet(&primary.spec)
        ));
    }
    // The standby's hosts as the create rules resolve them (unknown ones
    // are named there).
    let mut standby_hosts = Vec::new();
    for s in &standby.servers {
        standby_hosts.extend(state.store.find_host(&s.host).await?);
    }
    // The standby's region: asked for, or its hosts' (when they share one;
    // hosts of several regions are refused by the create rules).
    let regions: std::collections::BTreeSet<&str> = standby_hosts.iter().map(|h| h.host.region_name()).collect();
    let region = standby.region.as_deref().or_else(|| (regions.len() == 1).then(|| regions.first().copied()).flatten());
    let primary_region = primary.spec.region.as_deref().unwrap_or(atoll_core::DEFAULT_REGION);
    if region == Some(primary_region) {
        p.push(format!(
            "standby {} would be in region {primary_region} like its primary {name}: losing that region would take both; put it on hosts of another region",
            standby.name
        ));
    }
    // Same major version both ways: a switchover turns the pair round.
    let mut theirs = None;
    for s in primary_servers {
        if let Some(v) = state.store.get_host(s.host_id).await?.and_then(|h| version_on(&primary.spec, &h)) {
            theirs = Some(v);
            break;
        }
    }
    if let Some(pv) = theirs {
        for h in &standby_hosts {
            if let Some(v) = version_on(standby, h).filter(|v| major_minor(v) != major_minor(&pv)) {
                p.push(format!(
                    "host {} runs MariaDB {v} but primary {name} runs {pv}: a standby runs the same major version (a switchover reverses the replication)",
                    h.host.name
                ));
            }
        }
    }
    Ok(p)
}

/// The standby's spec as stored: the primary's durability and parameters
/// unless the request names its own, the pair's replication part.
pub fn standby_spec(primary: &ClusterRecord, mut spec: ClusterSpec, domain: u32) -> ClusterSpec {
    if spec.params.is_empty() {
        spec.params = primary.spec.params.clone();
    }
    if spec.engine.is_none() {
        spec.engine = primary.spec.engine.clone();
    }
    spec.durability = primary.spec.durability;
    spec.replication = Some(ReplicationSpec { domain, source: Some(primary.name.clone()), seeded_at: None });
    spec
}

/// Makes the standby: its servers defined, the replication account made
/// on the primary, a primary node copied into the first server, which
/// starts a new Galera cluster and the channel from the primary; then the
/// others join it (full state transfer) one at a time, and its proxies
/// start.
pub fn create_task(standby: &str, p: &str, servers: &[DbServerRecord], proxies: &[ProxyRecord]) -> TaskSpec {
    let on = |s: &str| ServerStep::new(standby, s);
    let mut steps =
        vec![StepSpec::typed("reserve", steps::RESERVE, format!("reserve the name {standby}"), &ClusterStep { cluster: standby.into() })];
    for s in servers {
        steps.push(
            steps::define(standby, s, format!("define@{}", s.name), format!("write {}'s config on {}", s.name, s.address), false)
                .after("reserve"),
        );
    }
    steps.push(
        StepSpec::typed("account", ACCOUNT, format!("make the replication account on {p}"), &ClusterStep { cluster: standby.into() })
            .after("reserve"),
    );
    let task = |steps| TaskSpec {
        kind: "cluster.create_standby".into(),
        title: format!("create {standby}, a standby of {p}"),
        target: standby.into(),
        params: json!({ "cluster": standby, "primary": p }),
        steps,
    };
    let Some(first) = servers.first() else { return task(steps) };
    let f = &first.name;
    let mut seed = StepSpec::typed(format!("seed@{f}"), SEED, format!("copy a node of {p} into {f}"), &on(f))
        .after(format!("define@{f}"))
        .after("account");
    seed.timeout = SEED_TIMEOUT;
    // Each attempt copies from another node of the primary.
    seed.max_attempts = 4;
    steps.push(seed);
    steps.push(
        steps::start(standby, f, format!("bootstrap@{f}"), format!("start {standby} on {f} from the copy"), StartMode::Bootstrap)
            .after(format!("seed@{f}")),
    );
    steps.push(steps::wait(standby, f).after(format!("bootstrap@{f}")));
    steps.push(
        StepSpec::typed("channel", CHANNEL, format!("start replication from {p}"), &ClusterStep { cluster: standby.into() })
            .after(format!("wait@{f}")),
    );
    let mut previous = "channel".to_string();
    for s in &servers[1..] {
        let n = &s.name;
        steps.push(
            steps::start(standby, n, format!("join@{n}"), format!("start {n} and join"), StartMode::Join)
                .after(format!("define@{n}"))
                .after(previous.clone()),
        );
        steps.push(steps::wait(standby, n).after(format!("join@{n}")));
        previous = format!("wait@{n}");
    }
    steps.push(steps::ready(standby).after(previous));
    steps.extend(proxies.iter().map(|p| proxies::up_step(p).after("ready")));
    task(steps)
}

/// The primary a standby follows, read from MetaDB.
async fn primary_of(state: &AppState, standby: &ClusterRecord) -> Result<ClusterRecord, StepError> {
    let name = standby
        .spec
        .replication
        .as_ref()
        .and_then(|r| r.source.clone())
        .ok_or_else(|| StepError::fatal(format!("cluster {} is not a standby", standby.name)))?;
    cluster_by_name(state, &name).await
}

/// The pair's replication password, from the primary's secrets.
fn replication_password(state: &AppState, primary: &ClusterRecord) -> Result<String, StepError> {
    SealedSecrets::of(primary).and_then(|s| s.replication(state, &primary.name)).map_err(|e| StepError::fatal(e.to_string()))
}

/// The primary's servers that are Synced now, the writer last (it serves
/// the applications; a copy or a channel loads another node first).
async fn synced_primary_nodes(state: &AppState, primary: &ClusterRecord) -> Result<Vec<DbServerRecord>, StepError> {
    let writer = state.store.get_routing(&primary.name).await.map_err(store_err)?.and_then(|r| r.writer);
    let mut nodes: Vec<DbServerRecord> = state
        .store
        .cluster_servers(&primary.name)
        .await
        .map_err(store_err)?
        .into_iter()
        .filter(|s| server_state(state, s).0 == ServerState::Synced)
        .collect();
    nodes.sort_by_key(|s| Some(&s.name) == writer.as_ref());
    Ok(nodes)
}

/// Creates (or resets) the replication account through a primary node; it
/// replicates to every node of the primary and, later, to the standby.
/// The admin account also loses `READ_ONLY ADMIN` there, so `read_only`
/// holds it on the standby.
pub(crate) struct Account(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Account {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ClusterStep { cluster } = ctx.params()?;
        let standby = cluster_by_name(state, &cluster).await?;
        let primary = primary_of(state, &standby).await?;
        let node = synced_primary_nodes(state, &primary)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StepError::retryable(format!("no node of {} is synced", primary.name)))?;
        let password = replication_password(state, &primary)?;
        let mut statements = atoll_engine::sql::replication_account(REPLICATION_USER, &password, state.config.tls);
        statements.push(atoll_engine::sql::admin_obeys_read_only(super::secrets::ADMIN_USER));
        let t = target(state, &primary.name, &node.name).await?;
        t.op(ctx, HostOp::DbSql { id: t.id(), statements }).await?;
        ctx.info(format!("account {REPLICATION_USER} made on {} through {}", primary.name, node.name)).await;
        Ok(json!({ "user": REPLICATION_USER, "through": node.name }))
    }
}

/// Copies a synced primary node into the standby's first server: the
/// source agent is granted one copy, the standby's agent pulls it.
pub(crate) struct Seed(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Seed {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let p: ServerStep = ctx.params()?;
        let t = target(state, &p.cluster, &p.server).await?;
        let primary = primary_of(state, &t.cluster).await?;
        let nodes = synced_primary_nodes(state, &primary).await?;
        if nodes.is_empty() {
            return Err(StepError::retryable(format!("no node of {} is synced to copy from", primary.name)));
        }
        // A later attempt copies another node: the last one may have died.
        let source = &nodes[(ctx.attempt.saturating_sub(1) as usize) % nodes.len()];
        let s = target(state, &primary.name, &source.name).await?;
        let url = s.host.host.agent_url.clone().ok_or_else(|| StepError::fatal(format!("host {} has no agent URL", s.host.host.name)))?;
        let token = crate::auth::random_token();
        let grant = ExportGrant { id: s.id(), token_sha256: atoll_core::secret::sha256_hex(&token), ttl_s: GRANT_TTL_S };
        let client = crate::hostops::client(&s.host, &s.token, Duration::from_secs(15)).map_err(|e| StepError::fatal(e.to_string()))?;
        client
            .post::<_, Value>("/agent/v1/db/exports", &grant)
            .await
            .or_else(|e| if e.status() == Some(204) { Ok(Value::Null) } else { Err(e) })
            .map_err(|e| StepError::retryable(format!("{} does not grant a copy of {}: {e}", s.host.host.name, source.name)))?;
        ctx.info(format!("copying {} (on {}) into {} (on {})", source.name, s.host.host.name, t.server.name, t.host.host.name)).await;
        let seeded = seed_op(ctx, &t, SeedSource { url, id: s.id(), token }).await?;
        // The channel starts after this position, and no applier ever
        // starts before it.
        let mut spec = t.cluster.spec.clone();
        if let Some(r) = spec.replication.as_mut() {
            r.seeded_at = Some(seeded.gtid.clone());
        }
        state.store.set_cluster_spec(&t.cluster.name, &spec, atoll_core::time::now_ms()).await.map_err(store_err)?;
        ctx.info(format!("{} bytes copied in {} ms; the copy is at {}", seeded.bytes, seeded.took_ms, display_pos(&seeded.gtid))).await;
        Ok(json!({ "from": source.name, "bytes": seeded.bytes, "gtid": seeded.gtid, "took_ms": seeded.took_ms }))
    }
}

fn display_pos(gtid: &str) -> &str {
    if gtid.is_empty() { "the start (no transaction yet)" } else { gtid }
}

/// The seed operation, keyed by the grant: a retry with a new grant is a
/// new operation (the agent keeps what a finished copy recorded).
async fn seed_op(ctx: &StepContext, t: &Target, source: SeedSource) -> Result<Seeded, StepError> {
    let client = crate::hostops::client(&t.host, &t.token, SEED_TIMEOUT).map_err(|e| StepError::fatal(e.to_string()))?;
    let key = format!("{}/{}", ctx.idempotency_key(), &atoll_core::secret::sha256_hex(&source.token)[..12]);
    let req = OpRequest { key, op: HostOp::DbSeed { id: t.id(), source } };
    let r: OpResult = client.post("/agent/v1/ops", &req).await.map_err(|e| match e.status() {
        Some(s) if (400..500).contains(&s) => StepError::fatal(format!("{}: {e}", t.host.host.name)),
        _ => StepError::retryable(format!("seeding on {} failed: {e}", t.host.host.name)),
    })?;
    serde_json::from_value(r.detail).map_err(|e| StepError::fatal(format!("{} answered an unreadable seed record: {e}", t.host.host.name)))
}

/// Puts the channel right: one applier (the current one while it is
/// Synced, else the first Synced server), reading from a Synced primary
/// node, after what the standby has; any other node that applies is
/// stopped first. Finishes once the applier reports the channel running.
/// The create task's last word on replication, and the task the channel
/// controller submits when the applier or the source left Synced.
pub(crate) struct Channel(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Channel {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let ClusterStep { cluster } = ctx.params()?;
        let standby = cluster_by_name(state, &cluster).await?;
        let servers = state.store.cluster_servers(&cluster).await.map_err(store_err)?;
        let reported = |s: &DbServerRecord| server_state(state, s);
        let synced = |s: &DbServerRecord| reported(s).0 == ServerState::Synced;
        let channel = |s: &DbServerRecord| reported(s).1.and_then(|st| st.replication).and_then(|r| r.channel);
        let applying = |s: &DbServerRecord| channel(s).is_some();
        let applier = servers
            .iter()
            .find(|s| channel(s).is_some_and(|c| c.running()) && synced(s))
            // Else the synced node that restarted least (not the applier
            // that just died and came back).
            .or_else(|| servers.iter().filter(|s| synced(s)).min_by_key(|s| reported(s).1.map_or(0, |st| st.restarts)))
            .cloned()
            .ok_or_else(|| StepError::retryable(format!("no server of {cluster} is synced to apply the channel")))?;
        // Never two appliers: whoever else applies stops first (a node that
        // cannot be reached is not running it either).
        for other in servers.iter().filter(|s| s.name != applier.name && applying(s)) {
            let t = target(state, &cluster, &other.name).await?;
            let op = HostOp::DbSql { id: t.id(), statements: atoll_engine::sql::stop_channel() };
            match crate::step_kit::agent_op_keyed(ctx, &t.host, &t.token, op, Some(&format!("stop@{}", other.name))).await {
                Ok(_) => ctx.info(format!("replication on {} stopped", other.name)).await,
                Err(e) => ctx.warn(format!("could not stop replication on {}: {e}", other.name)).await,
            }
        }
        let (source, applier, from) = start_channel(state, ctx, &standby, &applier).await?;
        ctx.info(format!("{applier} replicates from {source} after {}", display_pos(&from))).await;
        // Done when the applier says so (its next report, about a second).
        let started = std::time::Instant::now();
        loop {
            let now = state.store.cluster_servers(&cluster).await.map_err(store_err)?;
            let ch = now.iter().find(|s| s.name == applier).and_then(|s| reported(s).1?.replication?.channel);
            match ch {
                Some(ch) if ch.running() && ch.sql_running => break,
                Some(ch) if started.elapsed() > Duration::from_secs(20) => {
                    return Err(StepError::retryable(format!(
                        "the channel on {applier} does not run: {}",
                        ch.last_error.unwrap_or_else(|| format!("receiver {}", ch.io_running))
                    )));
                }
                _ if started.elapsed() > Duration::from_secs(20) => {
                    return Err(StepError::retryable(format!("{applier} reports no channel 20 s after it was started")));
                }
                _ => crate::step_kit::pause(ctx, Duration::from_millis(250)).await?,
            }
        }
        Ok(json!({ "source": source, "applier": applier, "from": from, "took_ms": started.elapsed().as_millis() as u64 }))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        let state = self.0.get()?;
        let Some(out) = ctx.output_of(&ctx.key).await else { return Ok(()) };
        let ClusterStep { cluster } = ctx.params()?;
        let Some(applier) = out.get("applier").and_then(Value::as_str) else { return Ok(()) };
        let t = target(state, &cluster, applier).await?;
        t.op(ctx, HostOp::DbSql { id: t.id(), statements: atoll_engine::sql::stop_channel() }).await?;
        ctx.info(format!("replication on {applier} stopped")).await;
        Ok(())
    }
}

/// The task that puts a standby's channel right (see [`Channel`]).
pub fn channel_task(standby: &str, why: &str) -> TaskSpec {
    let mut step =
        StepSpec::typed("channel", CHANNEL, format!("move {standby}'s replication channel"), &ClusterStep { cluster: standby.into() });
    step.max_attempts = 3;
    TaskSpec {
        kind: "cluster.channel".into(),
        title: format!("move {standby}'s replication channel ({why})"),
        target: standby.into(),
        params: json!({ "cluster": standby, "why": why }),
        steps: vec![step],
    }
}

/// Why a standby's channel needs moving, if it does: its applier or its
/// source left Synced, no node applies, or two do. A channel stopped by
/// an error while both ends are Synced is left for an operator (the error
/// is shown; restarting would repeat it).
pub fn channel_fault(state: &AppState, servers: &[DbServerRecord], primary: &[DbServerRecord]) -> Option<String> {
    // A channel that is configured but stopped without an error (a node
    // that restarted: channels never resume by themselves) applies nothing.
    let appliers: Vec<(&DbServerRecord, ServerState, atoll_core::ReplicaChannel)> = servers
        .iter()
        .filter_map(|s| {
            let (st, status) = server_state(state, s);
            Some((s, st, status?.replication?.channel.filter(|c| c.running() || c.last_error.is_some())?))
        })
        .collect();
    let [(applier, st, ch)] = appliers.as_slice() else {
        return Some(if appliers.is_empty() { "no node applies it".into() } else { "two nodes apply it".into() });
    };
    if *st != ServerState::Synced {
        return Some(format!("applier {} is {st}", applier.name));
    }
    let source = primary.iter().find(|p| atoll_engine::config::host_port(&p.address, p.ports.sql) == ch.source);
    match source.map(|p| (p, server_state(state, p).0)) {
        None => Some(format!("source {} is not a node of the primary", ch.source)),
        Some((p, st)) if st != ServerState::Synced => Some(format!("source {} is {st}", p.name)),
        _ => None,
    }
}

/// Makes `applier` the standby's applier, reading from a synced primary
/// node after what the standby has (its binary log, never before the
/// seed): (source, applier, position).
pub async fn start_channel(
    state: &AppState,
    ctx: &StepContext,
    standby: &ClusterRecord,
    applier: &DbServerRecord,
) -> Result<(String, String, String), StepError> {
    let primary = primary_of(state, standby).await?;
    let source = synced_primary_nodes(state, &primary)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| StepError::retryable(format!("no node of {} is synced to replicate from", primary.name)))?;
    let from = channel_start(state, standby, &source).await.map_err(StepError::fatal)?;
    let password = replication_password(state, &primary)?;
    let t = target(state, &standby.name, &applier.name).await?;
    let ca = format!("{}/{}", t.server.dir.trim_end_matches('/'), atoll_engine::config::TLS_FILES[0]);
    let src = atoll_engine::sql::ChannelSource {
        host: &source.address,
        port: source.ports.sql,
        user: REPLICATION_USER,
        password: &password,
        ca_file: state.config.tls.then_some(ca.as_str()),
    };
    // First a causal read: the new applier has applied every transaction
    // its cluster committed (the last applier's included) before it takes
    // the next ones from the source.
    let mut statements = atoll_engine::sql::causal_read();
    statements.extend(atoll_engine::sql::start_channel(&src, &from));
    let part = format!("start@{}:{}:{from}", applier.name, source.name);
    crate::step_kit::agent_op_keyed(ctx, &t.host, &t.token, HostOp::DbSql { id: t.id(), statements }, Some(&part)).await?;
    Ok((source.name, applier.name.clone(), from.to_string()))
}

/// What a server's agent reports about it now (MetaDB keeps reports whose
/// routing-relevant part is unchanged only every few seconds, and binary
/// log positions move with every commit); the stored report when the agent
/// does not answer.
pub async fn live_status(state: &AppState, s: &DbServerRecord) -> Option<DbServerStatus> {
    let live = async {
        let host = state.store.get_host(s.host_id).await.ok()??;
        let token = crate::hostops::server_token(state, &host).ok()?;
        let client = crate::hostops::client(&host, &token, Duration::from_secs(2)).ok()?;
        let all: Vec<DbServerStatus> = client.get("/agent/v1/db").await.ok()?;
        all.into_iter().find(|x| x.id.cluster == s.cluster && x.id.name == s.name)
    };
    match live.await {
        Some(st) => Some(st),
        None => server_state(state, s).1,
    }
}

/// The binary log position a server reports now.
async fn logged(state: &AppState, s: &DbServerRecord) -> Result<GtidPos, String> {
    live_status(state, s).await.and_then(|st| st.replication).map(|r| r.gtid_binlog_pos).unwrap_or_default().parse()
}

/// Where a new applier starts: in each domain the source has logged, the
/// furthest any standby node has logged (what the cluster committed:
/// slave-applied transactions keep the primary's GTIDs and reach every
/// node through Galera, some nodes later than others) or, before any, where
/// the seed copy was taken.
async fn channel_start(state: &AppState, standby: &ClusterRecord, source: &DbServerRecord) -> Result<GtidPos, String> {
    let r = standby.spec.replication.as_ref().ok_or_else(|| format!("cluster {} has no replication part", standby.name))?;
    let mut from: GtidPos = r.seeded_at.as_deref().unwrap_or_default().parse()?;
    let domains: Vec<u32> = logged(state, source).await?.domains().chain(from.domains()).collect();
    for s in state.store.cluster_servers(&standby.name).await.map_err(|e| e.to_string())? {
        from = from.max(&logged(state, &s).await?);
    }
    Ok(from.only(domains))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert_eq!(major_minor("10.11.19-MariaDB-0+deb12u1"), Some((10, 11)));
        assert_eq!(major_minor("11.8.3-MariaDB"), Some((11, 8)));
        assert_eq!(major_minor("garbage"), None);
    }
}

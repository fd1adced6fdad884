//! Starting the platform on itself, in the seed's order: prepare the
//! environment (agents on every node, precheck), deploy (MetaDB's cluster,
//! a proxy per node, a server per node), then check.
//!
//! A platform needs MetaDB to run a task, and MetaDB is to be a cluster
//! made by a task. So a temporary server, on an embedded MetaDB of its own,
//! runs the first tasks: it registers the agents, prepares the hosts and
//! creates MetaDB's cluster exactly as it would any cluster. Then it stops,
//! its MetaDB is copied into the new cluster, and every node's server
//! starts on it, reaching it through the node's own proxy. Agents are
//! given every URL from the start, so they move to the new servers by
//! themselves when the temporary one goes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use atoll_api::v1::{ClusterCredentials, HostListItem, PlatformCheckView, PlatformView, PrepareRequest, TaskView};
use atoll_client::{Client, Servers};
use atoll_core::{HostStatus, TaskStatus};
use atoll_plan::check::CheckStatus;
use atoll_server::ServerConfig;
use atoll_store::SqlStore;
use sqlx::{ConnectOptions, Connection, Executor};
use tokio_util::sync::CancellationToken;

use crate::DeployError;
use crate::launch::{Join, Launcher};
use crate::layout::{Layout, METADB_CLUSTER, METADB_DATABASE, METADB_USER, MONITORDB_DATABASE, with_ca};

/// What every server of the platform is configured with, besides its
/// node's address and MetaDB URL.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the temporary server keeps its embedded MetaDB (and the key).
    pub work_dir: PathBuf,
    /// Where the temporary server listens; every node must reach it.
    pub bootstrap_listen: SocketAddr,
    /// Precheck profile for the hosts (`production` or `sandbox`).
    pub profile: String,
    /// Where databases live on the hosts.
    pub host_data_dir: String,
    pub heartbeat_interval_ms: u64,
    pub offline_after_ms: u64,
    pub leader_lease_ms: u64,
    pub task_lease_ms: u64,
    /// How often the leader scrapes metrics, and how often MonitorDB is
    /// written (what the other servers' charts lag behind by).
    pub scrape_interval_ms: u64,
    pub monitordb_flush_s: u64,
}

impl Options {
    /// What the temporary server and every node's server share.
    fn server_config(&self, layout: &Layout) -> ServerConfig {
        ServerConfig {
            tls: layout.tls,
            profile: self.profile.clone(),
            host_data_dir: self.host_data_dir.clone(),
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            offline_after_ms: self.offline_after_ms,
            leader_lease_ms: self.leader_lease_ms,
            task_lease_ms: self.task_lease_ms,
            scrape_interval_ms: self.scrape_interval_ms,
            scrape_timeout_ms: self.scrape_interval_ms / 2,
            monitordb_flush_s: self.monitordb_flush_s,
            ..Default::default()
        }
    }
}

/// A platform that is up.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub servers: Vec<String>,
    /// The admin's first password (shown once; changed at first login).
    pub admin_password: Option<String>,
    /// An admin API token of the `deploy` service account.
    pub token: String,
    /// The platform's CA on a TLS platform, for clients to trust.
    pub ca_pem: Option<String>,
    /// Seconds each step took, in order.
    pub steps: Vec<(&'static str, f64)>,
}

/// What the bootstrap leaves for the nodes' servers: MetaDB holds the
/// platform, and these open it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Bootstrapped {
    /// The key that seals secrets in MetaDB (every server shares it).
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The servers' MetaDB account's password.
    pub metadb_password: String,
    /// An admin API token of the `deploy` service account.
    pub token: String,
    /// Agents joined with it; kept in their service definitions.
    pub join_token: String,
    pub admin_password: Option<String>,
    /// The platform's CA on a TLS platform: the servers verify MetaDB's
    /// certificates with it, agents pin it, clients trust it.
    #[serde(default)]
    pub ca_pem: Option<String>,
    #[serde(skip)]
    pub steps: Vec<(&'static str, f64)>,
}

impl Bootstrapped {
    /// How agents join the nodes' servers.
    fn join(&self, layout: &Layout) -> Result<Join, DeployError> {
        let ca_fingerprint = match &self.ca_pem {
            Some(pem) => Some(atoll_pki::fingerprint(pem).map_err(|e| DeployError::step("servers", None, e.to_string()))?),
            None => None,
        };
        Ok(Join { servers: layout.server_urls(), token: self.join_token.clone(), ca_fingerprint })
    }
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// One line per step, for the caller's progress display.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// Times the steps of a phase.
struct Steps {
    clock: Instant,
    done: Vec<(&'static str, f64)>,
}

impl Steps {
    fn new() -> Self {
        Self { clock: Instant::now(), done: Vec::new() }
    }
    fn done(&mut self, name: &'static str) {
        self.done.push((name, self.clock.elapsed().as_secs_f64()));
        self.clock = Instant::now();
    }
}

/// Both phases, for a platform started afresh.
pub async fn bring_up(
    layout: &Layout,
    launcher: &mut dyn Launcher,
    opts: &Options,
    progress: Progress<'_>,
) -> Result<Deployed, DeployError> {
    let boot = bootstrap(layout, launcher, opts, progress).await?;
    start_servers(layout, launcher, opts, &boot, progress).await
}

/// The first phase: agents, prepare, MetaDB's cluster, its account, and
/// the copy of the bootstrap server's MetaDB into it. Run again after a
/// failure it resumes: the bootstrap server keeps its embedded MetaDB in
/// `opts.work_dir`, so hosts, tasks and the cluster are still known.
pub async fn bootstrap(
    layout: &Layout,
    launcher: &mut dyn Launcher,
    opts: &Options,
    progress: Progress<'_>,
) -> Result<Bootstrapped, DeployError> {
    layout.validate()?;
    let mut steps = Steps::new();

    progress(&format!("bootstrap server on {} (embedded MetaDB in {})", opts.bootstrap_listen, opts.work_dir.display()));
    let stop = CancellationToken::new();
    let config = ServerConfig { listen: opts.bootstrap_listen, data_dir: opts.work_dir.join("bootstrap"), ..opts.server_config(layout) };
    let key_file = config.secret_key_file();
    let meta_file = config.data_dir.join("meta.db");
    // Public: the server writes it at every start.
    let ca_file = config.data_dir.join("ca.pem");
    let temp = atoll_server::start(config, stop.clone()).await.map_err(|e| DeployError::step("bootstrap server", None, e.to_string()))?;
    let temp_url = temp.url.clone();
    let ca_pem = match layout.tls {
        true => Some(std::fs::read_to_string(&ca_file).map_err(|e| {
            DeployError::step("bootstrap server", None, format!("cannot read the platform's CA {}: {e}", ca_file.display()))
        })?),
        false => None,
    };
    let admin_password = temp.admin_password.clone();
    let fail = |step: &'static str| move |e: anyhow::Error| DeployError::step(step, None, e.to_string());
    let token = temp.issue_token("deploy", atoll_core::Role::Admin, "atoll deploy").await.map_err(fail("bootstrap server"))?;
    let join = temp.join_token().await.map_err(fail("bootstrap server"))?;
    let client = Client::new(&temp_url, Some(token.clone()));

    let mut servers = vec![temp_url.clone()];
    servers.extend(layout.server_urls());
    let agents = Join { servers, token: join.clone(), ca_fingerprint: layout.tls.then(|| temp.ca_fingerprint.clone()) };
    progress(&format!("agents: starting on {} node(s) as {}", layout.nodes.len(), launcher.describe()));
    for node in &layout.nodes {
        launcher.start_agent(layout, node, &agents).await?;
    }
    wait_agents(&client, layout).await?;
    steps.done("agents");

    progress(&format!("precheck and prepare ({} profile)", opts.profile));
    let names = layout.nodes.iter().map(|n| n.name.clone()).collect();
    let task: TaskView = client
        .post("/api/v1/hosts/prepare", &PrepareRequest { hosts: names, profile: Some(opts.profile.clone()), data_dir: None, owner: None })
        .await
        .map_err(|e| DeployError::step("prepare", None, e.to_string()))?;
    follow(&client, &task.id, "prepare", Duration::from_secs(300)).await?;
    steps.done("prepare");

    progress(&format!("MetaDB: cluster {METADB_CLUSTER} on every node, with a proxy each"));
    let existing: Result<serde_json::Value, _> = client.get(&format!("/api/v1/clusters/{METADB_CLUSTER}")).await;
    if existing.is_err() {
        let task: TaskView = client
            .post("/api/v1/clusters", &layout.metadb_spec())
            .await
            .map_err(|e| DeployError::step("MetaDB cluster", None, e.to_string()))?;
        follow(&client, &task.id, "MetaDB cluster", Duration::from_secs(600)).await?;
    } else {
        progress(&format!("MetaDB: cluster {METADB_CLUSTER} exists (an earlier run made it); finishing its task"));
        finish_cluster_task(&client).await?;
    }
    let password = atoll_server::auth::random_token();
    let admin: ClusterCredentials = client
        .get(&format!("/api/v1/clusters/{METADB_CLUSTER}/credentials"))
        .await
        .map_err(|e| DeployError::step("MetaDB account", None, e.to_string()))?;
    create_account(&admin, &password, ca_pem.as_deref()).await?;
    steps.done("metadb");

    progress("moving the platform onto MetaDB");
    stop.cancel();
    temp.wait().await.map_err(fail("bootstrap server"))?;
    // This process is a client from now on, not the bootstrap server.
    atoll_client::present_no_certificate();
    let first = &layout.nodes[0];
    let from = SqlStore::open_sqlite(&meta_file).await.map_err(|e| DeployError::step("copy MetaDB", None, e.to_string()))?;
    let to = SqlStore::connect(&with_ca(&layout.metadb_url(first, &password), ca_pem.as_ref().map(|_| ca_file.as_path())))
        .await
        .map_err(|e| DeployError::step("copy MetaDB", Some(&first.name), format!("cannot reach MetaDB through the node's proxy: {e}")))?;
    let copied = from.copy_into(&to).await.map_err(|e| DeployError::step("copy MetaDB", None, e.to_string()))?;
    atoll_store::SettingStore::put_setting(&to, atoll_server::METADB_CLUSTER_SETTING, METADB_CLUSTER)
        .await
        .map_err(|e| DeployError::step("copy MetaDB", None, e.to_string()))?;
    from.close().await;
    to.close().await;
    tracing::info!(?copied, "MetaDB copied");
    let key =
        std::fs::read(&key_file).map_err(|e| DeployError::step("copy MetaDB", None, format!("cannot read {}: {e}", key_file.display())))?;
    steps.done("copy");
    Ok(Bootstrapped { key, metadb_password: password, token, join_token: join, admin_password, ca_pem, steps: steps.done })
}

/// The second phase: a server per node on MetaDB, through its node's
/// proxy; then the post-deployment check. Starting a server that already
/// runs with the same configuration changes nothing.
pub async fn start_servers(
    layout: &Layout,
    launcher: &mut dyn Launcher,
    opts: &Options,
    boot: &Bootstrapped,
    progress: Progress<'_>,
) -> Result<Deployed, DeployError> {
    let mut steps = Steps::new();
    if let Some(pem) = &boot.ca_pem {
        // This process's clients (a resumed deploy has no server of its own
        // that would have trusted it).
        atoll_client::trust_platform_ca(pem).map_err(|e| DeployError::step("servers", None, e.to_string()))?;
    }
    progress(&format!("servers: one per node, each on MetaDB through its own proxy (port {})", layout.metadb_proxy.rw_port));
    for node in &layout.nodes {
        let config = ServerConfig {
            listen: SocketAddr::new(node.address, layout.server_port),
            metadb_url: Some(layout.metadb_url(node, &boot.metadb_password)),
            metadb_read_url: Some(layout.metadb_replica_url(node, &boot.metadb_password)),
            monitordb_url: Some(layout.monitordb_url(node, &boot.metadb_password)),
            public_url: Some(layout.server_url(node)),
            ..opts.server_config(layout)
        };
        launcher.start_server(node, config, &boot.key, boot.ca_pem.as_deref()).await?;
    }
    let platform = Client::over(&Servers::new(&layout.server_urls()), Some(boot.token.clone()), Duration::from_secs(5));
    wait_servers(&platform, layout).await?;
    launcher.settle_agents(layout, &boot.join(layout)?).await?;
    wait_agents(&platform, layout).await?;
    steps.done("servers");

    progress("check: every server, agent, MetaDB node and proxy");
    check(&platform).await?;
    steps.done("check");
    let mut all = boot.steps.clone();
    all.extend(steps.done);
    Ok(Deployed {
        servers: layout.server_urls(),
        admin_password: boot.admin_password.clone(),
        token: boot.token.clone(),
        ca_pem: boot.ca_pem.clone(),
        steps: all,
    })
}

/// The newest task on MetaDB's cluster, seen to its end: a task cut off by
/// an earlier run's end is resumed by the bootstrap server's executor; one
/// that failed has its failed steps retried.
async fn finish_cluster_task(client: &Client) -> Result<(), DeployError> {
    let fail = |e: atoll_client::ClientError| DeployError::step("MetaDB cluster", None, e.to_string());
    let tasks: Vec<TaskView> = client.get(&format!("/api/v1/tasks?target={METADB_CLUSTER}&limit=1")).await.map_err(fail)?;
    let Some(task) = tasks.into_iter().next() else { return Ok(()) };
    if task.status == TaskStatus::Failed {
        let full: TaskView = client.get(&format!("/api/v1/tasks/{}", task.id)).await.map_err(fail)?;
        for step in full.steps.iter().filter(|s| s.status == atoll_core::StepStatus::Failed) {
            let _: TaskView =
                client.post(&format!("/api/v1/tasks/{}/steps/{}/retry", task.id, step.key), &serde_json::json!({})).await.map_err(fail)?;
        }
    }
    follow(client, &task.id, "MetaDB cluster", Duration::from_secs(600)).await
}

/// Every node's agent registered, online, with its clock offset measured
/// (so the precheck can judge it).
async fn wait_agents(client: &Client, layout: &Layout) -> Result<(), DeployError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hosts: Vec<HostListItem> = client.get("/api/v1/hosts").await.unwrap_or_default();
        let missing: Vec<&str> = layout
            .nodes
            .iter()
            .filter(|n| !hosts.iter().any(|h| h.name == n.name && h.status == HostStatus::Online && h.clock_offset_ms.is_some()))
            .map(|n| n.name.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DeployError::step(
                "agents",
                Some(&missing.join(", ")),
                "the agent did not come online within 60 s: is its address reachable from the platform, and its port free? see its log",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every node's server up, announced, and one of them leading.
async fn wait_servers(client: &Client, layout: &Layout) -> Result<(), DeployError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(v) = client.get::<PlatformView>("/api/v1/platform").await {
            let live: Vec<&str> = v.servers.iter().filter(|s| s.live).map(|s| s.url.as_str()).collect();
            let missing: Vec<String> = layout.server_urls().into_iter().filter(|u| !live.contains(&u.as_str())).collect();
            if missing.is_empty() && v.leader.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DeployError::step(
                    "servers",
                    None,
                    format!(
                        "not up within 60 s: {}; see those nodes' server logs",
                        if missing.is_empty() { "no leader".into() } else { missing.join(", ") }
                    ),
                ));
            }
        } else if Instant::now() > deadline {
            return Err(DeployError::step("servers", None, "no server answered within 60 s; see the nodes' server logs"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The seed's post-deployment check (`atoll check`), given a minute for
/// the last reports to arrive; its failed items are the error.
async fn check(client: &Client) -> Result<(), DeployError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = client.get::<PlatformCheckView>("/api/v1/platform/check").await;
        if let Ok(v) = &last
            && v.worst != CheckStatus::Fail
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let why = match last {
                Ok(v) => v
                    .results
                    .iter()
                    .filter(|r| r.status == CheckStatus::Fail)
                    .map(|r| format!("{}: {} ({})", r.item, r.measured, r.fix.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(e) => e.to_string(),
            };
            return Err(DeployError::step("check", None, why));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn follow(client: &Client, id: &str, step: &'static str, timeout: Duration) -> Result<(), DeployError> {
    let deadline = Instant::now() + timeout;
    loop {
        let t: TaskView = client.get(&format!("/api/v1/tasks/{id}")).await.map_err(|e| DeployError::step(step, None, e.to_string()))?;
        if t.status.is_settled() {
            if t.status == TaskStatus::Succeeded {
                return Ok(());
            }
            let errors: Vec<String> = t.steps.iter().filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.key))).collect();
            return Err(DeployError::step(step, None, format!("task {id} ended {}: {}", t.status, errors.join("; "))));
        }
        if Instant::now() > deadline {
            return Err(DeployError::step(step, None, format!("task {id} still running after {timeout:?}; `atoll task show {id}`")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// MetaDB's database and the servers' account, made as the cluster's
/// administrator on its first server directly (over TLS verifying
/// `ca_pem` on a TLS platform, whose account then requires TLS).
async fn create_account(admin: &ClusterCredentials, password: &str, ca_pem: Option<&str>) -> Result<(), DeployError> {
    let fail = |e: sqlx::Error| DeployError::step("MetaDB account", None, e.to_string());
    let mut options = sqlx::mysql::MySqlConnectOptions::new()
        .host(&admin.direct_host)
        .port(admin.direct_port)
        .username(&admin.user)
        .password(&admin.password);
    if let Some(pem) = ca_pem {
        options = options.ssl_mode(sqlx::mysql::MySqlSslMode::VerifyCa).ssl_ca_from_pem(pem.as_bytes().to_vec());
    }
    let mut conn = options.connect().await.map_err(fail)?;
    // A copy cut off by an earlier run's end left part of the rows:
    // servers start on MetaDB only after a whole copy, so nothing else is
    // in there, and it starts afresh.
    conn.execute(sqlx::AssertSqlSafe(atoll_engine::sql::drop_database(METADB_DATABASE))).await.map_err(fail)?;
    let statements = atoll_engine::sql::metadb_database(METADB_DATABASE, METADB_USER, password, ca_pem.is_some())
        .into_iter()
        .chain(atoll_engine::sql::monitordb_database(MONITORDB_DATABASE, METADB_USER));
    for statement in statements {
        conn.execute(sqlx::AssertSqlSafe(statement)).await.map_err(fail)?;
    }
    conn.close().await.map_err(fail)?;
    Ok(())
}

//! `atoll agent`: the only process that touches a host. It registers the
//! host with the platform, heartbeats with fresh facts, and performs the
//! probes and operations the server asks for.

pub mod confine;
pub mod db;
pub mod facts;
mod files;
mod http;
pub mod identity;
mod link;
mod metrics;
pub mod ops;
pub mod packages;
pub mod probe;
pub mod process;
pub mod proxies;
pub mod redact;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use identity::Identity;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URLs of platform servers, e.g. `http://127.0.0.1:8080`; the
    /// agent learns the others from the platform and keeps them in
    /// `DATA_DIR/servers.json`, so it finds one after a restart too.
    pub servers: Vec<String>,
    /// Needed only the first time this host joins.
    pub join_token: Option<String>,
    /// Where the agent's API listens; its IP is the host's address.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The only directory below which the agent makes, gives away and
    /// removes directories and runs database servers (see [`confine`]).
    pub data_root: PathBuf,
    pub name: Option<String>,
    pub zone: Option<String>,
    /// The host's region (an IDC or a site); `None` keeps the platform's
    /// record (the default region for a new host).
    pub region: Option<String>,
    /// How often the host's facts are read (sent when changed, and every
    /// five minutes).
    pub facts_every: Duration,
    /// The platform's CA, when the servers are HTTPS: a file, or the
    /// fingerprint to check the one the servers offer against (see [`tls`]).
    pub ca_file: Option<PathBuf>,
    pub ca_fingerprint: Option<String>,
}

/// Runs the agent until `shutdown`, or until the platform says this host
/// was removed.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let root =
        confine::DataRoot::new(&config.data_root, &config.data_dir).map_err(|e| anyhow::anyhow!("{e}; choose it with --data-root"))?;
    let identity = Identity::load_or_create(&config.data_dir)?;
    let db = db::Supervisor::open(&config.data_dir, root.clone()).await?;
    let servers = link::known_servers(&config);
    let tls = tls::AgentTls::setup(&config, &servers).await?.map(Arc::new);
    let proxies = proxies::Proxies::open(&config.data_dir, servers.clone(), shutdown.clone())?;
    let journal = ops::Journal::open(&config.data_dir, root.clone())?
        .with_db(db.clone())
        .with_proxies(proxies.clone())
        .with_packages(packages::Packages::new(&config.data_dir, servers.clone()));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}; choose another --listen address", config.listen))?;
    tracing::info!(host_id = %identity.host_id, listen = %config.listen, data_root = %root.path().display(), servers = ?servers.all(), "agent starting");

    let state = http::AgentState::new(identity.clone(), journal, db, proxies, config.listen.ip());
    let app = http::router(state.clone());
    let stop = shutdown.clone().cancelled_owned();
    let server = match &tls {
        // Mutual TLS: the platform's servers prove themselves with a
        // certificate of its CA (see `http::require_server`).
        Some(t) => {
            let roots = atoll_client::platform_roots().ok_or_else(|| anyhow::anyhow!("the platform's CA is not trusted"))?;
            let tls_config = atoll_pki::live_server_config(Arc::clone(&t.live), Some(&roots))?;
            let listener = atoll_pki::TlsListener::new(listener, Arc::new(tls_config))?;
            let service = app.into_make_service_with_connect_info::<atoll_pki::TlsPeer>();
            tokio::spawn(async move { axum::serve(listener, service).with_graceful_shutdown(stop).await })
        }
        None => tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop).await }),
    };

    let result = link::Link::new(config, servers, identity, state, tls).run(shutdown.clone()).await;
    shutdown.cancel();
    server.await??;
    result
}

/// SIGKILLs every process whose command line mentions `dir`: the
/// `mariadbd`s started for servers whose directories lie inside it. For
/// tooling that owns `dir` outright (the playground, test harnesses): an
/// agent itself never kills a database it was not asked to stop.
pub fn kill_processes_under(dir: &std::path::Path) {
    for pid in processes_under(dir) {
        let _ = process::signal(pid, process::Signal::Kill);
    }
}

/// The processes (other than this one) whose command line mentions `dir`:
/// a database server by its data directory, a proxy by its state directory.
pub fn processes_under(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&needle)
        })
        .collect()
}

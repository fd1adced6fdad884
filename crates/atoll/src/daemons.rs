//! `atoll server` and `atoll agent`: long-running processes that stop
//! cleanly on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::cli::Res;
use crate::output::Exit;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML config file; flags and ATOLL_* variables override its keys.
    #[arg(long, env = "ATOLL_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "ATOLL_LISTEN")]
    listen: Option<SocketAddr>,
    #[arg(long, env = "ATOLL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "ATOLL_METADB_URL", hide_env_values = true)]
    metadb_url: Option<String>,
    /// A MetaDB node to read from when MetaDB has no quorum (its last
    /// state, marked stale); changes are refused meanwhile.
    #[arg(long, env = "ATOLL_METADB_READ_URL", hide_env_values = true)]
    metadb_read_url: Option<String>,
    #[arg(long, env = "ATOLL_PUBLIC_URL")]
    public_url: Option<String>,
    #[arg(long, env = "ATOLL_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    #[arg(long, env = "ATOLL_OFFLINE_AFTER_MS")]
    offline_after_ms: Option<u64>,
    #[arg(long, env = "ATOLL_SESSION_IDLE_S")]
    session_idle_s: Option<u64>,
    #[arg(long, env = "ATOLL_LOGIN_MAX_FAILURES")]
    login_max_failures: Option<u32>,
    #[arg(long, env = "ATOLL_LOGIN_WINDOW_S")]
    login_window_s: Option<u64>,
    #[arg(long, env = "ATOLL_LOGIN_LOCK_S")]
    login_lock_s: Option<u64>,
    #[arg(long, env = "ATOLL_TASK_LEASE_MS")]
    task_lease_ms: Option<u64>,
    #[arg(long, env = "ATOLL_LEADER_LEASE_MS")]
    leader_lease_ms: Option<u64>,
    #[arg(long, env = "ATOLL_HOST_DATA_DIR")]
    host_data_dir: Option<String>,
    #[arg(long, env = "ATOLL_PROFILE")]
    profile: Option<String>,
    /// The key that seals database passwords; every server of a platform
    /// must use the same one (default DATA_DIR/platform.key).
    #[arg(long, env = "ATOLL_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// MonitorDB: sqlite://PATH or mysql://… (default DATA_DIR/monitor.db).
    #[arg(long, env = "ATOLL_MONITORDB_URL", hide_env_values = true)]
    monitordb_url: Option<String>,
    /// How often every agent, proxy and server is scraped (default 10000).
    #[arg(long, env = "ATOLL_SCRAPE_INTERVAL_MS")]
    scrape_interval_ms: Option<u64>,
    #[arg(long, env = "ATOLL_SCRAPE_TIMEOUT_MS")]
    scrape_timeout_ms: Option<u64>,
    /// Days raw samples are kept (default 8).
    #[arg(long, env = "ATOLL_RETENTION_RAW_DAYS")]
    retention_raw_days: Option<u32>,
    /// Days minute rollups are kept (default 30).
    #[arg(long, env = "ATOLL_RETENTION_MINUTE_DAYS")]
    retention_minute_days: Option<u32>,
    /// Days hour rollups are kept (default 400).
    #[arg(long, env = "ATOLL_RETENTION_HOUR_DAYS")]
    retention_hour_days: Option<u32>,
    /// Disk MonitorDB may take, in MiB (default 0: no limit but the disk's).
    #[arg(long, env = "ATOLL_MONITORDB_MAX_MB")]
    monitordb_max_mb: Option<u64>,
    /// Seconds between MonitorDB writes (default 60).
    #[arg(long, env = "ATOLL_MONITORDB_FLUSH_S")]
    monitordb_flush_s: Option<u64>,
    /// Seconds before a firing alarm is notified again (default 14400).
    #[arg(long, env = "ATOLL_ALERT_REPEAT_S")]
    alert_repeat_s: Option<u64>,
    /// Also send every scraped sample to this Prometheus remote-write URL.
    #[arg(long, env = "ATOLL_REMOTE_WRITE_URL")]
    remote_write_url: Option<String>,
    /// SMTP relay for email alert channels (HOST:PORT).
    #[arg(long, env = "ATOLL_SMTP_SERVER")]
    smtp_server: Option<String>,
    /// Sender of alert mail (default atoll@localhost).
    #[arg(long, env = "ATOLL_SMTP_FROM")]
    smtp_from: Option<String>,
    /// Plain HTTP, and replication in clear. By default the API and
    /// console serve HTTPS with a certificate of the platform's own CA (its
    /// certificate is in DATA_DIR/ca.pem and at /ca.pem) or the certificate
    /// and key given below, and every other link is TLS too.
    #[arg(long, env = "ATOLL_NO_TLS")]
    no_tls: bool,
    /// Your own certificate (PEM, with its chain) for the API and console.
    #[arg(long, env = "ATOLL_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    #[arg(long, env = "ATOLL_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Largest package upload in MiB (default 2048).
    #[arg(long)]
    package_max_mb: Option<u64>,
    /// Seconds a package upload may take (default 3600).
    #[arg(long)]
    package_upload_timeout_s: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// URLs of platform servers (repeat the flag or separate with commas);
    /// the agent learns the others from the platform.
    #[arg(long = "server", env = "ATOLL_SERVER", value_delimiter = ',', required = true)]
    servers: Vec<String>,
    /// A file holding the join token, needed the first time this host
    /// joins (`atoll host join-token`). Or put the token in the environment
    /// as ATOLL_JOIN_TOKEN; never on the command line, where `ps` shows it.
    #[arg(long, value_name = "FILE")]
    join_token_file: Option<PathBuf>,
    /// ATOLL_JOIN_TOKEN, taken out of the environment by `main` before any
    /// thread starts, so that no database or proxy the agent runs inherits it.
    #[arg(skip)]
    pub env_join_token: Option<String>,
    /// Address of the agent's API; its IP is the host's address.
    #[arg(long, env = "ATOLL_AGENT_LISTEN")]
    listen: SocketAddr,
    #[arg(long, env = "ATOLL_AGENT_DATA_DIR", default_value = "/var/lib/atoll-agent")]
    data_dir: PathBuf,
    /// The directory below which the platform may place databases on this
    /// host: the agent makes, gives to the database user and removes
    /// directories only there (never a system path, never through a
    /// symbolic link).
    #[arg(long, env = "ATOLL_AGENT_DATA_ROOT", default_value = atoll_agent::confine::DEFAULT_DATA_ROOT)]
    data_root: PathBuf,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    zone: Option<String>,
    /// The host's region (an IDC or a site: a group of zones); default: the
    /// `default` region. A cluster lives in one region.
    #[arg(long)]
    region: Option<String>,
    /// Seconds between readings of the host's facts; they are sent when
    /// they changed, and every 5 minutes.
    #[arg(long, default_value_t = 30)]
    facts_every_s: u64,
    /// The platform's CA fingerprint (`sha256:…`, printed by the server and
    /// in the command `atoll host add` prints): the agent fetches the CA
    /// from the server and keeps it only if it matches. For HTTPS servers.
    #[arg(long, env = "ATOLL_CA_FINGERPRINT")]
    ca_fingerprint: Option<String>,
    /// The platform's CA certificate (the server's DATA_DIR/ca.pem), instead
    /// of a fingerprint.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

pub async fn serve(a: ServerArgs) -> Res {
    init_logging("info,sqlx=warn,tower_http=warn");
    let mut c = match &a.config {
        Some(p) => atoll_server::ServerConfig::from_file(p)?,
        None => atoll_server::ServerConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { c.$f = v; } )* };
    }
    set!(
        listen,
        data_dir,
        heartbeat_interval_ms,
        offline_after_ms,
        session_idle_s,
        login_max_failures,
        login_window_s,
        login_lock_s,
        task_lease_ms,
        leader_lease_ms,
        host_data_dir,
        profile,
        scrape_interval_ms,
        scrape_timeout_ms,
        retention_raw_days,
        retention_minute_days,
        retention_hour_days,
        monitordb_max_mb,
        monitordb_flush_s,
        alert_repeat_s,
        package_max_mb,
        package_upload_timeout_s
    );
    // Settings that are optional in the config too: a flag replaces them.
    macro_rules! set_opt {
        ($($f:ident),*) => { $( if a.$f.is_some() { c.$f = a.$f; } )* };
    }
    set_opt!(
        monitordb_url,
        remote_write_url,
        smtp_server,
        smtp_from,
        metadb_url,
        metadb_read_url,
        public_url,
        secret_key_file,
        tls_cert_file,
        tls_key_file
    );
    if a.no_tls {
        c.tls = false;
    }
    let shutdown = shutdown_on_signal();
    let running = atoll_server::start(c.clone(), shutdown).await?;
    println!("atoll server listening on {} (console and API; platform CA {})", running.url, running.ca_fingerprint);
    if let Some(pw) = &running.admin_password {
        println!("first start: created user admin with password {pw}");
        println!("it is shown only this once; you will be asked to change it at first login");
    }
    running.wait().await?;
    Ok(Exit::Ok)
}

pub async fn agent(a: AgentArgs) -> Res {
    init_logging("info");
    let join_token = match &a.join_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the join token file {}: {e}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => a.env_join_token,
    };
    let config = atoll_agent::AgentConfig {
        servers: a.servers,
        join_token,
        listen: a.listen,
        data_dir: a.data_dir,
        data_root: a.data_root,
        name: a.name,
        zone: a.zone,
        region: a.region,
        facts_every: Duration::from_secs(a.facts_every_s.max(1)),
        ca_file: a.ca_file,
        ca_fingerprint: a.ca_fingerprint,
    };
    atoll_agent::run(config, shutdown_on_signal()).await?;
    Ok(Exit::Ok)
}

/// Cancels the returned token on the first SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        t.cancel();
    });
    token
}

pub fn init_logging(default: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::registry()
        .with(filter)
        // Colours only on a terminal: services log to files and journals.
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
        .with(atoll_server::logcount::CountErrors)
        .try_init();
}

//! `atoll proxy`: runs the MySQL proxy of one cluster (the OBProxy/ODP
//! role). One cluster per process; run one process per cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::Res;
use crate::daemons;
use crate::output::{Exit, fail};

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Platform server URL; repeat for several servers (asked in turn).
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    /// An operator/admin API token or the cluster's proxy token.
    #[arg(long, env = "ATOLL_PROXY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the token from this file's first line.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The platform's CA certificate, for `https://` servers (agents pass
    /// the one they pinned).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// The certificate to present to `https://` servers (a TLS platform
    /// takes the proxy token over mutual TLS only); agents pass their
    /// host's. Read again when it changes.
    #[arg(long, value_name = "FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,
    /// The key of `--cert-file`.
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,
    /// The cluster to route.
    #[arg(long)]
    cluster: String,
    /// Read-write port: every connection goes to the writer.
    #[arg(long)]
    rw_listen: SocketAddr,
    /// Read-only port: connections balanced over healthy nodes.
    #[arg(long)]
    ro_listen: SocketAddr,
    /// `/metrics` and `/status`.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Read-only connections prefer nodes of this zone.
    #[arg(long)]
    zone: Option<String>,
    /// Keeps the last routing table, to route when started while the platform is down.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 500)]
    probe_interval_ms: u64,
    /// Failed probes in a row before a node counts as down (its writer
    /// role left, its connections closed); one client's failed connect
    /// only makes the prober look at once.
    #[arg(long, default_value_t = 3)]
    down_after_probes: u32,
    /// Connecting to a node and receiving its greeting.
    #[arg(long, default_value_t = 2000)]
    connect_timeout_ms: u64,
    /// Client connections over both ports; beyond it clients get error 1040.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Client connections from one address; beyond it clients get error 1040.
    #[arg(long, default_value_t = 1000)]
    max_connections_per_ip: usize,
    /// Time a client has, from the node's greeting, to finish the MySQL
    /// handshake; a silent client is closed and its node connection freed.
    #[arg(long, default_value_t = 10_000)]
    pre_auth_timeout_ms: u64,
    /// Close connections idle this long (as MariaDB's wait_timeout); 0: never.
    #[arg(long, default_value_t = 28_800)]
    idle_timeout_s: u64,
    /// How long new read-write connections wait for a writer (planned move, failover).
    #[arg(long, default_value_t = 10_000)]
    hold_timeout_ms: u64,
    /// How long connections may go on after SIGTERM.
    #[arg(long, default_value_t = 5000)]
    grace_ms: u64,
    /// Threads relaying client connections, each owning its own
    /// [default: one per core, at most 4].
    #[arg(long, env = "ATOLL_PROXY_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
}

pub async fn run(a: ProxyArgs) -> Res {
    daemons::init_logging("info,sqlx=warn");
    let token = match (a.token, &a.token_file) {
        (Some(t), _) => t,
        (None, Some(p)) => std::fs::read_to_string(p)
            .map_err(|e| fail(Exit::Error, format!("cannot read --token-file {}: {e}", p.display())))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
        (None, None) => String::new(),
    };
    let mut c = atoll_proxy::ProxyConfig::new(a.servers, token, a.cluster, a.rw_listen, a.ro_listen);
    if let Some(p) = &a.ca_file {
        let pem = std::fs::read_to_string(p).map_err(|e| fail(Exit::Error, format!("cannot read --ca-file {}: {e}", p.display())))?;
        atoll_pki::certs(&pem, "the CA file").map_err(|e| fail(Exit::Error, format!("--ca-file {}: {e}", p.display())))?;
        c.ca_file = Some(p.clone());
    }
    if let (Some(cert), Some(key)) = (a.cert_file, a.key_file) {
        for p in [&cert, &key] {
            std::fs::metadata(p).map_err(|e| fail(Exit::Error, format!("cannot read {}: {e}", p.display())))?;
        }
        c.identity_files = Some((cert, key));
    }
    c.admin_listen = a.admin_listen;
    c.zone = a.zone;
    c.state_dir = a.state_dir;
    c.probe_interval = Duration::from_millis(a.probe_interval_ms);
    c.connect_timeout = Duration::from_millis(a.connect_timeout_ms);
    c.max_connections = a.max_connections;
    c.max_connections_per_ip = a.max_connections_per_ip;
    c.pre_auth_timeout = Duration::from_millis(a.pre_auth_timeout_ms);
    c.down_after_probes = a.down_after_probes;
    c.idle_timeout = (a.idle_timeout_s > 0).then(|| Duration::from_secs(a.idle_timeout_s));
    c.hold_timeout = Duration::from_millis(a.hold_timeout_ms);
    c.grace = Duration::from_millis(a.grace_ms);
    if let Some(n) = a.threads {
        c.relay_threads = n.into();
    }
    let running = atoll_proxy::start(c, daemons::shutdown_on_signal()).await?;
    println!("atoll proxy listening: read-write {} read-only {}", running.rw_addr, running.ro_addr);
    running.wait().await;
    Ok(Exit::Ok)
}

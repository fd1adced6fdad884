//! What one proxy process is told: which platform to ask, which cluster to
//! route, where to listen. Checked completely before anything binds, so a
//! mistake is reported at once and all together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// One cluster per process: several clusters are several processes (each
/// with its own ports and state file).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Platform server URLs, asked in turn.
    pub servers: Vec<String>,
    /// The platform's CAs (a PEM file), the only authorities trusted for
    /// `https://` servers; without it, the system's roots. Read again when
    /// it changes (a CA rotation).
    pub ca_file: Option<std::path::PathBuf>,
    /// The certificate and key (PEM files) presented to `https://` servers:
    /// a TLS platform takes the proxy token only over mutual TLS. Read
    /// again when the certificate file changes (renewal).
    pub identity_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// An operator/admin API token or the cluster's proxy token.
    pub token: String,
    pub cluster: String,
    pub rw_listen: SocketAddr,
    pub ro_listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    /// Read-only connections prefer backends in this zone.
    pub zone: Option<String>,
    /// Where the last routing table is kept (`routing-<cluster>.json`), so
    /// a proxy that starts while the platform is down can still route.
    pub state_dir: Option<PathBuf>,
    pub probe_interval: Duration,
    /// Failed probes in a row before a backend counts as down (its
    /// connections closed, the writer left). One failure is not enough: a
    /// probe that times out once on a loaded node, or a blip between this
    /// proxy and the node, would move this proxy's writes while the other
    /// proxies stay. After a failure the prober looks again at a quarter
    /// of the interval, so a dead node is down after about
    /// `probe_interval + (n - 1) * probe_interval / 4`.
    pub down_after_probes: u32,
    /// Connecting to a backend and receiving its first byte.
    pub connect_timeout: Duration,
    /// Client connections over both ports together.
    pub max_connections: usize,
    /// Client connections from one address (both ports together). The
    /// proxy opens a backend connection for every client it accepts, so
    /// one client must not be able to take them all.
    pub max_connections_per_ip: usize,
    /// From the backend's greeting, how long a client has to finish the
    /// MySQL handshake (authentication, and TLS if it asks for it). A
    /// client that connects and stays silent would otherwise hold a
    /// backend connection (a slot of the node's `max_connections`) as
    /// long as the node lets it.
    pub pre_auth_timeout: Duration,
    /// Close a connection when the client sends no statement for this
    /// long (the server has answered and waits for the client; a long
    /// query is not idle). `None`: never. The client gets error 4031
    /// (`ER_CLIENT_INTERACTION_TIMEOUT`, as MySQL sends for
    /// `wait_timeout`) where the protocol allows: not inside TLS or
    /// compression, which the proxy cannot write into.
    pub idle_timeout: Option<Duration>,
    /// How long a new read-write connection waits for a writer: during a
    /// planned writer move, or while the probes confirm that a writer it
    /// could not connect to is down. Then it is refused.
    pub hold_timeout: Duration,
    /// How long existing connections may go on after SIGTERM.
    pub grace: Duration,
    /// Threads that relay client connections, each owning its connections
    /// on a single-threaded reactor (see [`crate::relay`]).
    pub relay_threads: usize,
}

/// One relay thread per core, at most four: as HAProxy sizes its threads.
/// Measured here (2 cores shared with the database and sysbench, 5-round
/// runs): one thread relayed 0.98× HAProxy's point selects at 0.80× its
/// CPU per query, two 1.06× at 0.91×: a lone thread queues the clients it
/// is not serving.
pub fn default_relay_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl ProxyConfig {
    /// A configuration with the documented defaults.
    pub fn new(servers: Vec<String>, token: String, cluster: String, rw_listen: SocketAddr, ro_listen: SocketAddr) -> Self {
        Self {
            servers,
            ca_file: None,
            identity_files: None,
            token,
            cluster,
            rw_listen,
            ro_listen,
            admin_listen: None,
            zone: None,
            state_dir: None,
            probe_interval: Duration::from_millis(500),
            down_after_probes: 3,
            connect_timeout: Duration::from_millis(2000),
            max_connections: 4096,
            max_connections_per_ip: 1000,
            pre_auth_timeout: Duration::from_secs(10),
            // MariaDB's own wait_timeout default.
            idle_timeout: Some(Duration::from_secs(8 * 3600)),
            hold_timeout: Duration::from_millis(10_000),
            grace: Duration::from_secs(5),
            relay_threads: default_relay_threads(),
        }
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.servers.is_empty() {
            problems.push("no platform server: pass --server URL (several times for several servers)".to_string());
        }
        for s in &self.servers {
            if !(s.starts_with("http://") || s.starts_with("https://")) {
                problems.push(format!("server {s:?} is not an http:// or https:// URL"));
            }
        }
        if self.token.trim().is_empty() {
            problems.push("no token: pass --token, --token-file or set ATOLL_PROXY_TOKEN".into());
        }
        if self.cluster.is_empty() || !self.cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problems.push(format!("cluster name {:?} is not a cluster name (letters, digits, '-', '_')", self.cluster));
        }
        let mut addrs = vec![("--rw-listen", self.rw_listen), ("--ro-listen", self.ro_listen)];
        if let Some(a) = self.admin_listen {
            addrs.push(("--admin-listen", a));
        }
        for (i, (n1, a1)) in addrs.iter().enumerate() {
            for (n2, a2) in &addrs[i + 1..] {
                if a1 == a2 && a1.port() != 0 {
                    problems.push(format!("{n1} and {n2} are both {a1}: each needs its own address"));
                }
            }
        }
        if self.probe_interval < Duration::from_millis(50) {
            problems.push(format!("--probe-interval-ms {} is below 50 ms", self.probe_interval.as_millis()));
        }
        if self.connect_timeout.is_zero() {
            problems.push("--connect-timeout-ms must be above 0".into());
        }
        if self.max_connections == 0 {
            problems.push("--max-connections must be above 0".into());
        }
        if self.max_connections_per_ip == 0 {
            problems.push("--max-connections-per-ip must be above 0".into());
        }
        if !(1..=100).contains(&self.down_after_probes) {
            problems.push(format!("--down-after-probes {} is not between 1 and 100", self.down_after_probes));
        }
        if self.pre_auth_timeout < Duration::from_millis(100) {
            problems.push(format!("--pre-auth-timeout-ms {} is below 100 ms", self.pre_auth_timeout.as_millis()));
        }
        if !(1..=256).contains(&self.relay_threads) {
            problems.push(format!("--threads {} is not between 1 and 256", self.relay_threads));
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            problems.push("--idle-timeout-s must be above 0 (0 on the command line: no timeout)".into());
        }
        if problems.is_empty() { Ok(()) } else { Err(ConfigError(problems)) }
    }

    /// `--state-dir/routing-<cluster>.json`.
    pub fn state_file(&self) -> Option<PathBuf> {
        self.state_dir.as_ref().map(|d| d.join(format!("routing-{}.json", self.cluster)))
    }

    /// A probe must end before the next one is due.
    pub fn probe_timeout(&self) -> Duration {
        self.probe_interval.mul_f64(0.8)
    }
}

#[derive(Debug, Error)]
#[error("invalid proxy configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProxyConfig {
        ProxyConfig::new(
            vec!["http://127.0.0.1:8080".into()],
            "t".into(),
            "orders".into(),
            "127.0.0.1:6033".parse().unwrap_or_else(|_| unreachable!()),
            "127.0.0.1:6034".parse().unwrap_or_else(|_| unreachable!()),
        )
    }

    #[test]
    fn defaults_are_valid() {
        assert!(cfg().validate().is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let mut c = cfg();
        c.servers = vec!["127.0.0.1:8080".into()];
        c.token = " ".into();
        c.ro_listen = c.rw_listen;
        c.max_connections = 0;
        c.max_connections_per_ip = 0;
        c.down_after_probes = 0;
        c.pre_auth_timeout = Duration::ZERO;
        let Err(e) = c.validate() else { panic!("accepted") };
        assert_eq!(e.0.len(), 7, "{e}");
        assert!(e.to_string().contains("--rw-listen and --ro-listen"));
    }
}

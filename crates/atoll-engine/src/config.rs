//! Rendering one server's `my.cnf`.
//!
//! The file is complete and self-contained: the agent writes it to
//! `DIR/my.cnf` and starts `mariadbd --defaults-file=DIR/my.cnf`, so nothing
//! from the host's own MariaDB configuration leaks in. It is rendered the same
//! way every time from the same input, so a diff between two renderings shows
//! exactly what a change would do.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use atoll_core::replication::MAX_DOMAIN;
use atoll_core::{Durability, Ports};
use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::params::{self, normalize_key};

/// Where `mariadb-galera` finds the Galera provider on Debian.
pub const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

/// Failure detection tuned down from the defaults: a killed node stalls
/// commits cluster-wide for about 5 s instead of 10 s. The three `evs`
/// timeouts only work together (the provider refuses to start otherwise:
/// keepalive below a third of suspect, install ≤ inactive); PT1S and lower
/// made healthy nodes suspect each other under load. The last two only
/// speed up what follows the agent's `evs.evict` of a dead node (checking
/// for evicted members, retransmitting the join of the new view); they do
/// not make anyone suspect sooner. Measured here: a killed writer's
/// commit stall after eviction went from ≈ 1.0 s to ≈ 0.1 s.
pub const EVS_TIMEOUTS: &str = "evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;evs.keepalive_period=PT0.5S;evs.install_timeout=PT4S;evs.inactive_check_period=PT0.1S;evs.join_retrans_period=PT0.1S";

/// Write-set cache per node: small, since a node that misses more than this
/// needs a full state transfer anyway and small hosts run several nodes.
pub const GCACHE_SIZE: &str = "64M";

/// What one server's config is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    pub cluster: String,
    pub server: String,
    /// Written as `server_id`. Galera itself ignores it; asynchronous
    /// replication between clusters later needs one value per cluster.
    pub server_id: u32,
    /// The IP the server binds, e.g. `127.0.0.11`.
    pub address: String,
    pub ports: Ports,
    /// The Galera segment: the index of the server's zone.
    pub segment: u8,
    /// `IP:gcomm_port` of every server of the cluster, this one included.
    pub cluster_address: Vec<String>,
    /// The server's directory (absolute): data, socket, pid, log, tmp inside.
    pub dir: String,
    pub durability: Durability,
    /// User overrides, keyed as the user wrote them (checked again here).
    pub params: BTreeMap<String, String>,
    /// Where the engine build lives on the host; `None`: the system
    /// packages, with their compiled-in paths and [`PROVIDER`].
    #[serde(default)]
    pub build: Option<BuildPaths>,
    /// TLS with the platform's certificates for clients, Galera's group
    /// traffic and incremental transfers, and full state transfers (rsync
    /// through stunnel): the agent writes [`TLS_FILES`] into `dir`.
    #[serde(default)]
    pub tls: bool,
    /// Binary log and GTIDs for replication between clusters; `None` for a
    /// cluster made before clusters kept one (no standby can follow it).
    #[serde(default)]
    pub replication: Option<ReplicationConfig>,
}

/// What asynchronous replication between clusters (a primary and its
/// standbys) needs of every node: each logs what it commits, Galera's
/// write sets included, under one GTID domain per cluster, so a standby
/// can follow any node of its primary and continue on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// The cluster's number, written as its `server_id` and GTID domain:
    /// the same on every node of a cluster, distinct between the clusters
    /// of a pair (a replica skips events carrying its own `server_id`).
    pub domain: u32,
    /// A standby: no account but the replication applier (and the
    /// platform's) may write.
    pub read_only: bool,
}

/// The GTID domain a node's own, unreplicated writes get: distinct from
/// every cluster domain, and per node (derived from its name).
pub fn node_domain(domain: u32, server: &str) -> u32 {
    // FNV-1a: stable across builds, unlike the std hasher.
    let h = server.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    1_000_000 + (domain % 4_000) * 1_000 + h % 1_000
}

/// The CA, certificate and key of a TLS server, in its directory.
pub const TLS_FILES: [&str; 3] = ["ca.pem", "server.crt", "server.key"];

/// The absolute paths of a package build on one host, from its facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildPaths {
    pub basedir: String,
    /// The Galera provider library inside the build.
    pub galera: String,
    /// `lc_messages_dir`, when the build carries its own messages.
    pub messages_dir: Option<String>,
}

/// `host:port`, with brackets for IPv6 hosts as Galera expects.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Characters that may appear in an address written into `my.cnf`.
fn address_chars(s: &str, brackets: bool) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-') || (brackets && matches!(c, '[' | ']')))
}

/// Everything wrong with the input apart from its parameters, all at once.
fn input_problems(c: &ConfigInput) -> Vec<String> {
    let mut p = Vec::new();
    if !atoll_core::valid_name(&c.cluster) {
        p.push(format!("cluster name {:?} is invalid", c.cluster));
    }
    if !atoll_core::valid_name(&c.server) {
        p.push(format!("server name {:?} is invalid", c.server));
    }
    if c.server_id == 0 {
        p.push("server_id must be at least 1 (0 disables binary logging as a source)".into());
    }
    if let Some(r) = c.replication.filter(|r| r.domain == 0 || r.domain > MAX_DOMAIN) {
        p.push(format!("replication domain {} is out of range 1-{MAX_DOMAIN}", r.domain));
    }
    if !address_chars(&c.address, false) {
        p.push(format!("address {:?} is not an IP address or host name", c.address));
    }
    let ports = c.ports.all();
    if ports.contains(&0) || ports.iter().collect::<BTreeSet<_>>().len() != ports.len() {
        p.push(format!("ports {ports:?} must be four distinct non-zero ports (sql, gcomm, ist, sst)"));
    }
    if !safe_path(&c.dir) {
        p.push(format!("directory {:?} must be an absolute path other than / without spaces, quotes, #, [, ], ; or ,", c.dir));
    }
    if let Some(b) = &c.build {
        for (what, path) in [("basedir", Some(&b.basedir)), ("galera library", Some(&b.galera)), ("messages dir", b.messages_dir.as_ref())]
        {
            if let Some(path) = path.filter(|p| !safe_path(p)) {
                p.push(format!("engine build {what} {path:?} must be an absolute path without spaces, quotes, #, [, ], ; or ,"));
            }
        }
    }
    if c.cluster_address.is_empty() {
        p.push("cluster_address is empty: list every server's IP:gcomm_port, this one included".into());
    }
    let mut seen = BTreeSet::new();
    for a in &c.cluster_address {
        if !address_chars(a, true) || !a.contains(':') {
            p.push(format!("cluster address {a:?} is not IP:PORT"));
        }
        if !seen.insert(a.as_str()) {
            p.push(format!("cluster address {a} is listed twice"));
        }
    }
    let me = host_port(&c.address, c.ports.gcomm);
    if !c.cluster_address.is_empty() && !seen.contains(me.as_str()) {
        p.push(format!("cluster_address does not list this server ({me}): list every server, this one included"));
    }
    p
}

/// An absolute path other than `/` that can be written into `my.cnf`
/// unquoted.
fn safe_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.starts_with('/') && !path.chars().any(|ch| ch.is_whitespace() || ch.is_control() || "#[]\"'`\\;,".contains(ch))
}

/// Accumulates `key=value` lines, taking a user's value for a key in place
/// of Atoll's default and remembering which user keys are written.
struct Writer<'a> {
    out: String,
    /// Canonical key → the user's value.
    params: BTreeMap<String, &'a str>,
    written: BTreeSet<String>,
}

impl Writer<'_> {
    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// A key Atoll owns: written as is.
    fn fixed(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.out, "{key}={value}");
    }

    /// A default the user may override.
    fn overridable(&mut self, key: &str, value: &str) {
        let value = match self.params.get(key) {
            Some(v) => {
                self.written.insert(key.to_owned());
                *v
            }
            None => value,
        };
        self.param(key, value);
    }

    fn param(&mut self, key: &str, value: &str) {
        // `log_bin=ON` would name the files "ON.000001"; the bare option
        // enables the binary log with the default base name.
        if key == "log_bin" && value.eq_ignore_ascii_case("ON") {
            self.line("log_bin");
        } else {
            let _ = writeln!(self.out, "{key}={value}");
        }
    }
}

/// Renders the complete `my.cnf` for one server.
pub fn render(c: &ConfigInput) -> Result<String, EngineError> {
    let problems = input_problems(c);
    if !problems.is_empty() {
        return Err(EngineError::InvalidInput(problems));
    }
    let problems = params::check(&c.params, c.durability);
    if !problems.is_empty() {
        return Err(EngineError::InvalidParams(problems));
    }

    let dir = c.dir.trim_end_matches('/');
    let user_params = c.params.iter().map(|(k, v)| (normalize_key(k), v.as_str())).collect();
    let mut w = Writer { out: String::new(), params: user_params, written: BTreeSet::new() };
    let addr = c.address.as_str();
    let ports = c.ports;

    w.line(&format!("# written by atoll: cluster {} server {}, durability {}; edits are overwritten", c.cluster, c.server, c.durability));
    w.line("[mysqld]");
    w.fixed("datadir", &format!("{dir}/data"));
    w.fixed("socket", &format!("{dir}/mariadbd.sock"));
    w.fixed("pid-file", &format!("{dir}/mariadbd.pid"));
    w.fixed("tmpdir", &format!("{dir}/tmp"));
    w.fixed("log-error", &format!("{dir}/error.log"));
    w.fixed("bind-address", addr);
    w.fixed("port", &ports.sql.to_string());
    w.fixed("user", "mysql");
    w.fixed("server_id", &c.replication.map_or(c.server_id, |r| r.domain).to_string());
    if let Some(b) = &c.build {
        w.line("# engine build");
        w.fixed("basedir", b.basedir.trim_end_matches('/'));
        if let Some(m) = &b.messages_dir {
            w.fixed("lc_messages_dir", m);
        }
    }

    w.line("# galera requirements");
    w.overridable("binlog_format", "ROW");
    w.fixed("default_storage_engine", "InnoDB");
    w.fixed("innodb_autoinc_lock_mode", "2");

    w.line("# galera");
    w.fixed("wsrep_on", "ON");
    w.fixed("wsrep_provider", c.build.as_ref().map_or(PROVIDER, |b| b.galera.as_str()));
    w.fixed("wsrep_cluster_name", &c.cluster);
    w.fixed("wsrep_cluster_address", &format!("gcomm://{}", c.cluster_address.join(",")));
    w.fixed("wsrep_node_address", &host_port(addr, ports.gcomm));
    w.fixed("wsrep_node_name", &c.server);
    w.fixed("wsrep_sst_method", "rsync");
    w.fixed("wsrep_sst_receive_address", &host_port(addr, ports.sst));
    let [ca, cert, key] = TLS_FILES.map(|f| format!("{dir}/{f}"));
    let tls = if c.tls { format!(";socket.ssl=YES;socket.ssl_ca={ca};socket.ssl_cert={cert};socket.ssl_key={key}") } else { String::new() };
    w.fixed(
        "wsrep_provider_options",
        &format!(
            "\"gmcast.listen_addr=tcp://{};ist.recv_addr={};gcache.size={GCACHE_SIZE};gmcast.segment={};{EVS_TIMEOUTS}{tls}\"",
            host_port(addr, ports.gcomm),
            host_port(addr, ports.ist),
            c.segment
        ),
    );
    if c.tls {
        // Read by clients' TLS and by the rsync state transfer, which then
        // runs through stunnel and verifies the peer's chain.
        w.line("# TLS with the platform's certificates");
        w.fixed("ssl_ca", &ca);
        w.fixed("ssl_cert", &cert);
        w.fixed("ssl_key", &key);
    }

    if let Some(r) = c.replication {
        // From the cluster's first start: Galera keeps the GTID domain a
        // cluster was bootstrapped with, and nodes whose binary logs began
        // at different times number the same transactions differently.
        w.line("# binary log and GTIDs: a standby cluster replicates from any node of its primary");
        w.overridable("log_bin", "mariadb-bin");
        w.fixed("log_slave_updates", "ON");
        w.fixed("relay_log", "relay-bin");
        w.fixed("wsrep_gtid_mode", "ON");
        w.fixed("wsrep_gtid_domain_id", &r.domain.to_string());
        w.fixed("gtid_domain_id", &node_domain(r.domain, &c.server).to_string());
        // The platform starts the channel on one node at a time: a node
        // that restarts (or rejoins) never resumes a channel by itself,
        // which could make two appliers.
        w.fixed("skip_slave_start", "ON");
        w.overridable("binlog_expire_logs_seconds", "604800");
        if r.read_only {
            w.line("# a standby: applications read only");
            w.fixed("read_only", "ON");
            w.written.insert("read_only".into());
        }
    }

    w.line("# sizing for a small machine");
    w.overridable("innodb_buffer_pool_size", "64M");
    w.overridable("max_connections", "200");
    w.overridable("performance_schema", "OFF");
    w.line("# statement latency for the platform's charts (information_schema.QUERY_RESPONSE_TIME);");
    w.line("# a build without the plugin logs an error and runs on");
    w.fixed("plugin_load_add", "query_response_time");
    w.fixed("loose-query_response_time_stats", "ON");

    match c.durability {
        Durability::Durable => {
            w.line("# durability profile: durable (commits are on disk before they are acknowledged)");
            w.overridable("innodb_flush_log_at_trx_commit", "1");
            if w.params.contains_key("log_bin") || c.replication.is_some() {
                w.overridable("sync_binlog", "1");
            }
        }
        Durability::Fast => {
            w.line("# durability profile: fast (commits acknowledged before they reach disk)");
            w.overridable("innodb_flush_log_at_trx_commit", "2");
        }
    }
    // Torn pages corrupt a node beyond what Galera can repair without a full
    // state transfer, so even the fast profile keeps the doublewrite buffer.
    w.fixed("innodb_doublewrite", "1");

    let rest: Vec<(String, &str)> = w.params.iter().filter(|(k, _)| !w.written.contains(*k)).map(|(k, v)| (k.clone(), *v)).collect();
    if !rest.is_empty() {
        w.line("# parameters set for this cluster");
        for (key, value) in rest {
            w.param(&key, value);
        }
    }

    w.line("[sst]");
    w.fixed("sst-log-archive", "0");
    Ok(w.out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn input(n: u8, durability: Durability) -> ConfigInput {
        ConfigInput {
            cluster: "orders".into(),
            server: format!("orders-{n}"),
            server_id: 1,
            address: format!("127.0.0.1{n}"),
            ports: Ports::default(),
            segment: n - 1,
            cluster_address: (1..=3).map(|i| format!("127.0.0.1{i}:4567")).collect(),
            dir: format!("/var/lib/atoll/db/orders-{n}/"),
            durability,
            params: BTreeMap::new(),
            build: None,
            tls: false,
            replication: None,
        }
    }

    #[test]
    fn replication_logs_every_commit_under_the_cluster_domain() {
        let mut c = input(2, Durability::Durable);
        c.replication = Some(ReplicationConfig { domain: 7, read_only: true });
        c.params.insert("read_only".into(), "OFF".into());
        let text = render(&c).unwrap();
        assert_unique_keys(&text);
        let l = lines(&text);
        for required in [
            "server_id=7",
            "log_bin=mariadb-bin",
            "log_slave_updates=ON",
            "wsrep_gtid_mode=ON",
            "wsrep_gtid_domain_id=7",
            "read_only=ON",
            "sync_binlog=1",
            "binlog_expire_logs_seconds=604800",
        ] {
            assert!(l.contains(&required), "missing {required:?} in:\n{text}");
        }
        // Node domains: per node, never a cluster domain.
        let d2 = node_domain(7, "orders-2");
        assert!(l.contains(&format!("gtid_domain_id={d2}").as_str()), "{text}");
        assert!(d2 > MAX_DOMAIN && d2 != node_domain(7, "orders-1"));
        // A primary: writable, and the user's basename is kept.
        c.replication = Some(ReplicationConfig { domain: 7, read_only: false });
        c.params.insert("log_bin".into(), "binlog".into());
        let text = render(&c).unwrap();
        assert!(text.contains("\nlog_bin=binlog\n") && text.contains("\nread_only=OFF\n"), "{text}");
        assert_unique_keys(&text);
        c.replication = Some(ReplicationConfig { domain: 0, read_only: false });
        assert!(render(&c).unwrap_err().to_string().contains("replication domain 0"));
    }

    #[test]
    fn tls_covers_clients_group_traffic_and_state_transfers() {
        let plain = render(&input(1, Durability::Durable)).unwrap();
        assert!(!plain.contains("ssl"), "{plain}");
        let text = render(&ConfigInput { tls: true, ..input(1, Durability::Durable) }).unwrap();
        let dir = "/var/lib/atoll/db/orders-1";
        for line in [format!("ssl_ca={dir}/ca.pem"), format!("ssl_cert={dir}/server.crt"), format!("ssl_key={dir}/server.key")] {
            assert!(text.lines().any(|l| l == line), "missing {line}: {text}");
        }
        let options = text.lines().find(|l| l.starts_with("wsrep_provider_options=")).unwrap();
        assert!(
            options.contains(&format!(
                ";socket.ssl=YES;socket.ssl_ca={dir}/ca.pem;socket.ssl_cert={dir}/server.crt;socket.ssl_key={dir}/server.key\""
            )),
            "{options}"
        );
        // In [mysqld], before [sst]: the state transfer reads them there.
        assert!(text.find("ssl_key=").unwrap() < text.find("[sst]").unwrap());
    }

    #[test]
    fn a_package_build_names_its_own_files() {
        let mut c = input(1, Durability::Durable);
        assert!(render(&c).unwrap().contains(&format!("wsrep_provider={PROVIDER}\n")));
        c.build = Some(BuildPaths {
            basedir: "/var/lib/atoll-agent/engines/mariadb-11.8/".into(),
            galera: "/var/lib/atoll-agent/engines/mariadb-11.8/lib/galera/libgalera_smm.so".into(),
            messages_dir: Some("/var/lib/atoll-agent/engines/mariadb-11.8/share/mysql".into()),
        });
        let text = render(&c).unwrap();
        assert_unique_keys(&text);
        assert!(text.contains("basedir=/var/lib/atoll-agent/engines/mariadb-11.8\n"), "{text}");
        assert!(text.contains("lc_messages_dir=/var/lib/atoll-agent/engines/mariadb-11.8/share/mysql\n"), "{text}");
        assert!(text.contains("wsrep_provider=/var/lib/atoll-agent/engines/mariadb-11.8/lib/galera/libgalera_smm.so\n"), "{text}");
        c.build = Some(BuildPaths { basedir: "/opt/my build".into(), galera: "lib/x.so".into(), messages_dir: None });
        let err = render(&c).unwrap_err().to_string();
        assert!(err.contains("basedir \"/opt/my build\"") && err.contains("galera library \"lib/x.so\""), "{err}");
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    /// No key may appear twice in a group: MariaDB would take the last one
    /// silently, hiding a default or an override.
    fn assert_unique_keys(text: &str) {
        let mut seen = BTreeSet::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            if l.starts_with('[') {
                seen.clear();
                continue;
            }
            let key = l.split('=').next().unwrap();
            assert!(seen.insert(key.to_owned()), "{key} written twice in:\n{text}");
        }
    }

    #[test]
    fn three_node_config_has_every_required_line() {
        let text = render(&input(2, Durability::Durable)).unwrap();
        let l = lines(&text);
        assert_eq!(l[0], "# written by atoll: cluster orders server orders-2, durability durable; edits are overwritten");
        assert_eq!(l[1], "[mysqld]");
        for required in [
            "datadir=/var/lib/atoll/db/orders-2/data",
            "socket=/var/lib/atoll/db/orders-2/mariadbd.sock",
            "pid-file=/var/lib/atoll/db/orders-2/mariadbd.pid",
            "tmpdir=/var/lib/atoll/db/orders-2/tmp",
            "log-error=/var/lib/atoll/db/orders-2/error.log",
            "bind-address=127.0.0.12",
            "port=3306",
            "user=mysql",
            "server_id=1",
            "binlog_format=ROW",
            "default_storage_engine=InnoDB",
            "innodb_autoinc_lock_mode=2",
            "wsrep_on=ON",
            "wsrep_provider=/usr/lib/galera/libgalera_smm.so",
            "wsrep_cluster_name=orders",
            "wsrep_cluster_address=gcomm://127.0.0.11:4567,127.0.0.12:4567,127.0.0.13:4567",
            "wsrep_node_address=127.0.0.12:4567",
            "wsrep_node_name=orders-2",
            "wsrep_sst_method=rsync",
            "wsrep_sst_receive_address=127.0.0.12:4444",
            "wsrep_provider_options=\"gmcast.listen_addr=tcp://127.0.0.12:4567;ist.recv_addr=127.0.0.12:4568;gcache.size=64M;gmcast.segment=1;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;evs.keepalive_period=PT0.5S;evs.install_timeout=PT4S;evs.inactive_check_period=PT0.1S;evs.join_retrans_period=PT0.1S\"",
            "innodb_buffer_pool_size=64M",
            "max_connections=200",
            "performance_schema=OFF",
            "plugin_load_add=query_response_time",
            "loose-query_response_time_stats=ON",
            "innodb_flush_log_at_trx_commit=1",
            "innodb_doublewrite=1",
            "[sst]",
            "sst-log-archive=0",
        ] {
            assert!(l.contains(&required), "missing {required:?} in:\n{text}");
        }
        // [sst] comes last, after every mysqld setting.
        assert_eq!(&l[l.len() - 2..], ["[sst]", "sst-log-archive=0"]);
        // No binary log asked for: no sync_binlog either.
        assert!(!text.contains("sync_binlog"));
        assert!(!text.contains("log_bin"));
        assert_unique_keys(&text);
    }

    #[test]
    fn evs_timeouts_always_travel_together() {
        for n in 1..=3 {
            let text = render(&input(n, Durability::Fast)).unwrap();
            let options = text.lines().find(|l| l.starts_with("wsrep_provider_options=")).unwrap();
            assert!(options.contains(EVS_TIMEOUTS), "{options}");
            assert!(options.contains(&format!("gmcast.segment={}", n - 1)));
            assert_eq!(text.matches("evs.").count(), 6);
        }
    }

    #[test]
    fn fast_profile_differs_only_where_it_should() {
        let durable = render(&input(1, Durability::Durable)).unwrap();
        let fast = render(&input(1, Durability::Fast)).unwrap();
        let (d, f) = (lines(&durable), lines(&fast));
        assert_eq!(d.len(), f.len());
        let diff: Vec<(&str, &str)> = d.iter().zip(&f).filter(|(a, b)| a != b).map(|(a, b)| (*a, *b)).collect();
        assert_eq!(
            diff,
            vec![
                (
                    "# written by atoll: cluster orders server orders-1, durability durable; edits are overwritten",
                    "# written by atoll: cluster orders server orders-1, durability fast; edits are overwritten"
                ),
                (
                    "# durability profile: durable (commits are on disk before they are acknowledged)",
                    "# durability profile: fast (commits acknowledged before they reach disk)"
                ),
                ("innodb_flush_log_at_trx_commit=1", "innodb_flush_log_at_trx_commit=2"),
            ]
        );
    }

    #[test]
    fn durable_binary_log_is_synced() {
        let mut c = input(1, Durability::Durable);
        c.params.insert("log-bin".into(), "ON".into());
        let text = render(&c).unwrap();
        assert!(text.lines().any(|l| l == "log_bin"), "{text}");
        assert!(text.lines().any(|l| l == "sync_binlog=1"), "{text}");
        assert_unique_keys(&text);

        let mut c = input(1, Durability::Fast);
        c.params.insert("log_bin".into(), "mysql-bin".into());
        let text = render(&c).unwrap();
        assert!(text.lines().any(|l| l == "log_bin=mysql-bin"), "{text}");
        assert!(!text.contains("sync_binlog"));
    }

    #[test]
    fn user_params_override_defaults_in_place() {
        let mut c = input(1, Durability::Fast);
        c.params.insert("innodb-buffer-pool-size".into(), "1G".into());
        c.params.insert("max_connections".into(), "50".into());
        c.params.insert("innodb_flush_log_at_trx_commit".into(), "0".into());
        c.params.insert("wsrep_slave_threads".into(), "4".into());
        c.params.insert("read_only".into(), "ON".into());
        let text = render(&c).unwrap();
        let l = lines(&text);
        assert!(l.contains(&"innodb_buffer_pool_size=1G"));
        assert!(l.contains(&"max_connections=50"));
        assert!(l.contains(&"innodb_flush_log_at_trx_commit=0"));
        assert!(!text.contains("=64M\n"), "{text}");
        let at = l.iter().position(|x| *x == "# parameters set for this cluster").unwrap();
        assert_eq!(&l[at + 1..at + 3], ["read_only=ON", "wsrep_slave_threads=4"]);
        assert_unique_keys(&text);
    }

    #[test]
    fn bad_params_and_managed_keys_are_refused() {
        let mut c = input(1, Durability::Durable);
        c.params.insert("wsrep_cluster_address".into(), "gcomm://".into());
        c.params.insert("innodb_flush_log_at_trx_commit".into(), "2".into());
        let Err(EngineError::InvalidParams(p)) = render(&c) else { panic!("expected invalid params") };
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|p| p.message.contains("managed by atoll")));
        assert!(p.iter().any(|p| p.message.contains("fast durability profile")));
    }

    #[test]
    fn bad_input_is_refused_with_every_reason() {
        let mut c = input(1, Durability::Durable);
        c.cluster = "Orders".into();
        c.dir = "relative/dir".into();
        c.cluster_address = vec!["127.0.0.12:4567".into(), "127.0.0.12:4567".into()];
        c.server_id = 0;
        let err = render(&c).unwrap_err();
        let EngineError::InvalidInput(p) = &err else { panic!("{err}") };
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(err.to_string().contains("does not list this server (127.0.0.11:4567)"), "{err}");

        let mut c = input(1, Durability::Durable);
        c.dir = "/".into();
        assert!(render(&c).is_err());
        c.dir = "/srv/db\n[client]".into();
        assert!(render(&c).is_err());
    }

    #[test]
    fn ipv6_addresses_get_brackets() {
        let mut c = input(1, Durability::Durable);
        c.address = "fd00::11".into();
        c.cluster_address = vec!["[fd00::11]:4567".into(), "[fd00::12]:4567".into(), "[fd00::13]:4567".into()];
        let text = render(&c).unwrap();
        assert!(text.contains("bind-address=fd00::11\n"));
        assert!(text.contains("wsrep_node_address=[fd00::11]:4567\n"));
        assert!(text.contains("gmcast.listen_addr=tcp://[fd00::11]:4567;ist.recv_addr=[fd00::11]:4568;"));
    }

    #[test]
    fn input_round_trips_as_json() {
        let c = input(3, Durability::Fast);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<ConfigInput>(&json).unwrap(), c);
    }
}

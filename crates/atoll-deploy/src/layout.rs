//! Where the platform's parts go: the nodes, and the ports of the platform's
//! own processes on each (the server, the agent, the MetaDB node and the
//! proxy in front of it). Pure: checked before anything starts.

use std::collections::BTreeSet;
use std::net::IpAddr;

use atoll_core::{ClusterSpec, Durability, Ports, ProxySpec, ServerSpec};

use crate::DeployError;

/// The cluster that holds MetaDB; managed by the platform like any other,
/// but protected from deletion and from changes that would break it.
pub const METADB_CLUSTER: &str = "atoll-meta";
/// The database and account the servers use on it.
pub const METADB_DATABASE: &str = "atoll";
pub const METADB_USER: &str = "atoll";
/// MonitorDB's database on the same Galera cluster, apart from MetaDB's.
pub const MONITORDB_DATABASE: &str = "atoll_monitor";

/// One platform node: it runs a server, an agent, a MetaDB node and a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub address: IpAddr,
    pub zone: String,
}

/// The nodes and the ports every node uses.
#[derive(Debug, Clone)]
pub struct Layout {
    pub nodes: Vec<Node>,
    pub server_port: u16,
    pub agent_port: u16,
    /// The MetaDB node's ports (kept off the defaults, which the first
    /// user cluster on these hosts will want).
    pub metadb_ports: Ports,
    pub metadb_proxy: ProxySpec,
    /// TLS between every process: the API over HTTPS, agents pinned to
    /// the platform's CA with mutual TLS, MetaDB's replication, state
    /// transfers and the servers' connections to it over TLS.
    pub tls: bool,
}

impl Layout {
    pub fn new(nodes: Vec<Node>) -> Self {
        Self {
            nodes,
            server_port: 8080,
            agent_port: 7070,
            metadb_ports: Ports { sql: 3307, gcomm: 4577, ist: 4578, sst: 4454 },
            metadb_proxy: ProxySpec { enabled: true, rw_port: 6133, ro_port: 6134, admin_port: 6135 },
            tls: true,
        }
    }

    /// Every problem at once, each naming the node and the fix.
    pub fn validate(&self) -> Result<(), DeployError> {
        let mut problems = Vec::new();
        if self.nodes.len() < 3 {
            problems.push(format!(
                "{} node(s) given: a highly available platform needs at least three, so that two keep a majority when one is lost",
                self.nodes.len()
            ));
        }
        if self.nodes.len().is_multiple_of(2) && self.nodes.len() >= 3 {
            problems.push(format!("{} nodes given: use an odd number, or a network split can leave no majority", self.nodes.len()));
        }
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for n in &self.nodes {
            if !atoll_core::valid_name(&n.name) {
                problems.push(format!("node name {:?}: use a lowercase letter, then letters, digits or dashes", n.name));
            }
            if !atoll_core::valid_name(&n.zone) {
                problems.push(format!("node {}: zone {:?}: use a lowercase letter, then letters, digits or dashes", n.name, n.zone));
            }
            if !names.insert(&n.name) {
                problems.push(format!("node name {} is used twice", n.name));
            }
            if !addresses.insert(n.address) {
                problems.push(format!("address {} is given for two nodes: each node is a host of its own", n.address));
            }
        }
        let mut ports: Vec<(u16, &str)> = vec![(self.server_port, "server"), (self.agent_port, "agent")];
        ports.extend(self.metadb_ports.all().into_iter().zip(["MetaDB sql", "MetaDB gcomm", "MetaDB ist", "MetaDB sst"]));
        ports.extend([
            (self.metadb_proxy.rw_port, "proxy rw"),
            (self.metadb_proxy.ro_port, "proxy ro"),
            (self.metadb_proxy.admin_port, "proxy admin"),
        ]);
        let mut seen = BTreeSet::new();
        for (port, what) in &ports {
            if !seen.insert(*port) {
                problems.push(format!("port {port} ({what}) is given twice: each process of a node needs its own"));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(DeployError::Invalid(problems)) }
    }

    pub fn server_url(&self, node: &Node) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", std::net::SocketAddr::new(node.address, self.server_port))
    }

    pub fn server_urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| self.server_url(n)).collect()
    }

    /// MetaDB's cluster: one server per node, each in its node's zone,
    /// durable commits, a proxy per zone (so on every node).
    pub fn metadb_spec(&self) -> ClusterSpec {
        ClusterSpec {
            name: METADB_CLUSTER.into(),
            durability: Durability::Durable,
            servers: self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| ServerSpec {
                    name: format!("{METADB_CLUSTER}-{}", i + 1),
                    zone: n.zone.clone(),
                    host: n.name.clone(),
                    ports: self.metadb_ports,
                })
                .collect(),
            params: Default::default(),
            allow_single_zone: self.nodes.iter().map(|n| &n.zone).collect::<BTreeSet<_>>().len() < 3,
            engine: None,
            proxy: self.metadb_proxy,
            region: None,
            // MetaDB keeps no binary log: it has no standby.
            replication: None,
        }
    }

    /// The node's own MetaDB node, read directly while MetaDB has no
    /// quorum (the proxy then has no writer to send anyone to).
    pub fn metadb_replica_url(&self, node: &Node, password: &str) -> String {
        format!("mysql://{METADB_USER}:{password}@{}/{METADB_DATABASE}", std::net::SocketAddr::new(node.address, self.metadb_ports.sql))
    }

    /// The MetaDB URL a node's server uses: its own node's proxy, which
    /// follows MetaDB's writer.
    pub fn metadb_url(&self, node: &Node, password: &str) -> String {
        format!("mysql://{METADB_USER}:{password}@{}/{METADB_DATABASE}", std::net::SocketAddr::new(node.address, self.metadb_proxy.rw_port))
    }

    /// MonitorDB the same way: replicated by the same cluster, so the
    /// metric history survives a node loss as MetaDB does.
    pub fn monitordb_url(&self, node: &Node, password: &str) -> String {
        format!(
            "mysql://{METADB_USER}:{password}@{}/{MONITORDB_DATABASE}",
            std::net::SocketAddr::new(node.address, self.metadb_proxy.rw_port)
        )
    }
}

/// `url` verifying the server's certificate against the CA in `ca_file`
/// (sqlx reads it at each connection), when there is one.
pub fn with_ca(url: &str, ca_file: Option<&std::path::Path>) -> String {
    match ca_file {
        Some(ca) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            let path: String = ca
                .display()
                .to_string()
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' => char::from(b).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{url}{sep}ssl-mode=VERIFY_CA&ssl-ca={path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, zone: &str) -> Node {
        Node { name: name.into(), address: ip.parse().unwrap(), zone: zone.into() }
    }

    fn three() -> Vec<Node> {
        vec![node("n1", "10.0.0.1", "z1"), node("n2", "10.0.0.2", "z2"), node("n3", "10.0.0.3", "z3")]
    }

    #[test]
    fn three_nodes_make_a_metadb_cluster_with_a_proxy_each() {
        let l = Layout::new(three());
        l.validate().unwrap();
        let spec = l.metadb_spec();
        assert_eq!(spec.servers.len(), 3);
        assert!(spec.servers.iter().all(|s| s.ports.sql == 3307));
        assert!(!spec.allow_single_zone);
        assert_eq!(l.metadb_url(&l.nodes[1], "pw"), "mysql://atoll:pw@10.0.0.2:6133/atoll");
        assert_eq!(l.monitordb_url(&l.nodes[1], "pw"), "mysql://atoll:pw@10.0.0.2:6133/atoll_monitor");
        assert_eq!(l.metadb_replica_url(&l.nodes[1], "pw"), "mysql://atoll:pw@10.0.0.2:3307/atoll");
        assert_eq!(l.server_urls()[2], "https://10.0.0.3:8080");
        let plain = Layout { tls: false, ..l };
        assert_eq!(plain.server_urls()[2], "http://10.0.0.3:8080");
    }

    #[test]
    fn a_ca_file_makes_the_url_verify_it() {
        let url = with_ca("mysql://atoll:pw@10.0.0.2:6133/atoll", Some(std::path::Path::new("/srv/my atoll/ca&1.pem")));
        assert_eq!(url, "mysql://atoll:pw@10.0.0.2:6133/atoll?ssl-mode=VERIFY_CA&ssl-ca=/srv/my%20atoll/ca%261.pem");
        let opts: sqlx::mysql::MySqlConnectOptions = url.parse().unwrap();
        assert!(matches!(opts.get_ssl_mode(), sqlx::mysql::MySqlSslMode::VerifyCa));
        assert_eq!(with_ca("mysql://a@b/c", None), "mysql://a@b/c");
    }

    #[test]
    fn two_nodes_and_clashes_are_refused_with_every_reason() {
        let mut nodes = three();
        nodes.pop();
        let err = Layout::new(nodes).validate().unwrap_err().to_string();
        assert!(err.contains("2 node(s) given") && err.contains("majority"), "{err}");

        let mut nodes = three();
        nodes[2].address = nodes[0].address;
        nodes[1].name = "n1".into();
        let mut l = Layout::new(nodes);
        l.agent_port = l.server_port;
        let err = l.validate().unwrap_err().to_string();
        for want in ["10.0.0.1 is given for two nodes", "node name n1 is used twice", "port 8080 (agent) is given twice"] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}

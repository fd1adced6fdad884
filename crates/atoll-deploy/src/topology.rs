//! The file `atoll deploy` reads: which hosts become platform nodes, how to
//! reach them over SSH, and where things go on them. Pure: parsed and
//! checked, every problem at once, before any host is touched.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::DeployError;
use crate::layout::{Layout, Node};

/// A topology file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Names the local state directory; default: the file's stem.
    name: Option<String>,
    /// Precheck profile (`production` or `sandbox`).
    #[serde(default = "production")]
    profile: String,
    /// Where databases live on every node (MetaDB's and, later, users').
    #[serde(default = "default_data_dir")]
    data_dir: String,
    /// How many hosts the platform will manage: sizes its nodes (the
    /// seed's platform sizing table).
    #[serde(default = "default_managed_hosts")]
    managed_hosts: u32,
    /// Where the deploying machine serves the temporary bootstrap server;
    /// every node must reach it. Default: this machine's address on the
    /// route to the first node, any free port.
    bootstrap_listen: Option<SocketAddr>,
    /// TLS between every process, with the platform's own CA (default);
    /// `false` for a platform on a network trusted as a whole.
    #[serde(default = "yes")]
    tls: bool,
    #[serde(default)]
    ssh: SshFile,
    #[serde(default)]
    ports: PortsFile,
    #[serde(default)]
    nodes: Vec<NodeFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SshFile {
    user: Option<String>,
    port: Option<u16>,
    key: Option<PathBuf>,
    password_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsFile {
    server: Option<u16>,
    agent: Option<u16>,
    metadb: Option<u16>,
    metadb_gcomm: Option<u16>,
    metadb_ist: Option<u16>,
    metadb_sst: Option<u16>,
    proxy_rw: Option<u16>,
    proxy_ro: Option<u16>,
    proxy_admin: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: String,
    /// The address the platform's processes use on this node.
    address: IpAddr,
    zone: Option<String>,
    /// Where Atoll's own files go on the node.
    base_dir: Option<String>,
    /// Where SSH connects, when not `address`.
    ssh_host: Option<String>,
    #[serde(default)]
    ssh: SshFile,
}

/// The authentication one `[ssh]` table chooses, if any.
fn auth_of(s: &SshFile) -> Result<Option<SshAuth>, ()> {
    match (&s.key, &s.password_file) {
        (Some(_), Some(_)) => Err(()),
        (Some(k), None) => Ok(Some(SshAuth::Key(k.clone()))),
        (None, Some(p)) => Ok(Some(SshAuth::PasswordFile(p.clone()))),
        (None, None) => Ok(None),
    }
}

fn yes() -> bool {
    true
}

fn production() -> String {
    "production".into()
}

fn default_managed_hosts() -> u32 {
    10
}

fn default_data_dir() -> String {
    "/var/lib/atoll/db".into()
}

/// Where to find the node's files; all under one directory.
pub const DEFAULT_BASE_DIR: &str = "/var/lib/atoll";

/// How to prove who we are to a node's sshd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshAuth {
    Key(PathBuf),
    /// The password is read from this file (never the topology itself, which
    /// people keep in version control).
    PasswordFile(PathBuf),
}

/// Where and how to reach one node over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    pub known_hosts: PathBuf,
}

impl SshTarget {
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// A node as deploy sees it: the platform's node plus how to reach it.
#[derive(Debug, Clone)]
pub struct RemoteNode {
    pub node: Node,
    pub ssh: SshTarget,
    /// Atoll's own files on the node: `bin/atoll`, the agent's and the
    /// server's state, service specs and logs.
    pub base_dir: String,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub name: String,
    pub profile: String,
    pub data_dir: String,
    pub sizing: atoll_plan::sizing::PlatformSizing,
    pub bootstrap_listen: Option<SocketAddr>,
    pub layout: Layout,
    pub nodes: Vec<RemoteNode>,
}

impl Topology {
    /// Reads and checks `path`; relative paths in it are taken from the
    /// file's directory, `~/` from `home`.
    pub fn load(path: &Path, home: Option<&Path>) -> Result<Self, DeployError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeployError::Invalid(vec![format!("cannot read the topology {}: {e}", path.display())]))?;
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("atoll").to_string();
        Self::parse(&text, &stem, path.parent().unwrap_or(Path::new(".")), home)
    }

    pub fn parse(text: &str, default_name: &str, dir: &Path, home: Option<&Path>) -> Result<Self, DeployError> {
        let file: File = toml::from_str(text).map_err(|e| DeployError::Invalid(vec![format!("the topology is not valid: {e}")]))?;
        let mut problems = Vec::new();
        let name = file.name.clone().unwrap_or_else(|| default_name.to_string());
        if !atoll_core::valid_name(&name) {
            problems.push(format!(
                "name {name:?}: use a lowercase letter, then letters, digits or dashes (it names the local state directory)"
            ));
        }
        if !matches!(file.profile.as_str(), "production" | "sandbox") {
            problems.push(format!("profile {:?}: use \"production\" or \"sandbox\"", file.profile));
        }
        if !file.data_dir.starts_with('/') {
            problems.push(format!("data_dir {:?}: use an absolute path", file.data_dir));
        }
        let sizing = atoll_plan::sizing::platform_sizing(file.managed_hosts);
        if let Err(e) = &sizing {
            problems.push(format!("managed_hosts: {e}"));
        }
        let resolve = |p: &Path| -> PathBuf {
            match (p.strip_prefix("~"), home) {
                (Ok(rest), Some(h)) => h.join(rest),
                _ if p.is_relative() => dir.join(p),
                _ => p.to_path_buf(),
            }
        };
        let mut nodes = Vec::new();
        let mut ssh_endpoints = BTreeSet::new();
        for (i, n) in file.nodes.iter().enumerate() {
            let pick = |f: fn(&SshFile) -> Option<PathBuf>| f(&n.ssh).or_else(|| f(&file.ssh));
            // A node's own choice wins over the defaults'.
            let auth = match [&n.ssh, &file.ssh].iter().find_map(|s| auth_of(s).transpose()) {
                Some(Ok(auth)) => match auth {
                    SshAuth::Key(k) => SshAuth::Key(resolve(&k)),
                    SshAuth::PasswordFile(p) => SshAuth::PasswordFile(resolve(&p)),
                },
                Some(Err(())) => {
                    problems.push(format!("node {}: give either ssh.key or ssh.password_file, not both", n.name));
                    continue;
                }
                None => SshAuth::Key(resolve(Path::new("~/.ssh/id_ed25519"))),
            };
            let base_dir = n.base_dir.clone().unwrap_or_else(|| DEFAULT_BASE_DIR.into());
            if !base_dir.starts_with('/') || base_dir.trim_end_matches('/').is_empty() {
                problems.push(format!("node {}: base_dir {base_dir:?}: use an absolute path other than /", n.name));
            }
            let ssh = SshTarget {
                host: n.ssh_host.clone().unwrap_or_else(|| n.address.to_string()),
                port: n.ssh.port.or(file.ssh.port).unwrap_or(22),
                user: n.ssh.user.clone().or_else(|| file.ssh.user.clone()).unwrap_or_else(|| "root".into()),
                auth,
                known_hosts: resolve(&pick(|s| s.known_hosts.clone()).unwrap_or_else(|| "~/.ssh/known_hosts".into())),
            };
            if !ssh_endpoints.insert((ssh.host.clone(), ssh.port, base_dir.clone())) {
                problems.push(format!("node {}: {} with base_dir {base_dir} is given for two nodes", n.name, ssh.describe()));
            }
            let zone = n.zone.clone().unwrap_or_else(|| format!("z{}", i + 1));
            nodes.push(RemoteNode {
                node: Node { name: n.name.clone(), address: n.address, zone },
                ssh,
                base_dir: base_dir.trim_end_matches('/').to_string(),
            });
        }
        let mut layout = Layout::new(nodes.iter().map(|n| n.node.clone()).collect());
        let p = &file.ports;
        layout.tls = file.tls;
        layout.server_port = p.server.unwrap_or(layout.server_port);
        layout.agent_port = p.agent.unwrap_or(layout.agent_port);
        layout.metadb_ports.sql = p.metadb.unwrap_or(layout.metadb_ports.sql);
        layout.metadb_ports.gcomm = p.metadb_gcomm.unwrap_or(layout.metadb_ports.gcomm);
        layout.metadb_ports.ist = p.metadb_ist.unwrap_or(layout.metadb_ports.ist);
        layout.metadb_ports.sst = p.metadb_sst.unwrap_or(layout.metadb_ports.sst);
        layout.metadb_proxy.rw_port = p.proxy_rw.unwrap_or(layout.metadb_proxy.rw_port);
        layout.metadb_proxy.ro_port = p.proxy_ro.unwrap_or(layout.metadb_proxy.ro_port);
        layout.metadb_proxy.admin_port = p.proxy_admin.unwrap_or(layout.metadb_proxy.admin_port);
        if let Err(DeployError::Invalid(more)) = layout.validate() {
            problems.extend(more);
        }
        match sizing {
            Ok(sizing) if problems.is_empty() => Ok(Self {
                name,
                profile: file.profile,
                data_dir: file.data_dir,
                sizing,
                bootstrap_listen: file.bootstrap_listen,
                layout,
                nodes,
            }),
            _ => Err(DeployError::Invalid(problems)),
        }
    }

    /// Every port a node's processes listen on, with what it is for.
    pub fn ports(&self) -> Vec<(u16, &'static str)> {
        let l = &self.layout;
        vec![
            (l.server_port, "server"),
            (l.agent_port, "agent"),
            (l.metadb_ports.sql, "MetaDB"),
            (l.metadb_ports.gcomm, "MetaDB gcomm"),
            (l.metadb_ports.ist, "MetaDB IST"),
            (l.metadb_ports.sst, "MetaDB SST"),
            (l.metadb_proxy.rw_port, "proxy rw"),
            (l.metadb_proxy.ro_port, "proxy ro"),
            (l.metadb_proxy.admin_port, "proxy admin"),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const THREE: &str = r#"
        profile = "sandbox"
        [ssh]
        port = 2222
        key = "keys/id"
        [[nodes]]
        name = "n1"
        address = "127.0.0.41"
        base_dir = "/tmp/n1"
        [[nodes]]
        name = "n2"
        address = "127.0.0.42"
        zone = "east"
        [nodes.ssh]
        password_file = "~/pw"
        [[nodes]]
        name = "n3"
        address = "127.0.0.43"
        ssh_host = "jump.example"
    "#;

    #[test]
    fn defaults_and_overrides_resolve_per_node() {
        let t = Topology::parse(THREE, "lab", Path::new("/etc/atoll"), Some(Path::new("/root"))).unwrap();
        assert_eq!(t.name, "lab");
        assert_eq!(t.nodes[0].ssh.auth, SshAuth::Key("/etc/atoll/keys/id".into()));
        assert_eq!(t.nodes[0].base_dir, "/tmp/n1");
        assert_eq!(t.nodes[0].node.zone, "z1");
        assert_eq!(t.nodes[1].ssh.auth, SshAuth::PasswordFile("/root/pw".into()));
        assert_eq!(t.nodes[1].node.zone, "east");
        assert_eq!(t.nodes[1].base_dir, DEFAULT_BASE_DIR);
        assert_eq!(t.nodes[2].ssh.describe(), "root@jump.example:2222");
        assert_eq!(t.nodes[2].ssh.known_hosts, PathBuf::from("/root/.ssh/known_hosts"));
        assert_eq!(t.data_dir, "/var/lib/atoll/db");
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("# platform.toml\n").unwrap();
        let end = start + readme[start..].find("```").unwrap();
        let t = Topology::parse(&readme[start..end], "x", Path::new("/"), Some(Path::new("/root"))).unwrap();
        assert_eq!((t.name.as_str(), t.nodes.len(), t.sizing.managed_hosts), ("prod", 3, 50));
        assert_eq!(t.nodes[2].ssh.auth, SshAuth::Key("/root/.ssh/id_ed25519".into()));
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let text = r#"
            profile = "fast"
            data_dir = "db"
            managed_hosts = 1000
            [ports]
            agent = 8080
            [[nodes]]
            name = "N1"
            address = "10.0.0.1"
            base_dir = "/"
            [[nodes]]
            name = "n2"
            address = "10.0.0.1"
        "#;
        let err = Topology::parse(text, "x", Path::new("/"), None).unwrap_err().to_string();
        for want in [
            "profile \"fast\"",
            "data_dir \"db\"",
            "managed_hosts: 1000 managed hosts",
            "node N1: base_dir \"/\"",
            "node name \"N1\"",
            "2 node(s) given",
            "10.0.0.1 is given for two nodes",
            "port 8080 (agent) is given twice",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = Topology::parse("nodes = 3\ncolour = 1", "x", Path::new("/"), None).unwrap_err().to_string();
        assert!(err.contains("not valid"), "{err}");
    }
}

//! How the platform's processes start on a node. The playground and the
//! tests run them as child processes of this machine ([`LocalLauncher`]);
//! `atoll deploy` installs them as services over SSH.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use atoll_server::ServerConfig;

use crate::DeployError;
use crate::layout::{Layout, Node};

#[async_trait]
pub trait Launcher: Send {
    /// How the processes run, for the output ("child processes of this
    /// command", "systemd units").
    fn describe(&self) -> String;
    /// Starts the node's agent, which joins as `join` says.
    async fn start_agent(&mut self, layout: &Layout, node: &Node, join: &Join) -> Result<(), DeployError>;
    /// Puts the platform key and the server's configuration (it holds the
    /// MetaDB password: owner-only files, never the command line) on the
    /// node, and starts the server. The launcher sets the node-local paths.
    /// `ca_pem`: the platform's CA, which MetaDB's certificates come from
    /// (a TLS platform).
    async fn start_server(&mut self, node: &Node, config: ServerConfig, key: &[u8], ca_pem: Option<&str>) -> Result<(), DeployError>;
    /// Once the nodes' servers run: agents are to name only those (the
    /// bootstrap server is gone). Agents that keep running as they were
    /// started move on by themselves; a launcher that keeps service
    /// definitions rewrites them here.
    async fn settle_agents(&mut self, _layout: &Layout, _join: &Join) -> Result<(), DeployError> {
        Ok(())
    }
}

/// How agents join the platform.
#[derive(Debug, Clone)]
pub struct Join {
    /// Every server URL they may talk to.
    pub servers: Vec<String>,
    /// Goes in their environment (`ATOLL_JOIN_TOKEN`), never their argv.
    pub token: String,
    /// On a TLS platform: the CA they pin (`--ca-fingerprint`).
    pub ca_fingerprint: Option<String>,
}

/// The agent's arguments on `node`: every launcher starts it the same way
/// (the join token goes in its environment, `ATOLL_JOIN_TOKEN`).
/// `data_root`: where the agent may place databases (the platform's host
/// data directory); it acts nowhere else.
pub(crate) fn agent_args(layout: &Layout, node: &Node, join: &Join, data_dir: &Path, data_root: &str) -> Vec<String> {
    let mut args = vec![
        "agent".into(),
        "--server".into(),
        join.servers.join(","),
        "--listen".into(),
        std::net::SocketAddr::new(node.address, layout.agent_port).to_string(),
        "--name".into(),
        node.name.clone(),
        "--zone".into(),
        node.zone.clone(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--data-root".into(),
        data_root.to_string(),
    ];
    if let Some(fp) = &join.ca_fingerprint {
        args.extend(["--ca-fingerprint".into(), fp.clone()]);
    }
    args
}

/// A node's server files under `dir`: the configuration (pointing at
/// `dir` and its key file) as TOML, and the paths of the key and config
/// files; the server runs `server --config CONFIG`. With the platform's
/// CA, its MetaDB connections verify it (`metadb-ca.pem`): the server
/// needs it before it can read the CA from MetaDB.
pub(crate) struct ServerFiles {
    pub key_file: PathBuf,
    pub config_file: PathBuf,
    pub config_text: String,
    pub ca_file: Option<(PathBuf, String)>,
}

impl ServerFiles {
    pub(crate) fn new(mut config: ServerConfig, dir: &Path, ca_pem: Option<&str>) -> Result<Self, String> {
        let key_file = dir.join("platform.key");
        config.data_dir = dir.to_path_buf();
        config.secret_key_file = Some(key_file.clone());
        let ca_file = ca_pem.map(|pem| (dir.join("metadb-ca.pem"), pem.to_string()));
        if let Some((path, _)) = &ca_file {
            for url in [&mut config.metadb_url, &mut config.metadb_read_url, &mut config.monitordb_url].into_iter().flatten() {
                *url = crate::layout::with_ca(url, Some(path));
            }
        }
        let config_text = toml::to_string(&config).map_err(|e| e.to_string())?;
        Ok(Self { key_file, config_file: dir.join("atoll.toml"), config_text, ca_file })
    }

    pub(crate) fn args(&self) -> Vec<String> {
        vec!["server".into(), "--config".into(), self.config_file.display().to_string()]
    }
}

/// Which of a node's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Agent,
    Server,
}

struct Spawned {
    /// What runs `exe` (e.g. `ip netns exec NS`), if anything.
    prefix: Vec<OsString>,
    args: Vec<OsString>,
    /// Secrets go to the child's environment, never its argv (`ps`).
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<tokio::process::Child>,
}

/// Child processes of this one, each node's files under `DIR/NODE/`.
/// Each runs in its own process group, so Ctrl-C in a terminal reaches
/// only the parent, which stops them in order.
/// Local nodes keep their databases under `DIR/db` (the host data
/// directory the playground and the tests give the platform).
pub struct LocalLauncher {
    dir: PathBuf,
    exe: PathBuf,
    procs: BTreeMap<(String, Role), Spawned>,
    /// Nodes whose processes run inside a network namespace (tests: a
    /// node that can be cut off the network).
    netns: BTreeMap<String, String>,
}

impl LocalLauncher {
    pub fn new(dir: &Path, exe: PathBuf) -> Self {
        Self { dir: dir.to_path_buf(), exe, procs: BTreeMap::new(), netns: BTreeMap::new() }
    }

    /// Runs `node`'s processes in network namespace `ns` (`ip netns exec`);
    /// what the agent starts (databases, proxies) inherits it.
    pub fn in_netns(&mut self, node: &str, ns: &str) {
        self.netns.insert(node.to_string(), ns.to_string());
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    pub fn pid(&self, node: &str, role: Role) -> Option<u32> {
        self.procs.get(&(node.to_string(), role)).and_then(|s| s.child.as_ref()).and_then(|c| c.id())
    }

    /// SIGKILLs one process (a test's fault); [`Self::restart`] brings it
    /// back with the same arguments, as a service manager would.
    pub async fn kill(&mut self, node: &str, role: Role) {
        if let Some(mut child) = self.procs.get_mut(&(node.to_string(), role)).and_then(|s| s.child.take()) {
            let _ = child.kill().await;
        }
    }

    pub fn restart(&mut self, node: &str, role: Role) -> Result<(), DeployError> {
        let key = (node.to_string(), role);
        let Some(s) = self.procs.get_mut(&key) else {
            return Err(DeployError::step("restart", Some(node), format!("no {role:?} was started on {node}")));
        };
        s.child = Some(spawn(&s.prefix, &self.exe, &s.args, &s.env, &s.log).map_err(|e| DeployError::step("restart", Some(node), e))?);
        Ok(())
    }

    /// SIGTERM to every process of `role`, then waits up to `grace` for
    /// each (SIGKILL after).
    pub async fn stop_all(&mut self, role: Role, grace: std::time::Duration) {
        for ((_, r), s) in self.procs.iter_mut() {
            if *r != role {
                continue;
            }
            if let Some(mut c) = s.child.take() {
                if let Some(pid) = c.id() {
                    let _ = atoll_agent::process::signal(pid, atoll_agent::process::Signal::Term);
                }
                if tokio::time::timeout(grace, c.wait()).await.is_err() {
                    let _ = c.kill().await;
                }
            }
        }
    }

    /// The last line a process wrote, for error messages.
    pub fn last_words(&self, node: &str, role: Role) -> String {
        self.procs
            .get(&(node.to_string(), role))
            .and_then(|s| std::fs::read_to_string(&s.log).ok())
            .and_then(|log| log.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string))
            .unwrap_or_else(|| "no output".into())
    }

    fn launch(&mut self, node: &str, role: Role, args: Vec<OsString>, env: Vec<(String, String)>, log: PathBuf) -> Result<(), DeployError> {
        let prefix: Vec<OsString> = match self.netns.get(node) {
            Some(ns) => ["ip", "netns", "exec", ns.as_str()].map(OsString::from).to_vec(),
            None => Vec::new(),
        };
        let child = spawn(&prefix, &self.exe, &args, &env, &log).map_err(|e| DeployError::step("start", Some(node), e))?;
        self.procs.insert((node.to_string(), role), Spawned { prefix, args, env, log, child: Some(child) });
        Ok(())
    }
}

fn spawn(
    prefix: &[OsString],
    exe: &Path,
    args: &[OsString],
    env: &[(String, String)],
    log: &Path,
) -> Result<tokio::process::Child, String> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = match prefix.split_first() {
        Some((program, rest)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(rest).arg(exe);
            c
        }
        None => tokio::process::Command::new(exe),
    };
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))
}

/// Writes `bytes` to `path` readable by its owner only, from the start.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[async_trait]
impl Launcher for LocalLauncher {
    fn describe(&self) -> String {
        format!("child processes of this command (files under {})", self.dir.display())
    }

    async fn start_agent(&mut self, layout: &Layout, node: &Node, join: &Join) -> Result<(), DeployError> {
        let dir = self.node_dir(&node.name);
        std::fs::create_dir_all(&dir).map_err(|e| DeployError::step("start agent", Some(&node.name), e.to_string()))?;
        let root = self.dir.join("db").display().to_string();
        let args = agent_args(layout, node, join, &dir.join("agent"), &root).into_iter().map(OsString::from).collect();
        let env = vec![("ATOLL_JOIN_TOKEN".to_string(), join.token.clone())];
        self.launch(&node.name, Role::Agent, args, env, dir.join("agent.log"))
    }

    async fn start_server(&mut self, node: &Node, config: ServerConfig, key: &[u8], ca_pem: Option<&str>) -> Result<(), DeployError> {
        let fail = |e: String| DeployError::step("start server", Some(&node.name), e);
        let dir = self.node_dir(&node.name).join("server");
        std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
        let files = ServerFiles::new(config, &dir, ca_pem).map_err(fail)?;
        write_private(&files.key_file, key).map_err(fail)?;
        if let Some((path, pem)) = &files.ca_file {
            write_private(path, pem.as_bytes()).map_err(fail)?;
        }
        write_private(&files.config_file, files.config_text.as_bytes()).map_err(fail)?;
        let args = files.args().into_iter().map(OsString::from).collect();
        let log = self.node_dir(&node.name).join("server.log");
        self.launch(&node.name, Role::Server, args, Vec::new(), log)
    }
}

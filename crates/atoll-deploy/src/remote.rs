//! A node reached over SSH, and the [`Launcher`] that installs the
//! platform's processes there as services (`atoll node …` on the node does
//! the local work; see [`crate::node`]).

use std::path::Path;

use async_trait::async_trait;
use atoll_server::ServerConfig;
use sha2::Digest;

use crate::DeployError;
use crate::launch::{Join, Launcher, ServerFiles, agent_args};
use crate::layout::{Layout, Node};
use crate::node::{NodeDirs, NodeProbe, Service, ServiceSpec, Started};
use crate::ssh::{Session, quote};
use crate::topology::RemoteNode;

pub struct Remote {
    pub spec: RemoteNode,
    pub session: Session,
    pub dirs: NodeDirs,
    /// Whether systemd runs there (from the probe): services become units.
    pub systemd: bool,
}

/// A path as one shell word.
pub(crate) fn q(p: &Path) -> String {
    quote(&p.display().to_string())
}

impl Remote {
    pub fn name(&self) -> &str {
        &self.spec.node.name
    }

    fn fail(&self, step: &'static str, message: impl Into<String>) -> DeployError {
        DeployError::step(step, Some(self.name()), message)
    }

    /// The SHA-256 of the installed binary, if there is one.
    pub async fn installed_sha(&self) -> Result<Option<String>, DeployError> {
        let out = self.session.run(&format!("sha256sum {} 2>/dev/null", q(&self.dirs.bin())), None).await?;
        Ok(out.stdout().split_whitespace().next().filter(|s| s.len() == 64).map(str::to_string))
    }

    /// Streams `local` into a fresh temporary directory on the node and
    /// checks it arrived whole. Returns the path there.
    pub async fn stage(&self, local: &Path, sha: &str) -> Result<String, DeployError> {
        let mut file =
            tokio::fs::File::open(local).await.map_err(|e| self.fail("copy binary", format!("cannot read {}: {e}", local.display())))?;
        let command = "d=$(mktemp -d /tmp/atoll-deploy.XXXXXX) && cat > \"$d/atoll\" && chmod 0755 \"$d/atoll\" && sha256sum \"$d/atoll\"";
        let out = self.session.run(command, Some(&mut file)).await?;
        if out.status != 0 {
            return Err(self.fail("copy binary", format!("cannot copy the binary: {}", out.why())));
        }
        let text = out.stdout();
        let mut words = text.split_whitespace();
        let (got, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default().to_string());
        if got != sha {
            return Err(self.fail("copy binary", format!("the copy's checksum is {got}, not {sha}: the transfer was damaged; run again")));
        }
        Ok(path)
    }

    /// Measures the node with the binary at `bin` (staged or installed).
    pub async fn probe(&self, bin: &str, data_dir: &str, ports: &[u16], extra: &[String]) -> Result<NodeProbe, DeployError> {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut command = format!(
            "exec {} node probe --base {} --address {} --data-dir {} --ports {}",
            quote(bin),
            q(&self.dirs.base),
            self.spec.node.address,
            quote(data_dir),
            ports.join(",")
        );
        for e in extra {
            command.push_str(&format!(" --extra {}", quote(e)));
        }
        let out = self.session.run(&command, None).await?;
        if out.status != 0 {
            let why = out.why();
            let hint = if out.status == 126 || why.contains("Exec format") || why.contains("cannot execute") {
                " (the binary does not run there: is the node's architecture or C library different from this machine's?)"
            } else {
                ""
            };
            return Err(self.fail("probe", format!("{why}{hint}")));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| self.fail("probe", format!("unreadable answer from the node: {e}")))
    }

    /// Puts the staged binary in place (a rename, so running processes
    /// keep the file they run).
    pub async fn install(&self, staged: &str) -> Result<(), DeployError> {
        let bin = self.dirs.bin();
        let command = format!(
            "[ -d {base} ] || mkdir -p -m 0755 {base}; mkdir -p {dir} && cp {staged} {bin}.new && mv -f {bin}.new {bin} && rm -rf \"$(dirname {staged})\"",
            base = q(&self.dirs.base),
            dir = q(bin.parent().unwrap_or(Path::new("/"))),
            staged = quote(staged),
            bin = q(&bin),
        );
        self.session.check("install binary", &command).await.map(|_| ())
    }

    pub async fn unstage(&self, staged: &str) {
        let _ = self.session.run(&format!("rm -rf \"$(dirname {})\"", quote(staged)), None).await;
    }

    /// Writes `bytes` to `path` readable by its owner only from the start.
    pub async fn put_private(&self, path: &Path, bytes: &[u8]) -> Result<(), DeployError> {
        let command = format!(
            "umask 077 && mkdir -p {dir} && cat > {path}.part && mv -f {path}.part {path}",
            dir = q(path.parent().unwrap_or(Path::new("/"))),
            path = q(path),
        );
        let mut input = bytes;
        let out = self.session.run(&command, Some(&mut input)).await?;
        if out.status != 0 {
            return Err(self.fail("write", format!("cannot write {}: {}", path.display(), out.why())));
        }
        Ok(())
    }

    /// Runs `atoll node ARGS` with the installed binary.
    pub async fn node(&self, step: &'static str, args: &str) -> Result<String, DeployError> {
        let out = self.session.check(step, &format!("exec {} node {args} --base {}", q(&self.dirs.bin()), q(&self.dirs.base))).await?;
        Ok(out.stdout())
    }

    /// Installs `spec` for `s` and makes the service run it.
    pub async fn service(&self, s: Service, spec: &ServiceSpec) -> Result<Started, DeployError> {
        let json = serde_json::to_vec_pretty(spec).map_err(|e| self.fail("service", e.to_string()))?;
        self.put_private(&self.dirs.spec(s), &json).await?;
        let out = self.node("start", &format!("start {}", s.as_str())).await?;
        serde_json::from_str(&out).map_err(|e| self.fail("start", format!("unreadable answer from the node: {e}: {out}")))
    }
}

/// The platform's processes as services on nodes reached over SSH.
pub struct SshLauncher {
    pub remotes: Vec<Remote>,
    /// The platform's host data directory: each agent's `--data-root`.
    pub data_root: String,
    /// What this run changed, one line each.
    pub changes: Vec<String>,
}

impl SshLauncher {
    fn remote(&self, node: &Node) -> Result<&Remote, DeployError> {
        self.remotes
            .iter()
            .find(|r| r.spec.node.name == node.name)
            .ok_or_else(|| DeployError::step("start", Some(&node.name), "not in the topology"))
    }

    fn record(&mut self, node: &str, s: Service, started: Started) {
        match started {
            Started::Started => self.changes.push(format!("{node}: {} started", s.as_str())),
            Started::Restarted => self.changes.push(format!("{node}: {} restarted with its new definition", s.as_str())),
            Started::Unchanged => {}
        }
    }

    fn agent_spec(r: &Remote, layout: &Layout, join: &Join, data_root: &str) -> ServiceSpec {
        let node = &r.spec.node;
        ServiceSpec {
            node: node.name.clone(),
            args: agent_args(layout, node, join, &r.dirs.agent(), data_root),
            env: vec![("ATOLL_JOIN_TOKEN".into(), join.token.clone())],
            inputs: String::new(),
        }
    }
}

#[async_trait]
impl Launcher for SshLauncher {
    fn describe(&self) -> String {
        let systemd = self.remotes.iter().filter(|r| r.systemd).map(Remote::name).collect::<Vec<_>>();
        let plain = self.remotes.iter().filter(|r| !r.systemd).map(Remote::name).collect::<Vec<_>>();
        match (systemd.is_empty(), plain.is_empty()) {
            (false, true) => "systemd units".into(),
            (true, _) => "supervised background processes (`atoll node supervise`: no systemd runs on the nodes)".into(),
            (false, false) => {
                format!("systemd units on {}, supervised processes on {} (no systemd there)", systemd.join(", "), plain.join(", "))
            }
        }
    }

    async fn start_agent(&mut self, layout: &Layout, node: &Node, join: &Join) -> Result<(), DeployError> {
        let r = self.remote(node)?;
        let spec = Self::agent_spec(r, layout, join, &self.data_root);
        let started = r.service(Service::Agent, &spec).await?;
        self.record(&node.name, Service::Agent, started);
        Ok(())
    }

    async fn start_server(&mut self, node: &Node, config: ServerConfig, key: &[u8], ca_pem: Option<&str>) -> Result<(), DeployError> {
        let r = self.remote(node)?;
        let files =
            ServerFiles::new(config, &r.dirs.server(), ca_pem).map_err(|e| DeployError::step("start server", Some(&node.name), e))?;
        r.put_private(&files.key_file, key).await?;
        r.put_private(&files.config_file, files.config_text.as_bytes()).await?;
        let mut inputs = sha2::Sha256::new();
        inputs.update(key);
        inputs.update(files.config_text.as_bytes());
        if let Some((path, pem)) = &files.ca_file {
            r.put_private(path, pem.as_bytes()).await?;
            inputs.update(pem.as_bytes());
        }
        let spec = ServiceSpec { node: node.name.clone(), args: files.args(), env: Vec::new(), inputs: hex::encode(inputs.finalize()) };
        let started = r.service(Service::Server, &spec).await?;
        self.record(&node.name, Service::Server, started);
        Ok(())
    }

    async fn settle_agents(&mut self, layout: &Layout, join: &Join) -> Result<(), DeployError> {
        for node in &layout.nodes {
            self.start_agent(layout, node, join).await?;
        }
        Ok(())
    }
}

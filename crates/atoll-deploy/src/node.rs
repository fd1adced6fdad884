//! What `atoll deploy` runs *on* a node, through SSH, as `atoll node …`
//! with the binary it copied there: measure the host, run a service under
//! systemd or a supervisor of our own, remove everything. Both ends of
//! that exchange live in this crate, so the JSON between them has one
//! definition.
//!
//! A node's files, all under its base directory `B`:
//! `B/bin/atoll`, `B/agent/` and `B/server/` (the processes' state),
//! `B/services/ROLE.json` (what a service runs: arguments and environment,
//! owner-only as it holds the join token), `B/services/ROLE.pid` (the
//! supervisor), `B/services/ROLE.running` (the spec's hash the running
//! process was started with), `B/logs/ROLE.log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use atoll_agent::process::{Signal, alive, signal};
use atoll_core::HostFacts;
use atoll_plan::{ProbeReport, ProbeRequest};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// A platform process a node runs as a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Agent,
    Server,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::Agent, Service::Server];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Agent => "agent",
            Service::Server => "server",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Service::Agent),
            "server" => Ok(Service::Server),
            _ => Err(format!("unknown service {s:?}: agent or server")),
        }
    }
}

/// What a service runs: `B/bin/atoll ARGS` with `ENV`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The node's name, for the systemd unit's name and description.
    pub node: String,
    pub args: Vec<String>,
    /// Secrets go here (the service's environment), never in `args`.
    pub env: Vec<(String, String)>,
    /// Hash of the files the service reads at start (its configuration),
    /// so that a changed file restarts it like a changed argument.
    pub inputs: String,
}

impl ServiceSpec {
    pub fn hash(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(&bytes))
    }
}

/// Paths on a node.
#[derive(Debug, Clone)]
pub struct NodeDirs {
    pub base: PathBuf,
}

impl NodeDirs {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }
    pub fn bin(&self) -> PathBuf {
        self.base.join("bin/atoll")
    }
    pub fn agent(&self) -> PathBuf {
        self.base.join("agent")
    }
    pub fn server(&self) -> PathBuf {
        self.base.join("server")
    }
    pub fn spec(&self, s: Service) -> PathBuf {
        self.base.join(format!("services/{}.json", s.as_str()))
    }
    fn pid(&self, s: Service) -> PathBuf {
        self.base.join(format!("services/{}.pid", s.as_str()))
    }
    fn running(&self, s: Service) -> PathBuf {
        self.base.join(format!("services/{}.running", s.as_str()))
    }
    pub fn log(&self, s: Service) -> PathBuf {
        self.base.join(format!("logs/{}.log", s.as_str()))
    }
    /// Everything deploy puts under the base directory (it may hold
    /// other things of the user's: those stay).
    fn owned(&self) -> [PathBuf; 5] {
        ["bin", "agent", "server", "services", "logs"].map(|d| self.base.join(d))
    }
}

/// How services run on this node.
pub fn has_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

pub fn unit_name(spec: &ServiceSpec, s: Service) -> String {
    format!("atoll-{}-{}.service", s.as_str(), spec.node)
}

/// The systemd unit of a service. `KillMode=process`: the databases and
/// proxies an agent starts outlive it, and a restarted agent adopts them.
pub fn unit_text(dirs: &NodeDirs, spec: &ServiceSpec, s: Service) -> String {
    let bin = dirs.bin();
    format!(
        "[Unit]\nDescription=Atoll {role} of node {node}\nAfter=network-online.target\nWants=network-online.target\n\n\
         [Service]\nExecStart={bin} node run {role} --base {base}\nRestart=always\nRestartSec=1\nKillMode=process\nLimitNOFILE=1048576\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        role = s.as_str(),
        node = spec.node,
        bin = bin.display(),
        base = dirs.base.display(),
    )
}

/// What the deploying side learns about a node before changing it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeProbe {
    /// The version of the binary that answered (the one being deployed).
    pub version: String,
    /// The version installed at `B/bin/atoll`, when there is one.
    pub installed: Option<String>,
    pub systemd: bool,
    pub facts: HostFacts,
    pub probe: ProbeReport,
    /// Processes of a deployment already here (services, databases,
    /// proxies): their ports are ours, not taken.
    pub ours: Vec<u32>,
}

/// `atoll node probe`: facts, the planned ports and data directory (the
/// nearest existing parent of it, since deploy creates it), and what of
/// ours already runs.
pub async fn probe(dirs: &NodeDirs, address: std::net::IpAddr, data_dir: &str, ports: Vec<u16>, extra: &[PathBuf]) -> NodeProbe {
    let mut existing = PathBuf::from(data_dir);
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p.to_path_buf(),
            None => break,
        }
    }
    let req = ProbeRequest { data_dir: existing.display().to_string(), ports, binaries: vec![] };
    let probe = atoll_agent::probe::run(address, &req).await;
    // The engine builds the agent would report: the system's and any
    // package build an earlier deployment pushed.
    let packages = atoll_agent::packages::Packages::new(&dirs.agent(), atoll_client::Servers::new::<&str>(&[]));
    let facts = tokio::task::spawn_blocking(move || packages.collect_facts()).await.unwrap_or_default();
    let installed = std::process::Command::new(dirs.bin())
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    NodeProbe {
        version: format!("atoll {}", env!("CARGO_PKG_VERSION")),
        installed,
        systemd: has_systemd(),
        facts,
        probe,
        ours: ours(dirs, extra),
    }
}

/// Live processes of a deployment under `dirs` (the services' supervisors
/// and everything started from the agent's directory) and under `extra`
/// (the MetaDB node's data directory).
fn ours(dirs: &NodeDirs, extra: &[PathBuf]) -> Vec<u32> {
    let mut pids: Vec<u32> = Service::ALL.iter().filter_map(|s| supervisor(dirs, *s)).collect();
    pids.extend(atoll_agent::processes_under(&dirs.agent()));
    pids.extend(atoll_agent::processes_under(&dirs.server()));
    for d in extra {
        pids.extend(atoll_agent::processes_under(d));
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The live supervisor of `s`, from its pid file.
fn supervisor(dirs: &NodeDirs, s: Service) -> Option<u32> {
    let pid = std::fs::read_to_string(dirs.pid(s)).ok()?.trim().parse::<u32>().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // A recycled pid is someone else's.
    (alive(pid) && String::from_utf8_lossy(&cmdline).contains("supervise")).then_some(pid)
}

/// What `atoll node start` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Started {
    Started,
    Restarted,
    Unchanged,
}

fn read_spec(dirs: &NodeDirs, s: Service) -> Result<ServiceSpec, String> {
    let path = dirs.spec(s);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn running_hash(dirs: &NodeDirs, s: Service) -> Option<String> {
    std::fs::read_to_string(dirs.running(s)).ok().map(|h| h.trim().to_string())
}

/// `atoll node start`: makes `s` run with its current spec, under systemd
/// where it runs, else under `atoll node supervise`. Restarts it only when
/// its spec changed.
pub async fn start(dirs: &NodeDirs, s: Service) -> Result<Started, String> {
    let spec = read_spec(dirs, s)?;
    let changed = running_hash(dirs, s).as_deref() != Some(spec.hash().as_str());
    if has_systemd() {
        return start_systemd(dirs, &spec, s, changed).await;
    }
    if let Some(pid) = supervisor(dirs, s) {
        if !changed {
            return Ok(Started::Unchanged);
        }
        signal(pid, Signal::Hup).map_err(|e| format!("cannot signal the {} supervisor ({pid}): {e}", s.as_str()))?;
        wait_for_hash(dirs, s, &spec.hash()).await?;
        return Ok(Started::Restarted);
    }
    end_orphans(dirs, s).await;
    let log = open_log(dirs, s)?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    tokio::process::Command::new(dirs.bin())
        .args(["node", "supervise", s.as_str(), "--base"])
        .arg(&dirs.base)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the {} supervisor: {e}", s.as_str()))?;
    wait_for_hash(dirs, s, &spec.hash()).await?;
    Ok(Started::Started)
}

/// A service process whose supervisor died without stopping it (SIGKILL):
/// ended before a new supervisor starts another, which would find its
/// port taken.
async fn end_orphans(dirs: &NodeDirs, s: Service) {
    let bin = dirs.bin().display().to_string();
    let orphans: Vec<u32> = atoll_agent::processes_under(&dirs.base)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let mut argv = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            argv.next().is_some_and(|a| a == bin) && argv.next().is_some_and(|a| a == s.as_str())
        })
        .collect();
    terminate(&orphans, Duration::from_secs(15)).await;
}

/// SIGTERM to each of `pids`, then SIGKILL to those still alive after
/// `grace`.
async fn terminate(pids: &[u32], grace: Duration) {
    for pid in pids {
        let _ = signal(*pid, Signal::Term);
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        let _ = signal(*pid, Signal::Kill);
    }
}

/// Waits until the service runs the spec with `hash`.
async fn wait_for_hash(dirs: &NodeDirs, s: Service, hash: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while running_hash(dirs, s).as_deref() != Some(hash) || (supervisor(dirs, s).is_none() && !has_systemd()) {
        if Instant::now() > deadline {
            return Err(format!("the {} did not start within 15 s; see {}", s.as_str(), dirs.log(s).display()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn start_systemd(dirs: &NodeDirs, spec: &ServiceSpec, s: Service, changed: bool) -> Result<Started, String> {
    let unit = unit_name(spec, s);
    let path = Path::new("/etc/systemd/system").join(&unit);
    let text = unit_text(dirs, spec, s);
    let unit_changed = std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str());
    if unit_changed {
        std::fs::write(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        systemctl(&["daemon-reload"]).await?;
    }
    systemctl(&["enable", &unit]).await?;
    let active = systemctl(&["is-active", "--quiet", &unit]).await.is_ok();
    let outcome = match (active, changed || unit_changed) {
        (true, false) => return Ok(Started::Unchanged),
        (true, true) => {
            systemctl(&["restart", &unit]).await?;
            Started::Restarted
        }
        (false, _) => {
            systemctl(&["start", &unit]).await?;
            Started::Started
        }
    };
    wait_for_hash(dirs, s, &spec.hash()).await?;
    Ok(outcome)
}

async fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new("systemctl").args(args).output().await.map_err(|e| format!("cannot run systemctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("systemctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn open_log(dirs: &NodeDirs, s: Service) -> Result<std::fs::File, String> {
    let path = dirs.log(s);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn note(log: &mut std::fs::File, line: &str) {
    let _ = writeln!(log, "atoll-supervise: {line}");
}

/// What a service runs: the installed binary with its spec.
fn service_command(dirs: &NodeDirs, spec: &ServiceSpec) -> std::process::Command {
    let mut cmd = std::process::Command::new(dirs.bin());
    cmd.args(&spec.args).envs(spec.env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// `atoll node run` (systemd's `ExecStart`): becomes the service's process.
pub fn exec(dirs: &NodeDirs, s: Service) -> String {
    use std::os::unix::process::CommandExt;
    let spec = match read_spec(dirs, s) {
        Ok(spec) => spec,
        Err(e) => return e,
    };
    if let Err(e) = std::fs::write(dirs.running(s), spec.hash()) {
        return format!("cannot write {}: {e}", dirs.running(s).display());
    }
    let e = service_command(dirs, &spec).exec();
    format!("cannot run {}: {e}", dirs.bin().display())
}

/// `atoll node supervise`: keeps the service running where there is no
/// systemd. Restarts it when it exits (1 s, doubling to 30 s while it keeps
/// failing), restarts it with its new spec on SIGHUP, stops it on SIGTERM.
pub async fn supervise(dirs: &NodeDirs, s: Service) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal as on};
    let mut log = open_log(dirs, s)?;
    std::fs::write(dirs.pid(s), std::process::id().to_string()).map_err(|e| format!("cannot write {}: {e}", dirs.pid(s).display()))?;
    let mut term = on(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = on(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut hup = on(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut failures = 0usize;
    loop {
        let spec = read_spec(dirs, s)?;
        let out = log.try_clone().map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::from(service_command(dirs, &spec))
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", dirs.bin().display()))?;
        let _ = std::fs::write(dirs.running(s), spec.hash());
        note(&mut log, &format!("started {} (pid {})", s.as_str(), child.id().unwrap_or(0)));
        let began = Instant::now();
        let stop_child = |child: &mut tokio::process::Child| {
            if let Some(pid) = child.id() {
                let _ = signal(pid, Signal::Term);
            }
        };
        tokio::select! {
            status = child.wait() => {
                failures = if began.elapsed() > Duration::from_secs(60) { 1 } else { failures + 1 };
                let wait = atoll_agent::process::backoff(Duration::from_secs(1), Duration::from_secs(30), failures);
                note(&mut log, &format!("{} exited ({}); restarting in {wait:?}", s.as_str(), status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = term.recv() => return finish(dirs, s, &mut log),
                    _ = int.recv() => return finish(dirs, s, &mut log),
                    _ = hup.recv() => {}
                }
            }
            _ = hup.recv() => {
                note(&mut log, "restarting with the current spec");
                stop_child(&mut child);
                reap(&mut child).await;
            }
            _ = async { tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} } } => {
                stop_child(&mut child);
                reap(&mut child).await;
                return finish(dirs, s, &mut log);
            }
        }
    }
}

/// Waits up to 15 s for a child asked to stop, then kills it.
async fn reap(child: &mut tokio::process::Child) {
    if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn finish(dirs: &NodeDirs, s: Service, log: &mut std::fs::File) -> Result<(), String> {
    let _ = std::fs::remove_file(dirs.pid(s));
    let _ = std::fs::remove_file(dirs.running(s));
    note(log, &format!("{} stopped", s.as_str()));
    Ok(())
}

/// `atoll node stop`: stops `s` and waits for it (up to 20 s).
pub async fn stop(dirs: &NodeDirs, s: Service) -> Result<(), String> {
    if has_systemd() {
        if let Ok(spec) = read_spec(dirs, s) {
            let unit = unit_name(&spec, s);
            let _ = systemctl(&["disable", "--now", &unit]).await;
            let path = Path::new("/etc/systemd/system").join(&unit);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                systemctl(&["daemon-reload"]).await?;
            }
        }
        return Ok(());
    }
    if let Some(pid) = supervisor(dirs, s) {
        terminate(&[pid], Duration::from_secs(20)).await;
    }
    Ok(())
}

/// `atoll node destroy`: stops the services, ends every process started
/// from the node's directories and `extra` (MetaDB's data directory), and
/// removes them. Returns what it removed.
pub async fn destroy(dirs: &NodeDirs, extra: &[PathBuf]) -> Result<Vec<String>, String> {
    for s in Service::ALL {
        stop(dirs, s).await?;
    }
    terminate(&ours(dirs, extra), Duration::from_secs(20)).await;
    let mut removed = Vec::new();
    for path in dirs.owned().iter().chain(extra) {
        if path.exists() {
            std::fs::remove_dir_all(path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
            removed.push(path.display().to_string());
        }
    }
    // Only when nothing else of the user's is in there.
    let _ = std::fs::remove_dir(&dirs.base);
    for parent in extra.iter().filter_map(|p| p.parent()) {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec() -> ServiceSpec {
        ServiceSpec {
            node: "n1".into(),
            args: vec!["agent".into()],
            env: vec![("ATOLL_JOIN_TOKEN".into(), "t".into())],
            inputs: String::new(),
        }
    }

    #[test]
    fn units_keep_the_agents_databases_running_and_restart_the_service() {
        let text = unit_text(&NodeDirs::new("/opt/atoll"), &spec(), Service::Agent);
        assert!(text.contains("ExecStart=/opt/atoll/bin/atoll node run agent --base /opt/atoll\n"), "{text}");
        assert!(text.contains("KillMode=process") && text.contains("Restart=always"), "{text}");
        // The join token stays in the owner-only spec, out of the unit.
        assert!(!text.contains("ATOLL_JOIN_TOKEN"), "{text}");
        assert_eq!(unit_name(&spec(), Service::Agent), "atoll-agent-n1.service");
    }

    /// systemd does not run here, but its own checker reads the unit as
    /// systemd would: every key known, every value parsed, the binary there.
    #[test]
    fn systemd_accepts_the_unit() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = NodeDirs::new(dir.path().join("base"));
        std::fs::create_dir_all(dirs.bin().parent().unwrap()).unwrap();
        std::fs::copy("/bin/true", dirs.bin()).unwrap();
        let unit = dir.path().join(unit_name(&spec(), Service::Agent));
        std::fs::write(&unit, unit_text(&dirs, &spec(), Service::Agent)).unwrap();
        let out =
            std::process::Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("systemd-analyze (package systemd)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("atoll-agent-n1.service")).collect();
        assert!(out.status.success() && ours.is_empty(), "{stderr}");
    }

    #[test]
    fn a_changed_input_changes_the_hash() {
        let a = spec();
        let mut b = spec();
        b.inputs = "x".into();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), spec().hash());
    }
}

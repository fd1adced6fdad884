//! `atoll deploy`: the seed's four steps on hosts reached over SSH.
//!
//! 1. *Plan*: every node reachable, its resources and ports checked for the
//!    chosen profile. Nothing on any node changes until every node passes.
//! 2. *Prepare*: the binary installed (checksum verified), agents running
//!    as services.
//! 3. *Deploy*: [`crate::bootstrap`], MetaDB's cluster and the servers.
//! 4. *Check*: the post-deployment check.
//!
//! What a run has done is in a local state directory (owner-only: it holds
//! the platform key and MetaDB's password until servers have them), so a
//! run after a failure resumes, and a run on a deployed topology changes
//! nothing and says so.

use std::path::{Path, PathBuf};
use std::time::Instant;

use atoll_api::v1::ClusterView;
use atoll_client::{Client, Servers};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::DeployError;
use crate::bootstrap::{self, Bootstrapped, Options, Progress};
use crate::layout::METADB_CLUSTER;
use crate::node::NodeDirs;
use crate::remote::{Remote, SshLauncher};
use crate::ssh::Session;
use crate::topology::Topology;

/// How `deploy` and `destroy` behave beyond the topology.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `atoll` binary to install on the nodes (this one).
    pub exe: PathBuf,
    /// What earlier runs did.
    pub state_dir: PathBuf,
    /// Add unknown host keys to known_hosts (a changed key is refused).
    pub accept_new_host_keys: bool,
    /// `destroy` even when the platform manages other clusters.
    pub force: bool,
    /// Timings for the platform's servers (the defaults suit real hosts).
    pub heartbeat_interval_ms: u64,
    pub offline_after_ms: u64,
    pub leader_lease_ms: u64,
    pub task_lease_ms: u64,
}

impl Settings {
    pub fn new(exe: PathBuf, state_dir: PathBuf) -> Self {
        Self {
            exe,
            state_dir,
            accept_new_host_keys: false,
            force: false,
            heartbeat_interval_ms: 2_000,
            offline_after_ms: 6_000,
            leader_lease_ms: 5_000,
            task_lease_ms: 6_000,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub servers: Vec<String>,
    pub token: String,
    pub admin_password: Option<String>,
    /// The platform's CA on a TLS platform, for clients to trust.
    pub ca_pem: Option<String>,
    /// How the services run ("systemd units", "supervised processes").
    pub services: String,
    /// What this run changed; empty when the platform was as asked.
    pub changes: Vec<String>,
    pub steps: Vec<(&'static str, f64)>,
}

/// The local record of earlier runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    /// Set once MetaDB holds the platform: later runs skip the bootstrap.
    bootstrapped: Option<Bootstrapped>,
}

impl State {
    fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    fn load(dir: &Path) -> Result<Self, DeployError> {
        match std::fs::read(Self::path(dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| DeployError::step("state", None, format!("{} is unreadable: {e}", Self::path(dir).display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(DeployError::step("state", None, format!("cannot read {}: {e}", Self::path(dir).display()))),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), DeployError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| DeployError::step("state", None, e.to_string()))?;
        crate::launch::write_private(&Self::path(dir), &bytes).map_err(|e| DeployError::step("state", None, e))
    }
}

fn private_dir(dir: &Path) -> Result<(), DeployError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| DeployError::step("state", None, format!("cannot create {}: {e}", dir.display())))
}

/// Connects to every node at once; every node that cannot be reached is
/// named, and none is changed.
async fn connect_all(topo: &Topology, settings: &Settings, progress: Progress<'_>) -> Result<Vec<Remote>, DeployError> {
    let tries = topo.nodes.iter().map(|n| Session::connect(&n.node.name, &n.ssh, settings.accept_new_host_keys));
    let results = futures::future::join_all(tries).await;
    let mut remotes = Vec::new();
    let mut problems = Vec::new();
    for (n, r) in topo.nodes.iter().zip(results) {
        match r {
            Ok(session) => {
                if let Some(fp) = &session.learned {
                    progress(&format!("{}: added its host key {fp} to {}", n.node.name, n.ssh.known_hosts.display()));
                }
                remotes.push(Remote { spec: n.clone(), session, dirs: NodeDirs::new(&n.base_dir), systemd: false });
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(remotes)
    } else {
        for r in remotes {
            r.session.close().await;
        }
        Err(DeployError::Unreachable(problems))
    }
}

fn sha256_file(path: &Path) -> Result<String, DeployError> {
    let mut file =
        std::fs::File::open(path).map_err(|e| DeployError::step("binary", None, format!("cannot read {}: {e}", path.display())))?;
    let mut hash = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hash).map_err(|e| DeployError::step("binary", None, format!("cannot read {}: {e}", path.display())))?;
    Ok(hex::encode(hash.finalize()))
}

/// Where MetaDB's node on the `i`th node keeps its data.
fn metadb_dir(topo: &Topology, i: usize) -> String {
    format!("{}/{METADB_CLUSTER}/{METADB_CLUSTER}-{}", topo.data_dir.trim_end_matches('/'), i + 1)
}

/// A node's binary: what is installed, or what was staged to replace it.
enum Binary {
    Installed,
    Staged(String),
}

/// Step 1: the binary is on every node (staged where it differs) and
/// every node passes its checks. Returns how each node's binary stands,
/// and notes on each remote whether systemd runs there.
async fn plan(
    topo: &Topology,
    remotes: &mut [Remote],
    sha: &str,
    settings: &Settings,
    progress: Progress<'_>,
) -> Result<Vec<Binary>, DeployError> {
    let need = topo.sizing.node();
    progress(&format!(
        "plan: multi-node platform for {} managed hosts: per node {} cores and {} GiB (server {} GiB; MetaDB {}; MonitorDB {}); checking {} node(s) with the {} profile",
        topo.sizing.managed_hosts,
        need.cores,
        need.memory_gib,
        topo.sizing.server_memory_gib,
        topo.sizing.metadb,
        topo.sizing.monitordb,
        remotes.len(),
        topo.profile
    ));
    let profile = topo
        .profile
        .parse::<atoll_plan::profile::ProfileName>()
        .map_err(|e| DeployError::Invalid(vec![format!("profile {:?}: {e}", topo.profile)]))?
        .profile();
    let ports: Vec<u16> = topo.ports().iter().map(|(p, _)| *p).collect();
    let staged = futures::future::join_all(remotes.iter().map(|r| async move {
        Ok::<_, DeployError>(match r.installed_sha().await? {
            Some(have) if have == sha => Binary::Installed,
            _ => Binary::Staged(r.stage(&settings.exe, sha).await?),
        })
    }))
    .await
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    let mut problems = Vec::new();
    for (i, (r, b)) in remotes.iter_mut().zip(&staged).enumerate() {
        let bin = match b {
            Binary::Installed => r.dirs.bin().display().to_string(),
            Binary::Staged(p) => p.clone(),
        };
        let probe = r.probe(&bin, &topo.data_dir, &ports, &[metadb_dir(topo, i)]).await?;
        r.systemd = probe.systemd;
        let name = r.name();
        let running = !probe.ours.is_empty();
        if let (Binary::Staged(_), true) = (b, running) {
            problems.push(format!(
                "{name}: a platform runs there with another atoll build ({}; this is {}): deploy does not upgrade a running platform; deploy the same binary, or `atoll deploy --destroy` first",
                probe.installed.as_deref().unwrap_or("unknown version"),
                probe.version
            ));
        }
        // The sizing table's minimum: binding in production, advice on a
        // sandbox (a development machine runs the platform on less).
        let cores = probe.facts.cpu.cores;
        let gib = probe.facts.memory_bytes as f64 / f64::from(1u32 << 30);
        if cores < need.cores || gib + 0.5 < f64::from(need.memory_gib) {
            let line = format!(
                "{name}: {cores} cores and {gib:.1} GiB, below the plan's {} cores and {} GiB per node for {} managed hosts",
                need.cores, need.memory_gib, topo.sizing.managed_hosts
            );
            if topo.profile == "production" {
                problems.push(format!("{line}; fix: a larger host, or a smaller managed_hosts in the topology"));
            } else {
                progress(&format!("warning: {line}"));
            }
        }
        // On a node where our processes run, the ports are theirs.
        let mut checks = atoll_plan::check::check_host(&profile, &probe.facts, &topo.data_dir, Some(&probe.probe));
        if running {
            checks.retain(|c| !c.item.starts_with("port."));
        }
        for c in checks {
            let what = topo.ports().iter().find(|(p, _)| c.item == format!("port.{p}")).map(|(_, w)| format!(" ({w})")).unwrap_or_default();
            match c.status {
                atoll_plan::check::CheckStatus::Fail => problems.push(format!(
                    "{name}: {}{what}: {}; fix: {}",
                    c.item,
                    c.measured,
                    c.fix.unwrap_or_else(|| "see `atoll plan`".into())
                )),
                atoll_plan::check::CheckStatus::Warn => progress(&format!("warning: {name}: {}{what}: {}", c.item, c.measured)),
                _ => {}
            }
        }
    }
    if problems.is_empty() {
        return Ok(staged);
    }
    for (r, b) in remotes.iter().zip(&staged) {
        if let Binary::Staged(p) = b {
            r.unstage(p).await;
        }
    }
    Err(DeployError::Precheck(problems))
}

pub async fn deploy(topo: &Topology, settings: &Settings, progress: Progress<'_>) -> Result<Summary, DeployError> {
    let started = Instant::now();
    private_dir(&settings.state_dir)?;
    let mut state = State::load(&settings.state_dir)?;
    let sha = sha256_file(&settings.exe)?;
    progress(&format!("connecting to {} node(s) over SSH", topo.nodes.len()));
    let mut remotes = connect_all(topo, settings, progress).await?;
    let binaries = plan(topo, &mut remotes, &sha, settings, progress).await?;
    let plan_s = started.elapsed().as_secs_f64();

    let mut changes = Vec::new();
    for (r, b) in remotes.iter().zip(&binaries) {
        if let Binary::Staged(p) = b {
            r.install(p).await?;
            changes.push(format!("{}: atoll installed at {} (sha256 {})", r.name(), r.dirs.bin().display(), &sha[..12]));
        }
    }
    let mut launcher = SshLauncher { remotes, data_root: topo.data_dir.clone(), changes: Vec::new() };

    let opts = Options {
        work_dir: settings.state_dir.clone(),
        bootstrap_listen: bootstrap_listen(topo)?,
        profile: topo.profile.clone(),
        host_data_dir: topo.data_dir.clone(),
        heartbeat_interval_ms: settings.heartbeat_interval_ms,
        offline_after_ms: settings.offline_after_ms,
        leader_lease_ms: settings.leader_lease_ms,
        task_lease_ms: settings.task_lease_ms,
        scrape_interval_ms: atoll_server::ServerConfig::default().scrape_interval_ms,
        monitordb_flush_s: atoll_server::ServerConfig::default().monitordb_flush_s,
    };
    let boot = match state.bootstrapped.clone() {
        Some(b) => {
            progress("MetaDB already holds the platform (an earlier run): starting from the servers");
            b
        }
        None => {
            let b = bootstrap::bootstrap(&topo.layout, &mut launcher, &opts, progress).await?;
            state.bootstrapped = Some(b.clone());
            state.save(&settings.state_dir)?;
            changes.push(format!("MetaDB: cluster {METADB_CLUSTER} made and the platform moved onto it"));
            b
        }
    };
    fail_point();
    let deployed = bootstrap::start_servers(&topo.layout, &mut launcher, &opts, &boot, progress).await?;
    changes.append(&mut launcher.changes);
    let services = crate::launch::Launcher::describe(&launcher);
    for r in launcher.remotes {
        r.session.close().await;
    }
    let mut steps = vec![("plan", plan_s)];
    steps.extend(deployed.steps);
    Ok(Summary {
        servers: deployed.servers,
        token: deployed.token,
        admin_password: deployed.admin_password,
        ca_pem: deployed.ca_pem,
        services,
        changes,
        steps,
    })
}

/// Test hook: `FAILPOINTS=deploy::before_servers=return` stops a run after
/// the bootstrap, as a lost connection would.
fn fail_point() {
    #[cfg(feature = "failpoints")]
    {
        let stop: Option<()> = (|| {
            fail::fail_point!("deploy::before_servers", |_| Some(()));
            None
        })();
        if stop.is_some() {
            std::process::exit(75);
        }
    }
}

/// Where the bootstrap server listens: the topology's choice, else this
/// machine's address on the route to the first node (a UDP "connect"
/// sends nothing) and any free port.
fn bootstrap_listen(topo: &Topology) -> Result<std::net::SocketAddr, DeployError> {
    if let Some(a) = topo.bootstrap_listen {
        return Ok(a);
    }
    let first = topo.layout.nodes[0].address;
    let any: std::net::SocketAddr = if first.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let local =
        std::net::UdpSocket::bind(any).and_then(|s| s.connect((first, 9)).map(|()| s)).and_then(|s| s.local_addr()).map_err(|e| {
            DeployError::step(
                "bootstrap server",
                None,
                format!("no route to {first} from this machine ({e}): set bootstrap_listen in the topology"),
            )
        })?;
    Ok(std::net::SocketAddr::new(local.ip(), 0))
}

/// `atoll deploy --destroy`: stops and removes everything deploy put on
/// the nodes (the services, MetaDB's nodes and proxies, the files), then
/// the local state. Refused while the platform manages other clusters,
/// unless `force`.
pub async fn destroy(topo: &Topology, settings: &Settings, progress: Progress<'_>) -> Result<Vec<String>, DeployError> {
    let state = State::load(&settings.state_dir)?;
    progress(&format!("connecting to {} node(s) over SSH", topo.nodes.len()));
    let remotes = connect_all(topo, settings, progress).await?;
    if let Some(b) = &state.bootstrapped
        && !settings.force
    {
        if let Some(pem) = &b.ca_pem {
            atoll_client::trust_platform_ca(pem).map_err(|e| DeployError::step("destroy", None, e.to_string()))?;
        }
        let client = Client::over(&Servers::new(&topo.layout.server_urls()), Some(b.token.clone()), std::time::Duration::from_secs(5));
        let others: Vec<String> = match client.get::<Vec<ClusterView>>("/api/v1/clusters").await {
            Ok(clusters) => clusters.into_iter().map(|c| c.name).filter(|n| n != METADB_CLUSTER).collect(),
            // Not knowing is no licence to remove clusters' platform.
            Err(e) => {
                return Err(DeployError::step(
                    "destroy",
                    None,
                    format!(
                        "cannot ask the platform which clusters it manages ({e}); start its servers and try again, or pass --force to remove it whatever it manages"
                    ),
                ));
            }
        };
        if !others.is_empty() {
            return Err(DeployError::step(
                "destroy",
                None,
                format!(
                    "the platform manages cluster(s) {}: delete them first (`atoll cluster delete NAME`), or pass --force to leave them running unmanaged",
                    others.join(", ")
                ),
            ));
        }
    }
    // Nodes in parallel: each waits for its MetaDB node's clean shutdown.
    let per_node = futures::future::join_all(remotes.iter().enumerate().map(|(i, r)| async move {
        if r.session.run(&format!("test -x {}", crate::remote::q(&r.dirs.bin())), None).await?.status != 0 {
            progress(&format!("{}: nothing of Atoll's there", r.name()));
            return Ok(Vec::new());
        }
        progress(&format!("{}: stopping the services, MetaDB's node and its proxy; removing their files", r.name()));
        let out = r.node("destroy", &format!("destroy --extra {}", crate::ssh::quote(&metadb_dir(topo, i)))).await?;
        Ok::<_, DeployError>(out.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{}: {l}", r.name())).collect::<Vec<_>>())
    }))
    .await;
    let mut removed = Vec::new();
    for r in per_node {
        removed.extend(r?);
    }
    for r in remotes {
        r.session.close().await;
    }
    if settings.state_dir.exists() {
        std::fs::remove_dir_all(&settings.state_dir)
            .map_err(|e| DeployError::step("destroy", None, format!("cannot remove {}: {e}", settings.state_dir.display())))?;
        removed.push(format!("local state {}", settings.state_dir.display()));
    }
    Ok(removed)
}

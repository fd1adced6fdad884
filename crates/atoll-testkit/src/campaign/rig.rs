//! The system under test: a real `atoll server`, one real agent per
//! loopback host, and a three-zone Galera cluster made through the
//! platform's own create task, with its proxies. It also holds what the
//! faults need set up beforehand (cgroups for network cuts, a tmpfs per
//! data directory, libfaketime on one host) and acts as the service
//! manager of the server and agents: it restarts them when a fault killed
//! them. Everything is undone on drop, stopped processes first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use atoll_api::v1::{ClusterCredentials, TaskView};
use atoll_core::TaskStatus;
use serde_json::json;

use super::clock::Clock;
use super::disk::Tmpfs;
use super::netcut::{Cut, HostGroups};
use crate::{Platform, Proc, ServerOpts, atoll_bin, free_port};

pub const CLUSTER: &str = "bank";
/// Size of each node's data directory: room for a fresh node (redo log,
/// 64 MiB gcache, system tables) and the campaign's rows, little more.
const TMPFS_MIB: u64 = 400;

/// One loopback "host": its agent and what runs there.
#[derive(Debug, Clone)]
pub struct Host {
    pub ip: String,
    pub zone: String,
    pub agent_port: u16,
    pub agent_dir: PathBuf,
    /// The cluster server's directory on this host (`bank-N`).
    pub server_dir: PathBuf,
    pub server: String,
}

/// Pids we SIGSTOPped: each gets SIGCONT before anything is killed, so
/// nothing stays frozen whatever ends the campaign.
#[derive(Default)]
pub struct Stopped(Mutex<BTreeSet<u32>>);

impl Stopped {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<u32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn add(&self, pid: u32) {
        self.lock().insert(pid);
    }
    pub fn remove(&self, pid: u32) {
        self.lock().remove(&pid);
    }
    pub fn cont_all(&self) {
        for pid in std::mem::take(&mut *self.lock()) {
            let _ = send(pid, "CONT");
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.cont_all();
    }
}

/// Sends a signal by name to one pid (`kill(1)`: no unsafe code here).
pub fn send(pid: u32, sig: &str) -> Result<()> {
    let out = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).output().context("running kill")?;
    if !out.status.success() {
        bail!("kill -{sig} {pid}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// What the rig could not set up, so the kinds that need it are skipped
/// (with this reason printed) rather than faked.
#[derive(Debug, Clone, Default)]
pub struct Missing {
    pub netcut: Option<String>,
    pub disk: Option<String>,
    pub clock: Option<String>,
}

pub struct Rig {
    pub stopped: Stopped,
    cut: Option<Cut>,
    pub platform: Platform,
    agents: Vec<Option<Proc>>,
    pub hosts: Vec<Host>,
    pub cr: ClusterCredentials,
    pub disks: Vec<Option<Tmpfs>>,
    groups: Option<HostGroups>,
    pub clock: Option<Clock>,
    /// The host whose agent runs under libfaketime.
    pub clock_host: usize,
    pub missing: Missing,
    join: String,
}

impl Rig {
    /// Starts the platform on `ips` (three), prepares the hosts and creates
    /// the cluster; `log` hears each step.
    pub async fn start(ips: &[&str], log: &dyn Fn(&str)) -> Result<Rig> {
        if ips.len() != 3 {
            bail!("the campaign runs a three-zone cluster: give three addresses");
        }
        let mut opts = ServerOpts::default();
        opts.extra_args.extend(["--profile", "sandbox"].map(String::from));
        let mut platform = Platform::start(opts).await?;
        platform.login_admin().await?;
        let join = platform.join_token().await?;
        let mut missing = Missing::default();
        let groups = match HostGroups::create(ips.len()) {
            Ok(g) => Some(g),
            Err(e) => {
                missing.netcut = Some(format!("{e:#}"));
                None
            }
        };
        let cut = match groups.as_ref().map(|_| Cut::new()) {
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                missing.netcut = Some(format!("{e:#}"));
                None
            }
            None => None,
        };
        let clock_host = 1;
        let clock = match Clock::new(platform.dir.path()) {
            Ok(c) => Some(c),
            Err(e) => {
                missing.clock = Some(format!("{e:#}"));
                None
            }
        };
        let root = platform.dir.path().to_path_buf();
        let hosts: Vec<Host> = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| Host {
                ip: ip.to_string(),
                zone: format!("z{}", i + 1),
                agent_port: free_port(ip),
                agent_dir: root.join(format!("agent-host{}", i + 1)),
                server_dir: platform.host_data_dir().join(CLUSTER).join(format!("{CLUSTER}-{}", i + 1)),
                server: format!("{CLUSTER}-{}", i + 1),
            })
            .collect();
        let mut rig = Rig {
            stopped: Stopped::default(),
            cut,
            platform,
            agents: hosts.iter().map(|_| None).collect(),
            hosts,
            cr: ClusterCredentials {
                user: String::new(),
                password: String::new(),
                host: String::new(),
                port: 0,
                direct_host: String::new(),
                direct_port: 0,
                mysql_command: String::new(),
            },
            disks: Vec::new(),
            groups,
            clock,
            clock_host,
            missing,
            join,
        };
        for i in 0..rig.hosts.len() {
            rig.spawn_agent(i)?;
        }
        rig.platform.wait_hosts_online(ips.len()).await?;
        log("hosts online; preparing them");
        let c = rig.platform.client();
        let t: TaskView = c.post("/api/v1/hosts/prepare", &json!({ "hosts": ips, "profile": "sandbox" })).await?;
        let t = rig.platform.wait_task(&t.id, Duration::from_secs(60)).await?;
        if t.status != TaskStatus::Succeeded {
            bail!("preparing {ips:?} ended {}: {:#?}", t.status, t.steps);
        }
        // Each node's data directory on a tmpfs of its own, before the
        // agent makes it, so one node's disk can be filled.
        for h in rig.hosts.clone() {
            match Tmpfs::mount(&h.server_dir.join("data"), TMPFS_MIB) {
                Ok(t) => rig.disks.push(Some(t)),
                Err(e) => {
                    rig.missing.disk = Some(format!("{e:#}"));
                    rig.disks.push(None);
                }
            }
        }
        log("creating the cluster");
        let spec = json!({
            "name": CLUSTER,
            "servers": rig.hosts.iter().map(|h| json!({ "name": h.server, "zone": h.zone, "host": h.ip })).collect::<Vec<_>>(),
        });
        let t: TaskView = c.post("/api/v1/clusters", &spec).await?;
        let t = rig.platform.wait_task(&t.id, Duration::from_secs(300)).await?;
        if t.status != TaskStatus::Succeeded {
            bail!("creating the cluster ended {}: {:#?}", t.status, t.steps);
        }
        rig.cr = c.get(&format!("/api/v1/clusters/{CLUSTER}/credentials")).await?;
        Ok(rig)
    }

    /// Starts (or restarts) host `i`'s agent on its address, port and data
    /// directory, inside its cgroup, under libfaketime on the clock host.
    pub fn spawn_agent(&mut self, i: usize) -> Result<()> {
        let h = &self.hosts[i];
        let mut cmd = match &self.groups {
            // The shell joins the cgroup, then becomes the agent: every
            // socket it and its children open belongs to the group.
            Some(g) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg("echo $$ > \"$ATOLL_CAMPAIGN_CGROUP\" && exec \"$0\" \"$@\"").arg(atoll_bin());
                c.env("ATOLL_CAMPAIGN_CGROUP", g.procs_file(i));
                c
            }
            None => Command::new(atoll_bin()),
        };
        cmd.arg("agent")
            .arg("--server")
            .arg(&self.platform.url)
            .env("ATOLL_JOIN_TOKEN", &self.join)
            .arg("--listen")
            .arg(format!("{}:{}", h.ip, h.agent_port))
            .arg("--data-dir")
            .arg(&h.agent_dir)
            .arg("--data-root")
            .arg(self.platform.dir.path())
            .arg("--facts-every-s")
            .arg("1")
            .arg("--zone")
            .arg(&h.zone);
        if let (Some(clock), true) = (&self.clock, i == self.clock_host) {
            cmd.envs(clock.env());
        }
        let log = self.platform.dir.path().join(format!("agent-host{}-{}.log", i + 1, atoll_core::time::now_ms()));
        self.agents[i] = Some(Proc::spawn(&format!("agent host{}", i + 1), cmd, log)?);
        Ok(())
    }

    pub fn agent_pid(&self, i: usize) -> Option<u32> {
        self.agents[i].as_ref().and_then(Proc::pid)
    }

    /// SIGKILLs host `i`'s agent (and reaps it).
    pub fn kill_agent(&mut self, i: usize) {
        if let Some(mut p) = self.agents[i].take() {
            if let Some(pid) = p.pid() {
                self.stopped.remove(pid);
            }
            p.kill();
        }
    }

    pub fn agent_running(&self, i: usize) -> bool {
        self.agents[i].is_some()
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.platform.server.pid()
    }

    pub fn kill_server(&mut self) {
        if let Some(pid) = self.server_pid() {
            self.stopped.remove(pid);
        }
        self.platform.server.kill();
    }

    pub fn server_running(&self) -> bool {
        self.platform.server.pid().is_some()
    }

    /// Starts the server again on its address and data (a service
    /// manager's restart).
    pub async fn restart_server(&mut self) -> Result<()> {
        let opts = self.platform.opts.clone();
        self.platform.restart_server(opts).await
    }

    /// Host `i`'s `mariadbd`, found by its data directory.
    pub fn mariadbd_pid(&self, i: usize) -> Option<u32> {
        process_named(&self.hosts[i].server_dir.join(""), "mariadbd")
    }

    /// Host `i`'s proxy, found by its state directory below the agent's.
    pub fn proxy_pid(&self, i: usize) -> Option<u32> {
        process_named(&self.hosts[i].agent_dir.join("proxies"), "atoll")
    }

    pub fn cut(&self) -> Option<(&Cut, &HostGroups)> {
        Some((self.cut.as_ref()?, self.groups.as_ref()?))
    }

    /// Copies every log of the run (server, agents, proxies, `mariadbd`
    /// error logs) below `dst`, for a failure to be read after cleanup.
    pub fn save_logs(&self, dst: &Path) -> Result<usize> {
        let mut n = 0;
        copy_logs(self.platform.dir.path(), self.platform.dir.path(), dst, &mut n, 0)?;
        Ok(n)
    }
}

fn copy_logs(root: &Path, dir: &Path, dst: &Path, n: &mut usize, depth: usize) -> Result<()> {
    if depth > 8 {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            copy_logs(root, &p, dst, n, depth + 1)?;
        } else if ft.is_file() {
            let name = p.file_name().and_then(|s| s.to_str()).unwrap_or_default();
            let is_log = name.ends_with(".log") || name.ends_with(".err") || name == "mariadbd.out";
            if is_log && e.metadata().is_ok_and(|m| m.len() < 50 << 20) {
                let to = dst.join(p.strip_prefix(root).unwrap_or(&p));
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::copy(&p, &to)?;
                *n += 1;
            }
        }
    }
    Ok(())
}

/// The process whose command line mentions `dir` and whose name is `comm`.
fn process_named(dir: &Path, comm: &str) -> Option<u32> {
    atoll_agent::processes_under(dir).into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm) && atoll_agent::process::alive(*pid)
    })
}

impl Drop for Rig {
    /// Thaws what is frozen, heals the network, kills every process of the
    /// run, and only then unmounts the data directories and removes the
    /// cgroups (both refuse while a process is inside).
    fn drop(&mut self) {
        self.stopped.cont_all();
        self.cut.take();
        for a in &mut self.agents {
            a.take();
        }
        self.platform.server.kill();
        let dir = self.platform.dir.path().to_path_buf();
        for _ in 0..100 {
            atoll_agent::kill_processes_under(&dir);
            let left = self.groups.as_ref().map(|g| (0..self.hosts.len()).flat_map(|i| g.pids(i)).collect::<Vec<_>>()).unwrap_or_default();
            for pid in &left {
                let _ = send(*pid, "KILL");
            }
            if atoll_agent::processes_under(&dir).is_empty() && left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.disks.clear();
        self.groups.take();
    }
}

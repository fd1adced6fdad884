//! `atoll deploy TOPOLOGY.toml` (the platform on its own hosts, over SSH)
//! and `atoll node …`, what deploy runs on those hosts.

use std::path::PathBuf;
use std::time::Instant;

use atoll_deploy::deploy::{Settings, deploy, destroy};
use atoll_deploy::node::{self, NodeDirs, Service};
use atoll_deploy::topology::Topology;
use clap::{Args, Subcommand};

use crate::output::{CliError, Exit, fail};
use crate::session;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The topology: nodes, SSH access, directories, ports (see the README).
    topology: PathBuf,
    /// Stop and remove everything deploy installed on the nodes.
    #[arg(long)]
    destroy: bool,
    /// With --destroy: go on although the platform manages other clusters
    /// (their databases keep running, unmanaged).
    #[arg(long, requires = "destroy")]
    force: bool,
    /// Add the host keys of nodes not yet in known_hosts (a changed key is
    /// always refused).
    #[arg(long)]
    accept_new_host_keys: bool,
    /// What earlier runs did (the platform key and MetaDB's password until
    /// the servers hold them: owner-only); default
    /// `~/.local/state/atoll/deploy/NAME`.
    #[arg(long, env = "ATOLL_DEPLOY_STATE")]
    state_dir: Option<PathBuf>,
}

fn state_dir(topo: &Topology, given: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(d) = given {
        return Ok(d);
    }
    let base = match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x),
        (_, Some(h)) => PathBuf::from(h).join(".local/state"),
        _ => return Err(fail(Exit::Error, "neither XDG_STATE_HOME nor HOME is set: give --state-dir")),
    };
    Ok(base.join("atoll/deploy").join(&topo.name))
}

pub async fn run(a: DeployArgs) -> Result<Exit, CliError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let topo = Topology::load(&a.topology, home.as_deref()).map_err(|e| fail(Exit::Error, e.to_string()))?;
    let mut settings = Settings::new(std::env::current_exe()?, state_dir(&topo, a.state_dir)?);
    settings.accept_new_host_keys = a.accept_new_host_keys;
    settings.force = a.force;
    let progress = |line: &str| println!("  … {line}");
    let started = Instant::now();
    if a.destroy {
        println!("removing the platform {} from {} node(s):", topo.name, topo.nodes.len());
        let removed = destroy(&topo, &settings, &progress).await.map_err(|e| fail(Exit::Failed, e.to_string()))?;
        for line in &removed {
            println!("  removed   {line}");
        }
        println!("Platform {} removed ({:.1} s)", topo.name, started.elapsed().as_secs_f64());
        return Ok(Exit::Ok);
    }
    println!("deploying the platform {} on {} node(s):", topo.name, topo.nodes.len());
    let s = deploy(&topo, &settings, &progress)
        .await
        .map_err(|e| fail(Exit::Failed, format!("{e}\n(run `atoll deploy` again after fixing this: it resumes where it stopped)")))?;
    session::save(&session::Saved {
        servers: s.servers.clone(),
        server: None,
        token: Some(s.token.clone()),
        token_id: None,
        ca_pem: s.ca_pem.clone(),
    })?;
    let took = started.elapsed().as_secs_f64();
    if s.changes.is_empty() {
        println!("Platform {} is as the topology asks: nothing changed; the check passed ({took:.1} s)", topo.name);
    } else {
        println!("Platform {} deployed on {} node(s) ({took:.1} s)", topo.name, topo.nodes.len());
        for c in &s.changes {
            println!("  changed   {c}");
        }
    }
    println!("  servers   {}", s.servers.join("  "));
    if let Some(pem) = &s.ca_pem {
        let fp = atoll_pki::fingerprint(pem).unwrap_or_default();
        println!("  tls       the platform's CA is {fp} (this machine trusts it; elsewhere `atoll login --ca-fingerprint {fp}`)");
    }
    match (&s.admin_password, s.changes.is_empty()) {
        (Some(pw), false) => println!("  login     admin / {pw}  (you will choose a new password at first login)"),
        (Some(_), true) => println!("  login     admin, with the password you chose (the first one is in the state directory)"),
        (None, _) => println!("  login     admin, with the password set earlier"),
    }
    println!("  services  {}", s.services);
    let steps: Vec<String> = s.steps.iter().map(|(n, t)| format!("{n} {t:.1} s")).collect();
    println!("  steps     {}", steps.join(", "));
    println!("  state     {} (keep it private: it opens MetaDB)", settings.state_dir.display());
    println!("  next      `atoll platform`, `atoll check` (this machine is logged in)");
    Ok(Exit::Ok)
}

/// What `atoll deploy` runs on a node, with the binary it installed.
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Measure the host for a deployment (JSON).
    Probe {
        #[arg(long)]
        base: PathBuf,
        #[arg(long)]
        address: std::net::IpAddr,
        #[arg(long)]
        data_dir: String,
        #[arg(long, value_delimiter = ',')]
        ports: Vec<u16>,
        /// Another directory whose processes belong to the deployment.
        #[arg(long)]
        extra: Vec<PathBuf>,
    },
    /// Run a service (agent or server) with its current definition.
    Start {
        service: String,
        #[arg(long)]
        base: PathBuf,
    },
    Stop {
        service: String,
        #[arg(long)]
        base: PathBuf,
    },
    /// Keep a service running where there is no systemd.
    Supervise {
        service: String,
        #[arg(long)]
        base: PathBuf,
    },
    /// Become the service's process (systemd's ExecStart).
    Run {
        service: String,
        #[arg(long)]
        base: PathBuf,
    },
    /// Stop everything and remove the deployment's files.
    Destroy {
        #[arg(long)]
        base: PathBuf,
        #[arg(long)]
        extra: Vec<PathBuf>,
    },
}

pub async fn node(cmd: NodeCmd) -> Result<Exit, CliError> {
    let service = |s: &str| Service::parse(s).map_err(|e| fail(Exit::Error, e));
    let failed = |e: String| fail(Exit::Error, e);
    match cmd {
        NodeCmd::Probe { base, address, data_dir, ports, extra } => {
            let p = node::probe(&NodeDirs::new(base), address, &data_dir, ports, &extra).await;
            println!("{}", serde_json::to_string(&p)?);
        }
        NodeCmd::Start { service: s, base } => {
            let started = node::start(&NodeDirs::new(base), service(&s)?).await.map_err(failed)?;
            println!("{}", serde_json::to_string(&started)?);
        }
        NodeCmd::Stop { service: s, base } => node::stop(&NodeDirs::new(base), service(&s)?).await.map_err(failed)?,
        NodeCmd::Supervise { service: s, base } => node::supervise(&NodeDirs::new(base), service(&s)?).await.map_err(failed)?,
        NodeCmd::Run { service: s, base } => return Err(failed(node::exec(&NodeDirs::new(base), service(&s)?))),
        NodeCmd::Destroy { base, extra } => {
            for path in node::destroy(&NodeDirs::new(base), &extra).await.map_err(failed)? {
                println!("{path}");
            }
        }
    }
    Ok(Exit::Ok)
}

//! `atoll playground --nodes 3`: the platform itself highly available on
//! this machine. Each of 127.0.0.11–13 is a node with a server, an agent,
//! a MetaDB node and a proxy; MetaDB is the Galera cluster `atoll-meta`,
//! which the platform manages like any other. Then the `demo` cluster, as
//! in the one-node playground. Kill any one node's processes and the
//! platform keeps answering on the other two.

use std::path::Path;
use std::time::{Duration, Instant};

use atoll_client::{Client, Servers};
use atoll_deploy::bootstrap::{Options, bring_up};
use atoll_deploy::launch::{LocalLauncher, Role};
use atoll_deploy::layout::{Layout, METADB_CLUSTER, Node};

use crate::output::{CliError, Exit, fail, say, say_err};
use crate::playground::{CLUSTER, HOSTS, ensure_demo, print_demo, stop_cluster};
use crate::{daemons, session};

/// The nodes: the one-node playground's three hosts.
pub fn layout(agent_port: u16, tls: bool) -> Layout {
    let nodes = HOSTS
        .iter()
        .map(|(name, ip, zone)| Node {
            name: (*name).into(),
            address: ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
            zone: (*zone).into(),
        })
        .collect();
    let mut l = Layout::new(nodes);
    l.agent_port = agent_port;
    l.tls = tls;
    l
}

pub fn options(dir: &Path) -> Options {
    Options {
        work_dir: dir.to_path_buf(),
        bootstrap_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        profile: "sandbox".into(),
        host_data_dir: dir.join("db").display().to_string(),
        heartbeat_interval_ms: 1_000,
        offline_after_ms: 3_000,
        leader_lease_ms: 3_000,
        task_lease_ms: 4_000,
        scrape_interval_ms: 10_000,
        // Every server's charts within 10 s of the leader's.
        monitordb_flush_s: 10,
    }
}

pub async fn run(dir: &Path, keep: bool, agent_port: u16, tls: bool) -> Result<Exit, CliError> {
    if keep {
        return Err(fail(
            Exit::Error,
            "--keep works with one node only for now: a three-node playground starts afresh (its MetaDB cluster would need a guided cold start)",
        ));
    }
    let started = Instant::now();
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| fail(Exit::Error, format!("cannot clear {}: {e}", dir.display())))?;
    }
    std::fs::create_dir_all(dir)?;
    // Databases run as `mysql` and must reach their directories.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let interrupted = daemons::shutdown_on_signal();
    let layout = layout(agent_port, tls);
    let mut launcher = LocalLauncher::new(dir, std::env::current_exe()?);
    let progress = |line: &str| say!("  … {line}");
    say!("bringing up a three-node platform:");
    let opts = options(dir);
    let result = tokio::select! {
        r = bring_up(&layout, &mut launcher, &opts, &progress) => r.map_err(|e| fail(Exit::Failed, e.to_string())),
        _ = interrupted.cancelled() => Err(fail(Exit::Error, "interrupted while starting")),
    };
    let client = match &result {
        Ok(d) => Some(Client::over(&Servers::new(&d.servers), Some(d.token.clone()), Duration::from_secs(30))),
        Err(_) => None,
    };
    let demo = match &client {
        Some(c) => {
            say!("  … cluster {CLUSTER} on the platform");
            tokio::select! {
                r = ensure_demo(c) => r,
                _ = interrupted.cancelled() => Err(fail(Exit::Error, "interrupted while starting")),
            }
        }
        None => Ok(()),
    };
    let outcome = result.and_then(|d| demo.map(|()| d));
    match (&outcome, &client) {
        (Ok(d), Some(c)) => {
            session::save(&session::Saved {
                servers: d.servers.clone(),
                server: None,
                token: Some(d.token.clone()),
                token_id: None,
                ca_pem: d.ca_pem.clone(),
            })?;
            say!("Atoll playground is up: three nodes ({:.1} s)", started.elapsed().as_secs_f64());
            say!("  console   {}", d.servers.join("  "));
            if let Some(pem) = &d.ca_pem {
                let ca_file = dir.join("ca.pem");
                std::fs::write(&ca_file, pem)?;
                crate::playground::print_tls(&ca_file, &atoll_pki::fingerprint(pem).unwrap_or_default());
            }
            match &d.admin_password {
                Some(pw) => say!("  login     admin / {pw}  (you will choose a new password at first login)"),
                None => say!("  login     admin, with the password you set on an earlier run"),
            }
            say!("  nodes     host1 127.0.0.11 (z1), host2 127.0.0.12 (z2), host3 127.0.0.13 (z3): server, agent, MetaDB node, proxy each");
            say!(
                "  metadb    cluster {METADB_CLUSTER} (Galera, port {}), each server through its node's proxy (port {})",
                layout.metadb_ports.sql,
                layout.metadb_proxy.rw_port
            );
            print_demo(c).await;
            say!("  try       `atoll platform` shows the servers and the leader; kill one node's processes");
            say!("            (their pids are in {}/host*/pids) and the other two carry on", dir.display());
            say!("  data      {} (removed on exit)", dir.display());
            say!("Press Ctrl-C to stop.");
            write_pids(dir, &launcher);
            interrupted.cancelled().await;
        }
        (Err(e), _) => say_err!("error: {}", e.message),
        _ => {}
    }
    say!("stopping …");
    if let Some(c) = &client
        && let Err(e) = stop_cluster(c).await
    {
        say_err!("warning: {}", e.message);
    }
    launcher.stop_all(Role::Server, Duration::from_secs(5)).await;
    launcher.stop_all(Role::Agent, Duration::from_secs(5)).await;
    // Agents leave databases and proxies running when they stop (by
    // design); the playground owns everything under its directory.
    atoll_agent::kill_processes_under(dir);
    let _ = std::fs::remove_dir_all(dir);
    say!("playground stopped");
    outcome.map(|_| Exit::Ok)
}

/// `DIR/NODE/pids`: the node's processes, for a user trying failures.
fn write_pids(dir: &Path, launcher: &LocalLauncher) {
    for (name, _, _) in HOSTS {
        let line = |role| launcher.pid(name, role).map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let text = format!("server {}\nagent {}\n", line(Role::Server), line(Role::Agent));
        let _ = std::fs::write(dir.join(name).join("pids"), text);
    }
}

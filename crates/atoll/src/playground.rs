//! `atoll playground`: a whole platform on this machine in one command: a
//! server, three hosts on 127.0.0.11–13 in zones z1–z3 (each a real agent
//! process), prepared with the sandbox profile, and a three-zone MariaDB
//! Galera cluster on them. Ctrl-C stops the cluster cleanly, then the rest.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use atoll_api::v1::{ClusterCredentials, ClusterView, HostListItem, PrepareRequest, TaskView};
use atoll_client::Client;
use atoll_core::{ClusterStatus, HostStatus, TaskStatus};
use clap::Args;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::output::{CliError, Exit, fail, say, say_err};
use crate::{daemons, session};

pub const HOSTS: [(&str, &str, &str); 3] = [("host1", "127.0.0.11", "z1"), ("host2", "127.0.0.12", "z2"), ("host3", "127.0.0.13", "z3")];
/// The playground's database cluster.
pub const CLUSTER: &str = "demo";

#[derive(Debug, Args)]
pub struct PlaygroundArgs {
    /// Where the platform and the hosts keep their data.
    #[arg(long, default_value = "/tmp/atoll-playground")]
    dir: PathBuf,
    /// Keep the data when stopping, and reuse it on the next start.
    #[arg(long)]
    keep: bool,
    /// Address of the console and API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Port of the three agents' APIs (on 127.0.0.11–13).
    #[arg(long, default_value_t = 7070)]
    agent_port: u16,
    /// Platform nodes: 1 (one server on an embedded MetaDB), or 3 (a
    /// server, an agent, a MetaDB node and a proxy on each of
    /// 127.0.0.11–13; MetaDB is a Galera cluster the platform manages).
    #[arg(long, default_value_t = 1)]
    nodes: u8,
    /// Plain HTTP and replication in clear. By default everything is over
    /// TLS: the console and API over HTTPS with the platform's own CA,
    /// agents pinned to it with mutual TLS, the cluster's replication and
    /// state transfers over TLS.
    #[arg(long = "no-tls", action = clap::ArgAction::SetFalse)]
    tls: bool,
    /// The three hosts' addresses (one-node mode), for running beside
    /// something that uses 127.0.0.11–13 (the test suite).
    #[arg(long, value_delimiter = ',', default_values_t = HOSTS.map(|h| h.1.parse::<std::net::Ipv4Addr>().unwrap_or(std::net::Ipv4Addr::LOCALHOST)), hide = true)]
    host_ips: Vec<std::net::Ipv4Addr>,
}

pub async fn run(a: PlaygroundArgs) -> Result<Exit, CliError> {
    daemons::init_logging("warn");
    match a.nodes {
        1 => {}
        3 => return crate::playground_ha::run(&a.dir, a.keep, a.agent_port, a.tls).await,
        n => return Err(fail(Exit::Error, format!("--nodes {n}: use 1 (one server) or 3 (a highly available platform)"))),
    }
    if a.host_ips.len() != HOSTS.len() {
        return Err(fail(Exit::Error, format!("--host-ips: give {} addresses, separated by commas", HOSTS.len())));
    }
    let started = Instant::now();
    if !a.keep && a.dir.exists() {
        std::fs::remove_dir_all(&a.dir).map_err(|e| fail(Exit::Error, format!("cannot clear {}: {e}", a.dir.display())))?;
    }
    std::fs::create_dir_all(&a.dir)?;
    // Databases run as `mysql` and must reach their directories.
    std::fs::set_permissions(&a.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // Ctrl-C ends the wait; the server keeps running until the cluster is
    // stopped, so it has its own token.
    let interrupted = daemons::shutdown_on_signal();
    let server_stop = CancellationToken::new();
    let config = atoll_server::ServerConfig {
        listen: a.listen,
        data_dir: a.dir.join("server"),
        host_data_dir: a.dir.join("db").display().to_string(),
        profile: "sandbox".into(),
        heartbeat_interval_ms: 1_000,
        offline_after_ms: 3_000,
        tls: a.tls,
        ..Default::default()
    };
    // Over TLS, this process's clients trust the platform's CA from here on
    // (the server trusts it for its own calls).
    let server = atoll_server::start(config, server_stop.clone()).await?;
    let url = server.url.clone();
    // A service account of its own: admin must still choose a password at
    // the first console login.
    let token = server.issue_token("playground", atoll_core::Role::Admin, "playground cli").await?;
    let join = server.join_token().await?;

    let exe = std::env::current_exe()?;
    let mut agents = Vec::new();
    for ((name, _, zone), ip) in HOSTS.iter().zip(&a.host_ips) {
        let log = std::fs::File::create(a.dir.join(format!("agent-{name}.log")))?;
        let child = tokio::process::Command::new(&exe)
            .args(["agent", "--server", &url, "--listen", &format!("{ip}:{}", a.agent_port), "--name", name, "--zone", zone])
            .arg("--data-dir")
            .arg(a.dir.join(format!("agent-{name}")))
            .arg("--data-root")
            .arg(&a.dir)
            .args(if a.tls { vec!["--ca-fingerprint", server.ca_fingerprint.as_str()] } else { Vec::new() })
            .env("ATOLL_JOIN_TOKEN", &join)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Their own process group: Ctrl-C in the terminal reaches only
            // the playground, which stops the cluster through the agents
            // before it stops them.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        agents.push(child);
    }

    let client = Client::new(&url, Some(token.clone()));
    let result = tokio::select! {
        r = bring_up(&client, &mut agents, &a.dir) => r,
        _ = interrupted.cancelled() => Err(fail(Exit::Error, "interrupted while starting")),
    };
    match &result {
        Ok(()) => {
            let ca_file = a.dir.join("server/ca.pem");
            let ca_pem = if a.tls { Some(std::fs::read_to_string(&ca_file)?) } else { None };
            session::save(&session::Saved { servers: vec![url.clone()], server: None, token: Some(token), token_id: None, ca_pem })?;
            say!("Atoll playground is up ({:.1} s)", started.elapsed().as_secs_f64());
            say!("  console   {url}");
            if a.tls {
                print_tls(&ca_file, &server.ca_fingerprint);
            }
            match &server.admin_password {
                Some(pw) => say!("  login     admin / {pw}  (you will choose a new password at first login)"),
                None => say!("  login     admin, with the password you set on an earlier run"),
            }
            let hosts: Vec<String> = HOSTS.iter().zip(&a.host_ips).map(|((n, _, z), ip)| format!("{n} {ip} ({z})")).collect();
            say!("  hosts     {}", hosts.join(", "));
            print_demo(&client).await;
            say!("  cli       `atoll cluster show {CLUSTER}`, `atoll host list` work now (token in {})", session::dir().display());
            say!("  data      {}{}", a.dir.display(), if a.keep { " (kept)" } else { " (removed on exit; --keep keeps it)" });
            say!("Press Ctrl-C to stop.");
            interrupted.cancelled().await;
        }
        Err(e) => say_err!("error: {}", e.message),
    }
    say!("stopping the cluster …");
    if let Err(e) = stop_cluster(&client).await {
        say_err!("warning: {}", e.message);
    }
    server_stop.cancel();
    for mut c in agents {
        // SIGTERM first so agents stop cleanly; kill_on_drop is the backstop.
        if let Some(pid) = c.id() {
            let _ = atoll_agent::process::signal(pid, atoll_agent::process::Signal::Term);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
    }
    server.wait().await?;
    // Agents leave databases running when they stop; if the clean stop
    // above failed, do not leave them behind.
    atoll_agent::kill_processes_under(&a.dir.join("db"));
    // Agents leave their proxies serving too (an agent restart must not
    // drop application connections); the playground owns them all.
    for (name, _, _) in HOSTS {
        atoll_agent::kill_processes_under(&a.dir.join(format!("agent-{name}")).join("proxies"));
    }
    if !a.keep {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
    say!("playground stopped");
    result.map(|()| Exit::Ok)
}

/// How to reach the `demo` cluster.
pub(crate) async fn print_demo(client: &Client) {
    match client.get::<ClusterCredentials>(&format!("/api/v1/clusters/{CLUSTER}/credentials")).await {
        Ok(cr) => {
            say!("  cluster   {CLUSTER}: MariaDB Galera, 3 zones, durable commits");
            say!("  mysql     {}", cr.mysql_command);
            say!(
                "            (through the zone z1 proxy: port {} follows the writer, port {} balances reads; \
                 {}:{} is the first server itself)",
                cr.port,
                cr.port + 1,
                cr.direct_host,
                cr.direct_port
            );
        }
        Err(e) => say!("  cluster   {CLUSTER}: credentials unavailable ({e})"),
    }
}

/// Hosts online and prepared, then the cluster created (or started again
/// when `--keep` brought back a stopped one).
async fn bring_up(client: &Client, agents: &mut [tokio::process::Child], dir: &Path) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (child, (name, _, _)) in agents.iter_mut().zip(HOSTS) {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join(format!("agent-{name}.log"))).unwrap_or_default();
                let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
                return Err(fail(Exit::Error, format!("the agent of {name} stopped ({status}): {last}")));
            }
        }
        let hosts: Vec<HostListItem> = client.get("/api/v1/hosts").await?;
        // Online, and the clock offset measured, so the precheck judges it.
        let ready = |h: &HostListItem| h.status == HostStatus::Online && h.clock_offset_ms.is_some();
        if hosts.len() == HOSTS.len() && hosts.iter().all(ready) {
            break;
        }
        if Instant::now() > deadline {
            return Err(fail(
                Exit::Error,
                "the three agents did not come online within 30 s; see the agent-*.log files in the playground directory",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let names = HOSTS.iter().map(|h| h.0.to_string()).collect();
    let task: TaskView = client
        .post("/api/v1/hosts/prepare", &PrepareRequest { hosts: names, profile: Some("sandbox".into()), data_dir: None, owner: None })
        .await?;
    follow(client, &task.id, "preparing the hosts").await?;
    ensure_demo(client).await
}

/// The `demo` cluster created, or started again when `--keep` brought
/// back a stopped one.
pub(crate) async fn ensure_demo(client: &Client) -> Result<(), CliError> {
    let existing: Vec<ClusterView> = client.get("/api/v1/clusters").await?;
    let task: TaskView = match existing.iter().find(|c| c.name == CLUSTER) {
        None => {
            let servers: Vec<_> = HOSTS
                .iter()
                .enumerate()
                .map(|(i, (host, _, zone))| json!({ "name": format!("{CLUSTER}-{}", i + 1), "zone": zone, "host": host }))
                .collect();
            client.post("/api/v1/clusters", &json!({ "name": CLUSTER, "servers": servers })).await?
        }
        Some(c) if c.status == ClusterStatus::Stopped => client.post(&format!("/api/v1/clusters/{CLUSTER}/start"), &json!({})).await?,
        Some(_) => client.post(&format!("/api/v1/clusters/{CLUSTER}/recover"), &json!({})).await?,
    };
    follow(client, &task.id, "bringing up the cluster").await
}

pub(crate) async fn follow(client: &Client, id: &str, what: &str) -> Result<(), CliError> {
    loop {
        let t: TaskView = client.get(&format!("/api/v1/tasks/{id}")).await?;
        if t.status.is_settled() {
            if t.status != TaskStatus::Succeeded {
                let errors: Vec<String> = t.steps.iter().filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.key))).collect();
                return Err(fail(Exit::Failed, format!("{what} failed: {}", errors.join("; "))));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn stop_cluster(client: &Client) -> Result<(), CliError> {
    let clusters: Vec<ClusterView> = client.get("/api/v1/clusters").await?;
    if !clusters.iter().any(|c| c.name == CLUSTER && c.status != ClusterStatus::Stopped) {
        return Ok(());
    }
    let task: TaskView = client.post(&format!("/api/v1/clusters/{CLUSTER}/stop"), &json!({})).await?;
    tokio::time::timeout(Duration::from_secs(120), follow(client, &task.id, "stopping the cluster"))
        .await
        .map_err(|_| fail(Exit::Error, "the cluster did not stop within 120 s"))?
}

/// Where the platform's CA is and how to trust it.
pub fn print_tls(ca_file: &Path, fingerprint: &str) {
    say!("  tls       the platform's CA {} is {fingerprint}", ca_file.display());
    say!("            (trust it in your browser, or accept the warning; MySQL clients: --ssl-ca {})", ca_file.display());
}

//! `atoll playground`: a whole platform on this machine in one command: a
//! server, three hosts on 127.0.0.11–13 in zones z1–z3 (each a real agent
//! process), prepared with the sandbox profile. Ctrl-C stops everything.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use atoll_api::v1::{HostView, PrepareRequest, TaskView};
use atoll_client::Client;
use atoll_core::{HostStatus, TaskStatus};
use clap::Args;

use crate::output::{CliError, Exit, fail};
use crate::{daemons, session};

pub const HOSTS: [(&str, &str, &str); 3] = [("host1", "127.0.0.11", "z1"), ("host2", "127.0.0.12", "z2"), ("host3", "127.0.0.13", "z3")];

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
}

pub async fn run(a: PlaygroundArgs) -> Result<Exit, CliError> {
    daemons::init_logging("warn");
    let started = Instant::now();
    if !a.keep && a.dir.exists() {
        std::fs::remove_dir_all(&a.dir).map_err(|e| fail(Exit::Error, format!("cannot clear {}: {e}", a.dir.display())))?;
    }
    let shutdown = daemons::shutdown_on_signal();
    let config = atoll_server::ServerConfig {
        listen: a.listen,
        data_dir: a.dir.join("server"),
        host_data_dir: a.dir.join("db").display().to_string(),
        profile: "sandbox".into(),
        heartbeat_interval_ms: 1_000,
        offline_after_ms: 3_000,
        ..Default::default()
    };
    let server = atoll_server::start(config, shutdown.clone()).await?;
    let url = format!("http://{}", server.addr);
    // A service account of its own: admin must still choose a password at
    // the first console login.
    let token = server.issue_token("playground", atoll_core::Role::Admin, "playground cli").await?;
    let join = server.join_token().await?;

    let exe = std::env::current_exe()?;
    let mut agents = Vec::new();
    for (name, ip, zone) in HOSTS {
        let log = std::fs::File::create(a.dir.join(format!("agent-{name}.log")))?;
        let child = tokio::process::Command::new(&exe)
            .args([
                "agent",
                "--server",
                &url,
                "--join-token",
                &join,
                "--listen",
                &format!("{ip}:{}", a.agent_port),
                "--name",
                name,
                "--zone",
                zone,
            ])
            .arg("--data-dir")
            .arg(a.dir.join(format!("agent-{name}")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        agents.push(child);
    }

    let client = Client::new(&url, Some(token.clone()));
    let result = bring_up(&client, &shutdown, &mut agents, &a.dir).await;
    match result {
        Ok(()) => {
            session::save(&session::Saved { server: Some(url.clone()), token: Some(token) })?;
            println!("Atoll playground is up ({:.1} s)", started.elapsed().as_secs_f64());
            println!("  console   {url}");
            match &server.admin_password {
                Some(pw) => println!("  login     admin / {pw}  (you will choose a new password at first login)"),
                None => println!("  login     admin, with the password you set on an earlier run"),
            }
            println!("  hosts     host1 127.0.0.11 (z1), host2 127.0.0.12 (z2), host3 127.0.0.13 (z3): online, prepared");
            println!("  cli       `atoll host list`, `atoll task list` work now (token saved in {})", session::dir().display());
            println!("  data      {}{}", a.dir.display(), if a.keep { " (kept)" } else { " (removed on exit; --keep keeps it)" });
            println!("Press Ctrl-C to stop.");
            shutdown.cancelled().await;
        }
        Err(e) => {
            shutdown.cancel();
            eprintln!("error: {}", e.message);
        }
    }
    for mut c in agents {
        // SIGTERM first so agents stop cleanly; kill_on_drop is the backstop.
        if let Some(pid) = c.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), c.wait()).await;
    }
    server.wait().await?;
    if !a.keep {
        let _ = std::fs::remove_dir_all(&a.dir);
    }
    println!("playground stopped");
    Ok(Exit::Ok)
}

async fn bring_up(
    client: &Client,
    shutdown: &tokio_util::sync::CancellationToken,
    agents: &mut [tokio::process::Child],
    dir: &std::path::Path,
) -> Result<(), CliError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for (child, (name, _, _)) in agents.iter_mut().zip(HOSTS) {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join(format!("agent-{name}.log"))).unwrap_or_default();
                let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
                return Err(fail(Exit::Error, format!("the agent of {name} stopped ({status}): {last}")));
            }
        }
        let hosts: Vec<HostView> = client.get("/api/v1/hosts").await?;
        // Online, and the clock offset measured, so the precheck judges it.
        let ready =
            |h: &HostView| h.host.status == HostStatus::Online && h.host.facts.as_ref().is_some_and(|f| f.clock_offset_ms.is_some());
        if hosts.len() == HOSTS.len() && hosts.iter().all(ready) {
            break;
        }
        if Instant::now() > deadline || shutdown.is_cancelled() {
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
    loop {
        let t: TaskView = client.get(&format!("/api/v1/tasks/{}", task.id)).await?;
        if t.status.is_settled() {
            if t.status != TaskStatus::Succeeded {
                let errors: Vec<String> = t.steps.iter().filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.key))).collect();
                return Err(fail(Exit::Failed, format!("preparing the hosts failed: {}", errors.join("; "))));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

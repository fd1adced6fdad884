//! Command-line parsing and the client subcommands.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use atoll_api::v1::*;
use atoll_client::Client;
use atoll_core::TaskStatus;
use atoll_plan::check::CheckStatus;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::daemons;
use crate::output::{self, CliError, Exit, fail};
use crate::session;

#[derive(Debug, Parser)]
#[command(name = "atoll", version, about = "Plan, deploy and operate highly-available MariaDB Galera clusters on your own hosts")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// Server URL; default: the one `atoll login` saved.
    #[arg(long, env = "ATOLL_SERVER", global = true)]
    server: Option<String>,
    /// API token; default: the one `atoll login` saved.
    #[arg(long, env = "ATOLL_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform server (API, console, task executor).
    Server(ServerArgs),
    /// Run the agent of this host.
    Agent(AgentArgs),
    /// A whole platform on this machine: server, three hosts, console.
    Playground(crate::playground::PlaygroundArgs),
    /// Log in and keep an API token for the next commands.
    Login(LoginArgs),
    /// Print the servers a deployment mode needs (seed sizing tables).
    Plan(PlanArgs),
    /// Hosts: add, list, show, check, prepare, remove.
    #[command(subcommand)]
    Host(HostCmd),
    /// Tasks: list, show, watch, retry, skip, cancel, roll back.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Database clusters: create, list, show, credentials.
    #[command(subcommand)]
    Cluster(crate::clusters::ClusterCmd),
    /// Engine builds: add a tarball, list, show, remove, push to hosts.
    #[command(subcommand)]
    Package(crate::packages::PackageCmd),
    /// Run the MySQL proxy of one cluster (read-write and read-only ports).
    Proxy(crate::proxy::ProxyArgs),
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// TOML config file; flags and ATOLL_* variables override its keys.
    #[arg(long, env = "ATOLL_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "ATOLL_LISTEN")]
    listen: Option<SocketAddr>,
    #[arg(long, env = "ATOLL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "ATOLL_METADB_URL", hide_env_values = true)]
    metadb_url: Option<String>,
    #[arg(long, env = "ATOLL_PUBLIC_URL")]
    public_url: Option<String>,
    #[arg(long, env = "ATOLL_HEARTBEAT_INTERVAL_MS")]
    heartbeat_interval_ms: Option<u64>,
    #[arg(long, env = "ATOLL_OFFLINE_AFTER_MS")]
    offline_after_ms: Option<u64>,
    #[arg(long, env = "ATOLL_SESSION_IDLE_S")]
    session_idle_s: Option<u64>,
    #[arg(long, env = "ATOLL_LOGIN_MAX_FAILURES")]
    login_max_failures: Option<u32>,
    #[arg(long, env = "ATOLL_LOGIN_WINDOW_S")]
    login_window_s: Option<u64>,
    #[arg(long, env = "ATOLL_LOGIN_LOCK_S")]
    login_lock_s: Option<u64>,
    #[arg(long, env = "ATOLL_TASK_LEASE_MS")]
    task_lease_ms: Option<u64>,
    #[arg(long, env = "ATOLL_HOST_DATA_DIR")]
    host_data_dir: Option<String>,
    #[arg(long, env = "ATOLL_PROFILE")]
    profile: Option<String>,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// URL of a platform server.
    #[arg(long, env = "ATOLL_SERVER")]
    server: String,
    /// Needed the first time this host joins (`atoll host join-token`).
    #[arg(long, env = "ATOLL_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Address of the agent's API; its IP is the host's address.
    #[arg(long, env = "ATOLL_AGENT_LISTEN")]
    listen: SocketAddr,
    #[arg(long, env = "ATOLL_AGENT_DATA_DIR", default_value = "/var/lib/atoll-agent")]
    data_dir: PathBuf,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    zone: Option<String>,
    /// Seconds between full fact reports.
    #[arg(long, default_value_t = 30)]
    facts_every_s: u64,
}

#[derive(Debug, Args)]
struct LoginArgs {
    #[arg(long, env = "ATOLL_SERVER")]
    server: String,
    #[arg(long, default_value = "admin")]
    user: String,
    /// Read the password from stdin's first line (and, when a new one is
    /// required, the new password from its second line).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// single-node, multi-node, multi-cluster or multi-zone.
    #[arg(long)]
    mode: String,
    /// Managed hosts, to size the platform server, MetaDB and MonitorDB.
    #[arg(long)]
    hosts: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum HostCmd {
    /// Declare a host; prints the command that starts its agent.
    Add {
        address: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        zone: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    List {
        #[command(flatten)]
        conn: Conn,
    },
    Show {
        host: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Run the environment precheck (exit 3 when an item fails).
    Check {
        /// Hosts to check; all when none are named.
        hosts: Vec<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        data_dir: Option<String>,
        /// Ports that must be free (comma-separated); default 3306,4567,4568,4444.
        #[arg(long, value_delimiter = ',')]
        ports: Option<Vec<u16>>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create directories and run the precheck, as a task.
    Prepare {
        #[arg(required = true)]
        hosts: Vec<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        data_dir: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        /// Return at once instead of following the task.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a host from the platform, as a task.
    Remove {
        host: String,
        /// Also delete the directories `prepare` created.
        #[arg(long)]
        purge: bool,
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print the join token and the agent command line.
    JoinToken {
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Subcommand)]
enum TaskCmd {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
    Show {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Follow a task until it settles (exit 3 unless it succeeds).
    Watch {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    Logs {
        id: String,
        #[arg(long)]
        step: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    Retry {
        id: String,
        step: String,
        #[command(flatten)]
        conn: Conn,
    },
    Skip {
        id: String,
        step: String,
        #[command(flatten)]
        conn: Conn,
    },
    Cancel {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    Rollback {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

impl Cli {
    /// `atoll proxy` runs on a runtime of its own kind (see `main`).
    pub fn is_proxy(&self) -> bool {
        matches!(self.command, Command::Proxy(_))
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Server(a) => serve(a).await,
        Command::Agent(a) => agent(a).await,
        Command::Playground(a) => crate::playground::run(a).await,
        Command::Login(a) => login(a).await,
        Command::Plan(a) => plan(a),
        Command::Host(c) => host(c).await,
        Command::Task(c) => task(c).await,
        Command::Cluster(c) => crate::clusters::run(c).await,
        Command::Package(c) => crate::packages::run(c).await,
        Command::Proxy(a) => crate::proxy::run(a).await,
    };
    match result {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.exit.into()
        }
    }
}

pub type Res = Result<Exit, CliError>;

async fn serve(a: ServerArgs) -> Res {
    daemons::init_logging("info,sqlx=warn,tower_http=warn");
    let mut c = match &a.config {
        Some(p) => atoll_server::ServerConfig::from_file(p)?,
        None => atoll_server::ServerConfig::default(),
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { c.$f = v; } )* };
    }
    set!(
        listen,
        data_dir,
        heartbeat_interval_ms,
        offline_after_ms,
        session_idle_s,
        login_max_failures,
        login_window_s,
        login_lock_s,
        task_lease_ms,
        host_data_dir,
        profile
    );
    if a.metadb_url.is_some() {
        c.metadb_url = a.metadb_url;
    }
    if a.public_url.is_some() {
        c.public_url = a.public_url;
    }
    let shutdown = daemons::shutdown_on_signal();
    let running = atoll_server::start(c.clone(), shutdown).await?;
    println!("atoll server listening on http://{} (console and API)", running.addr);
    if let Some(pw) = &running.admin_password {
        println!("first start: created user admin with password {pw}");
        println!("it is shown only this once; you will be asked to change it at first login");
    }
    running.wait().await?;
    Ok(Exit::Ok)
}

async fn agent(a: AgentArgs) -> Res {
    daemons::init_logging("info");
    let config = atoll_agent::AgentConfig {
        server: a.server,
        join_token: a.join_token,
        listen: a.listen,
        data_dir: a.data_dir,
        name: a.name,
        zone: a.zone,
        facts_every: Duration::from_secs(a.facts_every_s.max(1)),
    };
    atoll_agent::run(config, daemons::shutdown_on_signal()).await?;
    Ok(Exit::Ok)
}

pub fn client(conn: &Conn) -> Result<Client, CliError> {
    let saved = session::load();
    let server =
        conn.server.clone().or(saved.server).ok_or_else(|| fail(Exit::Error, "no server: pass --server URL or run `atoll login` first"))?;
    let token = conn.token.clone().or(saved.token);
    if token.is_none() {
        return Err(fail(Exit::Error, "not logged in: run `atoll login --server URL` or set ATOLL_TOKEN"));
    }
    Ok(Client::new(&server, token))
}

fn read_secret(prompt: &str, lines: &mut Option<std::io::Lines<std::io::StdinLock<'static>>>) -> Result<String, CliError> {
    match lines {
        Some(l) => l.next().transpose()?.ok_or_else(|| fail(Exit::Error, format!("stdin ended before the {prompt}"))),
        None => Ok(rpassword::prompt_password(format!("{prompt}: "))?),
    }
}

async fn login(a: LoginArgs) -> Res {
    let mut lines = a.password_stdin.then(|| std::io::stdin().lock().lines());
    let password = read_secret("password", &mut lines)?;
    let mut c = Client::new(&a.server, None);
    let resp: LoginResponse = c.post("/api/v1/auth/login", &LoginRequest { username: a.user.clone(), password: password.clone() }).await?;
    c.set_token(Some(resp.token.clone()));
    if resp.must_change_password {
        eprintln!("{} must choose a new password now (at least 10 characters)", resp.user);
        let new_password = read_secret("new password", &mut lines)?;
        if lines.is_none() && rpassword::prompt_password("repeat it: ")? != new_password {
            return Err(fail(Exit::Error, "the two passwords differ; nothing was changed"));
        }
        let _: serde_json::Value =
            c.post("/api/v1/auth/password", &ChangePasswordRequest { current_password: password, new_password }).await?;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let token: CreatedToken = c.post("/api/v1/tokens", &CreateTokenRequest { name: format!("cli@{}", host.trim()) }).await?;
    let _: serde_json::Value = c.post("/api/v1/auth/logout", &json!({})).await?;
    let path = session::save(&session::Saved { server: Some(a.server.clone()), token: Some(token.token) })?;
    println!("logged in to {} as {} ({}); token saved in {}", a.server, resp.user, resp.role, path.display());
    Ok(Exit::Ok)
}

fn plan(a: PlanArgs) -> Res {
    let mode: atoll_plan::sizing::Mode = a.mode.parse()?;
    let p = atoll_plan::sizing::plan(mode, a.hosts)?;
    if a.json {
        output::print_json(&p)?;
        return Ok(Exit::Ok);
    }
    println!("{} deployment: {}\n", p.mode, p.summary);
    let mut t = output::table(&["server", "count", "minimum functional", "minimum performance", "notes"]);
    for r in &p.rows {
        let mut notes = r.purpose.clone();
        if let Some(s) = &r.shares_with {
            notes = format!("{notes}; {s}");
        }
        let count = if r.optional { format!("{} (optional)", r.quantity) } else { r.quantity.to_string() };
        t.add_row(vec![
            r.server_type.title().to_string(),
            count,
            r.functional.to_string(),
            r.performance.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            notes,
        ]);
    }
    println!("{t}");
    if let Some(s) = &p.platform {
        println!(
            "\nfor {} managed hosts: platform server {} GiB memory; MetaDB {}; MonitorDB {}",
            s.managed_hosts, s.server_memory_gib, s.metadb, s.monitordb
        );
    }
    for n in &p.notes {
        println!("- {n}");
    }
    Ok(Exit::Ok)
}

async fn host(cmd: HostCmd) -> Res {
    match cmd {
        HostCmd::Add { address, name, zone, conn } => {
            let c = client(&conn)?;
            let added: AddedHost = c.post("/api/v1/hosts", &AddHostRequest { address, name, zone }).await?;
            if conn.json {
                output::print_json(&added)?;
            } else {
                println!(
                    "added host {} ({}), pending until its agent registers; start it there with:\n  {}",
                    added.host.host.name, added.host.host.address, added.agent_command
                );
            }
            Ok(Exit::Ok)
        }
        HostCmd::List { conn } => {
            let hosts: Vec<HostListItem> = client(&conn)?.get("/api/v1/hosts").await?;
            if conn.json {
                output::print_json(&hosts)?;
                return Ok(Exit::Ok);
            }
            let now = atoll_server::state::now_ms();
            let mut t = output::table(&["name", "address", "zone", "status", "cores", "memory", "heartbeat", "precheck"]);
            for h in &hosts {
                t.add_row(vec![
                    h.name.clone(),
                    h.address.clone(),
                    h.zone.clone().unwrap_or_else(|| "-".into()),
                    h.status.to_string(),
                    h.cpu_cores.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    h.memory_bytes.map(output::gib).unwrap_or_else(|| "-".into()),
                    output::ago(h.last_heartbeat_ms, now),
                    h.checks.as_ref().map(|c| format!("{} ({})", c.worst, c.profile)).unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
            let s = HostSummary::of(hosts.iter().map(|h| h.status));
            println!("{} hosts: {} online, {} offline, {} pending", s.total, s.online, s.offline, s.pending);
            Ok(Exit::Ok)
        }
        HostCmd::Show { host, conn } => {
            let h: HostView = client(&conn)?.get(&format!("/api/v1/hosts/{host}")).await?;
            if conn.json {
                output::print_json(&h)?;
            } else {
                print_host(&h);
            }
            Ok(Exit::Ok)
        }
        HostCmd::Check { hosts, profile, data_dir, ports, conn } => {
            let r: CheckResponse = client(&conn)?.post("/api/v1/hosts/check", &CheckRequest { hosts, profile, data_dir, ports }).await?;
            if conn.json {
                output::print_json(&r)?;
            } else {
                for h in &r.hosts {
                    println!("{} ({} profile, data dir {}): {}", h.host, h.profile, h.data_dir, h.worst);
                    print_checks(&h.results);
                }
                if !r.across_hosts.is_empty() {
                    println!("across hosts:");
                    print_checks(&r.across_hosts);
                }
                println!("overall: {}", r.worst);
            }
            Ok(if r.worst == CheckStatus::Fail { Exit::Failed } else { Exit::Ok })
        }
        HostCmd::Prepare { hosts, profile, data_dir, owner, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = c.post("/api/v1/hosts/prepare", &PrepareRequest { hosts, profile, data_dir, owner }).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        HostCmd::Remove { host, purge, no_wait, conn } => {
            let c = client(&conn)?;
            let t: TaskView = c.delete(&format!("/api/v1/hosts/{host}?purge={purge}")).await?;
            follow_new(&c, t, no_wait, conn.json).await
        }
        HostCmd::JoinToken { conn } => {
            let j: JoinTokenView = client(&conn)?.get("/api/v1/join-token").await?;
            if conn.json {
                output::print_json(&j)?;
            } else {
                println!("{}\n\nstart an agent on each host with:\n  {}", j.token, j.agent_command);
            }
            Ok(Exit::Ok)
        }
    }
}

fn print_host(h: &HostView) {
    let host = &h.host;
    println!("{} ({})  {}  zone {}", host.name, host.id, host.status, host.zone.as_deref().unwrap_or("-"));
    println!(
        "address {}  agent {}  version {}",
        host.address,
        host.agent_url.as_deref().unwrap_or("-"),
        host.agent_version.as_deref().unwrap_or("-")
    );
    if let Some(f) = &host.facts {
        println!("cpu     {} × {}", f.cpu.cores, f.cpu.model);
        println!("memory  {} total, {} available", output::gib(f.memory_bytes), output::gib(f.memory_available_bytes));
        println!("os      {} (kernel {}, {})", f.os.name, f.os.kernel, f.os.arch);
        println!("nofile  {} soft / {} hard", f.nofile.soft, f.nofile.hard);
        println!("clock   {}", f.clock_offset_ms.map(|o| format!("{o:+} ms from the server")).unwrap_or_else(|| "not measured yet".into()));
        let mut t = output::table(&["mount", "device", "fs", "size", "free", "ssd"]);
        for m in &f.mounts {
            let ssd = match m.ssd {
                Some(true) => "yes",
                Some(false) => "no",
                None => "unknown",
            };
            t.add_row(vec![
                m.path.clone(),
                m.device.clone(),
                m.fs_type.clone(),
                output::gib(m.total_bytes),
                output::gib(m.free_bytes),
                ssd.into(),
            ]);
        }
        println!("{t}");
        for n in &f.nics {
            println!(
                "nic     {}  {}  mtu {}",
                n.name,
                n.speed_mbps.map(|s| format!("{s} Mbit/s")).unwrap_or_else(|| "speed unknown".into()),
                n.mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
            );
        }
        for (k, v) in &f.sysctls {
            println!("sysctl  {k} = {v}");
        }
        if f.engines.is_empty() {
            println!("engine  none: install mariadb-server galera-4 or `atoll package push NAME --host {}`", host.name);
        }
        for e in &f.engines {
            println!(
                "engine  {}  {}  {}",
                e.name,
                e.version.as_deref().unwrap_or("version unknown"),
                e.basedir.as_deref().unwrap_or(&e.mariadbd)
            );
        }
    }
    if let Some(c) = &h.checks {
        println!("last precheck ({} profile, {}): {}", c.profile, output::time(Some(c.checked_at_ms)), c.worst);
        print_checks(&c.results);
    }
}

fn print_checks(results: &[atoll_plan::check::CheckResult]) {
    let mut t = output::table(&["item", "result", "measured", "required", "fix"]);
    for r in results {
        t.add_row(vec![r.item.clone(), r.status.to_string(), r.measured.clone(), r.required.clone(), r.fix.clone().unwrap_or_default()]);
    }
    println!("{t}");
}

pub async fn follow_new(c: &Client, t: TaskView, no_wait: bool, json: bool) -> Res {
    if no_wait {
        if json {
            output::print_json(&t)?;
        } else {
            println!("task {} started: {}  (follow it with `atoll task watch {}`)", t.id, t.title, t.id);
        }
        return Ok(Exit::Ok);
    }
    if !json {
        eprintln!("task {}: {}", t.id, t.title);
    }
    watch(c, &t.id, json).await
}

/// Follows a task with a progress bar until it settles.
async fn watch(c: &Client, id: &str, json: bool) -> Res {
    let bar = if json || !std::io::stderr().is_terminal() { ProgressBar::hidden() } else { ProgressBar::new(1) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut last_log = 0;
    let t = loop {
        let t: TaskView = c.get(&format!("/api/v1/tasks/{id}")).await?;
        bar.set_length(t.steps_total as u64);
        bar.set_position(t.steps_done as u64);
        let running: Vec<&str> = t.steps.iter().filter(|s| s.status.as_str().ends_with("ing")).map(|s| s.title.as_str()).collect();
        bar.set_message(running.join(", "));
        let logs: Vec<StepLogView> = c.get(&format!("/api/v1/tasks/{id}/logs?after={last_log}")).await?;
        for l in &logs {
            if !json {
                bar.println(format!("{} {} [{}#{}] {}", output::time(Some(l.at_ms)), l.level, l.step, l.attempt, l.message));
            }
            last_log = l.id;
        }
        if t.status.is_settled() {
            break t;
        }
        bar.tick();
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    bar.finish_and_clear();
    if json {
        output::print_json(&t)?;
    } else {
        print_task(&t);
    }
    Ok(if t.status == TaskStatus::Succeeded { Exit::Ok } else { Exit::Failed })
}

fn print_task(t: &TaskView) {
    println!("task {}  {}  [{}]  {}/{} steps", t.id, t.title, t.status, t.steps_done, t.steps_total);
    let mut table = output::table(&["step", "status", "attempts", "after", "error"]);
    for s in &t.steps {
        table.add_row(vec![
            s.key.clone(),
            s.status.to_string(),
            format!("{}/{}", s.attempts, s.max_attempts),
            s.deps.join(", "),
            s.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    match t.status {
        TaskStatus::Failed => println!(
            "failed: retry a step with `atoll task retry {} STEP`, skip it with `atoll task skip`, or `atoll task rollback {}`",
            t.id, t.id
        ),
        TaskStatus::Cancelled => println!("cancelled: undo what ran with `atoll task rollback {}`", t.id),
        _ => {}
    }
}

async fn task(cmd: TaskCmd) -> Res {
    match cmd {
        TaskCmd::List { status, limit, conn } => {
            let mut path = format!("/api/v1/tasks?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            let tasks: Vec<TaskView> = client(&conn)?.get(&path).await?;
            if conn.json {
                output::print_json(&tasks)?;
                return Ok(Exit::Ok);
            }
            let mut t = output::table(&["id", "title", "status", "steps", "by", "created"]);
            for task in &tasks {
                t.add_row(vec![
                    task.id.clone(),
                    task.title.clone(),
                    task.status.to_string(),
                    format!("{}/{}", task.steps_done, task.steps_total),
                    task.created_by.clone(),
                    output::time(Some(task.created_at_ms)),
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        TaskCmd::Show { id, conn } => {
            let t: TaskView = client(&conn)?.get(&format!("/api/v1/tasks/{id}")).await?;
            if conn.json {
                output::print_json(&t)?;
            } else {
                print_task(&t);
            }
            Ok(Exit::Ok)
        }
        TaskCmd::Watch { id, conn } => watch(&client(&conn)?, &id, conn.json).await,
        TaskCmd::Logs { id, step, conn } => {
            let path = match step {
                Some(s) => format!("/api/v1/tasks/{id}/logs?step={s}"),
                None => format!("/api/v1/tasks/{id}/logs"),
            };
            let logs: Vec<StepLogView> = client(&conn)?.get(&path).await?;
            if conn.json {
                output::print_json(&logs)?;
            } else {
                for l in logs {
                    println!("{} {} [{}#{}] {}", output::time(Some(l.at_ms)), l.level, l.step, l.attempt, l.message);
                }
            }
            Ok(Exit::Ok)
        }
        TaskCmd::Retry { id, step, conn } => act(&conn, &format!("/api/v1/tasks/{id}/steps/{step}/retry")).await,
        TaskCmd::Skip { id, step, conn } => act(&conn, &format!("/api/v1/tasks/{id}/steps/{step}/skip")).await,
        TaskCmd::Cancel { id, conn } => act(&conn, &format!("/api/v1/tasks/{id}/cancel")).await,
        TaskCmd::Rollback { id, conn } => act(&conn, &format!("/api/v1/tasks/{id}/rollback")).await,
    }
}

async fn act(conn: &Conn, path: &str) -> Res {
    let t: TaskView = client(conn)?.post(path, &json!({})).await?;
    if conn.json {
        output::print_json(&t)?;
    } else {
        print_task(&t);
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    /// clap checks a command's flags (e.g. two arguments claiming one long
    /// name) only when it is built, and only in debug builds: build them
    /// all here, so a clash fails this test instead of a user's command.
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

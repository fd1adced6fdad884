//! Test harness: starts real `atoll` processes (server, agents) on loopback
//! addresses in a temporary directory, and kills them when dropped, so a
//! failing test leaves nothing running.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atoll_api::v1::{ChangePasswordRequest, CreateTokenRequest, CreatedToken, LoginRequest, LoginResponse};
use atoll_client::Client;

pub use atoll_client;

pub mod browser;
pub mod campaign;
pub mod metadb;
pub mod netns;
pub mod prober;
pub mod secrets;
pub mod smtp;
pub mod sshd;
pub mod webhook;

pub const NEW_ADMIN_PASSWORD: &str = "test-admin-password-1";

/// A child process that is killed when dropped.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        atoll_pki::install_provider();
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().with_context(|| format!("starting {name}"))?;
        Ok(Proc { name: name.into(), child: Some(child), log })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to 10 s (then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = atoll_agent::process::signal(c.id(), atoll_agent::process::Signal::Term);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process has exited (and reap it).
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `atoll` binary under test.
pub fn atoll_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_atoll") {
        return PathBuf::from(p);
    }
    let mut dir = std::env::current_exe().unwrap_or_default();
    while dir.pop() {
        let candidate = dir.join("atoll");
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("atoll")
}

/// A free TCP port on `ip` (bound then released; the OS does not hand it
/// out again at once).
/// A raw HTTP client that trusts the platform CAs this process trusts
/// (a server or deployment run in the test process trusts its own): for
/// checks `atoll_client::Client` does not make (status codes, headers,
/// pages).
pub fn http() -> reqwest::Client {
    atoll_client::platform_http(reqwest::Client::builder().timeout(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("an HTTP client for the platform: {e}"))
}

pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Polls `f` until it returns `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    // Test bodies poll with their own reqwest clients: make sure TLS has its provider.
    atoll_pki::install_provider();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Options for the server a test starts.
#[derive(Debug, Clone)]
pub struct ServerOpts {
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Run the server inside this network namespace ([`netns::Netns`]),
    /// listening on `listen_ip`.
    pub netns: Option<String>,
    /// The address the first server binds (port 0); default 127.0.0.1.
    pub listen_ip: Option<String>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        Self {
            extra_args: vec![
                // Plain HTTP: most tests are about something else; TLS
                // (the default) is what `ServerOpts::tls` keeps.
                "--no-tls".into(),
                "--heartbeat-interval-ms".into(),
                "300".into(),
                "--offline-after-ms".into(),
                "1500".into(),
                "--task-lease-ms".into(),
                "1500".into(),
                // Metrics every 2 s, written every 2 s: tests read them soon.
                "--scrape-interval-ms".into(),
                "2000".into(),
                "--scrape-timeout-ms".into(),
                "1500".into(),
                "--monitordb-flush-s".into(),
                "2".into(),
            ],
            env: Vec::new(),
            netns: None,
            listen_ip: None,
        }
    }
}

impl ServerOpts {
    /// The defaults over TLS, as `atoll server` runs without `--no-tls`.
    pub fn tls() -> Self {
        let mut o = Self::default();
        o.extra_args.retain(|a| a != "--no-tls");
        o
    }
}

/// A platform under test: one server and any number of agents.
pub struct Platform {
    pub dir: tempfile::TempDir,
    pub server: Proc,
    pub url: String,
    pub addr: SocketAddr,
    pub admin_password: String,
    /// An admin API token, once [`Platform::login_admin`] ran.
    pub token: Option<String>,
    pub opts: ServerOpts,
}

impl Platform {
    pub async fn start(opts: ServerOpts) -> Result<Platform> {
        let dir = tempfile::tempdir()?;
        // Database servers run as `mysql` and must reach their directories
        // below this one.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        // Port 0: the server binds a free port and prints it, so parallel
        // tests never race for one.
        let listen = format!("{}:0", opts.listen_ip.as_deref().unwrap_or("127.0.0.1"));
        let mut server = spawn_server(dir.path(), listen.parse()?, &opts)?;
        let (scheme, addr): (String, SocketAddr) = wait_for("the server to print its address", Duration::from_secs(30), || {
            let out = server.output();
            let exited = server.exited();
            async move {
                if exited {
                    return Some(Err(anyhow::anyhow!("server exited:\n{out}")));
                }
                out.lines()
                    .find_map(|l| l.strip_prefix("atoll server listening on "))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|url| url.split_once("://"))
                    .and_then(|(scheme, a)| Some((scheme.to_string(), a.parse().ok()?)))
                    .map(Ok)
            }
        })
        .await??;
        if scheme == "https" {
            // Trust the platform's CA, as a user's CLI would after login.
            let ca = std::fs::read_to_string(dir.path().join("server/ca.pem"))?;
            atoll_client::trust_platform_ca(&ca)?;
        }
        let url = format!("{scheme}://{addr}");
        let mut p = Platform { dir, server, url, addr, admin_password: String::new(), token: None, opts };
        p.wait_listening().await?;
        p.admin_password = p
            .server
            .output()
            .lines()
            .find_map(|l| l.strip_prefix("first start: created user admin with password ").map(|s| s.trim().to_string()))
            .context("server did not print the admin password")?;
        Ok(p)
    }

    /// Kills the server (SIGKILL) and starts it again on the same address
    /// and data, with `opts`.
    pub async fn restart_server(&mut self, opts: ServerOpts) -> Result<()> {
        self.server.kill();
        let log_name = format!("server-{}.log", atoll_core::time::now_ms());
        self.server = spawn_server_logged(self.dir.path(), self.addr, &opts, self.dir.path().join(log_name))?;
        self.opts = opts;
        self.wait_listening().await
    }

    async fn wait_listening(&mut self) -> Result<()> {
        let client = atoll_client::Client::with_timeout(&self.url, None, Duration::from_secs(2));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if client.get_streaming("/healthz").await.is_ok() {
                return Ok(());
            }
            if self.server.exited() {
                bail!("server exited:\n{}", self.server.output());
            }
            if Instant::now() > deadline {
                bail!("server did not become healthy:\n{}", self.server.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn host_data_dir(&self) -> PathBuf {
        self.dir.path().join("hosts-db")
    }

    /// Logs in as admin, sets the new password, and keeps an API token.
    pub async fn login_admin(&mut self) -> Result<Client> {
        let mut c = Client::new(&self.url, None);
        let r: LoginResponse =
            c.post("/api/v1/auth/login", &LoginRequest { username: "admin".into(), password: self.admin_password.clone() }).await?;
        c.set_token(Some(r.token));
        if r.must_change_password {
            let _: serde_json::Value = c
                .post(
                    "/api/v1/auth/password",
                    &ChangePasswordRequest { current_password: self.admin_password.clone(), new_password: NEW_ADMIN_PASSWORD.into() },
                )
                .await?;
            self.admin_password = NEW_ADMIN_PASSWORD.into();
        }
        let t: CreatedToken = c.post("/api/v1/tokens", &CreateTokenRequest { name: "tests".into(), ttl_days: None }).await?;
        self.token = Some(t.token.clone());
        Ok(Client::new(&self.url, Some(t.token)))
    }

    /// Waits until exactly `n` hosts are registered and all online.
    pub async fn wait_hosts_online(&self, n: usize) -> Result<Vec<atoll_api::v1::HostListItem>> {
        wait_for("hosts online", Duration::from_secs(20), || async {
            let hs: Vec<atoll_api::v1::HostListItem> = self.client().get("/api/v1/hosts").await.ok()?;
            (hs.len() == n && hs.iter().all(|h| h.status == atoll_core::HostStatus::Online)).then_some(hs)
        })
        .await
    }

    /// Waits until a task is settled (succeeded, failed, cancelled or
    /// rolled back) and returns it with its steps.
    pub async fn wait_task(&self, id: &str, timeout: Duration) -> Result<atoll_api::v1::TaskView> {
        wait_for("task to settle", timeout, || async {
            let t: atoll_api::v1::TaskView = self.client().get(&format!("/api/v1/tasks/{id}")).await.ok()?;
            t.status.is_settled().then_some(t)
        })
        .await
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, self.token.clone())
    }

    /// A platform join token good for an hour, as an admin mints one.
    pub async fn join_token(&self) -> Result<String> {
        let req = atoll_api::v1::JoinTokenRequest { ttl_s: Some(3600), single_use: false };
        let j: atoll_api::v1::JoinTokenView = self.client().post("/api/v1/join-tokens", &req).await?;
        Ok(j.token)
    }

    /// Starts another server of this platform (its MetaDB must be on
    /// MySQL, passed in `opts`), with its own data directory and the first
    /// server's key, on a free port of `ip`.
    pub async fn start_peer(&self, name: &str, ip: &str, opts: &ServerOpts) -> Result<Peer> {
        let addr: SocketAddr = format!("{ip}:{}", free_port(ip)).parse()?;
        let mut opts = opts.clone();
        opts.extra_args.extend(["--secret-key-file".to_string(), self.dir.path().join("server/platform.key").display().to_string()]);
        let data = self.dir.path().join(name);
        let mut cmd = server_command(&data, addr, &opts);
        cmd.arg("--host-data-dir").arg(self.host_data_dir());
        let mut proc = Proc::spawn(name, cmd, self.dir.path().join(format!("{name}.log")))?;
        let url = format!("http://{addr}");
        let health = format!("{url}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::get(&health).await.is_ok_and(|r| r.status().is_success()) {
            if proc.exited() || Instant::now() > deadline {
                bail!("server {name} did not come up:\n{}", proc.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Peer { proc, url })
    }

    /// Starts an agent listening on `ip` with its own data directory
    /// (reused when the same `data_name` is given again).
    pub fn start_agent(&self, data_name: &str, ip: &str, zone: Option<&str>, join_token: &str) -> Result<Agent> {
        self.start_agent_in(data_name, ip, zone, join_token, self.dir.path())
    }

    /// [`Self::start_agent`] with `data_root` as the agent's `--data-root`.
    pub fn start_agent_in(&self, data_name: &str, ip: &str, zone: Option<&str>, join_token: &str, data_root: &Path) -> Result<Agent> {
        self.start_agent_with(data_name, ip, zone, join_token, data_root, &[])
    }

    /// [`Self::start_agent_in`] with more arguments for `atoll agent`.
    pub fn start_agent_with(
        &self,
        data_name: &str,
        ip: &str,
        zone: Option<&str>,
        join_token: &str,
        data_root: &Path,
        extra: &[&str],
    ) -> Result<Agent> {
        let port = free_port(ip);
        let data_dir = self.dir.path().join(format!("agent-{data_name}"));
        let mut cmd = Command::new(atoll_bin());
        cmd.arg("agent")
            .arg("--server")
            .arg(&self.url)
            .env("ATOLL_JOIN_TOKEN", join_token)
            .arg("--listen")
            .arg(format!("{ip}:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--data-root")
            .arg(data_root)
            .arg("--facts-every-s")
            .arg("1");
        if let Some(z) = zone {
            cmd.arg("--zone").arg(z);
        }
        cmd.args(extra);
        if self.url.starts_with("https://") {
            // As `atoll host add` tells users: pin the CA by its fingerprint.
            let ca = std::fs::read_to_string(self.dir.path().join("server/ca.pem"))?;
            cmd.arg("--ca-fingerprint").arg(atoll_pki::fingerprint(&ca)?);
        }
        let log = self.dir.path().join(format!("agent-{data_name}-{port}.log"));
        let proc = Proc::spawn(&format!("agent {data_name}"), cmd, log)?;
        Ok(Agent { proc, data_dir, ip: ip.to_string(), port })
    }
}

impl Platform {
    /// A platform with the `sandbox` profile, an admin token, and one agent
    /// per address in `ips` (agent data `host1`…, zones `z1`…), online and
    /// prepared as a user would before creating clusters.
    pub async fn with_prepared_hosts(ips: &[&str]) -> Result<(Platform, Vec<Agent>)> {
        Self::with_prepared_hosts_using(ServerOpts::default(), ips).await
    }

    /// [`Self::with_prepared_hosts`] with a server started with `opts`
    /// (e.g. `--tls`).
    pub async fn with_prepared_hosts_using(mut opts: ServerOpts, ips: &[&str]) -> Result<(Platform, Vec<Agent>)> {
        opts.extra_args.extend(["--profile", "sandbox"].map(String::from));
        let mut p = Platform::start(opts).await?;
        p.login_admin().await?;
        let join = p.join_token().await?;
        let agents = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| p.start_agent(&format!("host{}", i + 1), ip, Some(&format!("z{}", i + 1)), &join))
            .collect::<Result<Vec<Agent>>>()?;
        p.wait_hosts_online(ips.len()).await?;
        let t: atoll_api::v1::TaskView =
            p.client().post("/api/v1/hosts/prepare", &serde_json::json!({ "hosts": ips, "profile": "sandbox" })).await?;
        let t = p.wait_task(&t.id, Duration::from_secs(60)).await?;
        if t.status != atoll_core::TaskStatus::Succeeded {
            bail!("preparing {ips:?} ended {}: {:#?}", t.status, t.steps);
        }
        Ok((p, agents))
    }

    /// `atoll ARGS` as a user runs it against this platform (logged in
    /// through the environment).
    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new(atoll_bin());
        cmd.args(args).env("ATOLL_CONFIG_DIR", self.dir.path().join("cli")).env("ATOLL_SERVER", &self.url);
        if let Some(t) = &self.token {
            cmd.env("ATOLL_TOKEN", t);
        }
        cmd.output().context("running atoll")
    }
}

/// The `mariadb` command-line client as a user runs it: `cr`'s account
/// against `host:port`, tab-separated rows without headers.
pub fn mariadb(cr: &atoll_api::v1::ClusterCredentials, host: &str, port: u16, sql: &str) -> Result<std::process::Output> {
    Command::new("mariadb")
        .args(["--no-defaults", "-h", host, "-P", &port.to_string(), "-u", &cr.user, &format!("-p{}", cr.password), "-N", "-B", "-e", sql])
        .output()
        .context("running the mariadb client")
}

/// A command's stdout and stderr together, for assertions and messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl Drop for Platform {
    /// Agents deliberately leave their databases running when they stop
    /// (an agent restart must not take a database down), so the harness
    /// stops every process started from this platform's directory itself.
    fn drop(&mut self) {
        self.server.kill();
        atoll_agent::kill_processes_under(self.dir.path());
    }
}

/// SIGKILLs every process started under a directory when dropped, so a
/// test or benchmark that starts processes outside a [`Platform`] leaves
/// nothing behind however it ends.
pub struct KillUnder(pub PathBuf);

impl Drop for KillUnder {
    fn drop(&mut self) {
        atoll_agent::kill_processes_under(&self.0);
    }
}

/// Another server of a platform.
pub struct Peer {
    pub proc: Proc,
    pub url: String,
}

pub struct Agent {
    pub proc: Proc,
    pub data_dir: PathBuf,
    pub ip: String,
    pub port: u16,
}

fn spawn_server(dir: &Path, addr: SocketAddr, opts: &ServerOpts) -> Result<Proc> {
    spawn_server_logged(dir, addr, opts, dir.join("server.log"))
}

fn spawn_server_logged(dir: &Path, addr: SocketAddr, opts: &ServerOpts, log: PathBuf) -> Result<Proc> {
    let mut cmd = server_command(&dir.join("server"), addr, opts);
    cmd.arg("--host-data-dir").arg(dir.join("hosts-db"));
    Proc::spawn("server", cmd, log)
}

fn server_command(data_dir: &Path, addr: SocketAddr, opts: &ServerOpts) -> Command {
    let mut cmd = match &opts.netns {
        Some(ns) => netns::exec(ns, &atoll_bin()),
        None => Command::new(atoll_bin()),
    };
    cmd.arg("server")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .args(&opts.extra_args)
        .env("RUST_LOG", "info,sqlx=warn");
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    cmd
}

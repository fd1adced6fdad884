//! Test harness: real `mariadbd` Galera nodes on 127.0.0.91–98 in a temp
//! directory (killed on drop, even when a test fails), and a stand-in for
//! the platform's routing endpoint that serves tables the test controls.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use atoll_api::routing::{Backend, RoutingQuery, RoutingTable};
use atoll_core::ServerState;
use atoll_testkit::{Proc, wait_for};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};
use tokio::sync::watch;

pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-pass-1";
pub const MONITOR_USER: &str = "monitor";
pub const MONITOR_PASSWORD: &str = "monitor-pass-1";
pub const TOKEN: &str = "proxy-token-1";

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()))
        .with_test_writer()
        .try_init();
}

/// One `mariadbd` with wsrep on, its own loopback address, standard ports.
pub struct Node {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    pub cnf: PathBuf,
    pub proc: Option<Proc>,
}

impl Node {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    pub fn backend(&self, zone: &str) -> Backend {
        Backend { name: self.name.clone(), zone: zone.into(), address: self.ip.clone(), port: 3306, state: ServerState::Synced }
    }

    /// Root over the socket.
    pub async fn root(&self) -> Result<MySqlConnection> {
        Ok(MySqlConnectOptions::new().socket(self.socket()).username("root").connect().await?)
    }

    pub async fn query_strings(&self, sql: &str) -> Result<Vec<String>> {
        let mut c = self.root().await?;
        let rows = sqlx::raw_sql(AssertSqlSafe(sql.to_string())).fetch_all(&mut c).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>(0).or_else(|_| r.try_get::<i64, _>(0).map(|v| v.to_string()))?)).collect()
    }

    pub async fn exec(&self, sql: &str) -> Result<()> {
        let mut c = self.root().await?;
        sqlx::raw_sql(AssertSqlSafe(sql.to_string())).execute(&mut c).await.with_context(|| format!("{}: {sql}", self.name))?;
        Ok(())
    }

    pub async fn status(&self, var: &str) -> Option<String> {
        let mut c = self.root().await.ok()?;
        let row = sqlx::raw_sql(AssertSqlSafe(format!("SHOW GLOBAL STATUS LIKE '{var}'"))).fetch_optional(&mut c).await.ok()??;
        row.try_get::<String, _>(1).ok()
    }

    pub async fn wait_synced(&self, timeout: Duration) -> Result<()> {
        let r = wait_for(&format!("{} to be Synced", self.name), timeout, || async {
            (self.status("wsrep_local_state").await.as_deref() == Some("4")).then_some(())
        })
        .await;
        if r.is_err() {
            let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            bail!("{} not Synced; error.log tail:\n{}", self.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

/// Nodes of one or several clusters, all under one temp directory.
pub struct Galera {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    /// Clusters started from now on offer TLS to clients (a self-signed
    /// certificate; sqlx here has no TLS, so only the `mariadb` client
    /// with `--ssl` uses it).
    pub tls: bool,
}

impl Drop for Galera {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        // rsync daemons of state transfers, if any are left.
        atoll_agent::kill_processes_under(self.dir.path());
    }
}

fn chown_mysql(path: &Path) -> Result<()> {
    let ok = Command::new("chown").arg("-R").arg("mysql:mysql").arg(path).status()?.success();
    if !ok {
        bail!("chown mysql {}", path.display());
    }
    Ok(())
}

impl Galera {
    pub fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        Ok(Self { dir, nodes: Vec::new(), tls: false })
    }

    /// A self-signed certificate and key for the nodes, made once.
    fn tls_settings(&self) -> Result<String> {
        let (cert, key) = (self.dir.path().join("cert.pem"), self.dir.path().join("key.pem"));
        if !cert.exists() {
            let ok = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=atoll-proxy-test"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()?
                .status
                .success();
            if !ok {
                bail!("openssl could not make a test certificate");
            }
            chown_mysql(&cert)?;
            chown_mysql(&key)?;
        }
        Ok(format!("ssl_cert={}\nssl_key={}\n", cert.display(), key.display()))
    }

    /// Starts a node killed earlier again (it rejoins by state transfer).
    pub fn restart(&mut self, name: &str) -> Result<()> {
        let n = self.node_mut(name);
        if n.proc.is_some() {
            bail!("{name} is running");
        }
        n.proc = Some(spawn_mariadbd(n, false)?);
        Ok(())
    }

    /// Starts a cluster `cluster` on `ips`: the first bootstraps (with the
    /// test accounts and a table `t.w`), the others join by SST.
    pub async fn start_cluster(&mut self, cluster: &str, names: &[&str], ips: &[&str]) -> Result<()> {
        let address = ips.iter().map(|ip| format!("{ip}:4567")).collect::<Vec<_>>().join(",");
        let tls = if self.tls { self.tls_settings()? } else { String::new() };
        let first = self.nodes.len();
        for (name, ip) in names.iter().zip(ips) {
            let dir = self.dir.path().join(name);
            std::fs::create_dir_all(dir.join("data"))?;
            std::fs::create_dir_all(dir.join("tmp"))?;
            let cnf = dir.join("my.cnf");
            let d = dir.display();
            std::fs::write(
                &cnf,
                format!(
                    "[mysqld]\nbind-address={ip}\nport=3306\nuser=mysql\ndatadir={d}/data\nsocket={d}/mysqld.sock\npid-file={d}/mysqld.pid\n\
                     tmpdir={d}/tmp\nlog-error={d}/error.log\nskip-name-resolve\nmax_connect_errors=1000000\nperformance_schema=OFF\n\
                     innodb_buffer_pool_size=32M\nbinlog_format=ROW\ndefault_storage_engine=InnoDB\ninnodb_autoinc_lock_mode=2\n\
                     innodb_flush_log_at_trx_commit=1\nwsrep_on=ON\nwsrep_provider=/usr/lib/galera/libgalera_smm.so\n\
                     wsrep_cluster_name={cluster}\nwsrep_cluster_address=gcomm://{address}\nwsrep_node_address={ip}:4567\n\
                     wsrep_node_name={name}\nwsrep_sst_method=rsync\nwsrep_sst_receive_address={ip}:4444\n\
                     wsrep_provider_options=\"gmcast.listen_addr=tcp://{ip}:4567;ist.recv_addr={ip}:4568;gcache.size=16M;\
                     evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;evs.keepalive_period=PT0.5S;evs.install_timeout=PT4S\"\n\
                     {tls}[sst]\nsst-log-archive=0\n"
                ),
            )?;
            chown_mysql(&dir)?;
            self.nodes.push(Node { name: name.to_string(), ip: ip.to_string(), dir, cnf, proc: None });
        }
        let boot = &mut self.nodes[first];
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", boot.cnf.display()))
            .arg("--auth-root-authentication-method=socket")
            .output()?;
        if !out.status.success() {
            bail!("mariadb-install-db: {}", String::from_utf8_lossy(&out.stderr));
        }
        chown_mysql(&boot.dir)?;
        boot.proc = Some(spawn_mariadbd(boot, true)?);
        let boot = &self.nodes[first];
        boot.wait_synced(Duration::from_secs(30)).await?;
        let anon = boot.query_strings("SELECT host FROM mysql.user WHERE user = ''").await?;
        for h in anon {
            boot.exec(&format!("DROP USER ''@'{h}'")).await?;
        }
        for sql in [
            format!("CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'"),
            "CREATE DATABASE t".into(),
            format!("GRANT ALL ON t.* TO '{APP_USER}'@'%'"),
            format!("CREATE USER '{MONITOR_USER}'@'%' IDENTIFIED BY '{MONITOR_PASSWORD}'"),
            "CREATE TABLE t.w (id BIGINT PRIMARY KEY, node VARCHAR(64) NOT NULL)".into(),
        ] {
            boot.exec(&sql).await?;
        }
        for i in first + 1..self.nodes.len() {
            let n = &mut self.nodes[i];
            n.proc = Some(spawn_mariadbd(n, false)?);
        }
        for n in &self.nodes[first + 1..] {
            n.wait_synced(Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))
    }
}

fn spawn_mariadbd(n: &Node, bootstrap: bool) -> Result<Proc> {
    let mut cmd = Command::new("/usr/sbin/mariadbd");
    cmd.arg(format!("--defaults-file={}", n.cnf.display()));
    if bootstrap {
        cmd.arg("--wsrep-new-cluster");
    }
    Proc::spawn(&n.name, cmd, n.dir.join("stdout.log"))
}

/// A table of `backends` with the test's monitor account.
pub fn table(cluster: &str, version: &str, writer: Option<&str>, moving_to: Option<&str>, backends: Vec<Backend>) -> RoutingTable {
    RoutingTable {
        cluster: cluster.into(),
        version: version.into(),
        writer: writer.map(str::to_string),
        moving_to: moving_to.map(str::to_string),
        backends,
        monitor_user: MONITOR_USER.into(),
        monitor_password: MONITOR_PASSWORD.into(),
        servers: Vec::new(),
    }
}

/// Stands in for the platform's `GET /api/v1/clusters/{name}/routing`
/// (long-poll, bearer token). `down()` closes its port and answers 503
/// on connections still open; `up()` listens again on the same address.
pub struct TableServer {
    pub addr: SocketAddr,
    tables: Arc<watch::Sender<RoutingTable>>,
    up: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct TsState {
    tables: Arc<watch::Sender<RoutingTable>>,
    up: Arc<AtomicBool>,
}

async fn routing(State(s): State<TsState>, UrlPath(name): UrlPath<String>, Query(q): Query<RoutingQuery>, headers: HeaderMap) -> Response {
    if !s.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut rx = s.tables.subscribe();
    let current = rx.borrow_and_update().clone();
    if current.cluster != name {
        return StatusCode::NOT_FOUND.into_response();
    }
    if q.since.as_deref() == Some(current.version.as_str()) {
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000));
        let _ = tokio::time::timeout(wait, rx.changed()).await;
    }
    if !s.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let t = rx.borrow().clone();
    axum::Json(t).into_response()
}

impl TableServer {
    pub async fn start(ip: &str, first: RoutingTable) -> Result<Self> {
        let (tx, _) = watch::channel(first);
        let mut s = Self { addr: format!("{ip}:0").parse()?, tables: Arc::new(tx), up: Arc::new(AtomicBool::new(false)), task: None };
        s.up().await?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn publish(&self, t: RoutingTable) {
        self.tables.send_replace(t);
    }

    pub fn down(&mut self) {
        self.up.store(false, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        // Wake long polls so they answer 503 now.
        self.tables.send_modify(|_| {});
    }

    pub async fn up(&mut self) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.addr = listener.local_addr()?;
        let app = axum::Router::new()
            .route("/api/v1/clusters/{name}/routing", axum::routing::get(routing))
            .with_state(TsState { tables: self.tables.clone(), up: self.up.clone() });
        self.up.store(true, Ordering::SeqCst);
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        Ok(())
    }
}

impl Drop for TableServer {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Connects as the application user through a proxy port.
/// A plain session (the TLS path through the proxy is tried with the
/// mariadb client): sqlx would prefer TLS, and these backends offer it.
pub async fn app_conn(addr: SocketAddr) -> Result<MySqlConnection, sqlx::Error> {
    let opts = MySqlConnectOptions::new()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .username(APP_USER)
        .password(APP_PASSWORD)
        .database("t")
        .ssl_mode(sqlx::mysql::MySqlSslMode::Disabled);
    tokio::time::timeout(Duration::from_secs(5), opts.connect()).await.map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// `@@wsrep_node_name` of the node a new connection through `addr` lands on.
pub async fn node_behind(addr: SocketAddr) -> Result<String> {
    let mut c = app_conn(addr).await?;
    let row = sqlx::raw_sql(AssertSqlSafe("SELECT @@wsrep_node_name")).fetch_one(&mut c).await?;
    Ok(row.try_get::<String, _>(0)?)
}

/// Runs the `mariadb` client against `addr`; (exit success, stdout, stderr).
pub async fn mariadb_cli(addr: SocketAddr, sql: &str) -> Result<(bool, String, String)> {
    mariadb_cli_with(addr, &[], sql).await
}

fn mariadb_command(addr: SocketAddr, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.arg(format!("--host={}", addr.ip()))
        .arg(format!("--port={}", addr.port()))
        .arg(format!("--user={APP_USER}"))
        .arg(format!("--password={APP_PASSWORD}"))
        .arg("--connect-timeout=5")
        .arg("--batch")
        .arg("--skip-column-names")
        .args(extra);
    cmd
}

fn cli_output(out: &std::process::Output) -> (bool, String, String) {
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string(), String::from_utf8_lossy(&out.stderr).trim().to_string())
}

/// Like [`mariadb_cli`], with more client options (`--ssl` ...).
pub async fn mariadb_cli_with(addr: SocketAddr, extra: &[&str], sql: &str) -> Result<(bool, String, String)> {
    let out = mariadb_command(addr, extra).arg("-e").arg(sql).output().await?;
    Ok(cli_output(&out))
}

/// One `mariadb` client session fed statements on its standard input,
/// with a pause (the client idle) after each `(statement, pause)`.
pub async fn mariadb_session(addr: SocketAddr, extra: &[&str], script: &[(&str, Duration)]) -> Result<(bool, String, String)> {
    use tokio::io::AsyncWriteExt;
    let mut child = mariadb_command(addr, extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    for (sql, pause) in script {
        // The client may have quit already (an error ends a batch).
        if stdin.write_all(format!("{sql};\n").as_bytes()).await.is_err() {
            break;
        }
        let _ = stdin.flush().await;
        tokio::time::sleep(*pause).await;
    }
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await??;
    Ok(cli_output(&out))
}

/// The ids in `t.w` as a node sees them.
pub async fn ids_on(node: &Node) -> Result<BTreeSet<i64>> {
    Ok(node.query_strings("SELECT id FROM t.w").await?.iter().filter_map(|s| s.parse().ok()).collect())
}

//! Supervises the `atoll proxy` processes the platform asks this host to
//! run: one per cluster and zone. A proxy is started from this very
//! binary, restarted with back-off when it exits, and keeps running when
//! the agent stops (a restarted agent adopts it by its pid file), so an
//! agent upgrade never drops application connections.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use atoll_api::proxy::{ProxyDef, ProxyReport, ProxyState};
use atoll_core::DbId;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::files::{Owner, write_atomic};
use crate::process::{Signal, alive, backoff, signal};

/// Restart back-off: 0.5 s, doubling up to 10 s; a proxy that ran this
/// long before exiting starts the sequence over.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const STEADY_RUN: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid proxy definition: {0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

/// Cheap to clone; the supervision tasks end when the agent stops.
#[derive(Clone)]
pub struct Proxies {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    exe: PathBuf,
    /// The platform servers the agent knows, for definitions that name none.
    servers: atoll_client::Servers,
    procs: Mutex<BTreeMap<DbId, Entry>>,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

struct Entry {
    def: ProxyDef,
    state: ProxyState,
    pid: Option<u32>,
    restarts: u32,
    status: Option<Value>,
    /// Cancels this proxy's supervision (and stops the process).
    stop: CancellationToken,
}

impl Inner {
    fn procs(&self) -> MutexGuard<'_, BTreeMap<DbId, Entry>> {
        self.procs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn proxy_dir(&self, id: &DbId) -> PathBuf {
        self.dir.join(format!("{}__{}", id.cluster, id.name))
    }

    /// The definitions, so a restarted agent supervises the same proxies;
    /// without their tokens, whose one copy is each proxy's `token` file.
    fn persist(&self) -> Result<(), ProxyError> {
        let defs: Vec<ProxyDef> = self.procs().values().map(|e| ProxyDef { token: String::new(), ..e.def.clone() }).collect();
        let bytes = serde_json::to_vec_pretty(&defs).map_err(|e| ProxyError::Io(e.to_string()))?;
        write_atomic(&self.dir.join("proxies.json"), &bytes, 0o600, Owner::default()).map_err(ProxyError::Io)
    }

    fn set(&self, id: &DbId, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.procs().get_mut(id) {
            f(e);
        }
    }
}

impl Proxies {
    /// Loads the definitions under `data_dir` and supervises them.
    pub fn open(data_dir: &Path, servers: atoll_client::Servers, shutdown: CancellationToken) -> anyhow::Result<Proxies> {
        let dir = data_dir.join("proxies");
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find the atoll binary to run proxies with: {e}"))?;
        let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build()?;
        let inner = Arc::new(Inner { dir, exe, servers, procs: Mutex::new(BTreeMap::new()), shutdown, http });
        let defs: Vec<ProxyDef> = match std::fs::read(inner.dir.join("proxies.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| anyhow::anyhow!("{}: {e}", inner.dir.join("proxies.json").display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => anyhow::bail!("cannot read the proxy registry: {e}"),
        };
        let proxies = Proxies { inner };
        for mut def in defs {
            if def.token.is_empty() {
                let file = proxies.inner.proxy_dir(&def.id).join("token");
                match std::fs::read_to_string(&file) {
                    Ok(t) => def.token = t.lines().next().unwrap_or_default().trim().to_string(),
                    Err(e) => {
                        tracing::error!(proxy = %def.id, error = %e, "cannot read {}; this proxy stays stopped until the platform defines it again", file.display());
                        continue;
                    }
                }
            }
            proxies.supervise(def);
        }
        let poller = proxies.clone();
        tokio::spawn(async move { poller.poll_statuses().await });
        Ok(proxies)
    }

    /// Runs `def`; restarts the proxy when its definition changed.
    pub fn start(&self, def: ProxyDef) -> Result<Value, ProxyError> {
        validate(&def)?;
        let same = self.inner.procs().get(&def.id).map(|e| e.def == def);
        match same {
            Some(true) => return Ok(json!({ "started": false, "reason": "already running as defined" })),
            Some(false) => self.remove_entry(&def.id),
            None => {}
        }
        let id = def.id.clone();
        self.supervise(def);
        self.inner.persist()?;
        Ok(json!({ "started": true, "id": id }))
    }

    /// Stops and forgets a proxy.
    pub fn remove(&self, id: &DbId) -> Result<Value, ProxyError> {
        let known = self.inner.procs().contains_key(id);
        self.remove_entry(id);
        self.inner.persist()?;
        let _ = std::fs::remove_dir_all(self.inner.proxy_dir(id));
        Ok(json!({ "removed": known }))
    }

    fn remove_entry(&self, id: &DbId) {
        if let Some(e) = self.inner.procs().remove(id) {
            e.stop.cancel();
        }
        // The supervision task stops the process when cancelled; a proxy
        // adopted from an earlier agent is not our child, so stop it here.
        if let Some(pid) = read_pid(&self.inner.proxy_dir(id)) {
            let _ = signal(pid, Signal::Term);
        }
    }

    pub fn reports(&self) -> Vec<ProxyReport> {
        self.inner
            .procs()
            .values()
            .map(|e| ProxyReport { id: e.def.id.clone(), state: e.state, pid: e.pid, restarts: e.restarts, status: e.status.clone() })
            .collect()
    }

    fn supervise(&self, def: ProxyDef) {
        let stop = self.inner.shutdown.child_token();
        let entry = Entry { def: def.clone(), state: ProxyState::Starting, pid: None, restarts: 0, status: None, stop: stop.clone() };
        self.inner.procs().insert(def.id.clone(), entry);
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move { supervise(inner, def, stop).await });
    }

    async fn poll_statuses(&self) {
        loop {
            let targets: Vec<(DbId, String)> = self
                .inner
                .procs()
                .values()
                .filter(|e| e.state == ProxyState::Running)
                .map(|e| (e.def.id.clone(), e.def.admin_listen.clone()))
                .collect();
            for (id, admin) in targets {
                let status = match self.inner.http.get(format!("http://{admin}/status")).send().await {
                    Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                    _ => None,
                };
                self.inner.set(&id, |e| e.status = status);
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

fn validate(def: &ProxyDef) -> Result<(), ProxyError> {
    if def.id.cluster != def.cluster {
        return Err(ProxyError::Invalid(format!("id {} does not name a proxy of cluster {:?}", def.id, def.cluster)));
    }
    for (what, addr) in [("rw_listen", &def.rw_listen), ("ro_listen", &def.ro_listen), ("admin_listen", &def.admin_listen)] {
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(ProxyError::Invalid(format!("{what} {addr:?} is not IP:PORT")));
        }
    }
    if def.token.is_empty() {
        return Err(ProxyError::Invalid("empty token".into()));
    }
    Ok(())
}

fn read_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("proxy.pid")).ok()?.trim().parse().ok()?;
    // Only a live `atoll proxy` of this directory counts: pids are reused.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (cmdline.contains("proxy") && cmdline.contains(&*dir.to_string_lossy())).then_some(pid)
}

fn command(inner: &Inner, def: &ProxyDef, dir: &Path) -> Result<tokio::process::Command, std::io::Error> {
    std::fs::create_dir_all(dir)?;
    let token_file = dir.join("token");
    write_atomic(&token_file, def.token.as_bytes(), 0o600, Owner::default()).map_err(std::io::Error::other)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("proxy.log"))?;
    let mut cmd = tokio::process::Command::new(&inner.exe);
    cmd.arg("proxy");
    let servers = if def.servers.is_empty() { inner.servers.all() } else { def.servers.clone() };
    for s in &servers {
        cmd.arg("--server").arg(s);
    }
    // The CA the agent pinned, when the platform is HTTPS.
    // (`proxies/` lies in the agent's data directory, beside `ca.pem`.)
    let ca = Some(ca_dir_of(inner).join("ca.pem")).filter(|p| p.exists());
    if let Some(ca) = ca.filter(|_| servers.iter().any(|s| s.starts_with("https://"))) {
        cmd.arg("--ca-file").arg(ca);
        // The host's certificate, renewed in place by the agent: the proxy
        // is the agent's child on the same host, in the same trust domain
        // (both root), so a key of its own would isolate nothing.
        let (cert, key) = crate::tls::cert_and_key_paths(&ca_dir_of(inner));
        if cert.exists() {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
        }
    }
    cmd.arg("--token-file")
        .arg(&token_file)
        .args(["--cluster", &def.cluster, "--zone", &def.zone])
        .args(["--rw-listen", &def.rw_listen, "--ro-listen", &def.ro_listen, "--admin-listen", &def.admin_listen])
        .arg("--state-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for the agent's terminal
        // must not take the proxies down with it.
        .process_group(0)
        .kill_on_drop(false);
    Ok(cmd)
}

/// The agent's data directory, where its TLS files are.
fn ca_dir_of(inner: &Inner) -> PathBuf {
    inner.dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Keeps one proxy running until `stop`: adopts a live one left by an
/// earlier agent, otherwise starts it, and restarts it with back-off.
async fn supervise(inner: Arc<Inner>, def: ProxyDef, stop: CancellationToken) {
    let dir = inner.proxy_dir(&def.id);
    // Crashes in a row (reset by a steady run), for the back-off.
    let mut crashes = 0;
    // A pid file whose proxy is gone: it died while no agent watched (the
    // file goes when a supervised proxy exits). Starting it again is a
    // restart, and the count says so.
    if dir.join("proxy.pid").exists() && read_pid(&dir).is_none() {
        tracing::warn!(proxy = %def.id, "proxy died while the agent was away; starting it again");
        inner.set(&def.id, |e| e.restarts += 1);
    }
    loop {
        let started = Instant::now();
        if let Some(pid) = read_pid(&dir) {
            tracing::info!(proxy = %def.id, pid, "adopting a running proxy");
            inner.set(&def.id, |e| (e.state, e.pid) = (ProxyState::Running, Some(pid)));
            loop {
                tokio::select! {
                    // Agent shutdown leaves adopted proxies running.
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                if !alive(pid) {
                    break;
                }
            }
        } else {
            let mut child = match command(&inner, &def, &dir).and_then(|mut c| c.spawn()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(proxy = %def.id, error = %e, "cannot start proxy");
                    inner.set(&def.id, |en| en.state = ProxyState::Crashed);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    }
                }
            };
            let pid = child.id();
            if let Some(pid) = pid {
                let _ = std::fs::write(dir.join("proxy.pid"), pid.to_string());
            }
            tracing::info!(proxy = %def.id, pid, "proxy started");
            inner.set(&def.id, |e| (e.state, e.pid) = (ProxyState::Running, pid));
            tokio::select! {
                status = child.wait() => {
                    tracing::warn!(proxy = %def.id, status = ?status.ok(), "proxy exited; restarting it");
                }
                _ = stop.cancelled() => {
                    // Removed (not agent shutdown: then the token's parent
                    // is cancelled and the proxy keeps serving).
                    if !inner.shutdown.is_cancelled() {
                        if let Some(pid) = pid {
                            let _ = signal(pid, Signal::Term);
                        }
                        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                        let _ = child.start_kill();
                    }
                    return;
                }
            }
        }
        let _ = std::fs::remove_file(dir.join("proxy.pid"));
        if started.elapsed() > STEADY_RUN {
            crashes = 0;
        }
        crashes += 1;
        inner.set(&def.id, |e| {
            e.state = ProxyState::Crashed;
            e.pid = None;
            e.status = None;
            e.restarts += 1;
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff(FIRST_BACKOFF, MAX_BACKOFF, crashes)) => {}
        }
    }
}

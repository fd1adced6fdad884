//! The operations the platform asks for (`Db*` host operations). Each
//! returns promptly: starting a joiner does not wait for it to be Synced,
//! the platform watches the state in heartbeats instead.

use std::path::{Component, Path};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_api::db::{DbServerDef, RecoveredPosition, StartMode};
use atoll_core::DbId;
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use super::files::{as_database_user, make_owned_dir, mysql_ids};
use super::layout::Layout;
use super::process::{find_running, spawn_mariadbd};
use super::supervise::{Launch, supervise};
use super::{DbError, Server, Supervisor, recover, sql};
use crate::confine::{ConfineError, DataRoot};
use crate::files::Owner;
use crate::process::{Signal, signal};

/// How long a clean shutdown may take before SIGKILL (InnoDB flushes its
/// buffer pool; a donor finishes its transfer).
const STOP_GRACE: Duration = Duration::from_secs(120);
/// After SIGKILL, the process is gone within moments; past this, report.
const KILL_GRACE: Duration = Duration::from_secs(30);
/// `DbStart` returns once the socket accepts, or after this.
const START_WAIT: Duration = Duration::from_secs(3);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defined {
    /// A new definition (not a redefinition).
    pub created: bool,
    pub config_changed: bool,
    /// A redefined running server keeps running on its old config until
    /// restarted.
    pub running: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub pid: Option<u32>,
    /// It ran already: nothing was started.
    pub already_running: bool,
    /// It ran without this agent's supervision and is supervised now.
    pub adopted: bool,
    /// The socket accepted a connection before this returned.
    pub socket_ready: bool,
    /// `grastate.dat` was changed to `safe_to_bootstrap: 1`.
    pub marked_safe_to_bootstrap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub was_running: bool,
    /// It ignored SIGTERM for too long and was killed.
    pub forced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// It was defined (and now is not).
    pub removed: bool,
    /// Its directory was deleted.
    pub purged: bool,
}

/// Checks a definition before anything is touched: its directories (the
/// server's, and the data and temporary directories its config names) lie
/// below the data root, because the agent gives them to the database user.
fn validate(def: &DbServerDef, root: &DataRoot) -> Result<(), DbError> {
    let refuse = |m: String| Err(DbError::Refused(m));
    let dir = Path::new(&def.dir);
    if !dir.is_absolute() || dir.parent().is_none() || dir.components().any(|c| c == Component::ParentDir) {
        return refuse(format!("directory {:?} must be an absolute path below / without \"..\"", def.dir));
    }
    if def.config.trim().is_empty() {
        return refuse(format!("server {} has an empty config", def.id));
    }
    let layout = Layout::new(def);
    for d in [&layout.dir, &layout.data, &layout.tmp] {
        if d == root.path() {
            return refuse(format!("server {} cannot use the data root {} itself as a directory", def.id, d.display()));
        }
        root.check(&d.to_string_lossy()).map_err(|e| DbError::Refused(format!("server {}: {e}", def.id)))?;
    }
    Ok(())
}

impl Supervisor {
    /// Creates the server's directories (owned by `mysql`), writes its
    /// `my.cnf` (0640 root:mysql) and records it. A running server keeps
    /// running: the new config applies at its next start.
    pub async fn define(&self, def: DbServerDef) -> Result<Defined, DbError> {
        let root = &self.inner.root;
        validate(&def, root)?;
        let ids = mysql_ids()?;
        let layout = Layout::new(&def);
        if let Some(other) = self.inner.servers().values().find(|s| {
            let rt = s.rt();
            rt.def.id != def.id && rt.layout.dir == layout.dir
        }) {
            return Err(DbError::Refused(format!("directory {} already belongs to server {}", def.dir, other.id())));
        }
        let existing = self.inner.server(&def.id);
        let _op = match &existing {
            Some(s) => Some(s.op.lock().await),
            None => None,
        };
        if let Some(s) = &existing {
            let rt = s.rt();
            if rt.supervised && (rt.layout.dir != layout.dir || rt.layout.data != layout.data) {
                return Err(DbError::Refused(format!("server {} runs in {}: stop it before moving it", def.id, rt.def.dir)));
            }
        }
        // Data kept from an earlier server (a cluster deleted without
        // purge, then made again under the same name) would neither start
        // as the new server nor survive a rollback of its creation.
        if existing.is_none() && layout.data.join("mysql").is_dir() {
            return Err(DbError::Refused(format!(
                "{} holds the data of an earlier server (kept when its cluster was deleted without purge); \
                 move it away or delete it yourself, or give the new cluster another name",
                layout.data.display()
            )));
        }
        let dir = make_owned_dir(root, &layout.dir, 0o750, ids)?;
        for d in [&layout.data, &layout.tmp] {
            make_owned_dir(root, d, 0o750, ids)?;
        }
        // The directory is the database user's: written through its
        // descriptor, never through a link that user may have put there.
        dir.write_atomic("my.cnf", def.config.as_bytes(), 0o640, Owner { uid: None, gid: Some(ids.1) }).map_err(DbError::Io)?;
        // TLS files: root's, the key readable by the database group only;
        // the registry keeps the definition without them.
        let mut def = def;
        if let Some(tls) = def.tls.take() {
            write_tls(&dir, &tls, ids)?;
        }
        let outcome = match &existing {
            Some(s) => {
                let mut rt = s.rt();
                let changed = rt.def.config != def.config;
                rt.def = def;
                rt.layout = layout;
                Defined { created: false, config_changed: changed, running: rt.supervised }
            }
            None => {
                self.inner.servers().insert(def.id.clone(), Server::new(def, false));
                Defined { created: true, config_changed: true, running: false }
            }
        };
        self.inner.persist()?;
        Ok(outcome)
    }

    /// Initialises an empty data directory with `mariadb-install-db` (root
    /// by socket authentication only); `false` when it already holds data.
    pub async fn init(&self, id: &DbId) -> Result<bool, DbError> {
        let s = self.server(id)?;
        let _op = s.op.lock().await;
        let layout = s.layout();
        refuse_if_running(&s, &layout, "initialise")?;
        if layout.data.join("mysql").is_dir() {
            return Ok(false);
        }
        let bin = layout.program("mariadb-install-db");
        let mut cmd = Command::new(&bin);
        cmd.arg(layout.defaults_arg())
            .args(layout.basedir_args())
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db")
            .current_dir(&layout.dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        as_database_user(&mut cmd)?;
        let out = match tokio::time::timeout(INSTALL_TIMEOUT, cmd.output()).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return Err(DbError::Io(format!("cannot run {}: {e}", bin.display()))),
            Err(_) => return Err(DbError::Io(format!("{} did not finish in {} s", bin.display(), INSTALL_TIMEOUT.as_secs()))),
        };
        if !out.status.success() || !layout.data.join("mysql").is_dir() {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let tail: Vec<&str> = text.lines().rev().take(6).collect();
            return Err(DbError::Io(format!(
                "mariadb-install-db failed ({}): {}",
                super::process::describe_exit(out.status),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        tracing::info!(server = %id, data = %layout.data.display(), "data directory initialised");
        Ok(true)
    }

    /// Starts and supervises the server; a no-op when it runs. Returns
    /// once the socket accepts or after 3 s, never waiting for Synced.
    /// Resets a crash loop. `Bootstrap` starts a new cluster from this
    /// node, once: a restart after a crash always rejoins.
    pub async fn start(&self, id: &DbId, mode: StartMode) -> Result<Started, DbError> {
        let s = self.server(id)?;
        let _op = s.op.lock().await;
        let (was_desired, supervised, pid, layout) = {
            let mut rt = s.rt();
            let was = rt.desired_running;
            rt.desired_running = true;
            rt.crash_loop = false;
            rt.exits.clear();
            (was, rt.supervised, rt.pid, rt.layout.clone())
        };
        self.inner.persist()?;
        if supervised {
            return Ok(Started { pid, already_running: true, adopted: false, socket_ready: false, marked_safe_to_bootstrap: false });
        }
        if let Some(pid) = find_running(&layout) {
            tracing::info!(server = %id, pid, "database server already runs; adopting it");
            supervise(self.inner.clone(), s.clone(), Launch::Adopted(pid));
            return Ok(Started {
                pid: Some(pid),
                already_running: true,
                adopted: true,
                socket_ready: false,
                marked_safe_to_bootstrap: false,
            });
        }
        let root = &self.inner.root;
        let mut args: Vec<String> = recover::start_position_arg(root, &layout, id).await.into_iter().collect();
        let spawned = (|| {
            let mut marked = false;
            if mode == StartMode::Bootstrap {
                marked = recover::set_safe_to_bootstrap(root, &layout)?;
                args.push(atoll_engine::recovery::BOOTSTRAP_ARG.to_string());
            }
            Ok::<_, DbError>((spawn_mariadbd(root, &layout, &args)?, marked))
        })();
        let (child, marked) = match spawned {
            Ok(c) => c,
            Err(e) => {
                s.rt().desired_running = was_desired;
                self.inner.persist()?;
                return Err(e);
            }
        };
        let pid = child.id();
        tracing::info!(server = %id, ?pid, ?mode, "database server started");
        s.rt().restarts = 0;
        supervise(self.inner.clone(), s.clone(), Launch::Spawned(child));
        let socket_ready = wait_for_socket(&s, &layout, pid).await;
        Ok(Started { pid, already_running: false, adopted: false, socket_ready, marked_safe_to_bootstrap: marked })
    }

    /// Stops the server cleanly (SIGTERM; SIGKILL after 120 s, with a
    /// warning) and stops supervising it.
    pub async fn stop(&self, id: &DbId) -> Result<Stopped, DbError> {
        let s = self.server(id)?;
        let _op = s.op.lock().await;
        self.stop_locked(&s).await
    }

    async fn stop_locked(&self, s: &Arc<Server>) -> Result<Stopped, DbError> {
        let (id, supervised, layout) = {
            let mut rt = s.rt();
            rt.desired_running = false;
            (rt.def.id.clone(), rt.supervised, rt.layout.clone())
        };
        self.inner.persist()?;
        s.wake.notify_one();
        if !supervised {
            match find_running(&layout) {
                // Running unsupervised: take it over, then stop it alike.
                Some(pid) => supervise(self.inner.clone(), s.clone(), Launch::Adopted(pid)),
                None => return Ok(Stopped { was_running: false, forced: false }),
            }
        }
        let started = Instant::now();
        let mut termed = None;
        let mut forced = false;
        loop {
            let (supervised, pid) = {
                let rt = s.rt();
                (rt.supervised, rt.pid)
            };
            if !supervised {
                return Ok(Stopped { was_running: true, forced });
            }
            if let Some(pid) = pid {
                if termed != Some(pid) && !forced {
                    if let Err(e) = signal(pid, Signal::Term) {
                        tracing::warn!(server = %id, pid, error = %e, "cannot send SIGTERM");
                    }
                    termed = Some(pid);
                }
                if !forced && started.elapsed() > STOP_GRACE {
                    tracing::warn!(server = %id, pid, grace_s = STOP_GRACE.as_secs(), "database server ignored SIGTERM; killing it");
                    let _ = signal(pid, Signal::Kill);
                    forced = true;
                }
            }
            if started.elapsed() > STOP_GRACE + KILL_GRACE {
                return Err(DbError::Io(format!("server {id} did not exit even after SIGKILL (pid {pid:?}); check the host")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each server with a certificate, and its certificate file.
    pub fn tls_certificates(&self) -> Vec<(DbId, std::path::PathBuf)> {
        let cert = atoll_engine::config::TLS_FILES[1];
        let mut all: Vec<_> =
            self.inner.servers().values().map(|s| (s.id().clone(), s.layout().dir.join(cert))).filter(|(_, p)| p.exists()).collect();
        all.sort_by_key(|(id, _)| id.to_string());
        all
    }

    /// Servers whose certificate is half-way through its life, or `stale`
    /// (a CA rotation): the agent asks the platform for new ones (see
    /// [`Self::install_tls`]).
    pub fn tls_due(&self, stale: impl Fn(&std::path::Path) -> bool) -> Vec<DbId> {
        self.tls_certificates()
            .into_iter()
            .filter(|(_, path)| {
                let aged = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= atoll_pki::RENEW_AFTER);
                aged || stale(path)
            })
            .map(|(id, _)| id)
            .collect()
    }

    /// Makes every server with a certificate trust the CAs of `bundle_pem`
    /// (a CA rotation): its `ca.pem` rewritten and, when it runs, reloaded
    /// for new client connections and new Galera links. A server that
    /// could not take it is named with why; the others go on.
    pub async fn install_ca(&self, bundle_pem: &str) -> Vec<(DbId, Result<(), DbError>)> {
        let mut results = Vec::new();
        for (id, _) in self.tls_certificates() {
            let r = async {
                let s = self.server(&id)?;
                let _op = s.op.lock().await;
                let layout = s.layout();
                let dir = self.inner.root.open_dir(&layout.dir).map_err(|e| DbError::Io(e.to_string()))?;
                let ca = atoll_engine::config::TLS_FILES[0];
                if std::fs::read_to_string(layout.dir.join(ca)).is_ok_and(|have| have == bundle_pem) {
                    return Ok(());
                }
                let public = Owner { uid: None, gid: Some(mysql_ids()?.1) };
                dir.write_atomic(ca, bundle_pem.as_bytes(), 0o644, public).map_err(DbError::Io)?;
                if s.rt().supervised {
                    sql::run_statements(&layout.socket, &atoll_engine::sql::reload_tls()).await?;
                }
                Ok(())
            }
            .await;
            results.push((id, r));
        }
        results
    }

    /// Puts a renewed certificate (and the CA bundle) in place and, when
    /// the server runs, makes it use them for new client connections and
    /// new Galera links without a restart; a stopped server reads them at
    /// its next start.
    pub async fn install_tls(&self, id: &DbId, tls: &atoll_api::db::DbTls) -> Result<bool, DbError> {
        let s = self.server(id)?;
        let _op = s.op.lock().await;
        let layout = s.layout();
        let dir = self.inner.root.open_dir(&layout.dir).map_err(|e| DbError::Io(e.to_string()))?;
        write_tls(&dir, tls, mysql_ids()?)?;
        if !s.rt().supervised {
            return Ok(false);
        }
        sql::run_statements(&layout.socket, &atoll_engine::sql::reload_tls()).await?;
        Ok(true)
    }

    /// Runs `statements` in order as root over the server's socket; the
    /// rows each affected.
    pub async fn sql(&self, id: &DbId, statements: &[String]) -> Result<Vec<u64>, DbError> {
        let s = self.server(id)?;
        let socket = s.layout().socket;
        sql::run_statements(&socket, statements).await
    }

    /// The stopped server's position (`--wsrep-recover`) and whether
    /// `grastate.dat` says it may bootstrap.
    pub async fn recover(&self, id: &DbId) -> Result<RecoveredPosition, DbError> {
        let s = self.server(id)?;
        let _op = s.op.lock().await;
        let layout = s.layout();
        refuse_if_running(&s, &layout, "recover")?;
        recover::recover(&self.inner.root, &layout).await
    }

    /// Stops the server and forgets it; with `purge`, deletes its
    /// directory too. Forgetting an unknown server succeeds (it may be a
    /// retry).
    pub async fn remove(&self, id: &DbId, purge: bool) -> Result<Removed, DbError> {
        let Some(s) = self.inner.server(id) else { return Ok(Removed { removed: false, purged: false }) };
        let _op = s.op.lock().await;
        let dir = s.layout().dir;
        if purge {
            // Refused before anything changes: a directory that cannot be
            // purged (outside the root, a link on the way) keeps its server.
            match self.inner.root.open_dir(&dir) {
                Ok(_) | Err(ConfineError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.stop_locked(&s).await?;
        self.inner.servers().remove(id);
        self.inner.persist()?;
        let mut purged = false;
        if purge {
            purged = self
                .inner
                .root
                .remove_all(&dir)
                .map_err(|e| DbError::Io(format!("forgot server {id} but cannot delete {}: {e}", dir.display())))?;
        }
        tracing::info!(server = %id, purged, "database server removed");
        Ok(Removed { removed: true, purged })
    }
}

pub(super) fn refuse_if_running(s: &Server, layout: &Layout, what: &str) -> Result<(), DbError> {
    let (id, supervised, pid) = {
        let rt = s.rt();
        (rt.def.id.clone(), rt.supervised, rt.pid)
    };
    match (supervised, find_running(layout)) {
        (false, None) => Ok(()),
        (_, found) => Err(DbError::Refused(format!(
            "server {id} is running (pid {}): stop it before asking to {what} it",
            found.or(pid).map_or_else(|| "unknown".into(), |p| p.to_string())
        ))),
    }
}

/// Waits until the socket accepts a connection, the process exits, or
/// `START_WAIT` passes; whether it accepted.
async fn wait_for_socket(s: &Server, layout: &Layout, pid: Option<u32>) -> bool {
    let deadline = Instant::now() + START_WAIT;
    while Instant::now() < deadline {
        if s.rt().pid != pid {
            return false;
        }
        if tokio::net::UnixStream::connect(&layout.socket).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A server's TLS files: root's, the key readable by the database group
/// only (the registry keeps the definition without them).
fn write_tls(dir: &crate::confine::Dir, tls: &atoll_api::db::DbTls, ids: (u32, u32)) -> Result<(), DbError> {
    let [ca, cert, key] = atoll_engine::config::TLS_FILES;
    let public = Owner { uid: None, gid: Some(ids.1) };
    dir.write_atomic(ca, tls.ca_pem.as_bytes(), 0o644, public).map_err(DbError::Io)?;
    // The key before the certificate: a reload between the two would pair
    // the new certificate with the old key.
    dir.write_atomic(key, tls.key_pem.as_bytes(), 0o640, public).map_err(DbError::Io)?;
    dir.write_atomic(cert, tls.cert_pem.as_bytes(), 0o644, public).map_err(DbError::Io)
}

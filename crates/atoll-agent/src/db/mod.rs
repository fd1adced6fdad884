//! The database supervisor: runs the `mariadbd` servers the platform
//! defines on this host, restarts them when they crash (evicting the dead
//! node from its cluster first), and probes each once a second so every
//! heartbeat carries their state.
//!
//! What the platform asked for (definitions and whether each should run)
//! is kept in `DATA_DIR/db-servers.json`, so a restarted agent adopts the
//! servers still running and starts the others. The processes are never
//! tied to the agent's lifetime: stopping or upgrading the agent leaves
//! the databases serving.

mod control;
mod diskfull;
mod dropout;
mod evict;
mod files;
mod layout;
mod probe;
mod process;
mod recover;
mod registry;
mod seed;
mod sql;
mod supervise;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use atoll_api::db::{DbServerDef, DbServerStatus, WsrepStatus};
use atoll_core::ReplicationStatus;
use atoll_core::time::now_ms;
use atoll_core::{DbId, ServerState, UnixMs};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use control::{Defined, Removed, Started, Stopped};
use layout::Layout;

use crate::confine::DataRoot;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The request cannot succeed as asked; repeating it will not help.
    #[error("{0}")]
    Refused(String),
    /// The host or the server failed; the same request may succeed later.
    #[error("{0}")]
    Io(String),
}

/// The database supervisor; cheap to clone. When the last clone is
/// dropped, supervision and probing stop but the servers keep running.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
    _stop_on_drop: Arc<DropGuard>,
}

pub(crate) struct Inner {
    registry: PathBuf,
    /// Where server directories may be, and how they are opened.
    root: DataRoot,
    servers: Mutex<BTreeMap<DbId, Arc<Server>>>,
    /// Orders registry writes, so an older snapshot never lands last.
    persist: Mutex<()>,
    /// Cancelled when the last `Supervisor` goes: ends every task.
    shutdown: CancellationToken,
    /// Copies granted to other agents and not taken yet.
    exports: seed::Exports,
}

/// One defined server.
pub(crate) struct Server {
    rt: Mutex<Runtime>,
    /// Serialises the operations on one server (start, stop, ...); the
    /// supervision and probe tasks never take it.
    op: tokio::sync::Mutex<()>,
    /// Wakes a supervision task waiting to restart, when `desired_running`
    /// changed.
    wake: Notify,
}

/// What the agent knows about one server right now. Guarded by a plain
/// mutex: every critical section is short and never awaits.
struct Runtime {
    def: DbServerDef,
    layout: Layout,
    desired_running: bool,
    /// A supervision task owns the server (watching it, or waiting to
    /// restart it).
    supervised: bool,
    pid: Option<u32>,
    /// Exited unexpectedly and not restarted yet.
    crashed: bool,
    crash_loop: bool,
    restarts: u32,
    last_exit: Option<String>,
    /// Unexpected exits within the crash-loop window.
    exits: VecDeque<Instant>,
    wsrep: Option<WsrepStatus>,
    read_only: Option<bool>,
    replication: Option<ReplicationStatus>,
    probed_at_ms: UnixMs,
    probe_error: Option<String>,
    /// The current process's `wsrep_gcomm_uuid` and cluster size, as last
    /// probed: what the survivors must evict if it dies, and how they show
    /// they have dropped it.
    gcomm_uuid: Option<(String, u32)>,
    /// Whether the current process was voted out of its group for good.
    dropout: dropout::Dropout,
    /// The agent killed the current process because its data directory
    /// was full: it restarts once there is room, not as a crash.
    disk_full: bool,
}

/// One answer of the prober.
pub(crate) struct Probe {
    wsrep: WsrepStatus,
    read_only: bool,
    replication: Option<ReplicationStatus>,
}

impl Runtime {
    fn new(def: DbServerDef, desired_running: bool) -> Self {
        Self {
            layout: Layout::new(&def),
            def,
            desired_running,
            supervised: false,
            pid: None,
            crashed: false,
            crash_loop: false,
            restarts: 0,
            last_exit: None,
            exits: VecDeque::new(),
            wsrep: None,
            read_only: None,
            replication: None,
            probed_at_ms: 0,
            probe_error: None,
            gcomm_uuid: None,
            dropout: dropout::Dropout::default(),
            disk_full: false,
        }
    }

    /// A new process (or none): what was probed belongs to the old one.
    fn set_process(&mut self, pid: Option<u32>) {
        self.pid = pid;
        self.wsrep = None;
        self.read_only = None;
        self.replication = None;
        self.probe_error = None;
        self.gcomm_uuid = None;
        self.dropout = dropout::Dropout::default();
    }

    fn state(&self) -> ServerState {
        if self.crash_loop {
            ServerState::CrashLoop
        } else if self.pid.is_some() {
            atoll_engine::state::server_state(self.wsrep.as_ref(), true)
        } else if self.crashed {
            ServerState::Crashed
        } else if self.supervised {
            ServerState::Starting
        } else {
            ServerState::Stopped
        }
    }
}

impl Server {
    fn new(def: DbServerDef, desired_running: bool) -> Arc<Self> {
        Arc::new(Self { rt: Mutex::new(Runtime::new(def, desired_running)), op: tokio::sync::Mutex::new(()), wake: Notify::new() })
    }

    /// The runtime record; a panic elsewhere does not make it unreadable.
    fn rt(&self) -> MutexGuard<'_, Runtime> {
        self.rt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn id(&self) -> DbId {
        self.rt().def.id.clone()
    }

    fn layout(&self) -> Layout {
        self.rt().layout.clone()
    }

    fn desired(&self) -> bool {
        self.rt().desired_running
    }

    /// Marks the running `pid` as stopped for a full disk; `false` when it
    /// is no longer the process, or was marked already.
    fn mark_disk_full(&self, pid: u32) -> bool {
        let mut rt = self.rt();
        if rt.pid != Some(pid) || rt.disk_full || !rt.desired_running {
            return false;
        }
        rt.disk_full = true;
        true
    }

    fn probe_target(&self) -> (Option<u32>, PathBuf) {
        let rt = self.rt();
        (rt.pid, rt.layout.socket.clone())
    }

    /// Keeps a probe's answer, unless the process it asked has gone; says
    /// whether the process is to be restarted (out of its group for good).
    fn record_probe(&self, pid: u32, outcome: Result<Probe, String>) -> dropout::Verdict {
        let mut rt = self.rt();
        if rt.pid != Some(pid) {
            return dropout::Verdict::Keep;
        }
        rt.probed_at_ms = now_ms();
        match outcome {
            Ok(Probe { wsrep, read_only, replication }) => {
                if !wsrep.gcomm_uuid.is_empty() {
                    rt.gcomm_uuid = Some((wsrep.gcomm_uuid.clone(), wsrep.cluster_size));
                }
                let verdict = rt.dropout.observe(&wsrep, std::time::Instant::now());
                rt.wsrep = Some(wsrep);
                rt.read_only = Some(read_only);
                rt.replication = replication;
                rt.probe_error = None;
                if verdict != dropout::Verdict::Keep && rt.desired_running {
                    return verdict;
                }
            }
            Err(e) => {
                rt.wsrep = None;
                rt.read_only = None;
                rt.replication = None;
                rt.probe_error = Some(e);
            }
        }
        dropout::Verdict::Keep
    }

    fn status(&self) -> DbServerStatus {
        let rt = self.rt();
        DbServerStatus {
            id: rt.def.id.clone(),
            state: rt.state(),
            desired_running: rt.desired_running,
            pid: rt.pid,
            restarts: rt.restarts,
            last_exit: rt.last_exit.clone(),
            wsrep: rt.wsrep.clone(),
            read_only: rt.read_only,
            replication: rt.replication.clone(),
            probed_at_ms: rt.probed_at_ms,
            probe_error: rt.probe_error.clone(),
        }
    }
}

impl Inner {
    fn servers(&self) -> MutexGuard<'_, BTreeMap<DbId, Arc<Server>>> {
        self.servers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn server(&self, id: &DbId) -> Option<Arc<Server>> {
        self.servers().get(id).cloned()
    }

    /// Writes every definition and desired state to the registry.
    fn persist(&self) -> Result<(), DbError> {
        let _order = self.persist.lock().unwrap_or_else(PoisonError::into_inner);
        let servers: Vec<Arc<Server>> = self.servers().values().cloned().collect();
        let records = servers
            .iter()
            .map(|s| {
                let rt = s.rt();
                registry::Record { def: rt.def.clone(), desired_running: rt.desired_running }
            })
            .collect();
        registry::save(&self.registry, records)
    }
}

impl Supervisor {
    /// Loads the registry in `data_dir` and resumes: a server meant to run
    /// is adopted when its `mariadbd` still runs, otherwise started again
    /// at its recovered position. A live server meant to be stopped is
    /// adopted too (watched, not stopped): the platform sees it and decides.
    /// Server directories must lie below `root`.
    pub async fn open(data_dir: &Path, root: DataRoot) -> Result<Self, DbError> {
        let registry = data_dir.join("db-servers.json");
        let records = registry::load(&registry)?;
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            registry,
            root,
            servers: Mutex::new(BTreeMap::new()),
            persist: Mutex::new(()),
            shutdown: shutdown.clone(),
            exports: Default::default(),
        });
        for r in records {
            inner.servers().insert(r.def.id.clone(), Server::new(r.def, r.desired_running));
        }
        let servers: Vec<Arc<Server>> = inner.servers().values().cloned().collect();
        for server in servers {
            let (id, layout, desired) = {
                let rt = server.rt();
                (rt.def.id.clone(), rt.layout.clone(), rt.desired_running)
            };
            match process::find_running(&layout) {
                Some(pid) => {
                    tracing::info!(server = %id, pid, desired_running = desired, "adopting running database server");
                    supervise::supervise(inner.clone(), server, supervise::Launch::Adopted(pid));
                }
                None if desired => {
                    tracing::info!(server = %id, "database server is not running; starting it at its recovered position");
                    supervise::supervise(inner.clone(), server, supervise::Launch::Resume);
                }
                None => {}
            }
        }
        Ok(Self { inner, _stop_on_drop: Arc::new(shutdown.drop_guard()) })
    }

    /// The latest status of every defined server, by id.
    /// Every running server's global status counters, read now over its
    /// socket (or why not), for the metrics scrape.
    /// What each server's metrics are made of, read now: its global status
    /// and latency histogram, or why not (a server meant to run that does
    /// not is reported too, so "not Synced" holds for it; one stopped on
    /// purpose is left out).
    pub(crate) async fn global_statuses(&self) -> Vec<crate::metrics::DbStatus> {
        let servers: Vec<Arc<Server>> = self.inner.servers().values().cloned().collect();
        let wanted: Vec<(DbId, Option<u32>, PathBuf)> = servers
            .iter()
            .filter_map(|s| {
                let (pid, socket) = s.probe_target();
                (pid.is_some() || s.rt().desired_running).then(|| (s.id(), pid, socket))
            })
            .collect();
        let mut out = Vec::new();
        for (id, pid, socket) in wanted {
            let reading = async {
                if pid.is_none() {
                    return Err("not running".to_string());
                }
                let mut conn = sql::connect_socket(&socket, std::time::Duration::from_secs(1)).await?;
                let status = probe::name_value_rows(&mut conn, atoll_engine::sql::GLOBAL_STATUS).await?;
                // Absent when the build has no query_response_time plugin.
                let latency = probe::name_value_rows(&mut conn, atoll_engine::sql::QUERY_RESPONSE_TIME)
                    .await
                    .ok()
                    .and_then(|rows| atoll_engine::metrics::response_times(&rows));
                Ok(crate::metrics::DbReading { status, latency })
            }
            .await;
            out.push((id, reading));
        }
        out
    }

    pub fn statuses(&self) -> Vec<DbServerStatus> {
        let servers: Vec<Arc<Server>> = self.inner.servers().values().cloned().collect();
        servers.iter().map(|s| s.status()).collect()
    }

    pub fn status(&self, id: &DbId) -> Option<DbServerStatus> {
        self.inner.server(id).map(|s| s.status())
    }

    fn server(&self, id: &DbId) -> Result<Arc<Server>, DbError> {
        self.inner.server(id).ok_or_else(|| DbError::Refused(format!("no database server {id:?} on this host: define it first")))
    }
}

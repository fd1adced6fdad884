//! `atoll proxy`: a stateless, topology-aware MySQL proxy for one Galera
//! cluster (the OBProxy/ODP role). Applications connect to its read-write
//! port (sent to the one writer) or its read-only port (balanced over
//! healthy nodes, own zone first) instead of to database nodes.
//!
//! - [`source`]: routing tables from the platform (long-poll, several
//!   servers) and the state file.
//! - [`probe`]: the proxy's own health check of every backend.
//! - [`select`]: the pure routing rules (writer, sticky failover, readers).
//! - [`router`]: shared state; closes connections when routing changes.
//! - [`forward`]: accept, connection limits, connect, copy bytes.
//! - [`handshake`]: where a client's MySQL handshake ends (pre-auth limit).
//! - [`relay`]: the threads that own client connections.
//! - [`admin`]: `/metrics`, `/status`.

pub mod admin;
pub mod config;
pub mod forward;
pub mod handshake;
pub mod packet;
pub mod probe;
pub mod relay;
pub mod router;
pub mod select;
pub mod source;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, ProxyConfig};
pub use status::{BackendStatus, ProxyStatus};

use router::{Kind, Shared};

#[derive(Debug, Error)]
pub enum ProxyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the relay threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot create the state directory {path}: {source}")]
    StateDir { path: String, source: std::io::Error },
}

/// A started proxy.
pub struct Running {
    pub rw_addr: SocketAddr,
    pub ro_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    relays: Arc<relay::Relays>,
    task: JoinHandle<()>,
}

impl Running {
    pub fn status(&self) -> ProxyStatus {
        self.shared.status()
    }

    /// Until the proxy has stopped (after `shutdown` and the grace period)
    /// and its last client connection is closed.
    pub async fn wait(self) {
        let _ = self.task.await;
        self.relays.join().await;
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    TcpListener::bind(addr).await.map_err(|source| ProxyError::Bind { what, addr, source })
}

/// Checks `cfg`, binds every port, and starts routing; stops when
/// `shutdown` is cancelled: no new connections, existing ones get
/// `cfg.grace` to finish.
pub async fn start(cfg: ProxyConfig, shutdown: CancellationToken) -> Result<Running, ProxyError> {
    atoll_pki::install_provider();
    cfg.validate()?;
    if let Some(dir) = &cfg.state_dir {
        std::fs::create_dir_all(dir).map_err(|source| ProxyError::StateDir { path: dir.display().to_string(), source })?;
    }
    let rw = bind("--rw-listen", cfg.rw_listen).await?;
    let ro = bind("--ro-listen", cfg.ro_listen).await?;
    let admin = match cfg.admin_listen {
        Some(a) => Some(bind("--admin-listen", a).await?),
        None => None,
    };
    let local = |l: &TcpListener, fallback: SocketAddr| l.local_addr().unwrap_or(fallback);
    let rw_addr = local(&rw, cfg.rw_listen);
    let ro_addr = local(&ro, cfg.ro_listen);
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let shared = Arc::new(Shared::new(cfg));
    source::load_saved(&shared);
    let accept_stop = CancellationToken::new();
    tokio::spawn(source::run(shared.clone(), shutdown.clone()));
    let relays = Arc::new(relay::Relays::start(&shared).map_err(ProxyError::Threads)?);
    tokio::spawn(forward::serve(relays.clone(), rw, Kind::Rw, accept_stop.clone()));
    tokio::spawn(forward::serve(relays.clone(), ro, Kind::Ro, accept_stop.clone()));
    if let Some(l) = admin {
        let app = admin::router(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(l, app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "admin endpoint stopped");
            }
        });
    }
    tracing::info!(
        cluster = %shared.cfg.cluster,
        rw = %rw_addr,
        ro = %ro_addr,
        admin = admin_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        "atoll proxy listening"
    );
    let s = shared.clone();
    let task = tokio::spawn(async move {
        shutdown.cancelled().await;
        accept_stop.cancel();
        let open = || s.metrics.open.load(Ordering::Relaxed);
        tracing::info!(connections = open(), grace_ms = s.cfg.grace.as_millis() as u64, "stopping: no new connections");
        let deadline = Instant::now() + s.cfg.grace;
        while open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if open() > 0 {
            tracing::info!(connections = open(), "grace period over; closing the remaining connections");
        }
        s.kill_all.cancel();
        s.probers.cancel();
    });
    Ok(Running { rw_addr, ro_addr, admin_addr, shared, relays, task })
}

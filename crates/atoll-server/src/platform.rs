//! The platform's own servers: each announces itself in MetaDB (so agents,
//! proxies and the CLI learn every server's URL), and one at a time holds
//! the controllers' lease and runs the work that must happen once.
//!
//! The lease carries a fencing generation. A holder stops acting when its
//! own clock says the lease may have lapsed (the instant it *asked* for the
//! renewal plus the lease, less a margin), before anyone else can take it;
//! and MetaDB refuses any controller write whose generation is not the
//! live one, so even a server paused past its deadline cannot write a
//! stale view over a newer leader's.

use std::time::{Duration, Instant};

use atoll_core::time::now_ms;
use atoll_store::{Fence, LeaseRecord, PlatformServerRecord};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// The one lease of the controllers (offline detection, cluster health).
pub const CONTROLLERS: &str = "controllers";

/// A server not seen for this many announce intervals is not offered to
/// agents and proxies.
const LIVE_INTERVALS: i64 = 3;
/// Servers not seen for this long are forgotten (by the leader).
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

/// This server's place in the platform.
pub struct Platform {
    /// New for every process start.
    pub id: String,
    pub url: String,
    pub started_at_ms: i64,
    held: std::sync::Mutex<Option<Held>>,
    /// The URLs of the servers that are up, this one first; refreshed on
    /// every announcement so a heartbeat's answer costs no query.
    peers: std::sync::RwLock<Vec<String>>,
    /// Why the last announcement (a write) failed; `None` when it worked
    /// or none was made yet. Readiness reports it.
    write_error: std::sync::Mutex<Option<String>>,
}

struct Held {
    fence: Fence,
    /// Our own deadline for acting on it (monotonic).
    until: Instant,
}

impl Platform {
    pub fn new(url: String) -> Self {
        let id = format!(
            "{}-{}",
            url.trim_start_matches("http://").trim_start_matches("https://"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let peers = std::sync::RwLock::new(vec![url.clone()]);
        Self { id, url, started_at_ms: now_ms(), held: std::sync::Mutex::new(None), peers, write_error: std::sync::Mutex::new(None) }
    }

    /// Why MetaDB refused this server's last write, if it did.
    pub fn write_error(&self) -> Option<String> {
        self.write_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note_write(&self, outcome: Option<String>) {
        *self.write_error.lock().unwrap_or_else(|p| p.into_inner()) = outcome;
    }

    /// Every server that is up, this one first: what agents and proxies are
    /// given to fail over between.
    pub fn peers(&self) -> Vec<String> {
        self.peers.read().map(|p| p.clone()).unwrap_or_else(|_| vec![self.url.clone()])
    }

    /// The fence to write under, while this server leads and its own
    /// deadline has not passed.
    pub fn leading(&self) -> Option<Fence> {
        self.held().as_ref().filter(|h| Instant::now() < h.until).map(|h| h.fence.clone())
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How often to renew: a third of the lease, so two renewals can fail in
/// a row before the lease lapses.
fn renew_every(lease_ms: u64) -> Duration {
    Duration::from_millis(lease_ms / 3)
}

/// Announces this server and keeps (or waits for) the controllers' lease
/// until `shutdown`, then lets the lease go so another server takes over
/// at once instead of after it lapses.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let lease_ms = state.config.leader_lease_ms;
    let every = renew_every(lease_ms);
    loop {
        // Bounded: a MetaDB that stops answering (a network cut drops
        // packets) must not stall the renewals, or nobody would notice the
        // own deadline passing.
        if tokio::time::timeout(every, announce(&state)).await.is_err() {
            tracing::warn!("cannot announce this server: MetaDB did not answer within {every:?}");
            state.platform.note_write(Some(format!("MetaDB did not answer a write within {every:?}")));
        }
        let asked = Instant::now();
        let was_leading = state.platform.leading().is_some();
        match tokio::time::timeout(every, state.store.acquire_lease(CONTROLLERS, &state.platform.id, lease_ms as i64, now_ms())).await {
            Ok(Ok(lease)) => on_lease(&state, &lease, asked, lease_ms),
            // Keep acting until our own deadline: the lease may well still
            // be ours. `leading` stops at the deadline.
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the controllers' lease; MetaDB unreachable?"),
            Err(_) => tracing::warn!("cannot renew the controllers' lease: MetaDB did not answer within {every:?}"),
        }
        let leading = state.platform.leading().is_some();
        if was_leading && !leading {
            tracing::warn!("this server stopped running the controllers: its lease could not be renewed before its own deadline");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    if let Some(fence) = state.platform.leading() {
        *state.platform.held() = None;
        match tokio::time::timeout(every, state.store.release_lease(&fence)).await {
            Ok(Ok(())) => tracing::info!("controllers' lease released"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the controllers' lease; it lapses on its own"),
            Err(_) => tracing::warn!("cannot release the controllers' lease (no answer); it lapses on its own"),
        }
    }
}

fn on_lease(state: &AppState, lease: &LeaseRecord, asked: Instant, lease_ms: u64) {
    let me = &state.platform.id;
    let was = state.platform.held().as_ref().map(|h| h.fence.generation);
    if lease.holder == *me {
        // A fifth of the lease as margin for clock drift between servers.
        let until = asked + Duration::from_millis(lease_ms - lease_ms / 5);
        if was != Some(lease.generation) {
            tracing::info!(generation = lease.generation, "this server now runs the controllers");
            metrics::counter!("atoll_leader_acquired_total").increment(1);
        }
        *state.platform.held() = Some(Held { fence: lease.fence(), until });
    } else {
        if was.is_some() {
            tracing::warn!(holder = %lease.holder, generation = lease.generation, "another server runs the controllers now");
        }
        *state.platform.held() = None;
    }
}

/// Records this server as up and refreshes the list of its peers; the
/// leader also forgets long-gone servers.
async fn announce(state: &AppState) {
    let p = &state.platform;
    let now = now_ms();
    let me = PlatformServerRecord {
        id: p.id.clone(),
        url: p.url.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: p.started_at_ms,
        seen_at_ms: now,
        errors_logged: crate::logcount::errors() as i64,
    };
    if let Err(e) = state.store.record_platform_server(&me).await {
        tracing::warn!(error = %e, "cannot announce this server in MetaDB");
        p.note_write(Some(e.to_string()));
        return;
    }
    p.note_write(None);
    let Ok(all) = state.store.list_platform_servers().await else {
        return;
    };
    let live: Vec<&str> = all.iter().filter(|s| is_live(state, s, now)).map(|s| s.url.as_str()).collect();
    let urls = atoll_core::merge_urls(&[&p.url], &live);
    if let Ok(mut peers) = p.peers.write() {
        *peers = urls;
    }
    // A server restarted at our URL replaces its dead predecessor's row.
    let forget = |id: String| async move {
        let _ = state.store.delete_platform_server(&id).await;
        let _ = state.store.delete_doc(atoll_store::DocKind::Pki, &crate::pki::server_doc(&id)).await;
    };
    for old in all.iter().filter(|s| s.url == p.url && s.id != p.id && !is_live(state, s, now)) {
        forget(old.id.clone()).await;
    }
    if p.leading().is_some() {
        for gone in all.iter().filter(|s| now - s.seen_at_ms > FORGET_AFTER_MS) {
            forget(gone.id.clone()).await;
        }
    }
}

/// Whether a server's last announcement is recent enough to send clients to it.
pub fn is_live(state: &AppState, server: &PlatformServerRecord, now: i64) -> bool {
    now - server.seen_at_ms <= LIVE_INTERVALS * renew_every(state.config.leader_lease_ms).as_millis() as i64
}

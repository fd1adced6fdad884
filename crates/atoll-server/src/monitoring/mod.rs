//! The platform's monitoring: MonitorDB, and the scraper that fills it
//! from every agent, proxy and server. One server scrapes at a time (the
//! controllers' leader); any server answers queries from MonitorDB.

mod remote;
mod scrape;
pub(crate) mod targets;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use atoll_monitor::{Monitor, MonitorStore, SqlMonitorStore};
use tokio_util::sync::CancellationToken;

use crate::ServerConfig;
use crate::state::AppState;
pub use targets::Target;

/// What handlers and the scraper share.
pub struct Monitoring {
    pub db: Arc<Monitor>,
    /// The targets this server scrapes now and how each went last time;
    /// empty on servers that do not lead.
    status: RwLock<BTreeMap<String, TargetStatus>>,
    /// Where samples are also sent, when configured.
    remote: Option<remote::RemoteWrite>,
}

/// A target and its last scrape.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub target: Target,
    pub up: Option<bool>,
    pub last_scrape_ms: Option<i64>,
    pub duration_ms: Option<u64>,
    pub samples: usize,
    pub error: Option<String>,
}

impl Monitoring {
    /// Opens MonitorDB where the configuration says.
    pub async fn open(config: &ServerConfig) -> anyhow::Result<Arc<Monitoring>> {
        let store = match &config.monitordb_url {
            Some(url) => SqlMonitorStore::connect(url).await,
            None => SqlMonitorStore::open_sqlite(&config.data_dir.join("monitor.db")).await,
        }
        .map_err(|e| anyhow::anyhow!("cannot open MonitorDB: {e}"))?;
        let store: Arc<dyn MonitorStore> = Arc::new(store);
        let db = Monitor::open(store, config.monitor_config()).await.map_err(|e| anyhow::anyhow!("cannot load MonitorDB: {e}"))?;
        let remote = config.remote_write_url.clone().map(remote::RemoteWrite::new);
        Ok(Arc::new(Monitoring { db, status: RwLock::new(BTreeMap::new()), remote }))
    }

    /// MonitorDB's own statistics as the server's metrics.
    pub fn record_stats(&self) {
        let s = self.db.stats();
        metrics::gauge!("atoll_monitordb_series").set(s.series as f64);
        metrics::gauge!("atoll_monitordb_head_bytes").set(s.head_bytes as f64);
        metrics::gauge!("atoll_monitordb_pending_chunks").set(s.pending_chunks as f64);
        metrics::counter!("atoll_monitordb_samples_appended_total").absolute(s.samples_appended);
        metrics::counter!("atoll_monitordb_samples_dropped_total").absolute(s.samples_dropped);
        metrics::counter!("atoll_monitordb_chunks_written_total").absolute(s.chunks_written);
        metrics::counter!("atoll_monitordb_flushes_failed_total").absolute(s.flushes_failed);
        metrics::counter!("atoll_monitordb_chunks_dropped_for_space_total").absolute(s.chunks_dropped_for_space);
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        self.status.read().map(|s| s.values().cloned().collect()).unwrap_or_default()
    }

    fn set_status(&self, status: TargetStatus) {
        if let Ok(mut all) = self.status.write() {
            all.insert(status.target.id.clone(), status);
        }
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut all) = self.status.write() {
            all.retain(|id, _| keep(id));
        }
    }
}

/// Runs MonitorDB's background writer and the scraper until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let writer = tokio::spawn(Arc::clone(&state.monitoring.db).run(shutdown.clone()));
    let monitoring = Arc::clone(&state.monitoring);
    let remote_shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Some(r) = &monitoring.remote {
            r.run(remote_shutdown).await;
        }
    });
    scrape::run(state, shutdown).await;
    let _ = writer.await;
}

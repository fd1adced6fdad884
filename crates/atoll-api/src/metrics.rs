//! `/api/v1/metrics`: MonitorDB's series, queries and scrape targets.

use std::collections::BTreeMap;

use atoll_core::UnixMs;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A metric MonitorDB holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MetricView {
    pub name: String,
    /// `counter`, `gauge`, `histogram`… as its exporter declared it.
    pub kind: String,
    pub help: String,
    /// Label names seen on its series.
    pub labels: Vec<String>,
    pub series: usize,
}

/// A query's answer: shared timestamps and one row of values per series
/// (`null` where a series has no data at that step).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueryAnswer {
    pub metric: String,
    /// The stored resolution read: `raw`, `minute` or `hour`.
    pub resolution: String,
    pub step_ms: i64,
    pub timestamps: Vec<UnixMs>,
    pub series: Vec<QuerySeries>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuerySeries {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<Option<f64>>,
}

/// One scrape target and how its last scrape went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TargetView {
    /// `agent`, `proxy` or `server`.
    pub job: String,
    pub instance: String,
    pub url: String,
    /// Labels added to every series of the target.
    pub labels: BTreeMap<String, String>,
    /// `None` until its first scrape.
    pub up: Option<bool>,
    pub last_scrape_ms: Option<UnixMs>,
    pub duration_ms: Option<u64>,
    pub samples: usize,
    /// Why the last scrape failed.
    pub error: Option<String>,
}

/// The targets, and whether this server is the one scraping them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TargetsView {
    /// Only the server holding the controllers' lease scrapes; the others
    /// list no targets.
    pub scraping: bool,
    pub interval_ms: u64,
    pub targets: Vec<TargetView>,
}

/// A Prometheus service-discovery target group (the format of both
/// `file_sd_configs` files and `http_sd_configs` answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SdGroup {
    /// `host:port` to scrape.
    pub targets: Vec<String>,
    /// Labels for every series; `__metrics_path__` and `__scheme__` say
    /// where (an agent's metrics are read through the server, which holds
    /// the agent's credentials: scrape that job with an API token).
    pub labels: BTreeMap<String, String>,
}

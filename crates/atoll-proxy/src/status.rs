//! `GET /status` on the admin port: what the proxy is doing, as a stable
//! JSON document. The platform's agent reads it to report connection
//! counts to the console; fields are only ever added.

use atoll_core::UnixMs;
use serde::{Deserialize, Serialize};

use crate::select::ProbeKind;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyStatus {
    pub cluster: String,
    /// The routing table in use; `None` before the first one arrived.
    pub table_version: Option<String>,
    /// Seconds since the platform last confirmed that table (or since it
    /// was saved, when it came from the state file).
    pub table_age_s: Option<f64>,
    /// `platform`, `state_file` or `none`.
    pub table_source: String,
    /// The writer the table names.
    pub table_writer: Option<String>,
    /// Set during a planned writer move.
    pub moving_to: Option<String>,
    /// Where new read-write connections go now (our own probes and the
    /// sticky failover rule applied to the table).
    pub writer_in_use: Option<String>,
    /// When `writer_in_use` last changed, unix milliseconds.
    pub writer_since_unix_ms: UnixMs,
    pub backends: Vec<BackendStatus>,
    /// Current client connections.
    pub rw_connections: u64,
    pub ro_connections: u64,
    pub connections_total: u64,
    pub connections_refused: u64,
    /// Writer changes since start.
    pub writer_switches: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub zone: String,
    pub address: String,
    pub port: u16,
    pub probe: ProbeKind,
    /// `healthy`, or why not (probe error, not Synced, read_only ...).
    pub detail: String,
    pub readable: bool,
    pub writable: bool,
    /// When `probe` last changed, unix milliseconds.
    pub since_unix_ms: UnixMs,
    pub last_probe_unix_ms: UnixMs,
    pub rw_connections: u64,
    pub ro_connections: u64,
}

//! Proxies as the platform asks agents to run them, and as agents report
//! them back.

use atoll_core::DbId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One `atoll proxy` process an agent runs and supervises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyDef {
    /// `CLUSTER/NAME`, unique on the host.
    pub id: DbId,
    pub cluster: String,
    pub zone: String,
    /// Platform servers to read the routing table from; empty means the
    /// server the agent itself talks to.
    #[serde(default)]
    pub servers: Vec<String>,
    /// The cluster's proxy token (bearer for the routing table).
    pub token: String,
    /// `IP:PORT` for read-write, read-only and admin (metrics, status).
    pub rw_listen: String,
    pub ro_listen: String,
    pub admin_listen: String,
}

/// What the agent knows about a proxy process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProxyState {
    Starting,
    Running,
    /// Exited unexpectedly; restarting with back-off.
    Crashed,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProxyReport {
    pub id: DbId,
    pub state: ProxyState,
    pub pid: Option<u32>,
    /// Unexpected exits since the agent started supervising it.
    pub restarts: u32,
    /// The proxy's own `/status` (connections, writer, table age), when it
    /// answered.
    pub status: Option<Value>,
}

//! What an `atoll proxy` needs from the platform to route one cluster's
//! connections: `GET /api/v1/clusters/{name}/routing`, long-polled.

use atoll_core::ServerState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One cluster's routing table. The platform orders `backends` by writer
/// preference: the writer first, then the order every proxy falls back in,
/// so proxies that fail over on their own probes agree with each other and
/// with the platform's next choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoutingTable {
    pub cluster: String,
    /// Opaque; changes whenever anything else in the table changes. Pass it
    /// back as `?since=` to wait for the next change.
    pub version: String,
    /// The server that takes read-write connections; `None` when no server
    /// can (no primary component).
    pub writer: Option<String>,
    /// Set during a planned writer move: proxies hold new read-write
    /// connections (not refuse them) until the move ends and `writer`
    /// names the new server.
    pub moving_to: Option<String>,
    pub backends: Vec<Backend>,
    /// The cluster's read-only monitoring account, for the proxy's own
    /// probes. The password goes only to the cluster's proxies (their
    /// token); operators see it empty.
    pub monitor_user: String,
    pub monitor_password: String,
    /// Every platform server that is up (sorted): where to ask for the
    /// next table when this one's server stops answering.
    #[serde(default)]
    pub servers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Backend {
    /// The database server's name, e.g. `demo-1`.
    pub name: String,
    pub zone: String,
    /// IP address of the host it runs on.
    pub address: String,
    /// Its SQL port.
    pub port: u16,
    /// The state its agent last reported.
    pub state: ServerState,
}

/// `?since=VERSION&wait_ms=N`: answer at once when the table's version is
/// not `since`, otherwise when it changes or after `wait_ms` (at most
/// 30 000), with the unchanged table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
pub struct RoutingQuery {
    pub since: Option<String>,
    pub wait_ms: Option<u64>,
}

/// `POST /api/v1/clusters/{name}/writer`: a planned writer move.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWriterRequest {
    /// The server that takes writes from now on; it must be synced.
    pub server: String,
}

//! Database servers on a host: what the server asks an agent to run, and
//! what the agent reports back about each `mariadbd`.

pub use atoll_core::db::{DbId, RecoveredPosition, WsrepStatus};
use atoll_core::{ServerState, UnixMs};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A database server an agent runs. The platform renders the config; the
/// agent owns the process (start, supervise, restart, evict on crash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DbServerDef {
    /// `CLUSTER/SERVER`, unique on the host.
    pub id: DbId,
    /// Directory holding `my.cnf`, `data/`, `tmp/`, the socket, pid and log.
    pub dir: String,
    /// The full `my.cnf` contents, written to `DIR/my.cnf`.
    pub config: String,
    /// Where this server's SQL port listens, e.g. `127.0.0.11:3306`.
    pub sql_addr: String,
    /// SQL addresses of the cluster's other servers: on a crash the agent
    /// asks each to evict this node at once.
    pub peers: Vec<String>,
    /// Account the agent uses on peers for eviction.
    pub admin: DbCredentials,
    /// The engine build's installation directory: `mariadbd` and the
    /// install-db script are run from it. `None` (also in definitions made
    /// before packages existed): the host's system packages.
    #[serde(default)]
    pub basedir: Option<String>,
    /// The server's TLS material (the config then points at it): written
    /// into `dir`, the key readable by the database user only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<DbTls>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DbTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for DbTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTls").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DbCredentials {
    pub user: String,
    pub password: String,
}

/// How to start a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    /// First node of a new cluster, or the most advanced node when
    /// recovering a cluster that lost quorum (`--wsrep-new-cluster`).
    Bootstrap,
    /// Join the running cluster (state transfer as needed).
    Join,
}

/// A snapshot of one server, taken by its agent about once a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DbServerStatus {
    pub id: DbId,
    pub state: ServerState,
    /// Whether the platform wants it running.
    pub desired_running: bool,
    pub pid: Option<u32>,
    /// Restarts after unexpected exits since the agent started it.
    pub restarts: u32,
    /// How the last unexpected exit happened, e.g. `killed by signal 9`.
    pub last_exit: Option<String>,
    pub wsrep: Option<WsrepStatus>,
    pub read_only: Option<bool>,
    /// Binary log position and replica channel (replication between
    /// clusters); absent without a binary log, and from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<atoll_core::ReplicationStatus>,
    pub probed_at_ms: UnixMs,
    /// Why the probe failed, when it did.
    pub probe_error: Option<String>,
}

/// Allows one copy of a running server's data to be taken by another
/// agent (seeding a standby cluster), for a short time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportGrant {
    pub id: DbId,
    /// SHA-256 (hex) of the one-time token the copying agent presents.
    pub token_sha256: String,
    /// How long the grant waits to be used.
    pub ttl_s: u32,
}

/// Where a standby's first node copies its data from.
#[derive(Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SeedSource {
    /// The source host's agent.
    pub url: String,
    /// The server copied (for messages; the grant names it too).
    pub id: DbId,
    /// The one-time token of an [`ExportGrant`].
    pub token: String,
}

impl std::fmt::Debug for SeedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedSource").field("url", &self.url).field("id", &self.id).finish_non_exhaustive()
    }
}

/// What seeding a server from a copy did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Seeded {
    /// Bytes streamed from the source.
    pub bytes: u64,
    /// The source's binary log position at the moment the copy is
    /// consistent with: replication continues after it.
    pub gtid: String,
    pub took_ms: u64,
}

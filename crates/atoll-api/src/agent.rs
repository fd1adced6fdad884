//! The agent protocol: registration and heartbeats (agent → server) and the
//! host operations the server asks of an agent (server → agent).

use atoll_core::{HostFacts, HostId, UnixMs};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The agent's own identity, kept in its data directory.
    pub host_id: HostId,
    /// Needed for a host the server does not know yet.
    pub join_token: Option<String>,
    /// The agent's current token, proving a re-registration is the same
    /// agent.
    pub agent_token: Option<String>,
    pub name: Option<String>,
    pub zone: Option<String>,
    /// The region the agent was started in (`--region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub address: String,
    pub agent_url: String,
    pub agent_version: String,
    pub facts: HostFacts,
    /// The public half of the agent's TLS key (hex, uncompressed P-256):
    /// the platform's CA issues the agent's certificate for it. Sent when
    /// the agent talks to the platform over HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    pub host_id: HostId,
    pub name: String,
    /// The agent presents this on every call to the server.
    pub agent_token: String,
    /// The server presents this on every call to the agent.
    pub server_token: String,
    pub heartbeat_interval_ms: u64,
    pub server_time_ms: UnixMs,
    /// Every platform server that is up, the answering one first.
    #[serde(default)]
    pub servers: Vec<String>,
    /// The agent's certificate (PEM) for its `public_key`, valid for its
    /// address, for serving the platform and calling it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

/// A new certificate for a database server on the agent's host, for a
/// key the agent made (renewal: the key never leaves the host).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DbCertificateRequest {
    pub host_id: HostId,
    pub database: atoll_core::DbId,
    /// The P-256 public key, hex (`atoll_pki::public_key_hex`).
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DbCertificateResponse {
    pub certificate_pem: String,
    /// The CA that issued it.
    pub ca_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub host_id: HostId,
    pub address: String,
    pub agent_url: String,
    /// Sent when their stable part changed, when the server asks, and every
    /// few minutes for the volatile readings; not on every beat.
    pub facts: Option<HostFacts>,
    /// Every database server this agent runs, on every beat.
    #[serde(default)]
    pub db: Vec<crate::db::DbServerStatus>,
    /// Every proxy this agent runs, on every beat.
    #[serde(default)]
    pub proxies: Vec<crate::proxy::ProxyReport>,
    /// The fingerprints of the CAs this agent trusts (TLS platforms): a
    /// server whose bundle differs sends its own back.
    #[serde(default)]
    pub trusted_cas: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    pub server_time_ms: UnixMs,
    pub heartbeat_interval_ms: u64,
    /// Every platform server that is up, the answering one first: where the
    /// agent turns when its server stops answering.
    #[serde(default)]
    pub servers: Vec<String>,
    /// The answering server has no facts of this host (it never heard from
    /// it, or restarted): the next beat should carry them.
    #[serde(default)]
    pub want_facts: bool,
    /// On a TLS platform: which CA issues now, and the CAs to trust.
    #[serde(default)]
    pub tls: Option<TlsDirective>,
}

/// What an agent's TLS should look like; it acts on a difference.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TlsDirective {
    /// The fingerprint of the CA that issues certificates now: one of the
    /// agent's issued by another is renewed.
    pub issuer: String,
    /// Every CA to trust, the issuing one first; sent only when the
    /// agent's `trusted_cas` differ from it.
    pub bundle_pem: Option<String>,
}

/// An operation on a host, keyed for exactly-once effect: a repeated key
/// returns the first result without acting again.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpRequest {
    pub key: String,
    pub op: HostOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostOp {
    /// Create directories (and parents) with `mode`, owned by `owner`
    /// (default `mysql` where that user exists).
    MakeDirs { paths: Vec<String>, owner: Option<String>, mode: u32 },
    /// Remove, with their content, those of `paths` this agent created;
    /// other paths are kept and reported.
    RemoveDirs { paths: Vec<String> },
    /// Define (or redefine) a database server: directories, `my.cnf`, and
    /// the supervisor's record. Does not start it.
    DbDefine { server: crate::db::DbServerDef },
    /// Initialise an empty data directory (`mariadb-install-db`); a no-op
    /// when it holds data. Only the bootstrap node needs this.
    DbInit { id: crate::db::DbId },
    /// Start and supervise the server; a no-op when it runs.
    DbStart { id: crate::db::DbId, mode: crate::db::StartMode },
    /// Stop it cleanly (SIGTERM, wait) and stop supervising it.
    DbStop { id: crate::db::DbId },
    /// Run statements as root over the local socket (accounts, settings).
    DbSql { id: crate::db::DbId, statements: Vec<String> },
    /// Fill the stopped server's empty data directory with a consistent
    /// copy streamed from another host's agent (`mariadb-backup`), ready
    /// to start as the first node of a new cluster.
    DbSeed { id: crate::db::DbId, source: crate::db::SeedSource },
    /// Read the stopped server's position (`--wsrep-recover`).
    DbRecover { id: crate::db::DbId },
    /// Stop it and forget it; with `purge`, delete its directory.
    DbRemove { id: crate::db::DbId, purge: bool },
    /// Run and supervise an `atoll proxy` (restarted when its definition
    /// changed); a no-op when it runs as defined.
    ProxyStart { proxy: crate::proxy::ProxyDef },
    /// Stop a proxy and forget it; a no-op for an unknown one.
    ProxyRemove { id: crate::db::DbId },
    /// Download the package tarball `sha256` from the server, verify its
    /// size and checksum while streaming, and extract it as the engine
    /// build `name`; a no-op when that build is already installed.
    PackageInstall { name: String, sha256: String, size: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpResult {
    pub key: String,
    /// `true` when the effect had already happened and this is its record.
    pub replayed: bool,
    pub detail: Value,
}

/// One entry of the agent's operation journal.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpJournalEntry {
    pub key: String,
    pub op: HostOp,
    /// How many times the effect ran: 1 unless the journal was lost.
    pub executions: u32,
    /// How many times a repeat was answered from the journal.
    pub replays: u32,
    pub at_ms: UnixMs,
    pub detail: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentStatus {
    pub host_id: HostId,
    pub version: String,
    pub started_at_ms: UnixMs,
}

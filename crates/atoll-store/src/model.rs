//! Records as the store keeps them. They carry secrets and bookkeeping that
//! never leave the server; the API crate defines what goes on the wire.

use atoll_core::{Host, HostFacts, HostId, HostStatus, Phase, Role, StepStatus, TaskStatus, UnixMs};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct HostRecord {
    pub host: Host,
    /// SHA-256 (hex) of the token the agent presents to the server.
    pub agent_token_hash: Option<String>,
    /// The token the server presents to the agent.
    pub server_token: Option<String>,
    /// The last precheck results (JSON array) and when they were taken.
    pub checks: Option<Value>,
    pub checked_at_ms: Option<UnixMs>,
}

/// A host as listings show it, from summary columns kept beside the facts
/// and checks, so a listing never reads or parses those (issue 3: they were
/// most of the cost of listing 1000 hosts).
#[derive(Debug, Clone, PartialEq)]
pub struct HostSummaryRecord {
    pub id: HostId,
    pub name: String,
    pub address: String,
    pub agent_url: Option<String>,
    pub zone: Option<String>,
    pub region: Option<String>,
    pub status: HostStatus,
    pub agent_version: Option<String>,
    pub created_at_ms: UnixMs,
    pub last_heartbeat_ms: Option<UnixMs>,
    /// From the last facts; `None` until the host's agent sent some.
    pub cpu_cores: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub clock_offset_ms: Option<i64>,
    /// `worst` and `profile` of the last precheck report, as stored.
    pub check_worst: Option<String>,
    pub check_profile: Option<String>,
    pub checked_at_ms: Option<UnixMs>,
}

impl HostSummaryRecord {
    /// What the summary columns hold for a full record.
    pub fn of(r: &HostRecord) -> Self {
        let h = &r.host;
        let facts = h.facts.as_ref();
        let (check_worst, check_profile) = r.checks.as_ref().map_or((None, None), check_summary);
        HostSummaryRecord {
            id: h.id,
            name: h.name.clone(),
            address: h.address.clone(),
            agent_url: h.agent_url.clone(),
            zone: h.zone.clone(),
            region: h.region.clone(),
            status: h.status,
            agent_version: h.agent_version.clone(),
            created_at_ms: h.created_at_ms,
            last_heartbeat_ms: h.last_heartbeat_ms,
            cpu_cores: facts.map(|f| f.cpu.cores),
            memory_bytes: facts.map(|f| f.memory_bytes),
            clock_offset_ms: facts.and_then(|f| f.clock_offset_ms),
            check_worst: check_worst.map(str::to_owned),
            check_profile: check_profile.map(str::to_owned),
            checked_at_ms: r.checked_at_ms,
        }
    }
}

/// `worst` and `profile` of a stored precheck report. The store keeps the
/// report as opaque JSON; these two fields are all a listing needs of it.
pub(crate) fn check_summary(checks: &Value) -> (Option<&str>, Option<&str>) {
    (checks.get("worst").and_then(Value::as_str), checks.get("profile").and_then(Value::as_str))
}

/// An agent's registration, already authorised by the server.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: HostId,
    /// Name for a newly inserted host; an existing host keeps its name.
    pub name: String,
    pub address: String,
    pub agent_url: String,
    /// Zone the agent was started in; `None` keeps the host's zone.
    pub zone: Option<String>,
    /// Region the agent was started in; `None` keeps the host's region.
    pub region: Option<String>,
    pub facts: HostFacts,
    pub agent_version: String,
    pub agent_token_hash: String,
    pub server_token: String,
    pub now: UnixMs,
}

#[derive(Debug, Clone)]
pub struct HeartbeatRecord {
    pub id: HostId,
    pub now: UnixMs,
    /// The agent's API address, which may have changed since registration.
    pub address: String,
    pub agent_url: String,
    /// Fresh facts, when the agent sent them.
    pub facts: Option<HostFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub must_change_password: bool,
    pub created_at_ms: UnixMs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the cookie value; the value itself is never stored.
    pub token_hash: String,
    pub user: String,
    pub source: String,
    pub created_at_ms: UnixMs,
    pub last_seen_ms: UnixMs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub user: String,
    pub name: String,
    pub token_hash: String,
    pub created_at_ms: UnixMs,
    pub last_used_ms: Option<UnixMs>,
    /// None only for tokens made before tokens expired (migration 0009).
    pub expires_at_ms: Option<UnixMs>,
}

#[derive(Debug, Clone, Copy)]
pub struct LockoutPolicy {
    pub max_failures: u32,
    pub window_ms: i64,
    pub lock_ms: i64,
}

#[derive(Debug, Clone)]
pub struct NewAudit {
    pub at_ms: UnixMs,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    /// `ok`, or the error a refused change got.
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: UnixMs,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    /// What the task does, e.g. `host.prepare`.
    pub kind: String,
    pub title: String,
    /// What it acts on, e.g. a host or cluster name; for filtering.
    pub target: String,
    pub status: TaskStatus,
    pub phase: Phase,
    pub cancel_requested: bool,
    pub params: Value,
    pub created_by: String,
    pub created_at_ms: UnixMs,
    pub updated_at_ms: UnixMs,
    pub finished_at_ms: Option<UnixMs>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub task_id: String,
    pub key: String,
    /// Position in the task, for stable listing.
    pub seq: i64,
    /// Handler that runs it, e.g. `host.dirs`.
    pub kind: String,
    pub title: String,
    pub params: Value,
    pub deps: Vec<String>,
    pub status: StepStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_ms: i64,
    pub not_before_ms: UnixMs,
    pub lease_owner: Option<String>,
    pub lease_expires_ms: Option<UnixMs>,
    pub started_at_ms: Option<UnixMs>,
    pub finished_at_ms: Option<UnixMs>,
    pub output: Option<Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub target: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct StepClaim {
    pub task_id: String,
    pub key: String,
    pub expect: StepStatus,
    pub to: StepStatus,
    pub owner: String,
    pub now: UnixMs,
    pub lease_until: UnixMs,
}

#[derive(Debug, Clone)]
pub struct StepCompletion {
    pub task_id: String,
    pub key: String,
    pub owner: String,
    pub status: StepStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// For a failed attempt that will be retried: when it may run again.
    pub not_before_ms: UnixMs,
    pub now: UnixMs,
}

#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub id: String,
    pub status: TaskStatus,
    pub phase: Phase,
    pub cancel_requested: bool,
    pub now: UnixMs,
    pub finished_at_ms: Option<UnixMs>,
}

#[derive(Debug, Clone)]
pub struct NewStepLog {
    pub task_id: String,
    pub step: String,
    pub attempt: u32,
    pub at_ms: UnixMs,
    pub level: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepLogRecord {
    pub id: i64,
    pub task_id: String,
    pub step: String,
    pub attempt: u32,
    pub at_ms: UnixMs,
    pub level: String,
    pub message: String,
}

/// A database cluster as stored: the request (resolved), its health, and
/// its secrets, sealed by the server before they get here.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRecord {
    pub name: String,
    pub engine: String,
    pub durability: atoll_core::Durability,
    pub status: atoll_core::ClusterStatus,
    /// Decoded once, here: a stored spec that no longer decodes is an
    /// error naming the cluster, never a default.
    pub spec: atoll_core::ClusterSpec,
    /// Opaque to the store: sealed (encrypted) by the server.
    pub secrets: Value,
    pub created_by: String,
    pub created_at_ms: UnixMs,
    pub updated_at_ms: UnixMs,
}

/// One `mariadbd` of a cluster, placed on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct DbServerRecord {
    pub cluster: String,
    pub name: String,
    pub host_id: HostId,
    pub zone: String,
    /// Galera segment: the zone's index in the cluster.
    pub segment: u8,
    pub address: String,
    pub ports: atoll_core::Ports,
    pub dir: String,
    /// The last status its agent reported (`DbServerStatus` as JSON).
    pub status: Option<Value>,
    pub status_at_ms: Option<UnixMs>,
}

/// A host's name and its agent's token hash, for authenticating beats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentAuth {
    pub name: String,
    pub token_hash: Option<String>,
}

/// Which server of a cluster takes writes. `moving_to` is set while a
/// planned move is under way, so proxies hold new writes until it ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingRecord {
    pub writer: Option<String>,
    pub moving_to: Option<String>,
    pub changed_at_ms: UnixMs,
}

/// One `atoll proxy` of a cluster, run by the agent of `host_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyRecord {
    pub cluster: String,
    pub name: String,
    pub host_id: HostId,
    pub zone: String,
    pub address: String,
    pub rw_port: u16,
    pub ro_port: u16,
    pub admin_port: u16,
    /// The last status its agent reported (`ProxyStatus` as JSON).
    pub status: Option<Value>,
    pub status_at_ms: Option<UnixMs>,
}

/// An engine build registered as a package tarball.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageRecord {
    pub name: String,
    pub version: String,
    /// Lowercase hex; also the file's name on the server.
    pub sha256: String,
    pub size_bytes: u64,
    /// The build's essential files, as paths inside the tarball.
    pub mariadbd: String,
    pub install_db: String,
    pub galera: String,
    pub created_by: String,
    pub created_at_ms: UnixMs,
}

/// A lease on work that must run on one server at a time. The generation
/// grows by one each time the lease changes hands (or is taken again after
/// it lapsed), so a write made under an older one can be told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub name: String,
    pub holder: String,
    pub generation: i64,
    pub acquired_at_ms: UnixMs,
    pub expires_ms: UnixMs,
}

impl LeaseRecord {
    /// Whether `holder` holds it at `now`.
    pub fn held_by(&self, holder: &str, now: UnixMs) -> bool {
        self.holder == holder && self.expires_ms > now
    }

    /// What a write made under this lease presents.
    pub fn fence(&self) -> Fence {
        Fence { lease: self.name.clone(), holder: self.holder.clone(), generation: self.generation }
    }
}

/// Proof of a lease, presented with a write only its holder may make; the
/// store refuses the write (`StoreError::Fenced`) in the same transaction
/// when the lease moved on or lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub generation: i64,
}

/// A running `atoll server`, as it last announced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformServerRecord {
    /// Unique per process start.
    pub id: String,
    /// Where agents, proxies and the CLI reach it.
    pub url: String,
    pub version: String,
    pub started_at_ms: UnixMs,
    pub seen_at_ms: UnixMs,
    /// Errors it logged since it started.
    pub errors_logged: i64,
}

/// Which hosts a listing wants, in name order: a page after `after`, at
/// most `limit`, optionally one status, one zone, names starting with
/// `name_prefix`. The default is every host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFilter {
    pub after: Option<String>,
    pub limit: Option<u32>,
    pub status: Option<HostStatus>,
    pub zone: Option<String>,
    pub name_prefix: Option<String>,
}

/// What a [`DocRecord`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocKind {
    AlertRule,
    Silence,
    Channel,
    /// The last deliveries of a channel, apart from its settings so that
    /// recording one never overwrites an operator's change.
    ChannelStatus,
    /// A join token, named by its SHA-256 (the token itself is not kept).
    JoinToken,
    /// The platform's CA (`ca`): certificate, name and sealed key.
    Pki,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::AlertRule => "alert_rule",
            DocKind::Silence => "silence",
            DocKind::Channel => "channel",
            DocKind::ChannelStatus => "channel_status",
            DocKind::JoinToken => "join_token",
            DocKind::Pki => "pki",
        }
    }
}

/// A named JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRecord {
    pub kind: DocKind,
    pub name: String,
    pub body: String,
    pub updated_ms: UnixMs,
}

/// An alarm: the columns listings filter on, the rest as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRecord {
    pub id: String,
    pub rule: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    pub started_ms: UnixMs,
    pub ended_ms: Option<UnixMs>,
    pub body: String,
}

/// Which alarms a listing wants, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlarmFilter {
    /// Only pending and firing ones.
    pub active: bool,
    pub rule: Option<String>,
    /// Only those that started before this (paging).
    pub before_ms: Option<UnixMs>,
    /// 0: the default page (100).
    pub limit: u32,
}

//! `/api/v1`: what the CLI, the console and scripts use.

use atoll_core::{Host, HostId, HostStatus, Phase, Role, StepStatus, TaskStatus, UnixMs};
use atoll_plan::check::{CheckResult, CheckStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    pub user: String,
    pub role: Role,
    /// The first login with a generated password must set a new one
    /// (`POST /api/v1/auth/password`) before anything else is allowed.
    pub must_change_password: bool,
    /// Session token (also set as the `atoll_session` cookie); ends after
    /// `idle_timeout_s` without use.
    pub token: String,
    pub idle_timeout_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub user: String,
    pub role: Role,
    pub must_change_password: bool,
    /// `session` or `token`.
    pub auth: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub name: String,
    /// At least 10 characters; the user must choose another at first login.
    #[schema(min_length = 10)]
    pub password: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub must_change_password: bool,
    pub created_at_ms: UnixMs,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// What the token is for, e.g. `cli@laptop`: 1 to 100 characters, not
    /// only spaces.
    #[schema(pattern = "\\S", min_length = 1, max_length = 100)]
    pub name: String,
    /// Days until the token stops working: 1 to 3650, 90 when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3650)]
    pub ttl_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    /// Shown once; only its hash is kept.
    pub token: String,
    pub expires_at_ms: UnixMs,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub user: String,
    pub created_at_ms: UnixMs,
    pub last_used_ms: Option<UnixMs>,
    /// None for a token made before tokens expired.
    pub expires_at_ms: Option<UnixMs>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddHostRequest {
    /// IP address the host's agent will listen on.
    #[schema(schema_with = ip_address)]
    pub address: String,
    /// Default: `host-` and the address with dashes.
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub name: Option<String>,
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub zone: Option<String>,
    /// The host's region (an IDC or a site); default: the `default` region.
    #[serde(default)]
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub region: Option<String>,
}

/// An IPv4 or IPv6 address, as `std::net::IpAddr` reads it.
fn ip_address() -> utoipa::openapi::Schema {
    use utoipa::openapi::KnownFormat;
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let ip = |f| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(f)));
    OneOfBuilder::new().item(ip(KnownFormat::Ipv4)).item(ip(KnownFormat::Ipv6)).build().into()
}

/// TCP ports, 1 to 65535, or null for the default ones.
fn port_list() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let port = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(65535));
    ArrayBuilder::new().schema_type(SchemaType::from_iter([Type::Array, Type::Null])).items(port).build().into()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AddedHost {
    pub host: HostView,
    /// The command that starts this host's agent and joins it.
    pub agent_command: String,
}

/// One host in full, from `GET /api/v1/hosts/{host}`: with its facts and
/// the last precheck's results.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostView {
    #[serde(flatten)]
    pub host: Host,
    /// The last precheck, if one ran.
    pub checks: Option<HostCheckReport>,
}

/// One host in `GET /api/v1/hosts`: what a listing shows, without facts or
/// precheck results (`GET /api/v1/hosts/{host}` has those), so listing a
/// thousand hosts stays small and cheap for the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostListItem {
    pub id: HostId,
    pub name: String,
    pub address: String,
    pub agent_url: Option<String>,
    pub zone: Option<String>,
    /// `None`: the default region.
    pub region: Option<String>,
    pub status: HostStatus,
    pub agent_version: Option<String>,
    pub created_at_ms: UnixMs,
    pub last_heartbeat_ms: Option<UnixMs>,
    /// Logical CPUs, from the last facts; `None` until the agent sent facts.
    pub cpu_cores: Option<u32>,
    /// Total physical memory, from the last facts.
    pub memory_bytes: Option<u64>,
    /// Agent clock minus server clock, from the last facts; `None` until
    /// measured.
    pub clock_offset_ms: Option<i64>,
    /// The last precheck's outcome, if one ran.
    pub checks: Option<HostCheckSummary>,
}

/// The outcome of a host's last precheck, without its results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostCheckSummary {
    pub worst: CheckStatus,
    pub profile: String,
    pub checked_at_ms: UnixMs,
}

/// Hosts counted by status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostSummary {
    pub total: usize,
    pub online: usize,
    pub offline: usize,
    pub pending: usize,
}

impl HostSummary {
    /// From counts per status (as MetaDB groups them).
    pub fn from_counts(counts: &[(HostStatus, i64)]) -> Self {
        let n = |s: HostStatus| counts.iter().filter(|(st, _)| *st == s).map(|(_, n)| usize::try_from(*n).unwrap_or(0)).sum::<usize>();
        let (online, offline, pending) = (n(HostStatus::Online), n(HostStatus::Offline), n(HostStatus::Pending));
        HostSummary { total: online + offline + pending, online, offline, pending }
    }

    pub fn of(statuses: impl IntoIterator<Item = HostStatus>) -> Self {
        let mut s = HostSummary { total: 0, online: 0, offline: 0, pending: 0 };
        for status in statuses {
            s.total += 1;
            match status {
                HostStatus::Online => s.online += 1,
                HostStatus::Offline => s.offline += 1,
                HostStatus::Pending => s.pending += 1,
            }
        }
        s
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// Hosts to check (id, name or address); empty means all.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `production` (the seed's table, default) or `sandbox`.
    #[schema(value_type = Option<Profile>)]
    pub profile: Option<String>,
    /// Where databases will live, an absolute path; default from the
    /// server's config.
    #[schema(pattern = "^/")]
    pub data_dir: Option<String>,
    /// Ports that must be free; default the MariaDB/Galera ones.
    #[schema(schema_with = port_list)]
    pub ports: Option<Vec<u16>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostCheckReport {
    pub host: String,
    pub profile: String,
    pub data_dir: String,
    pub worst: CheckStatus,
    pub results: Vec<CheckResult>,
    pub checked_at_ms: UnixMs,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckResponse {
    pub profile: String,
    pub worst: CheckStatus,
    pub hosts: Vec<HostCheckReport>,
    /// Checks across hosts, such as clock skew.
    pub across_hosts: Vec<CheckResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepareRequest {
    /// Hosts to prepare (id, name or address); at least one.
    #[schema(min_items = 1)]
    pub hosts: Vec<String>,
    #[schema(value_type = Option<Profile>)]
    pub profile: Option<String>,
    /// An absolute path; default from the server's config.
    #[schema(pattern = "^/")]
    pub data_dir: Option<String>,
    /// OS user that will own the directories; default `mysql` when it
    /// exists on the host, else the agent's user.
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RemoveHostRequest {
    /// Also delete the directories `host prepare` created.
    #[serde(default)]
    pub purge: bool,
    /// Remove the host although database servers or proxies are placed on
    /// it (a machine that is gone for good); they stay in their clusters,
    /// lost, until removed from them.
    #[serde(default)]
    pub force: bool,
}

/// A join token just minted: the token is shown this once (MetaDB keeps
/// only its hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenView {
    pub token: String,
    /// `atoll agent` command line with the server URL filled in and the
    /// token in the environment (`ATOLL_JOIN_TOKEN`), never in argv.
    pub agent_command: String,
    pub expires_ms: i64,
    pub single_use: bool,
}

/// What `POST /api/v1/join-tokens` mints.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinTokenRequest {
    /// Seconds the token admits new hosts (default 3600, at most 30 days).
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_s: Option<u64>,
    /// Admits one host, then is gone.
    #[serde(default)]
    pub single_use: bool,
}

/// A live join token, without its secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenInfo {
    pub created_by: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub single_use: bool,
    /// The declared host it is for, if any.
    pub host: Option<String>,
}

/// How many tokens `DELETE /api/v1/join-tokens` revoked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokensRevoked {
    pub revoked: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    pub kind: String,
    pub title: String,
    pub target: String,
    pub status: TaskStatus,
    pub phase: Phase,
    pub cancel_requested: bool,
    pub created_by: String,
    pub created_at_ms: UnixMs,
    pub updated_at_ms: UnixMs,
    pub finished_at_ms: Option<UnixMs>,
    pub steps_done: usize,
    pub steps_total: usize,
    /// Present on `GET /tasks/{id}`; empty in listings.
    pub steps: Vec<StepView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepView {
    pub key: String,
    pub kind: String,
    pub title: String,
    pub deps: Vec<String>,
    pub status: StepStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    pub started_at_ms: Option<UnixMs>,
    pub finished_at_ms: Option<UnixMs>,
    pub error: Option<String>,
    pub output: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepLogView {
    pub id: i64,
    pub step: String,
    pub attempt: u32,
    pub at_ms: UnixMs,
    pub level: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at_ms: UnixMs,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    pub detail: Value,
    pub outcome: String,
}

/// A cluster as the API shows it: health per zone and per server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub name: String,
    /// The region it lives in.
    pub region: String,
    pub engine: String,
    pub durability: atoll_core::Durability,
    pub status: atoll_core::ClusterStatus,
    pub zones: Vec<ZoneView>,
    /// The server proxies send read-write connections to.
    pub writer: Option<String>,
    /// Set while a planned writer move runs.
    pub moving_to: Option<String>,
    /// Where applications connect: one proxy per zone.
    pub proxies: Vec<ProxyView>,
    pub params: std::collections::BTreeMap<String, String>,
    /// Its part in replication between clusters; absent for a cluster made
    /// before standbys existed (it keeps no binary log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationView>,
    pub created_by: String,
    pub created_at_ms: UnixMs,
    pub updated_at_ms: UnixMs,
}

/// A cluster's part in a primary/standby pair.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplicationView {
    /// `primary` or `standby`.
    pub role: String,
    /// GTID domain and `server_id` of every node.
    pub domain: u32,
    /// A standby's primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// A primary's standbys.
    #[serde(default)]
    pub standbys: Vec<String>,
    /// A standby's channel as its applier reports it; absent while no
    /// node applies one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ReplicaChannelView>,
}

/// The replication channel feeding a standby.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReplicaChannelView {
    /// The standby's server that applies it.
    pub applier: String,
    /// The primary's server it reads from (its address when unknown).
    pub source: String,
    /// Both replica threads run (the receiver may be reconnecting).
    pub running: bool,
    /// `Seconds_Behind_Master`; absent while not applying.
    pub seconds_behind: Option<u64>,
    /// Transactions the primary has logged that the standby lacks.
    pub transactions_behind: Option<u64>,
    /// The last replication error, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProxyView {
    pub name: String,
    pub zone: String,
    pub host: String,
    pub address: String,
    pub rw_port: u16,
    pub ro_port: u16,
    pub admin_port: u16,
    /// `None` until its agent first reports it.
    pub state: Option<crate::proxy::ProxyState>,
    pub pid: Option<u32>,
    /// Client connections open now, read-write and read-only (from the
    /// proxy's own status).
    pub rw_connections: Option<u64>,
    pub ro_connections: Option<u64>,
    pub restarts: Option<u32>,
    pub status_at_ms: Option<UnixMs>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ZoneView {
    pub name: String,
    /// Galera segment.
    pub segment: u8,
    pub servers: Vec<ServerView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerView {
    pub name: String,
    pub host: String,
    pub address: String,
    pub port: u16,
    pub state: atoll_core::ServerState,
    /// The agent's last report, when there is one.
    pub status: Option<crate::db::DbServerStatus>,
    pub status_at_ms: Option<UnixMs>,
}

/// How to connect to a cluster as its administrator (admin only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterCredentials {
    pub user: String,
    pub password: String,
    /// Where applications connect: the first zone's proxy (read-write
    /// port), or the first server when the cluster runs no proxies.
    pub host: String,
    pub port: u16,
    /// The first server itself, bypassing the proxies.
    pub direct_host: String,
    pub direct_port: u16,
    /// A `mariadb` command line that works from the platform host.
    pub mysql_command: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetParamsRequest {
    /// MariaDB parameters to set, e.g. `{"max_connections": "500"}`: keys
    /// and values from the server's catalog (the document lists them).
    pub params: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteClusterQuery {
    /// Also delete the servers' data directories.
    #[serde(default)]
    pub purge: bool,
}

/// Options of a single-server stop, start or restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ServerOpQuery {
    /// Act even when the cluster would be left without a majority of its
    /// servers running (writes stop everywhere until it comes back).
    #[serde(default)]
    pub force: bool,
}

/// Servers to add to a running cluster; each is named CLUSTER-N, the next
/// free number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddServersRequest {
    #[schema(min_items = 1)]
    pub servers: Vec<NewServer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServer {
    /// An existing zone or a new one (a new zone gets its own proxy).
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub zone: String,
    /// The host it runs on: id, name or address.
    pub host: String,
    /// Default: the ports of the cluster's first server.
    #[serde(default)]
    #[schema(value_type = Option<ServerPorts>)]
    pub ports: Option<atoll_core::Ports>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RemoveServerQuery {
    /// Also delete the server's data directory.
    #[serde(default)]
    pub purge: bool,
    /// Remove even below three servers or three zones.
    #[serde(default)]
    pub force: bool,
}

/// The platform's CA: which issues, which are trusted, where a rotation
/// stands, and what it still waits for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaView {
    /// Fingerprint of the CA that issues certificates now.
    pub issuer: String,
    /// Fingerprints of every CA trusted now, the issuing one first.
    pub trusted: Vec<String>,
    /// `steady`, `trusting` (a new CA is being trusted everywhere before
    /// it issues) or `retiring` (the new CA issues; the old ones are
    /// trusted until their certificates are replaced).
    pub phase: String,
    /// The servers and hosts not yet where this phase wants them, and why.
    pub waiting_for: Vec<String>,
}

/// Starts (or carries on) a rotation of the platform's CA.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateCaRequest {
    /// How long each step waits for every server and host to follow
    /// before it fails naming them (default 300 s).
    pub wait_s: Option<u64>,
}

/// The platform's own servers, and which one runs the controllers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlatformView {
    /// The server that answered.
    pub answered_by: String,
    /// `sqlite` or `mysql`.
    pub metadb: String,
    pub servers: Vec<PlatformServerView>,
    /// The controllers' lease: who holds it, its fencing generation and
    /// when it lapses unless renewed (`None` before any server took it).
    pub leader: Option<LeaseView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlatformServerView {
    pub id: String,
    pub url: String,
    pub version: String,
    pub started_at_ms: UnixMs,
    pub seen_at_ms: UnixMs,
    /// Announced itself recently enough to be offered to clients.
    pub live: bool,
    pub leader: bool,
    /// Errors it logged since it started.
    pub errors_logged: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    pub holder: String,
    pub generation: i64,
    pub acquired_at_ms: UnixMs,
    pub expires_ms: UnixMs,
}

/// `atoll check`: the platform's post-deployment check, item by item.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlatformCheckView {
    pub worst: CheckStatus,
    pub results: Vec<CheckResult>,
    /// The server that ran it.
    pub answered_by: String,
}

/// A precheck profile: `production` (the seed's table) or `sandbox` (what
/// Atoll measurably needs, for trying it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Production,
    Sandbox,
}

/// `POST /api/v1/clusters`: a cluster as requested. The handler reads it as
/// `atoll_core::ClusterSpec`, whose rules (`layout_problems`) are written
/// here as the schema; the two shapes are kept equal by a test below.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClusterRequest {
    /// A lowercase letter, then lowercase letters, digits or dashes.
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub name: String,
    #[serde(default)]
    pub durability: atoll_core::Durability,
    /// An odd number of servers with distinct names, in at least three
    /// zones unless `allow_single_zone`.
    #[schema(min_items = 1)]
    pub servers: Vec<ClusterServerRequest>,
    /// MariaDB parameters (`my.cnf` keys), from the server's catalog.
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
    /// Fewer than three zones only with this set (no zone may fail then).
    #[serde(default)]
    pub allow_single_zone: bool,
    /// The engine build every server runs: the name of a package pushed to
    /// its hosts (`atoll package push`); absent runs the hosts' system
    /// packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z][a-z0-9._-]*$", min_length = 1, max_length = 63)]
    pub engine: Option<String>,
    /// The proxies applications connect through.
    #[serde(default)]
    pub proxy: ProxyRequest,
    /// The region the cluster lives in (every server's host is in it);
    /// absent: its hosts' region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub region: Option<String>,
}

/// One database server of a new cluster.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterServerRequest {
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub name: String,
    #[schema(pattern = "^[a-z][a-z0-9-]*$", min_length = 1, max_length = 63)]
    pub zone: String,
    /// The host it runs on: id, name or address.
    pub host: String,
    /// Default: 3306, 4567, 4568 and 4444.
    #[serde(default)]
    pub ports: ServerPorts,
}

/// The four ports of one database server on its host: distinct, none 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerPorts {
    #[schema(minimum = 1, maximum = 65535)]
    pub sql: u16,
    /// Galera group communication.
    #[schema(minimum = 1, maximum = 65535)]
    pub gcomm: u16,
    /// Incremental state transfer.
    #[schema(minimum = 1, maximum = 65535)]
    pub ist: u16,
    /// Snapshot state transfer (rsync).
    #[schema(minimum = 1, maximum = 65535)]
    pub sst: u16,
}

impl Default for ServerPorts {
    fn default() -> Self {
        let p = atoll_core::Ports::default();
        Self { sql: p.sql, gcomm: p.gcomm, ist: p.ist, sst: p.sst }
    }
}

/// The proxies of a new cluster: one per zone, on the host of the zone's
/// first server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyRequest {
    pub enabled: bool,
    /// Read-write connections: to the writer.
    #[schema(minimum = 1, maximum = 65535)]
    pub rw_port: u16,
    /// Read-only connections: balanced over synced servers, own zone first.
    #[schema(minimum = 1, maximum = 65535)]
    pub ro_port: u16,
    /// Metrics and status.
    #[schema(minimum = 1, maximum = 65535)]
    pub admin_port: u16,
}

impl Default for ProxyRequest {
    fn default() -> Self {
        let p = atoll_core::ProxySpec::default();
        Self { enabled: p.enabled, rw_port: p.rw_port, ro_port: p.ro_port, admin_port: p.admin_port }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use atoll_core::{ClusterSpec, ProxySpec, ServerSpec};

    /// The documented request and the domain type the handler reads have
    /// one shape: each reads the other's JSON (both refuse unknown
    /// fields), defaults included.
    #[test]
    fn cluster_request_documents_cluster_spec() {
        let spec = ClusterSpec {
            name: "orders".into(),
            durability: atoll_core::Durability::Fast,
            servers: vec![ServerSpec {
                name: "orders-1".into(),
                zone: "z1".into(),
                host: "db1".into(),
                ports: atoll_core::Ports { sql: 1, gcomm: 2, ist: 3, sst: 4 },
            }],
            params: [("max_connections".to_string(), "500".to_string())].into(),
            allow_single_zone: true,
            engine: Some("mariadb-11.8".into()),
            proxy: ProxySpec { enabled: false, rw_port: 5, ro_port: 6, admin_port: 7 },
            region: Some("r2".into()),
            replication: None,
        };
        let json = serde_json::to_value(&spec).unwrap();
        let request: CreateClusterRequest = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), json);
        let minimal = serde_json::json!({ "name": "a", "servers": [{ "name": "a-1", "zone": "z", "host": "h" }] });
        let (request, spec): (CreateClusterRequest, ClusterSpec) =
            (serde_json::from_value(minimal.clone()).unwrap(), serde_json::from_value(minimal).unwrap());
        assert_eq!(serde_json::to_value(request).unwrap(), serde_json::to_value(spec).unwrap());
    }
}

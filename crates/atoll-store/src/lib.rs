//! MetaDB: everything the platform remembers, behind one trait.
//!
//! What we store: hosts (with their facts, last checks and the two secrets
//! shared with their agent), accounts (users, sessions, API tokens, login
//! throttling), the audit log, platform settings, and tasks with their steps
//! and step logs. Nothing else in Atoll writes SQL.
//!
//! The SQL back end ([`SqlStore`]) runs the same statements on SQLite (the
//! default, embedded) and MySQL/MariaDB (for HA MetaDB on Galera), so the
//! statements stay within what both understand: `?` placeholders, BIGINT
//! unix-ms times, INTEGER flags, JSON as TEXT, a primary key on every table,
//! no `GET_LOCK`, no upserts.

mod error;
mod model;
mod sql;

use std::collections::HashMap;

use async_trait::async_trait;
use atoll_core::{HostId, HostStatus, Progress, StepStatus, UnixMs};

pub use error::StoreError;
pub use model::*;
pub use sql::SqlStore;
pub use sql::TOUCH_EVERY_MS;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait]
pub trait HostStore: Send + Sync {
    /// Adds a host; `Conflict` names the clashing field (name or address).
    async fn insert_host(&self, host: &HostRecord) -> Result<()>;
    async fn get_host(&self, id: HostId) -> Result<Option<HostRecord>>;
    /// What a heartbeat needs to authenticate its agent, without the
    /// host's facts and checks (read on every beat).
    async fn agent_auth(&self, id: HostId) -> Result<Option<AgentAuth>>;
    /// Looks a host up by id, name or address, in that order.
    async fn find_host(&self, key: &str) -> Result<Option<HostRecord>>;
    async fn list_hosts(&self) -> Result<Vec<HostRecord>>;
    /// Hosts by name, without facts, checks or tokens: for listings.
    async fn list_host_summaries(&self, filter: &HostFilter) -> Result<Vec<HostSummaryRecord>>;
    /// How many hosts there are in each status (one query, any fleet size).
    async fn count_hosts_by_status(&self) -> Result<Vec<(HostStatus, i64)>>;
    /// Applies an agent's registration in one transaction: updates the host
    /// with this id, else claims the pending host with this address (taking
    /// the agent's id), else inserts a new host.
    async fn register_host(&self, reg: &Registration) -> Result<HostRecord>;
    /// Records a heartbeat; returns the status the host had before, or
    /// `None` when no such host exists (it was removed).
    async fn record_heartbeat(&self, hb: &HeartbeatRecord) -> Result<Option<HostStatus>>;
    /// Moves the last heartbeat of online hosts to `at`, in one transaction
    /// for any number of hosts: a server batches the beats it received
    /// instead of writing each. Returns the ids that are not online (or are
    /// gone): their next beat must be recorded in full.
    async fn touch_heartbeats(&self, ids: &[HostId], at: UnixMs) -> Result<Vec<HostId>>;
    /// Turns online hosts whose last heartbeat is older than `before` offline;
    /// returns the ones it changed. Only the holder of `fence` may.
    async fn mark_stale_offline(&self, before: UnixMs, fence: &Fence, now: UnixMs) -> Result<Vec<HostId>>;
    async fn set_host_checks(&self, id: HostId, checks: &serde_json::Value, at: UnixMs) -> Result<()>;
    /// Replaces a host's server token `old` with `new` (the same token,
    /// sealed); false when the row holds another value by now (the agent
    /// registered again meanwhile).
    async fn replace_server_token(&self, id: HostId, old: &str, new: &str) -> Result<bool>;
    async fn delete_host(&self, id: HostId) -> Result<bool>;
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn count_users(&self) -> Result<i64>;
    /// `Conflict` when the name is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<()>;
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn list_users(&self) -> Result<Vec<UserRecord>>;
    async fn set_password(&self, name: &str, hash: &str, must_change: bool) -> Result<bool>;
    /// Deletes the user with their sessions and tokens.
    async fn delete_user(&self, name: &str) -> Result<bool>;

    async fn create_session(&self, s: &SessionRecord) -> Result<()>;
    /// The session, if it exists and was used at or after `idle_after`;
    /// marks it used at `now` when its last use is `TOUCH_EVERY_MS` old
    /// (so most requests only read).
    async fn touch_session(&self, token_hash: &str, idle_after: UnixMs, now: UnixMs) -> Result<Option<SessionRecord>>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Ends every session of `user` but the one with hash `keep`; how many.
    async fn delete_sessions_of(&self, user: &str, keep: Option<&str>) -> Result<u64>;

    async fn create_api_token(&self, t: &ApiTokenRecord) -> Result<()>;
    /// The token, marked used at `now` when its last use is
    /// `TOUCH_EVERY_MS` old.
    async fn touch_api_token(&self, token_hash: &str, now: UnixMs) -> Result<Option<ApiTokenRecord>>;
    async fn list_api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiTokenRecord>>;
    async fn delete_api_token(&self, id: &str) -> Result<bool>;
    /// Revokes every API token of `user` but the one with hash `keep`; how many.
    async fn delete_api_tokens_of(&self, user: &str, keep: Option<&str>) -> Result<u64>;

    /// Counts a failed login from `source`; once `max` failures fall within
    /// `window_ms` the source is locked until `now + lock_ms`. Returns the
    /// lock's end when locked.
    async fn record_login_failure(&self, source: &str, now: UnixMs, policy: &LockoutPolicy) -> Result<Option<UnixMs>>;
    /// The end of the lock on `source`, if it is locked at `now`.
    async fn login_locked_until(&self, source: &str, now: UnixMs) -> Result<Option<UnixMs>>;
    async fn clear_login_failures(&self, source: &str) -> Result<()>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, e: &NewAudit) -> Result<()>;
    /// Newest first; `before_id` pages backwards.
    async fn list_audit(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<AuditRecord>>;
}

#[async_trait]
pub trait SettingStore: Send + Sync {
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Stores a task and all its steps in one transaction.
    async fn create_task(&self, task: &TaskRecord, steps: &[StepRecord]) -> Result<()>;
    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>>;
    /// Newest first.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>>;
    /// Tasks an executor has work in: running, cancelling, rolling back.
    async fn active_tasks(&self) -> Result<Vec<TaskRecord>>;
    /// Steps in their creation order.
    async fn task_steps(&self, task_id: &str) -> Result<Vec<StepRecord>>;
    /// Each listed task's step counts, in one query (tasks without steps
    /// are absent).
    async fn task_progress(&self, task_ids: &[String]) -> Result<HashMap<String, Progress>>;
    async fn get_step(&self, task_id: &str, key: &str) -> Result<Option<StepRecord>>;

    /// Takes a step for `claim.owner` if it is still in `claim.expect` and
    /// unleased or its lease expired before `claim.now`: sets `claim.to`,
    /// the lease, `started_at`, and counts an attempt. `false` when another
    /// executor got there first.
    async fn claim_step(&self, claim: &StepClaim) -> Result<bool>;
    /// Extends a lease the owner still holds; `false` when it was lost.
    async fn renew_lease(&self, task_id: &str, key: &str, owner: &str, until: UnixMs) -> Result<bool>;
    /// Records the end of an attempt if `owner` still holds the lease.
    async fn complete_step(&self, done: &StepCompletion) -> Result<bool>;
    /// Moves a step from one of `from` to `to` (operator retry or skip, or
    /// cancelling pending steps); `extra_attempts` raises the attempt budget.
    async fn reset_step(
        &self,
        task_id: &str,
        key: &str,
        from: &[StepStatus],
        to: StepStatus,
        extra_attempts: u32,
        now: UnixMs,
    ) -> Result<bool>;
    async fn update_task(&self, update: &TaskUpdate) -> Result<()>;

    async fn append_step_log(&self, line: &NewStepLog) -> Result<()>;
    /// Log lines of a task (one step, or all), oldest first, after `after_id`.
    async fn step_logs(&self, task_id: &str, step: Option<&str>, after_id: i64, limit: u32) -> Result<Vec<StepLogRecord>>;
}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Stores a cluster and its servers in one transaction; `Conflict`
    /// when the name is taken.
    async fn create_cluster(&self, cluster: &ClusterRecord, servers: &[DbServerRecord]) -> Result<()>;
    async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRecord>>;
    async fn list_clusters(&self) -> Result<Vec<ClusterRecord>>;
    async fn cluster_servers(&self, cluster: &str) -> Result<Vec<DbServerRecord>>;
    /// Every server placed on a host, of any cluster.
    async fn servers_on_host(&self, host: HostId) -> Result<Vec<DbServerRecord>>;
    /// `fence`: set when a controller (not a task step) derived the status,
    /// so a server that lost the lease cannot write an old view over a new one.
    async fn set_cluster_status(&self, name: &str, status: atoll_core::ClusterStatus, now: UnixMs, fence: Option<&Fence>) -> Result<()>;
    /// Replaces the stored request (after a validated parameter change).
    async fn set_cluster_spec(&self, name: &str, spec: &atoll_core::ClusterSpec, now: UnixMs) -> Result<()>;
    /// Records what a host's agent reports, keyed by server id;
    /// entries for servers not on that host are ignored.
    async fn record_server_statuses(&self, host: HostId, statuses: &[(atoll_core::DbId, serde_json::Value)], now: UnixMs) -> Result<()>;
    /// Marks unchanged reports as fresh at `at` (one transaction): servers
    /// by (host, id), as `record_server_statuses` keys them.
    async fn touch_server_statuses(&self, reports: &[(HostId, atoll_core::DbId)], at: UnixMs) -> Result<()>;
    async fn delete_cluster(&self, name: &str) -> Result<bool>;
    /// Adds a server to an existing cluster; `Conflict` when the cluster
    /// is gone or already has a server of that name.
    async fn add_db_server(&self, server: &DbServerRecord) -> Result<()>;
    /// Removes a server, and in the same transaction the cluster's proxies
    /// in its zone when no server is left there (a proxy routes for its
    /// zone's clients; without servers the zone is gone). Whether the
    /// server existed.
    async fn remove_db_server(&self, cluster: &str, name: &str) -> Result<bool>;
}

/// Who takes a cluster's writes, and the proxies that route to it.
#[async_trait]
pub trait RoutingStore: Send + Sync {
    async fn get_routing(&self, cluster: &str) -> Result<Option<RoutingRecord>>;
    /// Compare-and-set: writes `new` only while the stored writer and
    /// move are still `expected` (`None`: no row yet), so two servers that
    /// fail over at once cannot both win. Returns whether it wrote.
    async fn set_routing(&self, cluster: &str, expected: Option<&RoutingRecord>, new: &RoutingRecord) -> Result<bool>;
    /// Adds or replaces the given proxies of a cluster.
    async fn put_proxies(&self, proxies: &[ProxyRecord]) -> Result<()>;
    async fn cluster_proxies(&self, cluster: &str) -> Result<Vec<ProxyRecord>>;
    async fn proxies_on_host(&self, host: HostId) -> Result<Vec<ProxyRecord>>;
    /// Records what a host's agent reports, keyed by proxy id;
    /// entries for proxies not on that host are ignored.
    async fn record_proxy_statuses(&self, host: HostId, statuses: &[(atoll_core::DbId, serde_json::Value)], now: UnixMs) -> Result<()>;
    /// [`ClusterStore::touch_server_statuses`] for proxies.
    async fn touch_proxy_statuses(&self, reports: &[(HostId, atoll_core::DbId)], at: UnixMs) -> Result<()>;
}

/// Engine builds registered as package tarballs (the files themselves
/// live in the server's data directory, named by their SHA-256).
#[async_trait]
pub trait PackageStore: Send + Sync {
    /// `Conflict` naming the clash when the name or the content (SHA-256)
    /// is already registered.
    async fn insert_package(&self, p: &PackageRecord) -> Result<()>;
    async fn get_package(&self, name: &str) -> Result<Option<PackageRecord>>;
    async fn find_package_by_sha256(&self, sha256: &str) -> Result<Option<PackageRecord>>;
    /// By name.
    async fn list_packages(&self) -> Result<Vec<PackageRecord>>;
    async fn delete_package(&self, name: &str) -> Result<bool>;
}

/// The platform's own servers: who is up, and leases on work that must run
/// on one of them at a time.
#[async_trait]
pub trait PlatformStore: Send + Sync {
    /// Renews the lease when `holder` still holds it, takes it when it is
    /// free or lapsed (a new generation), and returns whoever holds it now.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now: UnixMs) -> Result<LeaseRecord>;
    /// Lets the lease lapse at once (a clean shutdown), if still held.
    async fn release_lease(&self, fence: &Fence) -> Result<()>;
    async fn get_lease(&self, name: &str) -> Result<Option<LeaseRecord>>;
    /// Adds the server or refreshes what it announced.
    async fn record_platform_server(&self, server: &PlatformServerRecord) -> Result<()>;
    /// By URL.
    async fn list_platform_servers(&self) -> Result<Vec<PlatformServerRecord>>;
    async fn delete_platform_server(&self, id: &str) -> Result<bool>;
}

/// Small JSON documents the server owns the shape of (alert rules,
/// silences, notification channels), keyed by kind and name.
#[async_trait]
pub trait DocStore: Send + Sync {
    /// By name.
    async fn list_docs(&self, kind: DocKind) -> Result<Vec<DocRecord>>;
    async fn get_doc(&self, kind: DocKind, name: &str) -> Result<Option<DocRecord>>;
    /// `Conflict` when a document of that kind and name exists.
    async fn insert_doc(&self, doc: &DocRecord) -> Result<()>;
    /// Inserts or replaces.
    async fn put_doc(&self, doc: &DocRecord) -> Result<()>;
    async fn delete_doc(&self, kind: DocKind, name: &str) -> Result<bool>;
}

/// Alarms: the ones in progress and their history.
#[async_trait]
pub trait AlarmStore: Send + Sync {
    /// Inserts or replaces each alarm by id, all in one transaction.
    async fn put_alarms(&self, alarms: &[AlarmRecord]) -> Result<()>;
    async fn delete_alarms(&self, ids: &[String]) -> Result<()>;
    /// Newest first.
    async fn list_alarms(&self, filter: &AlarmFilter) -> Result<Vec<AlarmRecord>>;
    /// Drops resolved alarms that ended before `before`; returns how many.
    async fn prune_alarms(&self, before: UnixMs) -> Result<u64>;
}

/// The whole MetaDB.
#[async_trait]
pub trait MetaStore:
    HostStore
    + AccountStore
    + AuditStore
    + SettingStore
    + TaskStore
    + ClusterStore
    + RoutingStore
    + PackageStore
    + PlatformStore
    + DocStore
    + AlarmStore
{
    /// Whether the back end answers reads of its tables (for `/readyz`).
    async fn ping(&self) -> Result<()>;
    fn backend(&self) -> &'static str;
}

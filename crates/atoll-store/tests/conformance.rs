//! One conformance suite for every MetaDB back end.
//!
//! Each check is an async function written once against the store traits;
//! `conformance!` instantiates it per back end, each run on a fresh database:
//! a new SQLite file in a temp dir (always), and a new database on the
//! MySQL/MariaDB server named by `ATOLL_TEST_MYSQL_URL` (skipped with a note
//! when unset). For MySQL the URL's user must be allowed to create and drop
//! databases; each test makes `atoll_ct_<random>` and drops it afterwards.

// A failed unwrap is a failed test, with its location: exactly what we want here.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use atoll_core::{ClusterStatus, DbId, Host, HostFacts, HostId, HostStatus, Phase, Progress, Role, StepStatus, TaskStatus};
use atoll_store::*;
use serde_json::json;
use sqlx::Row;

// ---------------------------------------------------------------- harness

struct Harness {
    store: SqlStore,
    url: String,
    _dir: Option<tempfile::TempDir>,
    /// Server URL (no database) and the database to drop at the end.
    mysql_db: Option<(String, String)>,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        Harness { store, url, _dir: Some(dir), mysql_db: None }
    }

    async fn mysql() -> Option<Harness> {
        let Ok(base) = std::env::var("ATOLL_TEST_MYSQL_URL") else {
            eprintln!("note: ATOLL_TEST_MYSQL_URL not set, skipping the MySQL/MariaDB run");
            return None;
        };
        sqlx::any::install_default_drivers();
        // Keep user, password, host and port; swap the database for a fresh one.
        let server = url_without_db(&base);
        let name = format!("atoll_ct_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::AnyPool::connect(&server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
        admin.close().await;
        let (path, query) = server.split_once('?').map_or((server.as_str(), ""), |(p, q)| (p, q));
        let url = if query.is_empty() { format!("{path}/{name}") } else { format!("{path}/{name}?{query}") };
        let store = SqlStore::connect(&url).await.unwrap();
        Some(Harness { store, url, _dir: None, mysql_db: Some((server, name)) })
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some((server, name)) = self.mysql_db {
            let admin = sqlx::AnyPool::connect(&server).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name}"))).execute(&admin).await.unwrap();
            admin.close().await;
        }
    }
}

/// `mysql://u:p@h:1/db?x=y` -> `mysql://u:p@h:1?x=y`.
fn url_without_db(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base.to_owned(),
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(h) = super::Harness::mysql().await else { return };
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

conformance!(
    basics,
    host_insert_conflicts,
    find_host_by_id_name_address,
    register_inserts_new_host,
    register_claims_pending_host,
    register_pending_zone_rules,
    reregister_updates_in_place,
    register_address_conflict,
    concurrent_claims_of_one_pending_host,
    heartbeat_reports_previous_status,
    stale_hosts_go_offline_once,
    host_checks_and_delete,
    host_summaries_follow_facts_and_checks,
    users_and_passwords,
    sessions_expire_when_idle,
    api_tokens,
    delete_user_cascades,
    login_lockout,
    audit_paging,
    settings,
    documents,
    alarms_and_history,
    task_create_list_update,
    one_change_per_resource,
    claim_race_has_one_winner,
    expired_lease_is_reclaimed,
    renew_lease_only_by_owner,
    reset_step_retry_and_skip,
    step_logs_paging,
    migrations_run_twice,
    clusters_and_servers,
    add_and_remove_servers,
    packages_unique_by_name_and_content,
    lease_acquire_renew_and_takeover,
    lease_race_has_one_winner,
    fenced_writes_refused_after_takeover,
    platform_servers_announce,
    routing_cas_race_has_one_winner,
    copy_into_carries_everything,
    batched_heartbeats_touch_only_online_hosts,
    host_listings_page_and_filter,
    many_stale_hosts_go_offline_in_chunks,
);

// ---------------------------------------------------------------- fixtures

fn conflict(e: StoreError) -> String {
    match e {
        StoreError::Conflict(m) => m,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

fn host(name: &str, address: &str, status: HostStatus) -> HostRecord {
    HostRecord {
        host: Host {
            id: HostId::new(),
            name: name.into(),
            address: address.into(),
            agent_url: None,
            zone: None,
            region: None,
            status,
            facts: None,
            agent_version: None,
            created_at_ms: 1_000,
            last_heartbeat_ms: None,
        },
        agent_token_hash: None,
        server_token: None,
        checks: None,
        checked_at_ms: None,
    }
}

fn facts(hostname: &str) -> HostFacts {
    HostFacts { hostname: hostname.into(), memory_bytes: 8 << 30, ..Default::default() }
}

fn registration(id: HostId, name: &str, address: &str, zone: Option<&str>, now: i64) -> Registration {
    Registration {
        id,
        name: name.into(),
        address: address.into(),
        agent_url: format!("http://{address}:7070"),
        zone: zone.map(Into::into),
        region: None,
        facts: facts(name),
        agent_version: "0.1.0".into(),
        agent_token_hash: format!("hash-{id}"),
        server_token: format!("server-{id}"),
        now,
    }
}

fn heartbeat(id: HostId, address: &str, now: i64) -> HeartbeatRecord {
    HeartbeatRecord { id, now, address: address.into(), agent_url: format!("http://{address}:7070"), facts: None }
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::Operator,
        must_change_password: true,
        created_at_ms: 1_000,
    }
}

fn session(hash: &str, user: &str, last_seen: i64) -> SessionRecord {
    SessionRecord {
        token_hash: hash.into(),
        user: user.into(),
        source: "127.0.0.1".into(),
        created_at_ms: last_seen,
        last_seen_ms: last_seen,
    }
}

fn api_token(id: &str, user: &str, hash: &str) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        user: user.into(),
        name: format!("token {id}"),
        token_hash: hash.into(),
        created_at_ms: 1_000,
        last_used_ms: None,
        expires_at_ms: Some(90_000),
    }
}

fn task(id: &str, target: &str, status: TaskStatus, created: i64) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        kind: "host.prepare".into(),
        title: format!("prepare {target}"),
        target: target.into(),
        status,
        phase: Phase::Forward,
        cancel_requested: false,
        params: json!({ "target": target }),
        created_by: "admin".into(),
        created_at_ms: created,
        updated_at_ms: created,
        finished_at_ms: None,
    }
}

fn step(task_id: &str, key: &str, seq: i64, deps: &[&str]) -> StepRecord {
    StepRecord {
        task_id: task_id.into(),
        key: key.into(),
        seq,
        kind: format!("host.{key}"),
        title: format!("step {key}"),
        params: json!({ "n": seq }),
        deps: deps.iter().map(|d| d.to_string()).collect(),
        status: StepStatus::Pending,
        attempts: 0,
        max_attempts: 3,
        timeout_ms: 60_000,
        not_before_ms: 0,
        lease_owner: None,
        lease_expires_ms: None,
        started_at_ms: None,
        finished_at_ms: None,
        output: None,
        error: None,
    }
}

fn claim(task_id: &str, key: &str, expect: StepStatus, owner: &str, now: i64, until: i64) -> StepClaim {
    StepClaim { task_id: task_id.into(), key: key.into(), expect, to: StepStatus::Running, owner: owner.into(), now, lease_until: until }
}

fn completion(task_id: &str, key: &str, owner: &str, status: StepStatus, now: i64) -> StepCompletion {
    StepCompletion {
        task_id: task_id.into(),
        key: key.into(),
        owner: owner.into(),
        status,
        output: Some(json!({ "by": owner })),
        error: (status == StepStatus::Failed).then(|| "disk full".to_string()),
        not_before_ms: 0,
        now,
    }
}

/// A task `t` with steps a -> b, c.
/// A running task with three steps, on host db1 (or, past the first, on
/// db1-ID: one change runs per host at a time).
async fn seed_task(s: &SqlStore, id: &str) {
    let steps = [step(id, "a", 0, &[]), step(id, "b", 1, &["a"]), step(id, "c", 2, &["a"])];
    let target = if ["t", "t1"].contains(&id) { "db1".to_string() } else { format!("db1-{id}") };
    s.create_task(&task(id, &target, TaskStatus::Running, 1_000), &steps).await.unwrap();
}

// ---------------------------------------------------------------- hosts

async fn basics(h: &Harness) {
    let s = &h.store;
    s.ping().await.unwrap();
    let expected = if h.mysql_db.is_some() { "mysql" } else { "sqlite" };
    assert_eq!(s.backend(), expected);
    assert!(s.list_hosts().await.unwrap().is_empty());
    assert_eq!(s.count_users().await.unwrap(), 0);
}

async fn host_insert_conflicts(h: &Harness) {
    let s = &h.store;
    let a = host("a", "127.0.0.11", HostStatus::Pending);
    s.insert_host(&a).await.unwrap();

    let msg = conflict(s.insert_host(&host("b", "127.0.0.11", HostStatus::Pending)).await.unwrap_err());
    assert!(msg.contains("address 127.0.0.11"), "{msg}");
    let msg = conflict(s.insert_host(&host("a", "127.0.0.12", HostStatus::Pending)).await.unwrap_err());
    assert!(msg.contains("name a"), "{msg}");
    let mut same_id = host("c", "127.0.0.13", HostStatus::Pending);
    same_id.host.id = a.host.id;
    let msg = conflict(s.insert_host(&same_id).await.unwrap_err());
    assert!(msg.contains(&a.host.id.to_string()), "{msg}");

    assert_eq!(s.list_hosts().await.unwrap(), vec![a.clone()]);
    assert_eq!(s.get_host(a.host.id).await.unwrap(), Some(a));
}

async fn find_host_by_id_name_address(h: &Harness) {
    let s = &h.store;
    let mut a = host("alpha", "127.0.0.21", HostStatus::Online);
    a.host.zone = Some("z1".into());
    a.host.facts = Some(facts("alpha"));
    a.host.last_heartbeat_ms = Some(5);
    a.checks = Some(json!([{ "name": "disk", "ok": true }]));
    a.checked_at_ms = Some(6);
    a.agent_token_hash = Some("ath".into());
    a.server_token = Some("st".into());
    s.insert_host(&a).await.unwrap();
    // A host whose *name* is another host's address: the name wins for that key.
    let b = host("beta", "alpha", HostStatus::Pending);
    s.insert_host(&b).await.unwrap();

    assert_eq!(s.find_host(&a.host.id.to_string()).await.unwrap(), Some(a.clone()), "by id");
    assert_eq!(s.find_host("alpha").await.unwrap(), Some(a.clone()), "name before address");
    assert_eq!(s.find_host("127.0.0.21").await.unwrap(), Some(a.clone()), "by address");
    assert_eq!(s.find_host("beta").await.unwrap().map(|r| r.host.id), Some(b.host.id));
    assert_eq!(s.find_host("gamma").await.unwrap(), None);
    assert_eq!(s.find_host(&HostId::new().to_string()).await.unwrap(), None);
    let names: Vec<_> = s.list_hosts().await.unwrap().into_iter().map(|r| r.host.name).collect();
    assert_eq!(names, ["alpha", "beta"]);
}

async fn register_inserts_new_host(h: &Harness) {
    let s = &h.store;
    let id = HostId::new();
    let rec = s.register_host(&registration(id, "web1", "127.0.0.31", Some("z1"), 5_000)).await.unwrap();
    assert_eq!(rec.host.id, id);
    assert_eq!(rec.host.name, "web1");
    assert_eq!(rec.host.status, HostStatus::Online);
    assert_eq!(rec.host.zone.as_deref(), Some("z1"));
    assert_eq!(rec.host.last_heartbeat_ms, Some(5_000));
    assert_eq!(rec.host.created_at_ms, 5_000);
    assert_eq!(rec.host.agent_url.as_deref(), Some("http://127.0.0.31:7070"));
    assert_eq!(rec.host.facts, Some(facts("web1")));
    assert_eq!(rec.agent_token_hash, Some(format!("hash-{id}")));
    assert_eq!(rec.server_token, Some(format!("server-{id}")));
    assert_eq!(s.get_host(id).await.unwrap(), Some(rec));

    // A new agent whose name is taken but address is free.
    let msg = conflict(s.register_host(&registration(HostId::new(), "web1", "127.0.0.32", None, 6_000)).await.unwrap_err());
    assert!(msg.contains("name web1"), "{msg}");
}

async fn register_claims_pending_host(h: &Harness) {
    let s = &h.store;
    let mut pending = host("db1", "127.0.0.41", HostStatus::Pending);
    pending.host.zone = Some("z1".into());
    s.insert_host(&pending).await.unwrap();

    let agent = HostId::new();
    let rec = s.register_host(&registration(agent, "vm-1234", "127.0.0.41", Some("z9"), 7_000)).await.unwrap();
    assert_eq!(rec.host.id, agent, "the agent's id replaces the server-made one");
    assert_eq!(rec.host.name, "db1", "an operator's name is kept");
    assert_eq!(rec.host.zone.as_deref(), Some("z1"), "an operator's zone is kept");
    assert_eq!(rec.host.status, HostStatus::Online);
    assert_eq!(rec.host.created_at_ms, pending.host.created_at_ms);
    assert_eq!(rec.host.last_heartbeat_ms, Some(7_000));
    assert_eq!(s.get_host(pending.host.id).await.unwrap(), None);
    assert_eq!(s.list_hosts().await.unwrap(), vec![rec]);
}

async fn register_pending_zone_rules(h: &Harness) {
    let s = &h.store;
    // A pending host without a zone takes the agent's.
    s.insert_host(&host("db2", "127.0.0.42", HostStatus::Pending)).await.unwrap();
    let rec = s.register_host(&registration(HostId::new(), "x", "127.0.0.42", Some("z2"), 1)).await.unwrap();
    assert_eq!((rec.host.name.as_str(), rec.host.zone.as_deref()), ("db2", Some("z2")));
    // ... and keeps none when the agent sends none.
    s.insert_host(&host("db3", "127.0.0.43", HostStatus::Pending)).await.unwrap();
    let rec = s.register_host(&registration(HostId::new(), "y", "127.0.0.43", None, 1)).await.unwrap();
    assert_eq!((rec.host.name.as_str(), rec.host.zone), ("db3", None));
    // Regions follow the zones' rules: an operator's is kept, else the
    // agent's is taken; none is the default region.
    let mut pending = host("db4", "127.0.0.44", HostStatus::Pending);
    pending.host.region = Some("r1".into());
    s.insert_host(&pending).await.unwrap();
    let rec = s
        .register_host(&Registration { region: Some("r9".into()), ..registration(HostId::new(), "z", "127.0.0.44", None, 1) })
        .await
        .unwrap();
    assert_eq!(rec.host.region.as_deref(), Some("r1"));
    let id = HostId::new();
    let rec = s.register_host(&Registration { region: Some("r2".into()), ..registration(id, "db5", "127.0.0.45", None, 1) }).await.unwrap();
    assert_eq!((rec.host.region.as_deref(), rec.host.region_name()), (Some("r2"), "r2"));
    let rec = s.register_host(&registration(id, "db5", "127.0.0.45", None, 2)).await.unwrap();
    assert_eq!(rec.host.region.as_deref(), Some("r2"), "None keeps the region");
    assert_eq!(
        s.list_host_summaries(&Default::default()).await.unwrap().iter().find(|h| h.name == "db5").unwrap().region.as_deref(),
        Some("r2")
    );
    assert_eq!(host("x", "127.0.0.46", HostStatus::Pending).host.region_name(), atoll_core::DEFAULT_REGION);
}

async fn reregister_updates_in_place(h: &Harness) {
    let s = &h.store;
    let id = HostId::new();
    s.register_host(&registration(id, "app1", "127.0.0.51", Some("z1"), 1_000)).await.unwrap();
    let mut again = registration(id, "ignored", "127.0.0.52", None, 2_000);
    again.agent_version = "0.2.0".into();
    again.server_token = "rotated".into();
    let rec = s.register_host(&again).await.unwrap();
    assert_eq!(rec.host.id, id);
    assert_eq!(rec.host.name, "app1");
    assert_eq!(rec.host.address, "127.0.0.52");
    assert_eq!(rec.host.zone.as_deref(), Some("z1"), "None keeps the zone");
    assert_eq!(rec.host.agent_version.as_deref(), Some("0.2.0"));
    assert_eq!(rec.server_token.as_deref(), Some("rotated"));
    // Sealing in place only replaces the value it read.
    assert!(!s.replace_server_token(id, "not-the-value", "sealed").await.unwrap());
    assert!(s.replace_server_token(id, "rotated", "sealed-rotated").await.unwrap());
    assert_eq!(s.get_host(id).await.unwrap().unwrap().server_token.as_deref(), Some("sealed-rotated"));
    assert!(s.replace_server_token(id, "sealed-rotated", "rotated").await.unwrap());
    assert_eq!(rec.host.last_heartbeat_ms, Some(2_000));
    assert_eq!(rec.host.created_at_ms, 1_000);
    assert_eq!(s.list_hosts().await.unwrap().len(), 1, "no new host");
    // An explicit zone replaces the old one.
    let rec = s.register_host(&registration(id, "ignored", "127.0.0.52", Some("z2"), 3_000)).await.unwrap();
    assert_eq!(rec.host.zone.as_deref(), Some("z2"));
}

async fn register_address_conflict(h: &Harness) {
    let s = &h.store;
    let b = HostId::new();
    s.register_host(&registration(b, "b", "127.0.0.61", None, 1)).await.unwrap();
    // A new agent at an address an online host holds.
    let msg = conflict(s.register_host(&registration(HostId::new(), "c", "127.0.0.61", None, 2)).await.unwrap_err());
    assert_eq!(msg, "address 127.0.0.61 is already used by host b");
    // A registered agent moving onto a pending host's address.
    s.insert_host(&host("p", "127.0.0.62", HostStatus::Pending)).await.unwrap();
    let msg = conflict(s.register_host(&registration(b, "b", "127.0.0.62", None, 3)).await.unwrap_err());
    assert_eq!(msg, "address 127.0.0.62 is already used by host p");
    assert_eq!(s.get_host(b).await.unwrap().map(|r| r.host.address).as_deref(), Some("127.0.0.61"));
    assert_eq!(s.list_hosts().await.unwrap().len(), 2);
}

async fn concurrent_claims_of_one_pending_host(h: &Harness) {
    let s = Arc::new(h.store.clone());
    s.insert_host(&host("db9", "127.0.0.69", HostStatus::Pending)).await.unwrap();
    let (x, y) = (HostId::new(), HostId::new());
    let (s1, s2) = (s.clone(), s.clone());
    let r1 = tokio::spawn(async move { s1.register_host(&registration(x, "x", "127.0.0.69", None, 1)).await });
    let r2 = tokio::spawn(async move { s2.register_host(&registration(y, "y", "127.0.0.69", None, 1)).await });
    let (r1, r2) = (r1.await.unwrap(), r2.await.unwrap());
    let winners: Vec<_> = [&r1, &r2].iter().filter_map(|r| r.as_ref().ok()).map(|r| r.host.id).collect();
    assert_eq!(winners.len(), 1, "{r1:?} / {r2:?}");
    let loser = if r1.is_ok() { r2 } else { r1 };
    assert!(conflict(loser.unwrap_err()).contains("already used by host db9"));
    let hosts = s.list_hosts().await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!((hosts[0].host.id, hosts[0].host.name.as_str()), (winners[0], "db9"));
}

fn auth_is_set(r: &HostRecord) -> bool {
    r.agent_token_hash.as_deref().is_some_and(|h| !h.is_empty())
}

async fn heartbeat_reports_previous_status(h: &Harness) {
    let s = &h.store;
    assert_eq!(s.record_heartbeat(&heartbeat(HostId::new(), "127.0.0.71", 1)).await.unwrap(), None);

    let id = HostId::new();
    let registered = s.register_host(&registration(id, "hb", "127.0.0.71", None, 1_000)).await.unwrap();
    // What a beat is authenticated with: the name and the agent's token hash.
    let auth = s.agent_auth(id).await.unwrap().unwrap();
    assert_eq!((auth.name.as_str(), auth.token_hash), ("hb", registered.agent_token_hash.clone()));
    assert!(auth_is_set(&registered));
    assert_eq!(s.agent_auth(HostId::new()).await.unwrap(), None);
    assert_eq!(s.record_heartbeat(&heartbeat(id, "127.0.0.71", 2_000)).await.unwrap(), Some(HostStatus::Online));
    let fence = leader(s, 2_500).await;
    assert_eq!(s.mark_stale_offline(2_500, &fence, 2_500).await.unwrap(), vec![id]);
    // Back from offline, at a new address; facts left alone when not sent.
    let prev = s.record_heartbeat(&heartbeat(id, "127.0.0.72", 3_000)).await.unwrap();
    assert_eq!(prev, Some(HostStatus::Offline));
    let rec = s.get_host(id).await.unwrap().unwrap();
    assert_eq!(rec.host.status, HostStatus::Online);
    assert_eq!(rec.host.address, "127.0.0.72");
    assert_eq!(rec.host.agent_url.as_deref(), Some("http://127.0.0.72:7070"));
    assert_eq!(rec.host.last_heartbeat_ms, Some(3_000));
    assert_eq!(rec.host.facts, Some(facts("hb")));
    // Fresh facts replace the old ones.
    let mut hb = heartbeat(id, "127.0.0.72", 4_000);
    hb.facts = Some(facts("renamed"));
    s.record_heartbeat(&hb).await.unwrap();
    assert_eq!(s.get_host(id).await.unwrap().unwrap().host.facts, Some(facts("renamed")));
    // Moving onto another host's address is refused.
    s.insert_host(&host("other", "127.0.0.73", HostStatus::Pending)).await.unwrap();
    let msg = conflict(s.record_heartbeat(&heartbeat(id, "127.0.0.73", 5_000)).await.unwrap_err());
    assert_eq!(msg, "address 127.0.0.73 is already used by host other");
}

async fn stale_hosts_go_offline_once(h: &Harness) {
    let s = &h.store;
    let (old, fresh) = (HostId::new(), HostId::new());
    s.register_host(&registration(old, "old", "127.0.0.81", None, 1_000)).await.unwrap();
    s.register_host(&registration(fresh, "fresh", "127.0.0.82", None, 9_000)).await.unwrap();
    s.insert_host(&host("pend", "127.0.0.83", HostStatus::Pending)).await.unwrap();
    let mut off = host("off", "127.0.0.84", HostStatus::Offline);
    off.host.last_heartbeat_ms = Some(10);
    s.insert_host(&off).await.unwrap();

    let fence = leader(s, 5_000).await;
    assert_eq!(s.mark_stale_offline(5_000, &fence, 5_000).await.unwrap(), vec![old]);
    assert_eq!(s.mark_stale_offline(5_000, &fence, 5_000).await.unwrap(), Vec::<HostId>::new());
    let status = |name: &str| {
        let name = name.to_owned();
        async move { s.find_host(&name).await.unwrap().unwrap().host.status }
    };
    assert_eq!(status("old").await, HostStatus::Offline);
    assert_eq!(status("fresh").await, HostStatus::Online);
    assert_eq!(status("pend").await, HostStatus::Pending);
    assert_eq!(status("off").await, HostStatus::Offline);
}

async fn host_checks_and_delete(h: &Harness) {
    let s = &h.store;
    let a = host("chk", "127.0.0.91", HostStatus::Pending);
    s.insert_host(&a).await.unwrap();
    let checks = json!([{ "name": "nofile", "ok": false, "detail": "1024 < 65535" }]);
    s.set_host_checks(a.host.id, &checks, 42).await.unwrap();
    let rec = s.get_host(a.host.id).await.unwrap().unwrap();
    assert_eq!((rec.checks, rec.checked_at_ms), (Some(checks), Some(42)));
    assert!(s.delete_host(a.host.id).await.unwrap());
    assert!(!s.delete_host(a.host.id).await.unwrap());
    assert_eq!(s.get_host(a.host.id).await.unwrap(), None);
}

/// The summary columns agree with the facts and checks after every kind of
/// write, and migration 5 fills them in for rows written before it.
async fn host_summaries_follow_facts_and_checks(h: &Harness) {
    let s = &h.store;
    let agree = || async {
        let full: Vec<_> = s.list_hosts().await.unwrap().iter().map(HostSummaryRecord::of).collect();
        let summaries = s.list_host_summaries(&HostFilter::default()).await.unwrap();
        assert_eq!(summaries, full);
        summaries
    };
    assert!(agree().await.is_empty());

    // Inserted with facts and a precheck report; pending without either.
    let mut a = host("sa", "127.0.0.101", HostStatus::Online);
    a.host.facts = Some(HostFacts { cpu: atoll_core::CpuFacts { cores: 8, model: "x".into() }, clock_offset_ms: Some(-3), ..facts("sa") });
    a.host.zone = Some("z1".into());
    a.host.agent_version = Some("0.1.0".into());
    a.checks = Some(json!({ "host": "sa", "profile": "sandbox", "worst": "warn", "results": [], "checked_at_ms": 7 }));
    a.checked_at_ms = Some(7);
    s.insert_host(&a).await.unwrap();
    s.insert_host(&host("sb", "127.0.0.102", HostStatus::Pending)).await.unwrap();
    let got = agree().await;
    assert_eq!(
        (got[0].cpu_cores, got[0].memory_bytes, got[0].clock_offset_ms, got[0].check_worst.as_deref(), got[0].check_profile.as_deref()),
        (Some(8), Some(8 << 30), Some(-3), Some("warn"), Some("sandbox"))
    );
    assert_eq!((got[1].cpu_cores, got[1].memory_bytes, got[1].check_worst.as_deref()), (None, None, None));

    // Registration: a new host, a claim of the pending one, a re-registration.
    let (c, b) = (HostId::new(), HostId::new());
    s.register_host(&registration(c, "sc", "127.0.0.103", None, 1_000)).await.unwrap();
    s.register_host(&registration(b, "x", "127.0.0.102", None, 1_000)).await.unwrap();
    assert_eq!(agree().await[1].memory_bytes, Some(8 << 30), "the claimed host has its facts' summary");
    let mut again = registration(c, "sc", "127.0.0.103", None, 2_000);
    again.facts.memory_bytes = 4 << 30;
    s.register_host(&again).await.unwrap();
    assert_eq!(agree().await[2].memory_bytes, Some(4 << 30));

    // Heartbeats: without facts the summary stays; with facts it follows,
    // and a clock offset no longer reported is cleared.
    s.record_heartbeat(&heartbeat(a.host.id, "127.0.0.101", 3_000)).await.unwrap();
    assert_eq!(agree().await[0].clock_offset_ms, Some(-3));
    let mut hb = heartbeat(a.host.id, "127.0.0.101", 4_000);
    hb.facts = Some(HostFacts { cpu: atoll_core::CpuFacts { cores: 2, model: "y".into() }, clock_offset_ms: None, ..facts("sa") });
    s.record_heartbeat(&hb).await.unwrap();
    assert_eq!((agree().await[0].cpu_cores, agree().await[0].clock_offset_ms), (Some(2), None));
    hb.facts = Some(HostFacts { clock_offset_ms: Some(12), ..facts("sa") });
    s.record_heartbeat(&hb).await.unwrap();
    assert_eq!(agree().await[0].clock_offset_ms, Some(12));

    // A new precheck report; one of another shape has no summary.
    s.set_host_checks(b, &json!({ "host": "sb", "profile": "production", "worst": "fail", "results": [] }), 9).await.unwrap();
    let got = agree().await;
    assert_eq!(
        (got[1].check_worst.as_deref(), got[1].check_profile.as_deref(), got[1].checked_at_ms),
        (Some("fail"), Some("production"), Some(9))
    );
    s.set_host_checks(b, &json!([{ "name": "disk" }]), 10).await.unwrap();
    assert_eq!(agree().await[1].check_worst, None);
    s.set_host_checks(b, &json!({ "host": "sb", "profile": "production", "worst": "pass", "results": [] }), 11).await.unwrap();
    let before = agree().await;

    // Rows written before migration 5: drop its columns and version, then
    // let a starting server migrate again; the backfill restores them.
    let pool = sqlx::AnyPool::connect(&h.url).await.unwrap();
    for column in ["cpu_cores", "memory_bytes", "clock_offset_ms", "check_worst", "check_profile"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE hosts DROP COLUMN {column}"))).execute(&pool).await.unwrap();
    }
    sqlx::query("DELETE FROM schema_version WHERE version = 5").execute(&pool).await.unwrap();
    pool.close().await;
    let migrated = SqlStore::connect(&h.url).await.unwrap();
    assert_eq!(migrated.list_host_summaries(&HostFilter::default()).await.unwrap(), before);
    migrated.close().await;
}

// ---------------------------------------------------------------- accounts

async fn users_and_passwords(h: &Harness) {
    let s = &h.store;
    s.create_user(&user("bob")).await.unwrap();
    let mut admin = user("alice");
    admin.role = Role::Admin;
    admin.must_change_password = false;
    s.create_user(&admin).await.unwrap();
    assert_eq!(conflict(s.create_user(&user("bob")).await.unwrap_err()), "user \"bob\" already exists");
    assert_eq!(s.count_users().await.unwrap(), 2);
    assert_eq!(s.get_user("alice").await.unwrap(), Some(admin.clone()));
    assert_eq!(s.get_user("Alice").await.unwrap(), None, "names are case-sensitive everywhere");
    let names: Vec<_> = s.list_users().await.unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "bob"]);

    assert!(s.set_password("bob", "newhash", false).await.unwrap());
    let bob = s.get_user("bob").await.unwrap().unwrap();
    assert_eq!((bob.password_hash.as_str(), bob.must_change_password, bob.role), ("newhash", false, Role::Operator));
    assert!(!s.set_password("carol", "x", false).await.unwrap());
}

async fn sessions_expire_when_idle(h: &Harness) {
    let s = &h.store;
    s.create_user(&user("bob")).await.unwrap();
    s.create_session(&session("s1", "bob", 1_000)).await.unwrap();
    let msg = conflict(s.create_session(&session("s1", "bob", 1_000)).await.unwrap_err());
    assert!(msg.contains("session"), "{msg}");

    // With a 30-minute idle timeout, a use soon after the last one reads
    // only; a later one records it.
    let idle = 1_800_000;
    let got = s.touch_session("s1", 2_000 - idle, 2_000).await.unwrap().unwrap();
    assert_eq!((got.user.as_str(), got.last_seen_ms, got.created_at_ms), ("bob", 1_000, 1_000));
    let later = 1_000 + TOUCH_EVERY_MS;
    assert_eq!(s.touch_session("s1", later - idle, later).await.unwrap().unwrap().last_seen_ms, later);
    // Used at exactly the cut-off still counts (and with so short an idle
    // timeout, every use is recorded).
    assert_eq!(s.touch_session("s1", later, later + 10).await.unwrap().unwrap().last_seen_ms, later + 10);
    // Idle since `later + 10`, cut-off after it: gone, and deleted.
    assert_eq!(s.touch_session("s1", later + 11, later + 20).await.unwrap(), None);
    assert_eq!(s.touch_session("s1", 0, later + 30).await.unwrap(), None, "expired session was deleted");
    assert_eq!(s.touch_session("missing", 0, 1).await.unwrap(), None);

    s.create_session(&session("s2", "bob", 1_000)).await.unwrap();
    s.create_session(&session("s3", "bob", 1_000)).await.unwrap();
    s.delete_session("s2").await.unwrap();
    assert_eq!(s.touch_session("s2", 0, 1_500).await.unwrap(), None);
    s.create_user(&user("amy")).await.unwrap();
    s.create_session(&session("s4", "bob", 1_000)).await.unwrap();
    s.create_session(&session("s5", "amy", 1_000)).await.unwrap();
    assert_eq!(s.delete_sessions_of("bob", Some("s4")).await.unwrap(), 1, "all of bob's but the one kept");
    assert_eq!(s.touch_session("s3", 0, 1_500).await.unwrap(), None);
    assert!(s.touch_session("s4", 0, 1_500).await.unwrap().is_some());
    assert!(s.touch_session("s5", 0, 1_500).await.unwrap().is_some(), "other users keep theirs");
    assert_eq!(s.delete_sessions_of("bob", None).await.unwrap(), 1);
    assert_eq!(s.touch_session("s4", 0, 1_500).await.unwrap(), None);
}

async fn api_tokens(h: &Harness) {
    let s = &h.store;
    s.create_user(&user("bob")).await.unwrap();
    s.create_user(&user("amy")).await.unwrap();
    s.create_api_token(&api_token("t1", "bob", "h1")).await.unwrap();
    s.create_api_token(&api_token("t2", "amy", "h2")).await.unwrap();
    let msg = conflict(s.create_api_token(&api_token("t3", "bob", "h1")).await.unwrap_err());
    assert!(msg.contains("token hash"), "{msg}");
    let msg = conflict(s.create_api_token(&api_token("t1", "bob", "h9")).await.unwrap_err());
    assert!(msg.contains("\"t1\""), "{msg}");

    let t = s.touch_api_token("h1", 5_000).await.unwrap().unwrap();
    assert_eq!((t.id.as_str(), t.last_used_ms, t.expires_at_ms), ("t1", Some(5_000), Some(90_000)));
    // Soon after: a read only; later: written again.
    assert_eq!(s.touch_api_token("h1", 6_000).await.unwrap().unwrap().last_used_ms, Some(5_000));
    assert_eq!(s.list_api_tokens(Some("bob")).await.unwrap()[0].last_used_ms, Some(5_000));
    let later = 5_000 + TOUCH_EVERY_MS;
    assert_eq!(s.touch_api_token("h1", later).await.unwrap().unwrap().last_used_ms, Some(later));
    assert_eq!(s.touch_api_token("nope", 5_000).await.unwrap(), None);
    let ids = |v: Vec<ApiTokenRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_api_tokens(None).await.unwrap()), ["t2", "t1"], "by user, then age");
    assert_eq!(ids(s.list_api_tokens(Some("bob")).await.unwrap()), ["t1"]);
    assert!(s.delete_api_token("t1").await.unwrap());
    assert!(!s.delete_api_token("t1").await.unwrap());
    assert_eq!(s.touch_api_token("h1", 6_000).await.unwrap(), None);
    // All of a user's tokens but one go (a password change).
    s.create_api_token(&api_token("t4", "bob", "h4")).await.unwrap();
    s.create_api_token(&api_token("t5", "bob", "h5")).await.unwrap();
    assert_eq!(s.delete_api_tokens_of("bob", Some("h5")).await.unwrap(), 1);
    assert_eq!(ids(s.list_api_tokens(None).await.unwrap()), ["t2", "t5"]);
}

async fn delete_user_cascades(h: &Harness) {
    let s = &h.store;
    s.create_user(&user("bob")).await.unwrap();
    s.create_user(&user("amy")).await.unwrap();
    s.create_session(&session("sb", "bob", 1_000)).await.unwrap();
    s.create_session(&session("sa", "amy", 1_000)).await.unwrap();
    s.create_api_token(&api_token("tb", "bob", "hb")).await.unwrap();
    s.create_api_token(&api_token("ta", "amy", "ha")).await.unwrap();

    assert!(s.delete_user("bob").await.unwrap());
    assert!(!s.delete_user("bob").await.unwrap());
    assert_eq!(s.get_user("bob").await.unwrap(), None);
    assert_eq!(s.touch_session("sb", 0, 2_000).await.unwrap(), None);
    assert_eq!(s.touch_api_token("hb", 2_000).await.unwrap(), None);
    assert!(s.list_api_tokens(Some("bob")).await.unwrap().is_empty());
    // Others keep theirs.
    assert!(s.touch_session("sa", 0, 2_000).await.unwrap().is_some());
    assert!(s.touch_api_token("ha", 2_000).await.unwrap().is_some());
    assert_eq!(s.count_users().await.unwrap(), 1);
}

async fn login_lockout(h: &Harness) {
    let s = &h.store;
    let p = LockoutPolicy { max_failures: 3, window_ms: 60_000, lock_ms: 300_000 };
    let src = "203.0.113.7";
    assert_eq!(s.login_locked_until(src, 0).await.unwrap(), None);
    assert_eq!(s.record_login_failure(src, 0, &p).await.unwrap(), None);
    assert_eq!(s.record_login_failure(src, 1_000, &p).await.unwrap(), None);
    assert_eq!(s.record_login_failure(src, 2_000, &p).await.unwrap(), Some(302_000));
    assert_eq!(s.login_locked_until(src, 2_500).await.unwrap(), Some(302_000));
    assert_eq!(s.login_locked_until("198.51.100.1", 2_500).await.unwrap(), None, "per source");
    assert_eq!(s.login_locked_until(src, 302_000).await.unwrap(), None, "lock over");

    // Failures spread wider than the window never lock.
    let src2 = "203.0.113.8";
    assert_eq!(s.record_login_failure(src2, 0, &p).await.unwrap(), None);
    assert_eq!(s.record_login_failure(src2, 1_000, &p).await.unwrap(), None);
    assert_eq!(s.record_login_failure(src2, 70_000, &p).await.unwrap(), None, "window passed: count restarts");
    assert_eq!(s.record_login_failure(src2, 71_000, &p).await.unwrap(), None);
    assert_eq!(s.record_login_failure(src2, 72_000, &p).await.unwrap(), Some(372_000));

    s.clear_login_failures(src2).await.unwrap();
    assert_eq!(s.login_locked_until(src2, 72_001).await.unwrap(), None);
    assert_eq!(s.record_login_failure(src2, 73_000, &p).await.unwrap(), None, "cleared: count restarts");
}

// ---------------------------------------------------------------- audit, settings

async fn audit_paging(h: &Harness) {
    let s = &h.store;
    for i in 0..25 {
        let e = NewAudit {
            at_ms: 1_000 + i,
            actor: "admin".into(),
            source: "127.0.0.1".into(),
            action: "host.add".into(),
            target: format!("host{i}"),
            detail: json!({ "i": i, "nested": { "ok": true } }),
            outcome: if i % 5 == 0 { "refused: busy".into() } else { "ok".into() },
        };
        s.append_audit(&e).await.unwrap();
    }
    let first = s.list_audit(None, 10).await.unwrap();
    assert_eq!(first.len(), 10);
    assert!(first.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(first[0].target, "host24");
    assert_eq!(first[0].detail, json!({ "i": 24, "nested": { "ok": true } }));
    let second = s.list_audit(Some(first[9].id), 10).await.unwrap();
    assert_eq!(second[0].target, "host14");
    let third = s.list_audit(Some(second[9].id), 10).await.unwrap();
    assert_eq!(third.len(), 5);
    assert_eq!((third[4].target.as_str(), third[4].outcome.as_str(), third[4].at_ms), ("host0", "refused: busy", 1_000));
    let all: HashSet<i64> = first.iter().chain(&second).chain(&third).map(|e| e.id).collect();
    assert_eq!(all.len(), 25);
    assert_eq!(s.list_audit(None, 0).await.unwrap().len(), 25, "0 means the default page");
}

async fn settings(h: &Harness) {
    let s = &h.store;
    assert_eq!(s.get_setting("cluster.name").await.unwrap(), None);
    s.put_setting("cluster.name", "atoll").await.unwrap();
    s.put_setting("cluster.name", "atoll-2").await.unwrap();
    s.put_setting("other", "").await.unwrap();
    assert_eq!(s.get_setting("cluster.name").await.unwrap().as_deref(), Some("atoll-2"));
    assert_eq!(s.get_setting("other").await.unwrap().as_deref(), Some(""));
}

fn doc(kind: DocKind, name: &str, body: &str, at: i64) -> DocRecord {
    DocRecord { kind, name: name.into(), body: body.into(), updated_ms: at }
}

async fn documents(h: &Harness) {
    let s = &h.store;
    s.insert_doc(&doc(DocKind::AlertRule, "disk", "{\"a\":1}", 1)).await.unwrap();
    let dup = s.insert_doc(&doc(DocKind::AlertRule, "disk", "{}", 2)).await.unwrap_err();
    assert!(conflict(dup).contains("alert rule named \"disk\" exists"));
    // The same name under another kind is another document.
    s.put_doc(&doc(DocKind::Channel, "disk", "{\"c\":1}", 3)).await.unwrap();
    s.put_doc(&doc(DocKind::AlertRule, "disk", "{\"a\":2}", 4)).await.unwrap();
    s.put_doc(&doc(DocKind::AlertRule, "cpu", "{}", 5)).await.unwrap();
    let rules = s.list_docs(DocKind::AlertRule).await.unwrap();
    assert_eq!(
        rules.iter().map(|d| (d.name.as_str(), d.body.as_str(), d.updated_ms)).collect::<Vec<_>>(),
        [("cpu", "{}", 5), ("disk", "{\"a\":2}", 4)]
    );
    assert_eq!(s.get_doc(DocKind::Channel, "disk").await.unwrap().unwrap().body, "{\"c\":1}");
    assert!(s.delete_doc(DocKind::AlertRule, "disk").await.unwrap());
    assert!(!s.delete_doc(DocKind::AlertRule, "disk").await.unwrap());
    assert_eq!(s.get_doc(DocKind::AlertRule, "disk").await.unwrap(), None);
    assert!(s.get_doc(DocKind::Channel, "disk").await.unwrap().is_some());
}

async fn alarms_and_history(h: &Harness) {
    let s = &h.store;
    let a = |id: &str, rule: &str, state: &str, started: i64, ended: Option<i64>| AlarmRecord {
        id: id.into(),
        rule: rule.into(),
        state: state.into(),
        started_ms: started,
        ended_ms: ended,
        body: format!("{{\"id\":\"{id}\"}}"),
    };
    s.put_alarms(&[a("1", "disk", "firing", 10, None), a("2", "cpu", "pending", 20, None), a("3", "disk", "resolved", 5, Some(8))])
        .await
        .unwrap();
    // Replacing by id: pending becomes firing, firing resolves.
    s.put_alarms(&[a("2", "cpu", "firing", 20, None), a("1", "disk", "resolved", 10, Some(30))]).await.unwrap();
    let ids = |v: Vec<AlarmRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_alarms(&AlarmFilter::default()).await.unwrap()), ["2", "1", "3"]);
    assert_eq!(ids(s.list_alarms(&AlarmFilter { active: true, ..Default::default() }).await.unwrap()), ["2"]);
    assert_eq!(ids(s.list_alarms(&AlarmFilter { rule: Some("disk".into()), ..Default::default() }).await.unwrap()), ["1", "3"]);
    assert_eq!(ids(s.list_alarms(&AlarmFilter { before_ms: Some(20), limit: 1, ..Default::default() }).await.unwrap()), ["1"]);
    let one = s.list_alarms(&AlarmFilter { rule: Some("disk".into()), limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(one[0], a("1", "disk", "resolved", 10, Some(30)));
    // Pruning takes only resolved alarms that ended before the cut.
    assert_eq!(s.prune_alarms(10).await.unwrap(), 1);
    assert_eq!(ids(s.list_alarms(&AlarmFilter::default()).await.unwrap()), ["2", "1"]);
    s.delete_alarms(&["2".into()]).await.unwrap();
    assert_eq!(ids(s.list_alarms(&AlarmFilter::default()).await.unwrap()), ["1"]);
}

// ---------------------------------------------------------------- tasks

async fn task_create_list_update(h: &Harness) {
    let s = &h.store;
    seed_task(s, "t1").await;
    s.create_task(&task("t2", "db2", TaskStatus::Succeeded, 2_000), &[]).await.unwrap();
    // Active tasks on one target, of different resources' kinds (one of a
    // kind at a time is `one_change_per_resource`).
    s.create_task(&TaskRecord { kind: "package.push".into(), ..task("t3", "db1", TaskStatus::RollingBack, 3_000) }, &[]).await.unwrap();
    s.create_task(&TaskRecord { kind: "cluster.stop".into(), ..task("t0", "db1", TaskStatus::Cancelling, 3_000) }, &[]).await.unwrap();
    let msg = conflict(s.create_task(&task("t1", "x", TaskStatus::Running, 1), &[]).await.unwrap_err());
    assert!(msg.contains("\"t1\""), "{msg}");
    // A task whose steps clash is not stored at all.
    let dup = [step("t9", "a", 0, &[]), step("t9", "a", 1, &[])];
    assert!(s.create_task(&task("t9", "x", TaskStatus::Running, 1), &dup).await.is_err());
    assert_eq!(s.get_task("t9").await.unwrap(), None);

    let ids = |v: Vec<TaskRecord>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let all = TaskFilter::default();
    assert_eq!(ids(s.list_tasks(&all).await.unwrap()), ["t3", "t0", "t2", "t1"], "newest first, then id");
    let f = TaskFilter { target: Some("db1".into()), ..Default::default() };
    assert_eq!(ids(s.list_tasks(&f).await.unwrap()), ["t3", "t0", "t1"]);
    let f = TaskFilter { status: Some(TaskStatus::Succeeded), ..Default::default() };
    assert_eq!(ids(s.list_tasks(&f).await.unwrap()), ["t2"]);
    let f = TaskFilter { status: Some(TaskStatus::Running), target: Some("db1".into()), limit: 0 };
    assert_eq!(ids(s.list_tasks(&f).await.unwrap()), ["t1"]);
    let f = TaskFilter { limit: 2, ..Default::default() };
    assert_eq!(ids(s.list_tasks(&f).await.unwrap()), ["t3", "t0"]);
    assert_eq!(
        ids(s.active_tasks().await.unwrap()).into_iter().collect::<HashSet<_>>(),
        HashSet::from(["t0".into(), "t1".into(), "t3".into()])
    );

    let t1 = s.get_task("t1").await.unwrap().unwrap();
    assert_eq!(t1, task("t1", "db1", TaskStatus::Running, 1_000));
    let steps = s.task_steps("t1").await.unwrap();
    assert_eq!(steps.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(steps[1], step("t1", "b", 1, &["a"]));
    assert_eq!(s.get_step("t1", "c").await.unwrap(), Some(step("t1", "c", 2, &["a"])));
    assert_eq!(s.get_step("t1", "zz").await.unwrap(), None);

    s.update_task(&TaskUpdate {
        id: "t1".into(),
        status: TaskStatus::Cancelled,
        phase: Phase::Rollback,
        cancel_requested: true,
        now: 9_000,
        finished_at_ms: Some(9_001),
    })
    .await
    .unwrap();
    let t1 = s.get_task("t1").await.unwrap().unwrap();
    assert_eq!(
        (t1.status, t1.phase, t1.cancel_requested, t1.updated_at_ms, t1.finished_at_ms, t1.created_at_ms),
        (TaskStatus::Cancelled, Phase::Rollback, true, 9_000, Some(9_001), 1_000)
    );
    assert_eq!(ids(s.active_tasks().await.unwrap()).len(), 2);

    // Listings count steps in one query: done, all, and nothing for a
    // task without steps or an unknown id.
    assert!(s.reset_step("t1", "b", &[StepStatus::Pending], StepStatus::Skipped, 0, 9_100).await.unwrap());
    assert!(s.reset_step("t1", "c", &[StepStatus::Pending], StepStatus::Failed, 0, 9_100).await.unwrap());
    let p = s.task_progress(&["t1".into(), "t2".into(), "nope".into()]).await.unwrap();
    assert_eq!(p.get("t1"), Some(&Progress { done: 1, total: 3 }));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(s.task_progress(&[]).await.unwrap().is_empty());
}

/// One active task per resource, kept by MetaDB itself: a second change to
/// the same cluster is refused while the first runs (also when both race),
/// and allowed once it settled; a retried task takes its key back only if
/// nobody else holds it.
async fn one_change_per_resource(h: &Harness) {
    let s = Arc::new(h.store.clone());
    let on = |id: &str, kind: &str, target: &str, status| TaskRecord { kind: kind.into(), ..task(id, target, status, 1_000) };
    s.create_task(&on("a", "cluster.stop", "orders", TaskStatus::Running), &[]).await.unwrap();
    let msg = conflict(s.create_task(&on("b", "cluster.server.stop", "orders", TaskStatus::Running), &[]).await.unwrap_err());
    assert!(msg.contains("orders is busy with task a"), "{msg}");
    s.create_task(&on("c", "cluster.stop", "other", TaskStatus::Running), &[]).await.unwrap();
    s.create_task(&on("d", "host.prepare", "orders", TaskStatus::Running), &[]).await.unwrap();
    s.create_task(&on("e", "cluster.stop", "orders", TaskStatus::Succeeded), &[]).await.unwrap();
    let settle = |id: &str, status| TaskUpdate {
        id: id.into(),
        status,
        phase: Phase::Forward,
        cancel_requested: false,
        now: 2_000,
        finished_at_ms: status.is_settled().then_some(2_000),
    };
    s.update_task(&settle("a", TaskStatus::Cancelling)).await.unwrap();
    assert!(
        s.create_task(&on("b", "cluster.server.stop", "orders", TaskStatus::Running), &[]).await.is_err(),
        "still held while cancelling"
    );
    s.update_task(&settle("a", TaskStatus::Failed)).await.unwrap();
    s.create_task(&on("b", "cluster.server.stop", "orders", TaskStatus::Running), &[]).await.unwrap();
    let msg = conflict(s.update_task(&settle("a", TaskStatus::Running)).await.unwrap_err());
    assert!(msg.contains("busy with task b"), "{msg}");
    s.update_task(&settle("b", TaskStatus::Succeeded)).await.unwrap();
    s.update_task(&settle("a", TaskStatus::Running)).await.unwrap();
    s.update_task(&settle("a", TaskStatus::Succeeded)).await.unwrap();
    // Racing submissions: exactly one wins.
    let mut joins = Vec::new();
    for i in 0..6 {
        let s = Arc::clone(&s);
        joins.push(tokio::spawn(async move {
            s.create_task(&on(&format!("r{i}"), "cluster.server.stop", "orders", TaskStatus::Running), &[]).await
        }));
    }
    let mut won = 0;
    for j in joins {
        if j.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "racing changes to one cluster");
}

async fn claim_race_has_one_winner(h: &Harness) {
    let s = Arc::new(h.store.clone());
    seed_task(&s, "t").await;
    for round in 0..5 {
        let key = ["a", "b", "c"][round % 3];
        if round >= 3 {
            // Put the step back so it can be raced for again.
            assert!(s.reset_step("t", key, &[StepStatus::Running], StepStatus::Pending, 0, 0).await.unwrap());
        }
        let mut joins = Vec::new();
        for owner in ["x", "y", "z"] {
            let s = s.clone();
            joins.push(tokio::spawn(async move { s.claim_step(&claim("t", key, StepStatus::Pending, owner, 100, 10_000)).await.unwrap() }));
        }
        let mut wins = 0;
        for j in joins {
            wins += usize::from(j.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}");
    }
    let a = s.get_step("t", "a").await.unwrap().unwrap();
    assert_eq!((a.status, a.attempts, a.started_at_ms, a.lease_expires_ms), (StepStatus::Running, 2, Some(100), Some(10_000)));
    assert!(matches!(a.lease_owner.as_deref(), Some("x" | "y" | "z")));
}

async fn expired_lease_is_reclaimed(h: &Harness) {
    let s = &h.store;
    seed_task(s, "t").await;
    assert!(s.claim_step(&claim("t", "a", StepStatus::Pending, "x", 0, 1_000)).await.unwrap());
    assert!(!s.claim_step(&claim("t", "a", StepStatus::Pending, "y", 500, 2_000)).await.unwrap(), "no longer pending");
    assert!(!s.claim_step(&claim("t", "a", StepStatus::Running, "y", 500, 2_000)).await.unwrap(), "lease still held");
    assert!(s.claim_step(&claim("t", "a", StepStatus::Running, "y", 1_500, 3_000)).await.unwrap(), "lease expired");
    let a = s.get_step("t", "a").await.unwrap().unwrap();
    assert_eq!((a.attempts, a.lease_owner.as_deref(), a.lease_expires_ms, a.started_at_ms), (2, Some("y"), Some(3_000), Some(1_500)));

    assert!(!s.complete_step(&completion("t", "a", "x", StepStatus::Succeeded, 1_600)).await.unwrap(), "x lost it");
    assert!(s.complete_step(&completion("t", "a", "y", StepStatus::Succeeded, 1_700)).await.unwrap());
    let a = s.get_step("t", "a").await.unwrap().unwrap();
    assert_eq!(a.status, StepStatus::Succeeded);
    assert_eq!((a.lease_owner, a.lease_expires_ms, a.finished_at_ms), (None, None, Some(1_700)));
    assert_eq!(a.output, Some(json!({ "by": "y" })));
    assert!(!s.complete_step(&completion("t", "a", "y", StepStatus::Failed, 1_800)).await.unwrap(), "already done");
}

async fn renew_lease_only_by_owner(h: &Harness) {
    let s = &h.store;
    seed_task(s, "t").await;
    assert!(!s.renew_lease("t", "a", "x", 5_000).await.unwrap(), "not claimed");
    assert!(s.claim_step(&claim("t", "a", StepStatus::Pending, "x", 0, 1_000)).await.unwrap());
    assert!(s.renew_lease("t", "a", "x", 5_000).await.unwrap());
    assert!(s.renew_lease("t", "a", "x", 5_000).await.unwrap(), "same value still counts as held");
    assert!(!s.renew_lease("t", "a", "y", 9_000).await.unwrap());
    assert_eq!(s.get_step("t", "a").await.unwrap().unwrap().lease_expires_ms, Some(5_000));
    assert!(s.complete_step(&completion("t", "a", "x", StepStatus::Succeeded, 2_000)).await.unwrap());
    assert!(!s.renew_lease("t", "a", "x", 9_000).await.unwrap(), "released on completion");
}

async fn reset_step_retry_and_skip(h: &Harness) {
    let s = &h.store;
    seed_task(s, "t").await;
    assert!(s.claim_step(&claim("t", "a", StepStatus::Pending, "x", 0, 1_000)).await.unwrap());
    let mut failed = completion("t", "a", "x", StepStatus::Failed, 100);
    failed.not_before_ms = 5_000;
    assert!(s.complete_step(&failed).await.unwrap());
    let a = s.get_step("t", "a").await.unwrap().unwrap();
    assert_eq!((a.status, a.error.as_deref(), a.not_before_ms), (StepStatus::Failed, Some("disk full"), 5_000));

    // Operator retry: back to pending with one more attempt allowed.
    assert!(!s.reset_step("t", "a", &[StepStatus::Succeeded], StepStatus::Pending, 1, 200).await.unwrap());
    assert!(!s.reset_step("t", "a", &[], StepStatus::Pending, 1, 200).await.unwrap());
    assert!(s.reset_step("t", "a", &[StepStatus::Failed], StepStatus::Pending, 1, 200).await.unwrap());
    let a = s.get_step("t", "a").await.unwrap().unwrap();
    assert_eq!((a.status, a.max_attempts, a.attempts), (StepStatus::Pending, 4, 1));
    assert_eq!((a.not_before_ms, a.lease_owner, a.lease_expires_ms, a.finished_at_ms), (0, None, None, None));
    assert_eq!(a.error.as_deref(), Some("disk full"), "the last error stays as history");
    assert!(!s.reset_step("t", "a", &[StepStatus::Failed], StepStatus::Pending, 1, 300).await.unwrap(), "already moved");

    // Skip (or cancel) from any of several states.
    let from = [StepStatus::Failed, StepStatus::Pending];
    assert!(s.reset_step("t", "b", &from, StepStatus::Skipped, 0, 400).await.unwrap());
    let b = s.get_step("t", "b").await.unwrap().unwrap();
    assert_eq!((b.status, b.max_attempts, b.finished_at_ms), (StepStatus::Skipped, 3, Some(400)));
    assert!(!s.reset_step("nope", "b", &from, StepStatus::Skipped, 0, 400).await.unwrap());
}

async fn step_logs_paging(h: &Harness) {
    let s = &h.store;
    seed_task(s, "t").await;
    seed_task(s, "u").await;
    for i in 0..8u32 {
        let line = |task: &str, step: &str| NewStepLog {
            task_id: task.into(),
            step: step.into(),
            attempt: 1 + i / 4,
            at_ms: i64::from(i),
            level: if i == 7 { "error".into() } else { "info".into() },
            message: format!("{step} line {i} — ünïcode"),
        };
        s.append_step_log(&line("t", if i % 2 == 0 { "a" } else { "b" })).await.unwrap();
        s.append_step_log(&line("u", "a")).await.unwrap();
    }
    let all = s.step_logs("t", None, 0, 0).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert!(all.iter().all(|l| l.task_id == "t"));
    assert_eq!((all[7].step.as_str(), all[7].attempt, all[7].level.as_str()), ("b", 2, "error"));
    assert_eq!(all[0].message, "a line 0 — ünïcode");

    let page1 = s.step_logs("t", Some("a"), 0, 3).await.unwrap();
    assert_eq!(page1.iter().map(|l| l.at_ms).collect::<Vec<_>>(), [0, 2, 4]);
    let page2 = s.step_logs("t", Some("a"), page1[2].id, 3).await.unwrap();
    assert_eq!(page2.iter().map(|l| l.at_ms).collect::<Vec<_>>(), [6]);
    assert!(s.step_logs("t", Some("a"), page2[0].id, 3).await.unwrap().is_empty());
    let rest = s.step_logs("t", None, all[5].id, 10).await.unwrap();
    assert_eq!(rest.len(), 2);
}

async fn migrations_run_twice(h: &Harness) {
    h.store.put_setting("kept", "yes").await.unwrap();
    // A second server (or a restart) on the same database.
    let again = SqlStore::connect(&h.url).await.unwrap();
    assert_eq!(again.get_setting("kept").await.unwrap().as_deref(), Some("yes"));
    let third = SqlStore::connect(&h.url).await.unwrap();
    third.ping().await.unwrap();

    again.close().await;
    third.close().await;

    let pool = sqlx::AnyPool::connect(&h.url).await.unwrap();
    let versions = || async {
        let rows = sqlx::query("SELECT version FROM schema_version ORDER BY version").fetch_all(&pool).await.unwrap();
        rows.iter().map(|r| r.get::<i64, _>("version")).collect::<Vec<_>>()
    };
    assert_eq!(versions().await, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);

    // Servers starting together all find the migration pending: each runs
    // the (idempotent) DDL or waits, and the version is recorded once.
    sqlx::query("DELETE FROM schema_version").execute(&pool).await.unwrap();
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = h.url.clone();
            tokio::spawn(async move { SqlStore::connect(&url).await })
        })
        .collect();
    for start in starts {
        start.await.unwrap().unwrap().close().await;
    }
    assert_eq!(versions().await, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(h.store.get_setting("kept").await.unwrap().as_deref(), Some("yes"), "data survives");
    pool.close().await;
}

// ---------------------------------------------------------------- URLs, not per back end

#[tokio::test]
async fn urls() {
    assert!(matches!(SqlStore::connect("postgres://x@y/z").await, Err(StoreError::UnsupportedUrl(_))));
    assert!(matches!(SqlStore::connect("meta.db").await, Err(StoreError::UnsupportedUrl(_))));

    let mem = SqlStore::connect("sqlite::memory:").await.unwrap();
    mem.put_setting("k", "v").await.unwrap();
    assert_eq!(mem.get_setting("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(mem.backend(), "sqlite");

    // open_sqlite creates missing directories and copes with URL-special characters.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub dir").join("meta #1?%.db");
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    store.put_setting("k", "v").await.unwrap();
    store.close().await;
    assert!(path.exists(), "{path:?}");
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    assert_eq!(store.get_setting("k").await.unwrap().as_deref(), Some("v"));
    store.close().await;
}

#[test]
fn mysql_url_without_db() {
    assert_eq!(url_without_db("mysql://u:p@h:3306/db"), "mysql://u:p@h:3306");
    assert_eq!(url_without_db("mysql://u:p@h:3306/db?ssl-mode=disabled"), "mysql://u:p@h:3306?ssl-mode=disabled");
    assert_eq!(url_without_db("mysql://u:p@h"), "mysql://u:p@h");
}

// ---------------------------------------------------------------- clusters

/// The smallest spec a stored cluster can have.
fn spec(name: &str) -> atoll_core::ClusterSpec {
    atoll_core::ClusterSpec {
        name: name.into(),
        durability: atoll_core::Durability::Durable,
        servers: Vec::new(),
        params: Default::default(),
        allow_single_zone: false,
        engine: None,
        proxy: Default::default(),
        region: None,
        replication: None,
    }
}

async fn clusters_and_servers(h: &Harness) {
    use atoll_core::{Durability, Ports};
    let s = &h.store;
    let hosts: Vec<HostId> = (0..3).map(|_| HostId::new()).collect();
    let cluster = ClusterRecord {
        name: "orders".into(),
        engine: "mariadb-galera".into(),
        durability: Durability::Durable,
        status: ClusterStatus::Creating,
        spec: spec("orders"),
        secrets: json!({ "sealed": "abc" }),
        created_by: "admin".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    let servers: Vec<DbServerRecord> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| DbServerRecord {
            cluster: "orders".into(),
            name: format!("orders-{}", i + 1),
            host_id: *host,
            zone: format!("z{}", i + 1),
            segment: i as u8,
            address: format!("127.0.0.{}", 11 + i),
            ports: Ports::default(),
            dir: format!("/var/lib/atoll/db/orders/orders-{}", i + 1),
            status: None,
            status_at_ms: None,
        })
        .collect();
    s.create_cluster(&cluster, &servers).await.unwrap();
    let err = s.create_cluster(&cluster, &servers).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("orders")), "{err}");
    assert_eq!(s.get_cluster("orders").await.unwrap().unwrap(), cluster);
    assert_eq!(s.list_clusters().await.unwrap().len(), 1);
    assert_eq!(s.cluster_servers("orders").await.unwrap(), servers);
    assert_eq!(s.servers_on_host(hosts[1]).await.unwrap(), vec![servers[1].clone()]);

    let mut tuned = spec("orders");
    tuned.params.insert("max_connections".into(), "50".into());
    s.set_cluster_spec("orders", &tuned, 4).await.unwrap();
    assert_eq!(s.get_cluster("orders").await.unwrap().unwrap().spec.params["max_connections"], "50");

    // A spec that no longer decodes is an error naming the cluster, not a
    // default: a hand edit or a future version's shape.
    let pool = sqlx::AnyPool::connect(&h.url).await.unwrap();
    sqlx::query("UPDATE clusters SET spec_json = '{\"name\": 5}' WHERE name = 'orders'").execute(&pool).await.unwrap();
    for err in [s.get_cluster("orders").await.unwrap_err(), s.list_clusters().await.unwrap_err()] {
        assert!(matches!(&err, StoreError::Corrupt { what: "spec_json", .. }) && err.to_string().contains("cluster orders"), "{err}");
    }
    s.set_cluster_spec("orders", &tuned, 4).await.unwrap();
    pool.close().await;
    s.set_cluster_status("orders", ClusterStatus::Healthy, 5, None).await.unwrap();
    let got = s.get_cluster("orders").await.unwrap().unwrap();
    assert_eq!((got.status, got.updated_at_ms), (ClusterStatus::Healthy, 5));

    // Statuses land only on the reporting host's own servers.
    let report =
        vec![(DbId::new("orders", "orders-2"), json!({ "state": "synced" })), (DbId::new("orders", "orders-3"), json!({ "state": "x" }))];
    s.record_server_statuses(hosts[1], &report, 7).await.unwrap();
    let got = s.cluster_servers("orders").await.unwrap();
    assert_eq!(got[1].status, Some(json!({ "state": "synced" })));
    assert_eq!(got[1].status_at_ms, Some(7));
    assert_eq!(got[2].status, None, "another host cannot report for orders-3");
    // An unchanged report is only marked fresh, and only for its host.
    let ids = [(hosts[1], DbId::new("orders", "orders-2")), (hosts[1], DbId::new("orders", "orders-3"))];
    s.touch_server_statuses(&ids, 8).await.unwrap();
    let got = s.cluster_servers("orders").await.unwrap();
    assert_eq!((got[1].status.clone(), got[1].status_at_ms), (Some(json!({ "state": "synced" })), Some(8)));
    assert_eq!(got[2].status_at_ms, None);

    // Routing: compare-and-set, so only one of two racing failovers wins.
    assert_eq!(s.get_routing("orders").await.unwrap(), None);
    let first = RoutingRecord { writer: Some("orders-1".into()), moving_to: None, changed_at_ms: 8 };
    assert!(s.set_routing("orders", None, &first).await.unwrap());
    assert!(!s.set_routing("orders", None, &first).await.unwrap(), "a second insert must lose");
    let second = RoutingRecord { writer: Some("orders-2".into()), moving_to: None, changed_at_ms: 9 };
    let third = RoutingRecord { writer: Some("orders-3".into()), moving_to: None, changed_at_ms: 9 };
    assert!(s.set_routing("orders", Some(&first), &second).await.unwrap());
    assert!(!s.set_routing("orders", Some(&first), &third).await.unwrap(), "a stale expectation must lose");
    assert_eq!(s.get_routing("orders").await.unwrap(), Some(second));

    // Proxies: replaced by name, statuses only from their own host.
    let proxy = |i: usize| ProxyRecord {
        cluster: "orders".into(),
        name: format!("orders-proxy-z{}", i + 1),
        host_id: hosts[i],
        zone: format!("z{}", i + 1),
        address: format!("127.0.0.{}", 11 + i),
        rw_port: 6033,
        ro_port: 6034,
        admin_port: 6035,
        status: None,
        status_at_ms: None,
    };
    s.put_proxies(&[proxy(0), proxy(1)]).await.unwrap();
    let mut moved = proxy(1);
    moved.rw_port = 7033;
    s.put_proxies(&[moved.clone()]).await.unwrap();
    assert_eq!(s.cluster_proxies("orders").await.unwrap(), vec![proxy(0), moved.clone()]);
    assert_eq!(s.proxies_on_host(hosts[1]).await.unwrap(), vec![moved]);
    let report =
        vec![(DbId::new("orders", "orders-proxy-z1"), json!({ "rw": 3 })), (DbId::new("orders", "orders-proxy-z2"), json!({ "rw": 4 }))];
    s.record_proxy_statuses(hosts[0], &report, 10).await.unwrap();
    let got = s.cluster_proxies("orders").await.unwrap();
    assert_eq!((got[0].status.clone(), got[0].status_at_ms), (Some(json!({ "rw": 3 })), Some(10)));
    assert_eq!(got[1].status, None, "another host cannot report for orders-proxy-z2");

    assert!(s.delete_cluster("orders").await.unwrap());
    assert!(!s.delete_cluster("orders").await.unwrap());
    assert!(s.cluster_servers("orders").await.unwrap().is_empty());
    assert!(s.cluster_proxies("orders").await.unwrap().is_empty());
    assert_eq!(s.get_routing("orders").await.unwrap(), None);
}

/// Scaling: a server joins an existing cluster under a free name; removing
/// the last server of a zone takes that zone's proxy with it.
async fn add_and_remove_servers(h: &Harness) {
    use atoll_core::{Durability, Ports};
    let s = &h.store;
    let cluster = ClusterRecord {
        name: "scaled".into(),
        engine: "mariadb-galera".into(),
        durability: Durability::Durable,
        status: ClusterStatus::Healthy,
        spec: spec("scaled"),
        secrets: json!({}),
        created_by: "admin".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    let server = |n: usize, zone: &str| DbServerRecord {
        cluster: "scaled".into(),
        name: format!("scaled-{n}"),
        host_id: HostId::new(),
        zone: zone.into(),
        segment: 0,
        address: format!("127.0.0.{}", 20 + n),
        ports: Ports::default(),
        dir: format!("/d/scaled-{n}"),
        status: None,
        status_at_ms: None,
    };
    let (one, two, three) = (server(1, "z1"), server(2, "z1"), server(3, "z2"));
    s.create_cluster(&cluster, std::slice::from_ref(&one)).await.unwrap();
    s.add_db_server(&two).await.unwrap();
    s.add_db_server(&three).await.unwrap();
    assert!(conflict(s.add_db_server(&two).await.unwrap_err()).contains("scaled-2"));
    let mut orphan = server(1, "z1");
    orphan.cluster = "nope".into();
    assert!(conflict(s.add_db_server(&orphan).await.unwrap_err()).contains("nope"));
    assert_eq!(s.cluster_servers("scaled").await.unwrap(), vec![one.clone(), two.clone(), three.clone()]);

    let proxy = |zone: &str, host: HostId| ProxyRecord {
        cluster: "scaled".into(),
        name: format!("scaled-proxy-{zone}"),
        host_id: host,
        zone: zone.into(),
        address: "127.0.0.21".into(),
        rw_port: 6033,
        ro_port: 6034,
        admin_port: 6035,
        status: None,
        status_at_ms: None,
    };
    s.put_proxies(&[proxy("z1", one.host_id), proxy("z2", three.host_id)]).await.unwrap();
    assert!(s.remove_db_server("scaled", "scaled-1").await.unwrap());
    assert!(!s.remove_db_server("scaled", "scaled-1").await.unwrap(), "removing twice is a no-op");
    assert_eq!(s.cluster_proxies("scaled").await.unwrap().len(), 2, "z1 still has a server, so it keeps its proxy");
    assert!(s.remove_db_server("scaled", "scaled-3").await.unwrap());
    assert_eq!(s.cluster_proxies("scaled").await.unwrap(), vec![proxy("z1", one.host_id)], "z2 is empty: its proxy is gone");
    assert_eq!(s.cluster_servers("scaled").await.unwrap(), vec![two]);
    assert!(s.delete_cluster("scaled").await.unwrap());
}

// ---------------------------------------------------------------- packages

fn package(name: &str, sha: char) -> PackageRecord {
    PackageRecord {
        name: name.into(),
        version: "11.8.3".into(),
        sha256: sha.to_string().repeat(64),
        size_bytes: 5 << 30,
        mariadbd: "bin/mariadbd".into(),
        install_db: "scripts/mariadb-install-db".into(),
        galera: "lib/libgalera_smm.so".into(),
        created_by: "admin".into(),
        created_at_ms: 1,
    }
}

async fn packages_unique_by_name_and_content(h: &Harness) {
    let s = &h.store;
    let a = package("mariadb-11.8", 'a');
    s.insert_package(&a).await.unwrap();
    assert_eq!(s.get_package("mariadb-11.8").await.unwrap(), Some(a.clone()));
    assert_eq!(s.find_package_by_sha256(&a.sha256).await.unwrap(), Some(a.clone()));
    let same_name = conflict(s.insert_package(&package("mariadb-11.8", 'b')).await.unwrap_err());
    assert!(same_name.contains("a package named mariadb-11.8 already exists"), "{same_name}");
    let same_content = conflict(s.insert_package(&package("other", 'a')).await.unwrap_err());
    assert!(same_content.contains("already registered as package mariadb-11.8"), "{same_content}");
    s.insert_package(&package("alpha", 'c')).await.unwrap();
    let names: Vec<String> = s.list_packages().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["alpha", "mariadb-11.8"]);
    assert!(s.delete_package("alpha").await.unwrap());
    assert!(!s.delete_package("alpha").await.unwrap());
    assert_eq!(s.get_package("alpha").await.unwrap(), None);
    assert_eq!(s.list_packages().await.unwrap().len(), 1);
}

// ---------------------------------------------------------------- platform

/// Takes the `leader` lease for `server-a` at `now` (10 s).
async fn leader(s: &SqlStore, now: i64) -> Fence {
    let lease = s.acquire_lease("leader", "server-a", 10_000, now).await.unwrap();
    assert!(lease.held_by("server-a", now), "{lease:?}");
    lease.fence()
}

async fn lease_acquire_renew_and_takeover(h: &Harness) {
    let s = &h.store;
    assert_eq!(s.get_lease("leader").await.unwrap(), None);
    let a = s.acquire_lease("leader", "a", 1_000, 10_000).await.unwrap();
    assert_eq!((a.holder.as_str(), a.generation, a.expires_ms), ("a", 1, 11_000));
    // Held: another server sees the holder and does not get it.
    let seen = s.acquire_lease("leader", "b", 1_000, 10_500).await.unwrap();
    assert_eq!((seen.holder.as_str(), seen.generation), ("a", 1));
    assert!(!seen.held_by("b", 10_500));
    // Renewal keeps the generation and moves the expiry.
    let renewed = s.acquire_lease("leader", "a", 1_000, 10_900).await.unwrap();
    assert_eq!((renewed.generation, renewed.expires_ms), (1, 11_900));
    // Lapsed: the next one takes it with a new generation.
    let b = s.acquire_lease("leader", "b", 1_000, 12_000).await.unwrap();
    assert_eq!((b.holder.as_str(), b.generation, b.acquired_at_ms), ("b", 2, 12_000));
    // The old holder cannot renew what lapsed; it sees b.
    assert_eq!(s.acquire_lease("leader", "a", 1_000, 12_100).await.unwrap().holder, "b");
    // A clean release hands over at once, with a new generation.
    s.release_lease(&b.fence()).await.unwrap();
    let a2 = s.acquire_lease("leader", "a", 1_000, 12_200).await.unwrap();
    assert_eq!((a2.holder.as_str(), a2.generation), ("a", 3));
    // Releasing with a stale fence does nothing.
    s.release_lease(&b.fence()).await.unwrap();
    assert!(s.get_lease("leader").await.unwrap().unwrap().held_by("a", 12_300));
    // Leases are independent by name.
    assert_eq!(s.acquire_lease("other", "b", 1_000, 12_300).await.unwrap().generation, 1);
}

async fn lease_race_has_one_winner(h: &Harness) {
    let store = Arc::new(h.store.clone());
    // Twice: the first-ever INSERT race, then the takeover of a lapsed lease.
    for (round, now) in [(0, 1_000), (1, 100_000)] {
        let mut joins = Vec::new();
        for i in 0..8 {
            let s = Arc::clone(&store);
            joins.push(tokio::spawn(async move {
                let me = format!("s{round}-{i}");
                let got = s.acquire_lease("race", &me, 5_000, now).await.unwrap();
                (me, got)
            }));
        }
        let mut holders = HashSet::new();
        let mut winners = 0;
        for j in joins {
            let (me, got) = j.await.unwrap();
            holders.insert((got.holder.clone(), got.generation));
            winners += usize::from(got.held_by(&me, now));
        }
        assert_eq!(winners, 1, "round {round}: {holders:?}");
        assert_eq!(holders.len(), 1, "round {round}: everyone sees the one winner: {holders:?}");
        assert_eq!(holders.iter().next().unwrap().1, round + 1);
    }
}

async fn fenced_writes_refused_after_takeover(h: &Harness) {
    let s = &h.store;
    let id = HostId::new();
    s.register_host(&registration(id, "fh", "127.0.0.91", None, 1_000)).await.unwrap();
    seed_cluster(s, "fenced").await;
    let old = s.acquire_lease("leader", "a", 5_000, 2_000).await.unwrap().fence();
    // While held, fenced writes go through.
    s.set_cluster_status("fenced", ClusterStatus::Degraded, 3_000, Some(&old)).await.unwrap();
    // The lease lapses and b takes it: a's writes are refused, nothing changes.
    let new = s.acquire_lease("leader", "b", 5_000, 8_000).await.unwrap();
    assert_eq!(new.generation, 2);
    let err = s.set_cluster_status("fenced", ClusterStatus::Healthy, 8_100, Some(&old)).await.unwrap_err();
    assert!(matches!(&err, StoreError::Fenced { lease, generation: 1 } if lease == "leader"), "{err:?}");
    assert!(err.to_string().contains("another server took over"), "{err}");
    assert_eq!(s.get_cluster("fenced").await.unwrap().unwrap().status, ClusterStatus::Degraded);
    let err = s.mark_stale_offline(5_000, &old, 8_100).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert_eq!(s.get_host(id).await.unwrap().unwrap().host.status, HostStatus::Online);
    // A lapsed lease fences even its own holder until taken again.
    let err = s.set_cluster_status("fenced", ClusterStatus::Healthy, 20_000, Some(&new.fence())).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    // The new holder writes.
    assert_eq!(s.mark_stale_offline(5_000, &new.fence(), 8_200).await.unwrap(), vec![id]);
    s.set_cluster_status("fenced", ClusterStatus::Healthy, 8_300, Some(&new.fence())).await.unwrap();
    assert_eq!(s.get_cluster("fenced").await.unwrap().unwrap().status, ClusterStatus::Healthy);
}

async fn platform_servers_announce(h: &Harness) {
    let s = &h.store;
    let server = |id: &str, url: &str, seen: i64| PlatformServerRecord {
        id: id.into(),
        url: url.into(),
        version: "0.1.0".into(),
        started_at_ms: 1_000,
        seen_at_ms: seen,
        errors_logged: 2,
    };
    s.record_platform_server(&server("b", "http://127.0.0.2:8080", 2_000)).await.unwrap();
    s.record_platform_server(&server("a", "http://127.0.0.1:8080", 2_000)).await.unwrap();
    s.record_platform_server(&server("b", "http://127.0.0.2:8080", 3_000)).await.unwrap();
    let all = s.list_platform_servers().await.unwrap();
    assert_eq!(all.iter().map(|r| (r.id.as_str(), r.seen_at_ms)).collect::<Vec<_>>(), [("a", 2_000), ("b", 3_000)]);
    assert!(all.iter().all(|r| r.errors_logged == 2));
    assert!(s.delete_platform_server("a").await.unwrap());
    assert!(!s.delete_platform_server("a").await.unwrap());
    assert_eq!(s.list_platform_servers().await.unwrap().len(), 1);
}

async fn routing_cas_race_has_one_winner(h: &Harness) {
    seed_cluster(&h.store, "cas").await;
    let store = Arc::new(h.store.clone());
    let first = RoutingRecord { writer: Some("n1".into()), moving_to: None, changed_at_ms: 1 };
    // The first row, then a move away from n1: one winner each time.
    for expected in [None, Some(first.clone())] {
        let mut joins = Vec::new();
        for i in 0..8 {
            let (s, expected) = (Arc::clone(&store), expected.clone());
            let new = if expected.is_none() {
                first.clone()
            } else {
                RoutingRecord { writer: Some(format!("n{}", i + 2)), moving_to: None, changed_at_ms: 2 }
            };
            joins.push(tokio::spawn(async move { s.set_routing("cas", expected.as_ref(), &new).await.unwrap() }));
        }
        let mut wins = 0;
        for j in joins {
            wins += usize::from(j.await.unwrap());
        }
        assert_eq!(wins, 1, "expected {expected:?}");
    }
}

/// A cluster with no servers, for tests that need only its row.
async fn seed_cluster(s: &SqlStore, name: &str) {
    use atoll_core::Durability;
    let cluster = ClusterRecord {
        name: name.into(),
        engine: "mariadb-galera".into(),
        durability: Durability::Durable,
        status: ClusterStatus::Creating,
        spec: spec(name),
        secrets: json!({}),
        created_by: "admin".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    };
    s.create_cluster(&cluster, &[]).await.unwrap();
}

// ---------------------------------------------------------------- copy

/// A populated embedded store copied into this back end reads back the same
/// through every trait, and a second copy into it is refused.
async fn copy_into_carries_everything(h: &Harness) {
    let dir = tempfile::tempdir().unwrap();
    let src = SqlStore::open_sqlite(&dir.path().join("bootstrap.db")).await.unwrap();
    let id = HostId::new();
    src.register_host(&registration(id, "db1", "127.0.0.61", Some("z1"), 1_000)).await.unwrap();
    src.set_host_checks(id, &json!({ "worst": "pass", "profile": "sandbox" }), 1_500).await.unwrap();
    src.create_user(&user("alice")).await.unwrap();
    src.put_setting("join_token", "jt").await.unwrap();
    src.append_audit(&NewAudit {
        at_ms: 5,
        actor: "alice".into(),
        source: "127.0.0.1".into(),
        action: "host.add".into(),
        target: "db1".into(),
        detail: json!({ "n": 1.5 }),
        outcome: "ok".into(),
    })
    .await
    .unwrap();
    seed_task(&src, "t").await;
    seed_cluster(&src, "meta").await;
    src.set_routing("meta", None, &RoutingRecord { writer: Some("meta-1".into()), moving_to: None, changed_at_ms: 9 }).await.unwrap();
    src.acquire_lease("controllers", "bootstrap", 5_000, 1_000).await.unwrap();

    // The target's first start wrote a setting of its own; the copy wins.
    h.store.put_setting("join_token", "other").await.unwrap();
    let copied = src.copy_into(&h.store).await.unwrap();
    let count = |t: &str| copied.iter().find(|(n, _)| *n == t).map(|(_, c)| *c);
    assert_eq!((count("hosts"), count("task_steps"), count("clusters")), (Some(1), Some(3), Some(1)), "{copied:?}");

    let s = &h.store;
    assert_eq!(s.get_host(id).await.unwrap(), src.get_host(id).await.unwrap());
    assert_eq!(
        s.list_host_summaries(&HostFilter::default()).await.unwrap(),
        src.list_host_summaries(&HostFilter::default()).await.unwrap()
    );
    assert_eq!(s.get_user("alice").await.unwrap().map(|u| u.password_hash), Some(user("alice").password_hash));
    assert_eq!(s.get_setting("join_token").await.unwrap().as_deref(), Some("jt"));
    let audit = s.list_audit(None, 10).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].detail, json!({ "n": 1.5 }));
    assert_eq!(s.task_steps("t").await.unwrap(), src.task_steps("t").await.unwrap());
    assert_eq!(s.get_cluster("meta").await.unwrap(), src.get_cluster("meta").await.unwrap());
    assert_eq!(s.get_routing("meta").await.unwrap().unwrap().writer.as_deref(), Some("meta-1"));
    // The bootstrap's lease stays behind: the new servers elect their own.
    assert_eq!(s.get_lease("controllers").await.unwrap(), None);
    // New rows get fresh ids after the copied ones.
    s.append_audit(&NewAudit {
        at_ms: 6,
        actor: "alice".into(),
        source: "127.0.0.1".into(),
        action: "host.remove".into(),
        target: "db1".into(),
        detail: json!({}),
        outcome: "ok".into(),
    })
    .await
    .unwrap();
    let audit = s.list_audit(None, 10).await.unwrap();
    assert!(audit[0].id > audit[1].id, "{audit:?}");

    let again = src.copy_into(&h.store).await.unwrap_err();
    assert!(again.to_string().contains("not empty"), "{again}");
    src.close().await;
}

async fn batched_heartbeats_touch_only_online_hosts(h: &Harness) {
    let s = &h.store;
    let (a, b) = (HostId::new(), HostId::new());
    s.register_host(&registration(a, "ta", "127.0.0.101", None, 1_000)).await.unwrap();
    s.register_host(&registration(b, "tb", "127.0.0.102", None, 1_000)).await.unwrap();
    let mut off = host("toff", "127.0.0.103", HostStatus::Offline);
    off.host.last_heartbeat_ms = Some(500);
    let off_id = off.host.id;
    s.insert_host(&off).await.unwrap();
    // More ids than one statement takes, to cross a chunk boundary.
    let mut ids: Vec<HostId> = (0..600).map(|_| HostId::new()).collect();
    ids.extend([a, b, off_id]);
    let mut not_online = s.touch_heartbeats(&ids, 5_000).await.unwrap();
    not_online.sort();
    let mut want: Vec<HostId> = ids.iter().copied().filter(|i| *i != a && *i != b).collect();
    want.sort();
    assert_eq!(not_online, want, "the offline host and unknown ids need a full record");
    for id in [a, b] {
        assert_eq!(s.get_host(id).await.unwrap().unwrap().host.last_heartbeat_ms, Some(5_000));
    }
    let off_now = s.get_host(off_id).await.unwrap().unwrap().host;
    assert_eq!((off_now.status, off_now.last_heartbeat_ms), (HostStatus::Offline, Some(500)), "a touch never revives a host");
    assert!(s.touch_heartbeats(&[], 6_000).await.unwrap().is_empty());
}

async fn host_listings_page_and_filter(h: &Harness) {
    let s = &h.store;
    for (i, (name, zone)) in [("db-a", "z1"), ("db-b", "z2"), ("db-c", "z1"), ("web-a", "z1"), ("web-b", "z2")].iter().enumerate() {
        let mut rec = host(name, &format!("127.0.1.{}", i + 1), if i == 1 { HostStatus::Offline } else { HostStatus::Online });
        rec.host.zone = Some((*zone).into());
        s.insert_host(&rec).await.unwrap();
    }
    let names = |v: Vec<HostSummaryRecord>| v.into_iter().map(|h| h.name).collect::<Vec<_>>();
    let page = |after: Option<&str>, limit: u32| HostFilter { after: after.map(str::to_string), limit: Some(limit), ..Default::default() };
    assert_eq!(names(s.list_host_summaries(&page(None, 2)).await.unwrap()), ["db-a", "db-b"]);
    assert_eq!(names(s.list_host_summaries(&page(Some("db-b"), 2)).await.unwrap()), ["db-c", "web-a"]);
    assert_eq!(names(s.list_host_summaries(&page(Some("web-a"), 2)).await.unwrap()), ["web-b"]);
    let f = HostFilter { zone: Some("z1".into()), name_prefix: Some("db".into()), ..Default::default() };
    assert_eq!(names(s.list_host_summaries(&f).await.unwrap()), ["db-a", "db-c"]);
    let f = HostFilter { status: Some(HostStatus::Offline), ..Default::default() };
    assert_eq!(names(s.list_host_summaries(&f).await.unwrap()), ["db-b"]);
    let mut counts = s.count_hosts_by_status().await.unwrap();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(counts, [(HostStatus::Offline, 1), (HostStatus::Online, 4)]);
}

/// More stale hosts than one chunk: all go offline, each reported once,
/// and a fresh one stays online.
async fn many_stale_hosts_go_offline_in_chunks(h: &Harness) {
    let s = &h.store;
    for i in 0..1_100u32 {
        let mut rec = host(&format!("s{i:04}"), &format!("127.3.{}.{}", i / 250, i % 250 + 1), HostStatus::Online);
        rec.host.last_heartbeat_ms = Some(1_000);
        s.insert_host(&rec).await.unwrap();
    }
    let mut fresh = host("fresh", "127.4.0.1", HostStatus::Online);
    fresh.host.last_heartbeat_ms = Some(9_000);
    s.insert_host(&fresh).await.unwrap();
    let fence = leader(s, 10_000).await;
    let changed = s.mark_stale_offline(5_000, &fence, 10_000).await.unwrap();
    assert_eq!(changed.len(), 1_100);
    assert_eq!(changed.iter().collect::<HashSet<_>>().len(), 1_100, "each host once");
    let counts = s.count_hosts_by_status().await.unwrap();
    assert!(counts.contains(&(HostStatus::Offline, 1_100)) && counts.contains(&(HostStatus::Online, 1)), "{counts:?}");
    assert!(s.mark_stale_offline(5_000, &fence, 10_000).await.unwrap().is_empty());
}

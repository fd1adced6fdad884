//! Heartbeats without a MetaDB write per beat. On a Galera MetaDB every
//! commit is replicated to every node, and thousands of hosts beating
//! every two seconds would be thousands of replicated commits a second.
//!
//! So a beat that changes nothing is remembered here and written with all
//! the others this server received in one transaction per flush (a
//! fraction of the offline timeout, so the leader's offline detection,
//! which reads MetaDB, still sees every beat in time). A beat is written
//! at once when it matters: the host's first beat on this server, a host
//! that was offline, new facts, a new address, or a database or proxy
//! whose state changed. If this server dies, its agents move to another,
//! whose first beat from them is written in full; at most one flush of
//! beats is lost, well inside the offline timeout.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use atoll_api::agent::HeartbeatRequest;
use atoll_api::db::DbServerStatus;
use atoll_api::proxy::ProxyReport;
use atoll_core::time::now_ms;
use atoll_core::{DbId, HostId, UnixMs};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How long an agent's token, once checked against MetaDB, is trusted
/// from memory (a removed host or a new token is noticed within this).
const AUTH_FOR: Duration = Duration::from_secs(10);
/// An unchanged status is still written in full this often (its counters
/// move: committed transactions, connections), and only touched between.
const FULL_EVERY_MS: i64 = 5_000;
/// Facts whose stable part is unchanged are still written this often (for
/// their volatile readings: free memory and disk).
const FACTS_EVERY_MS: i64 = 300_000;

#[derive(Default)]
pub struct Beats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Hosts this server recorded in full and believes online.
    hosts: HashMap<HostId, Known>,
    auth: HashMap<HostId, (Option<String>, String, Instant)>,
    /// Beats to write at the next flush, with their latest time.
    pending: HashMap<HostId, UnixMs>,
    /// Last full write of each status: its signature and when.
    written: HashMap<(HostId, DbId), (String, UnixMs)>,
    touch_db: HashSet<(HostId, DbId)>,
    touch_proxies: HashSet<(HostId, DbId)>,
}

struct Known {
    address: String,
    agent_url: String,
    /// The last facts written: their signature and when.
    facts: Option<(String, UnixMs)>,
}

/// What a flush writes: beats, and unchanged statuses to mark fresh.
struct Batch {
    hosts: Vec<(HostId, UnixMs)>,
    db: Vec<(HostId, DbId)>,
    proxies: Vec<(HostId, DbId)>,
}

/// What must be written now; the rest waits for the flush.
pub struct Plan<'a> {
    /// The host row (status, address, facts) must be written.
    pub host: bool,
    pub db: Vec<&'a DbServerStatus>,
    pub proxies: Vec<&'a ProxyReport>,
}

/// The parts of a server's report that the platform acts on (routing,
/// health, the console's state): a change of any is written at once.
fn db_signature(s: &DbServerStatus) -> String {
    let w = s.wsrep.as_ref().map(|w| (w.ready, &w.cluster_status, w.local_state, w.cluster_size, &w.gcomm_uuid, &w.cluster_state_uuid));
    // A replica channel's ends and health (the channel controller acts on
    // them); not its positions, which move with every commit.
    let ch = s.replication.as_ref().and_then(|r| r.channel.as_ref()).map(|c| (&c.source, c.running(), c.sql_running, &c.last_error));
    format!(
        "{:?}|{}|{:?}|{}|{:?}|{:?}|{:?}|{w:?}|{ch:?}",
        s.state,
        s.desired_running,
        s.pid,
        s.restarts,
        s.last_exit,
        s.read_only,
        s.probe_error.is_some()
    )
}

/// A proxy's state and what it routes by (its table, writer, backends'
/// verdicts); its counters and probe times move on every report and are
/// left out.
fn proxy_signature(p: &ProxyReport) -> String {
    fn strip(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(k, _)| {
                    !(k.contains("connections")
                        || k.contains("refused")
                        || k.contains("switches")
                        || k.ends_with("age_s")
                        || k.starts_with("last_probe"))
                })
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
            serde_json::Value::Array(a) => a.iter().map(strip).collect(),
            other => other.clone(),
        }
    }
    format!("{:?}|{:?}|{}|{}", p.state, p.pid, p.restarts, p.status.as_ref().map(strip).unwrap_or_default())
}

impl Beats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent's name and token hash, from memory when checked lately.
    pub fn cached_auth(&self, id: HostId) -> Option<(Option<String>, String)> {
        let g = self.lock();
        g.auth.get(&id).filter(|(_, _, at)| at.elapsed() < AUTH_FOR).map(|(h, n, _)| (h.clone(), n.clone()))
    }

    pub fn remember_auth(&self, id: HostId, token_hash: Option<String>, name: String) {
        self.lock().auth.insert(id, (token_hash, name, Instant::now()));
    }

    /// A host that just registered here: its row is fresh, so its next
    /// beats can be batched at once.
    pub fn registered(&self, id: HostId, address: &str, agent_url: &str, facts: &atoll_core::HostFacts, now: UnixMs) {
        let mut g = self.lock();
        g.hosts.insert(id, Known { address: address.into(), agent_url: agent_url.into(), facts: Some((facts.stable_signature(), now)) });
        g.auth.remove(&id);
    }

    /// Whether this server holds the host's facts (from a beat or its
    /// registration); if not, it asks the agent for them.
    pub fn has_facts(&self, id: HostId) -> bool {
        self.lock().hosts.get(&id).is_some_and(|k| k.facts.is_some())
    }

    /// Forgets a host (refused token, removed host, not online any more):
    /// its next beat is checked and written in full.
    pub fn forget(&self, id: HostId) {
        let mut g = self.lock();
        g.hosts.remove(&id);
        g.auth.remove(&id);
        g.pending.remove(&id);
    }

    /// Splits a beat into what to write now and what to batch.
    pub fn plan<'a>(&self, beat: &'a HeartbeatRequest, now: UnixMs) -> Plan<'a> {
        let (id, db, proxies) = (beat.host_id, &beat.db, &beat.proxies);
        let mut g = self.lock();
        let known = g.hosts.get(&id).filter(|k| k.address == beat.address && k.agent_url == beat.agent_url);
        let facts_news = match (&beat.facts, known) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(f), Some(k)) => k.facts.as_ref().is_none_or(|(sig, at)| *sig != f.stable_signature() || now - at >= FACTS_EVERY_MS),
        };
        let host = known.is_none() || facts_news;
        if !host {
            g.pending.insert(id, now);
        }
        let g = &mut *g;
        let db = db.iter().filter(|s| is_news(&g.written, &mut g.touch_db, (id, s.id.clone()), db_signature(s), now)).collect();
        let proxies =
            proxies.iter().filter(|p| is_news(&g.written, &mut g.touch_proxies, (id, p.id.clone()), proxy_signature(p), now)).collect();
        Plan { host, db, proxies }
    }

    /// Records what was written in full.
    pub fn written(&self, beat: &HeartbeatRequest, plan: &Plan<'_>, now: UnixMs) {
        let id = beat.host_id;
        let mut g = self.lock();
        if plan.host {
            let facts = match &beat.facts {
                Some(f) => Some((f.stable_signature(), now)),
                None => g.hosts.get(&id).and_then(|k| k.facts.clone()),
            };
            g.hosts.insert(id, Known { address: beat.address.clone(), agent_url: beat.agent_url.clone(), facts });
            g.pending.remove(&id);
        }
        for s in &plan.db {
            g.written.insert((id, s.id.clone()), (db_signature(s), now));
        }
        for p in &plan.proxies {
            g.written.insert((id, p.id.clone()), (proxy_signature(p), now));
        }
    }

    fn take(&self) -> Batch {
        let mut g = self.lock();
        Batch { hosts: g.pending.drain().collect(), db: g.touch_db.drain().collect(), proxies: g.touch_proxies.drain().collect() }
    }
}

/// Whether a report must be written in full now: its signature changed,
/// or its last full write is [`FULL_EVERY_MS`] old. If not, it is queued
/// in `touch` to be marked fresh at the next flush.
fn is_news(
    written: &HashMap<(HostId, DbId), (String, UnixMs)>,
    touch: &mut HashSet<(HostId, DbId)>,
    key: (HostId, DbId),
    sig: String,
    now: UnixMs,
) -> bool {
    match written.get(&key) {
        Some((old, at)) if *old == sig && now - at < FULL_EVERY_MS => {
            touch.insert(key);
            false
        }
        _ => true,
    }
}

/// How often batched beats are written: a quarter of the offline timeout,
/// at most a second.
pub fn flush_every(state: &AppState) -> Duration {
    Duration::from_millis((state.config.offline_after_ms / 4).clamp(100, 1_000))
}

/// Writes the batched beats until `shutdown`, and once more after it.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let every = flush_every(&state);
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(every) => false,
        };
        if let Err(e) = flush(&state).await {
            tracing::warn!(error = %e, "cannot write batched heartbeats; the next flush tries again");
        }
        if stopping {
            return;
        }
    }
}

async fn flush(state: &AppState) -> atoll_store::Result<()> {
    let Batch { hosts, db, proxies } = state.beats.take();
    if !hosts.is_empty() {
        // One time for the batch: the latest beat, which is at most one
        // flush newer than the oldest.
        let at = hosts.iter().map(|(_, t)| *t).max().unwrap_or_else(now_ms);
        let ids: Vec<HostId> = hosts.iter().map(|(id, _)| *id).collect();
        for id in state.store.touch_heartbeats(&ids, at).await? {
            // Marked offline (or removed) meanwhile: write its next beat in
            // full, which brings it back online and says so.
            state.beats.forget(id);
        }
        metrics::counter!("atoll_heartbeats_batched_total").increment(ids.len() as u64);
    }
    let now = now_ms();
    state.store.touch_server_statuses(&db, now).await?;
    state.store.touch_proxy_statuses(&proxies, now).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use atoll_core::ServerState;

    use super::*;

    fn status(state: ServerState, probed_at_ms: UnixMs) -> DbServerStatus {
        DbServerStatus {
            id: DbId::new("c", "c-1"),
            state,
            desired_running: true,
            pid: Some(7),
            restarts: 0,
            last_exit: None,
            wsrep: None,
            read_only: Some(false),
            replication: None,
            probed_at_ms,
            probe_error: None,
        }
    }

    fn beat(id: HostId, address: &str, facts: bool, db: &[DbServerStatus]) -> HeartbeatRequest {
        HeartbeatRequest {
            host_id: id,
            address: address.into(),
            agent_url: format!("http://{address}:7070"),
            facts: facts.then(Default::default),
            db: db.to_vec(),
            proxies: Vec::new(),
            trusted_cas: Vec::new(),
        }
    }

    #[test]
    fn only_beats_that_change_something_are_written_at_once() {
        let beats = Beats::default();
        let id = HostId::new();
        let one = [status(ServerState::Synced, 1)];
        // The first beat on this server is written in full.
        let b = beat(id, "10.0.0.1", false, &one);
        let p = beats.plan(&b, 1_000);
        assert!(p.host);
        assert_eq!(p.db.len(), 1);
        beats.written(&b, &p, 1_000);
        // The same again (a newer probe time is no change): batched.
        let again = [status(ServerState::Synced, 2)];
        let b = beat(id, "10.0.0.1", false, &again);
        let p = beats.plan(&b, 2_000);
        assert!(!p.host && p.db.is_empty());
        let batch = beats.take();
        assert_eq!((batch.hosts, batch.db.len()), (vec![(id, 2_000)], 1));
        // A state change, new facts, a new address: written at once.
        let donor = [status(ServerState::Donor, 3)];
        assert_eq!(beats.plan(&beat(id, "10.0.0.1", false, &donor), 3_000).db.len(), 1);
        assert!(beats.plan(&beat(id, "10.0.0.1", true, &[]), 3_000).host, "the first facts");
        assert!(beats.plan(&beat(id, "10.0.0.9", false, &[]), 3_000).host);
        // An unchanged status is still written in full now and then.
        assert_eq!(beats.plan(&beat(id, "10.0.0.1", false, &again), 1_000 + FULL_EVERY_MS).db.len(), 1);
        // A proxy: a new routing table is written at once, new counters not.
        let proxy = |version: &str, conns: u64| ProxyReport {
            id: DbId::new("c", "c-proxy-z1"),
            state: atoll_api::proxy::ProxyState::Running,
            pid: Some(9),
            restarts: 0,
            status: Some(serde_json::json!({ "table_version": version, "rw_connections": conns, "table_age_s": conns })),
        };
        let mut b = beat(id, "10.0.0.1", false, &[]);
        b.proxies = vec![proxy("v1", 1)];
        let p = beats.plan(&b, 4_000);
        assert_eq!(p.proxies.len(), 1);
        beats.written(&b, &p, 4_000);
        b.proxies = vec![proxy("v1", 7)];
        assert!(beats.plan(&b, 4_100).proxies.is_empty(), "counters alone wait for the flush");
        b.proxies = vec![proxy("v2", 7)];
        assert_eq!(beats.plan(&b, 4_200).proxies.len(), 1, "a new table is written at once");
        // Facts: written when their stable part or the clock offset moved,
        // or every FACTS_EVERY_MS; a new free-memory reading alone waits.
        let mut b = beat(id, "10.0.0.1", true, &[]);
        let p = beats.plan(&b, 5_000);
        beats.written(&b, &p, 5_000);
        b.facts.as_mut().unwrap().memory_available_bytes = 12345;
        assert!(!beats.plan(&b, 6_000).host, "only a volatile reading changed");
        b.facts.as_mut().unwrap().clock_offset_ms = Some(400);
        assert!(beats.plan(&b, 6_000).host, "the clock offset moved");
        b.facts.as_mut().unwrap().clock_offset_ms = None;
        assert!(beats.plan(&b, 5_000 + FACTS_EVERY_MS).host, "and all facts now and then");
        // A forgotten host (marked offline meanwhile) is written in full.
        beats.forget(id);
        assert!(beats.plan(&beat(id, "10.0.0.1", false, &[]), 9_000).host);
    }
}

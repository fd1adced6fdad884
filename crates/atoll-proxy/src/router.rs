//! The proxy's shared state: the routing table in use, each backend's
//! probe result and connections, and the writer decision. Every change
//! (new table, probe result) goes through here, under one lock, so the
//! writer is decided in one place and connections to a backend that went
//! down are closed at once.
//!
//! A backend is down only when the proxy's own prober failed
//! `--down-after-probes` times in a row (or the node itself says it is
//! unfit). One failed probe, or one client's failed connect, is not
//! enough: it closed every connection to a healthy writer and made this
//! proxy leave it alone while the other proxies stayed, which the sticky
//! writer rule then kept that way. A client's failed connect only asks
//! the prober to look again at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use atoll_api::routing::{Backend, RoutingTable};
use atoll_core::UnixMs;
use atoll_core::time::now_ms;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::ProxyConfig;
use crate::select::{Choice, Probe, WriterPicker, pick_reader};
use crate::status::{BackendStatus, ProxyStatus};

/// Which port a client came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rw = 0,
    Ro = 1,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rw => "rw",
            Kind::Ro => "ro",
        }
    }
}

/// Where the table in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSource {
    None,
    Platform,
    StateFile,
}

/// Process-wide counters, rendered by hand on `/metrics` (a few atomics
/// are cheaper on the forwarding path than a metrics registry).
#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_total: [AtomicU64; 2],
    pub connections_current: [AtomicU64; 2],
    pub connections_refused: [AtomicU64; 2],
    /// Client to backend.
    pub bytes_in: AtomicU64,
    /// Backend to client.
    pub bytes_out: AtomicU64,
    pub writer_switches: AtomicU64,
    pub tables_applied: AtomicU64,
    /// Open client connections over both ports (for `--max-connections`).
    pub open: AtomicUsize,
    /// Refused because their address had `--max-connections-per-ip`.
    pub refused_per_ip: AtomicU64,
    /// Closed for not finishing the handshake in `--pre-auth-timeout-ms`.
    pub pre_auth_timeouts: AtomicU64,
    /// Closed after `--idle-timeout-s` without a statement.
    pub idle_timeouts: AtomicU64,
}

/// Per-backend counters that outlive a table change.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub connections: [AtomicU64; 2],
    pub probes_ok: AtomicU64,
    pub probes_failed: AtomicU64,
    /// Client connections this backend refused or did not greet in time.
    pub connect_failures: AtomicU64,
}

struct Slot {
    def: Backend,
    probe: Probe,
    since_ms: UnixMs,
    last_probe_ms: UnixMs,
    /// Cancelled (and replaced) to close the connections routed here.
    kill: [CancellationToken; 2],
    stats: Arc<BackendStats>,
    /// Stops this backend's prober.
    prober: CancellationToken,
    /// Results from an older prober are ignored.
    generation: u64,
    /// Failed probes in a row; the backend is down at `--down-after-probes`.
    failed_probes: u32,
    /// Wakes the prober to look now (a client could not connect).
    nudge: Arc<Notify>,
}

struct State {
    table: Option<Arc<RoutingTable>>,
    confirmed_ms: UnixMs,
    source: TableSource,
    slots: BTreeMap<String, Slot>,
    picker: WriterPicker,
    choice: Choice,
    writer: Option<String>,
    writer_since_ms: UnixMs,
    next_generation: u64,
}

/// A prober to start.
pub struct ProberSpec {
    pub name: String,
    /// Its results are ignored once a newer prober replaces it.
    pub generation: u64,
    pub backend: Backend,
    pub user: String,
    pub password: String,
    pub stop: CancellationToken,
    /// Notified when a client could not connect: probe at once.
    pub nudge: Arc<Notify>,
}

/// A connection's destination and what ends it.
pub struct Route {
    pub backend: Backend,
    pub kill: CancellationToken,
    pub stats: Arc<BackendStats>,
}

pub enum Decision {
    Go(Route),
    /// Planned writer move: wait for the next table.
    Hold(String),
    /// Not decided yet (no table, first probes pending): wait a little.
    Wait(String),
    Refuse(String),
}

pub struct Shared {
    pub cfg: ProxyConfig,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    pub metrics: Metrics,
    turn: AtomicUsize,
    /// Parent of every prober's token.
    pub probers: CancellationToken,
    /// Closes every client connection (end of the shutdown grace period).
    pub kill_all: CancellationToken,
    /// Open client connections per address (for `--max-connections-per-ip`);
    /// its own lock, taken once per connection, never with `state`'s.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// One client connection counted against its address; uncounted on drop.
pub struct IpSlot<'a> {
    shared: &'a Shared,
    ip: IpAddr,
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

fn same_health(a: &Probe, b: &Probe) -> bool {
    match (a, b) {
        (Probe::Down { .. }, Probe::Down { .. }) => true,
        _ => a == b,
    }
}

impl Shared {
    pub fn new(cfg: ProxyConfig) -> Self {
        let (changed, _) = watch::channel(0);
        Self {
            cfg,
            state: Mutex::new(State {
                table: None,
                confirmed_ms: 0,
                source: TableSource::None,
                slots: BTreeMap::new(),
                picker: WriterPicker::default(),
                choice: Choice::None,
                writer: None,
                writer_since_ms: now_ms(),
                next_generation: 1,
            }),
            changed,
            metrics: Metrics::default(),
            turn: AtomicUsize::new(0),
            probers: CancellationToken::new(),
            kill_all: CancellationToken::new(),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a connection from `ip`, or refuses it (returning how many
    /// that address has open) when it already has
    /// `--max-connections-per-ip`.
    pub fn enter_ip(&self, ip: IpAddr) -> Result<IpSlot<'_>, usize> {
        let ip = ip.to_canonical();
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.cfg.max_connections_per_ip {
            return Err(*n);
        }
        *n += 1;
        Ok(IpSlot { shared: self, ip })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half
        // changed in a way that matters more than stopping routing would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn table_version(&self) -> Option<String> {
        self.lock().table.as_ref().map(|t| t.version.clone())
    }

    /// Applies `table` (or only notes that the platform confirmed it);
    /// returns the probers to start, and whether the table changed.
    pub fn apply_table(&self, table: RoutingTable, source: TableSource, confirmed_ms: UnixMs) -> (bool, Vec<ProberSpec>) {
        let mut st = self.lock();
        st.confirmed_ms = confirmed_ms;
        if st.table.as_ref().is_some_and(|t| **t == table) {
            st.source = source;
            return (false, Vec::new());
        }
        let creds_changed =
            st.table.as_ref().is_none_or(|t| t.monitor_user != table.monitor_user || t.monitor_password != table.monitor_password);
        let mut start = Vec::new();
        // Backends gone from the table, or moved: close and forget.
        let keep: Vec<String> = st
            .slots
            .iter()
            .filter(|(n, s)| table.backends.iter().any(|b| &b.name == *n && b.address == s.def.address && b.port == s.def.port))
            .map(|(n, _)| n.clone())
            .collect();
        let dropped: Vec<String> = st.slots.keys().filter(|n| !keep.contains(n)).cloned().collect();
        for n in dropped {
            if let Some(s) = st.slots.remove(&n) {
                tracing::info!(backend = %n, "backend left the routing table (or moved); closing its connections");
                s.prober.cancel();
                s.kill.iter().for_each(CancellationToken::cancel);
            }
        }
        for b in &table.backends {
            let generation = st.next_generation;
            let exists = st.slots.contains_key(&b.name);
            if exists && !creds_changed {
                if let Some(s) = st.slots.get_mut(&b.name) {
                    s.def = b.clone();
                }
                continue;
            }
            st.next_generation += 1;
            let prober = self.probers.child_token();
            let nudge = st.slots.get(&b.name).map_or_else(|| Arc::new(Notify::new()), |s| s.nudge.clone());
            start.push(ProberSpec {
                name: b.name.clone(),
                generation,
                backend: b.clone(),
                user: table.monitor_user.clone(),
                password: table.monitor_password.clone(),
                stop: prober.clone(),
                nudge: nudge.clone(),
            });
            match st.slots.get_mut(&b.name) {
                Some(s) => {
                    s.prober.cancel();
                    s.prober = prober;
                    s.generation = generation;
                    s.failed_probes = 0;
                    s.def = b.clone();
                }
                None => {
                    st.slots.insert(
                        b.name.clone(),
                        Slot {
                            def: b.clone(),
                            probe: Probe::Unknown,
                            since_ms: now_ms(),
                            last_probe_ms: 0,
                            kill: [CancellationToken::new(), CancellationToken::new()],
                            stats: Arc::new(BackendStats::default()),
                            prober,
                            generation,
                            failed_probes: 0,
                            nudge,
                        },
                    );
                }
            }
        }
        tracing::info!(
            version = %table.version,
            writer = table.writer.as_deref().unwrap_or("-"),
            moving_to = table.moving_to.as_deref().unwrap_or("-"),
            backends = table.backends.len(),
            "routing table applied"
        );
        st.table = Some(Arc::new(table));
        st.source = source;
        self.metrics.tables_applied.fetch_add(1, Ordering::Relaxed);
        self.reevaluate(&mut st, "new routing table");
        drop(st);
        self.notify();
        (true, start)
    }

    /// A probe result from backend `name`'s prober of `generation`
    /// (results of a replaced prober are dropped). A failed probe changes
    /// nothing until it is the `--down-after-probes`th in a row; returns
    /// how many failed in a row, so the prober can look again sooner.
    pub fn report(&self, name: &str, generation: u64, probe: Probe) -> u32 {
        let mut st = self.lock();
        let Some(slot) = st.slots.get_mut(name) else { return 0 };
        if generation != slot.generation {
            return 0;
        }
        let now = now_ms();
        slot.last_probe_ms = now;
        let counter = if matches!(probe, Probe::Up { .. }) { &slot.stats.probes_ok } else { &slot.stats.probes_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Probe::Down { reason } = &probe {
            slot.failed_probes = slot.failed_probes.saturating_add(1);
            let need = self.cfg.down_after_probes;
            if slot.failed_probes < need && !matches!(slot.probe, Probe::Down { .. }) {
                tracing::info!(backend = %name, failed = slot.failed_probes, of = need, %reason, "probe failed; not down until {need} in a row");
                return slot.failed_probes;
            }
        } else {
            slot.failed_probes = 0;
        }
        let failed = slot.failed_probes;
        if same_health(&slot.probe, &probe) {
            slot.probe = probe;
            return failed;
        }
        let was_keepable = slot.probe.keepable();
        let old = std::mem::replace(&mut slot.probe, probe);
        slot.since_ms = now;
        if was_keepable && !slot.probe.keepable() {
            tracing::warn!(backend = %name, now = %slot.probe.describe(), "backend unfit; closing its connections");
            for k in &mut slot.kill {
                k.cancel();
                *k = CancellationToken::new();
            }
        } else if slot.probe.readable() {
            tracing::info!(backend = %name, was = %old.describe(), "backend healthy");
        } else {
            tracing::info!(backend = %name, now = %slot.probe.describe(), "backend state");
        }
        let why = format!("{name}: {}", slot.probe.describe());
        self.reevaluate(&mut st, &why);
        drop(st);
        self.notify();
        failed
    }

    /// A client's connect to `name` failed: counted, and its prober looks
    /// at once. Whether the backend is down is the prober's finding, not
    /// one client's (a full listen backlog, a port briefly refused).
    pub fn connect_failed(&self, name: &str) {
        if let Some(sl) = self.lock().slots.get(name) {
            sl.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            sl.nudge.notify_one();
        }
    }

    fn reevaluate(&self, st: &mut State, why: &str) {
        let Some(table) = st.table.clone() else { return };
        let slots = &st.slots;
        let choice = st.picker.update(&table, |n| slots.get(n).map(|s| &s.probe).unwrap_or(&Probe::Unknown));
        let writer = match &choice {
            Choice::Backend(n) => Some(n.clone()),
            Choice::Pending => st.writer.clone(),
            Choice::None => None,
        };
        st.choice = choice;
        if writer == st.writer {
            return;
        }
        if let Some(old) = &st.writer {
            // A writer that is still healthy (a planned move) keeps its
            // connections: they work, and closing them would fail the
            // statements in flight. An unfit one loses them at once.
            if let Some(s) = st.slots.get_mut(old).filter(|s| !s.probe.keepable_writer()) {
                let k = &mut s.kill[Kind::Rw as usize];
                k.cancel();
                *k = CancellationToken::new();
            }
            if writer.is_some() {
                self.metrics.writer_switches.fetch_add(1, Ordering::Relaxed);
            }
        }
        match &writer {
            Some(w) => tracing::info!(from = st.writer.as_deref().unwrap_or("-"), to = %w, because = %why, "writer changed"),
            None => tracing::warn!(from = st.writer.as_deref().unwrap_or("-"), because = %why, "no healthy writer"),
        }
        st.writer = writer;
        st.writer_since_ms = now_ms();
    }

    /// Where a new `kind` connection goes now. A reader skips `exclude`
    /// (backends this connection already failed to reach); the writer is
    /// the writer until the probes say otherwise.
    pub fn route(&self, kind: Kind, exclude: &[String]) -> Decision {
        let st = self.lock();
        let cluster = &self.cfg.cluster;
        let Some(table) = st.table.clone() else {
            return Decision::Wait(format!("atoll proxy: no routing table for cluster '{cluster}' yet: the platform has not answered"));
        };
        let choice = match kind {
            Kind::Rw => {
                if let Some(to) = &table.moving_to {
                    return Decision::Hold(to.clone());
                }
                st.choice.clone()
            }
            Kind::Ro => {
                let turn = self.turn.fetch_add(1, Ordering::Relaxed);
                pick_reader(
                    &table,
                    |n| st.slots.get(n).map(|s| &s.probe).unwrap_or(&Probe::Unknown),
                    |n| st.slots.get(n).map(|s| s.stats.connections[Kind::Ro as usize].load(Ordering::Relaxed)).unwrap_or(0),
                    self.cfg.zone.as_deref(),
                    turn,
                    exclude,
                )
            }
        };
        let what = if kind == Kind::Rw { "writer" } else { "reader" };
        match choice {
            Choice::Backend(n) => match st.slots.get(&n) {
                Some(s) => Decision::Go(Route { backend: s.def.clone(), kill: s.kill[kind as usize].clone(), stats: s.stats.clone() }),
                None => Decision::Refuse(format!("atoll proxy: cluster '{cluster}': backend {n} vanished")),
            },
            Choice::Pending => Decision::Wait(format!("atoll proxy: cluster '{cluster}' has no healthy {what} yet: first probes pending")),
            Choice::None => {
                let detail: Vec<String> = table
                    .backends
                    .iter()
                    .map(|b| {
                        let p = st.slots.get(&b.name).map(|s| s.probe.describe()).unwrap_or_default();
                        if kind == Kind::Ro && exclude.contains(&b.name) {
                            format!("{} connect failed ({p})", b.name)
                        } else {
                            format!("{} {p}", b.name)
                        }
                    })
                    .collect();
                let detail = if detail.is_empty() { "the routing table lists no server".to_string() } else { detail.join("; ") };
                Decision::Refuse(format!("atoll proxy: cluster '{cluster}' has no healthy {what}: {detail}"))
            }
        }
    }

    pub fn status(&self) -> ProxyStatus {
        let st = self.lock();
        let m = &self.metrics;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProxyStatus {
            cluster: self.cfg.cluster.clone(),
            table_version: st.table.as_ref().map(|t| t.version.clone()),
            table_age_s: st.table.as_ref().map(|_| now_ms().saturating_sub(st.confirmed_ms).max(0) as f64 / 1000.0),
            table_source: match st.source {
                TableSource::None => "none",
                TableSource::Platform => "platform",
                TableSource::StateFile => "state_file",
            }
            .into(),
            table_writer: st.table.as_ref().and_then(|t| t.writer.clone()),
            moving_to: st.table.as_ref().and_then(|t| t.moving_to.clone()),
            writer_in_use: st.writer.clone(),
            writer_since_unix_ms: st.writer_since_ms,
            backends: st
                .slots
                .values()
                .map(|s| BackendStatus {
                    name: s.def.name.clone(),
                    zone: s.def.zone.clone(),
                    address: s.def.address.clone(),
                    port: s.def.port,
                    probe: s.probe.kind(),
                    detail: s.probe.describe(),
                    readable: s.probe.readable(),
                    writable: s.probe.writable(),
                    since_unix_ms: s.since_ms,
                    last_probe_unix_ms: s.last_probe_ms,
                    rw_connections: load(&s.stats.connections[0]),
                    ro_connections: load(&s.stats.connections[1]),
                })
                .collect(),
            rw_connections: load(&m.connections_current[0]),
            ro_connections: load(&m.connections_current[1]),
            connections_total: load(&m.connections_total[0]) + load(&m.connections_total[1]),
            connections_refused: load(&m.connections_refused[0]) + load(&m.connections_refused[1]),
            writer_switches: load(&m.writer_switches),
        }
    }

    /// Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let s = self.status();
        let m = &self.metrics;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &s.cluster;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{{cluster=\"{c}\"{labels}}} {v}");
            }
        };
        let per_kind = |a: &[AtomicU64; 2]| vec![(",port=\"rw\"".into(), load(&a[0]) as f64), (",port=\"ro\"".into(), load(&a[1]) as f64)];
        family("atoll_proxy_connections", "gauge", "Open client connections.", per_kind(&m.connections_current));
        family("atoll_proxy_connections_total", "counter", "Client connections accepted.", per_kind(&m.connections_total));
        family(
            "atoll_proxy_connections_refused_total",
            "counter",
            "Client connections answered with an error packet.",
            per_kind(&m.connections_refused),
        );
        family("atoll_proxy_bytes_in_total", "counter", "Bytes from clients to backends.", vec![(String::new(), load(&m.bytes_in) as f64)]);
        family(
            "atoll_proxy_bytes_out_total",
            "counter",
            "Bytes from backends to clients.",
            vec![(String::new(), load(&m.bytes_out) as f64)],
        );
        family(
            "atoll_proxy_connections_closed_total",
            "counter",
            "Client connections the proxy closed: no finished handshake within --pre-auth-timeout-ms, or idle for --idle-timeout-s.",
            vec![
                (",reason=\"pre_auth_timeout\"".into(), load(&m.pre_auth_timeouts) as f64),
                (",reason=\"idle_timeout\"".into(), load(&m.idle_timeouts) as f64),
            ],
        );
        family(
            "atoll_proxy_connections_refused_per_ip_total",
            "counter",
            "Client connections refused because their address had --max-connections-per-ip open.",
            vec![(String::new(), load(&m.refused_per_ip) as f64)],
        );
        family("atoll_proxy_writer_switches_total", "counter", "Writer changes.", vec![(String::new(), load(&m.writer_switches) as f64)]);
        family(
            "atoll_proxy_routing_tables_total",
            "counter",
            "Routing tables applied.",
            vec![(String::new(), load(&m.tables_applied) as f64)],
        );
        family(
            "atoll_proxy_routing_table_age_seconds",
            "gauge",
            "Seconds since the platform last confirmed the table.",
            vec![(String::new(), s.table_age_s.unwrap_or(-1.0))],
        );
        let st = self.lock();
        let writer_ok =
            st.writer.as_deref().and_then(|w| st.slots.values().find(|sl| sl.def.name == w)).is_some_and(|sl| sl.probe.readable());
        family(
            "atoll_proxy_writer_healthy",
            "gauge",
            "1 when the proxy has a writer and its last probe found it Synced and ready.",
            vec![(String::new(), f64::from(u8::from(writer_ok)))],
        );
        let per_backend =
            |f: &dyn Fn(&Slot) -> f64| st.slots.values().map(|sl| (format!(",backend=\"{}\"", sl.def.name), f(sl))).collect::<Vec<_>>();
        family(
            "atoll_proxy_backend_up",
            "gauge",
            "1 when the last probe found the backend Synced and ready.",
            per_backend(&|sl| f64::from(u8::from(sl.probe.readable()))),
        );
        family(
            "atoll_proxy_backend_writer",
            "gauge",
            "1 for the writer in use.",
            per_backend(&|sl| f64::from(u8::from(st.writer.as_deref() == Some(&sl.def.name)))),
        );
        family("atoll_proxy_probes_ok_total", "counter", "Successful probes.", per_backend(&|sl| load(&sl.stats.probes_ok) as f64));
        family("atoll_proxy_probes_failed_total", "counter", "Failed probes.", per_backend(&|sl| load(&sl.stats.probes_failed) as f64));
        family(
            "atoll_proxy_backend_connect_failures_total",
            "counter",
            "Client connections the backend refused or did not greet in time.",
            per_backend(&|sl| load(&sl.stats.connect_failures) as f64),
        );
        family(
            "atoll_proxy_backend_connections",
            "gauge",
            "Open client connections per backend.",
            per_backend(&|sl| (load(&sl.stats.connections[0]) + load(&sl.stats.connections[1])) as f64),
        );
        drop(st);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use atoll_core::ServerState;

    use super::*;

    const UP: Probe = Probe::Up { state: ServerState::Synced, ready: true, read_only: false };

    fn down() -> Probe {
        Probe::Down { reason: "connection refused".into() }
    }

    /// A proxy with a table naming `a` (then `b`, `c`), and its probers' generations.
    fn shared(down_after_probes: u32) -> (Shared, HashMap<String, u64>) {
        let any = "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!());
        let mut cfg = ProxyConfig::new(vec!["http://127.0.0.1:1".into()], "t".into(), "c".into(), any, any);
        cfg.down_after_probes = down_after_probes;
        let shared = Shared::new(cfg);
        let backend =
            |n: &str| Backend { name: n.into(), zone: "z".into(), address: "127.0.0.1".into(), port: 3306, state: ServerState::Synced };
        let table = RoutingTable {
            cluster: "c".into(),
            version: "1".into(),
            writer: Some("a".into()),
            moving_to: None,
            backends: vec![backend("a"), backend("b"), backend("c")],
            monitor_user: "m".into(),
            monitor_password: "p".into(),
            servers: Vec::new(),
        };
        let (_, probers) = shared.apply_table(table, TableSource::Platform, 0);
        let generations = probers.iter().map(|p| (p.name.clone(), p.generation)).collect();
        (shared, generations)
    }

    fn writer(s: &Shared) -> Option<String> {
        s.status().writer_in_use
    }

    fn rw_kill(s: &Shared) -> CancellationToken {
        match s.route(Kind::Rw, &[]) {
            Decision::Go(r) => r.kill,
            _ => panic!("no writer route"),
        }
    }

    /// Finding 9: one client's failed connect marked the writer down, so
    /// this proxy left it (and closed its connections) while the others
    /// stayed; one failed probe did the same.
    #[test]
    fn leaving_the_writer_takes_several_failed_probes_in_a_row() {
        let (s, g) = shared(3);
        for n in ["a", "b", "c"] {
            s.report(n, g[n], UP);
        }
        assert_eq!(writer(&s).as_deref(), Some("a"));
        let kill = rw_kill(&s);
        s.connect_failed("a");
        assert_eq!(writer(&s).as_deref(), Some("a"), "one client's failed connect");
        assert!(!kill.is_cancelled(), "the writer's connections were closed");
        assert_eq!(s.report("a", g["a"], down()), 1);
        assert_eq!(s.report("a", g["a"], down()), 2);
        assert_eq!(writer(&s).as_deref(), Some("a"), "two failed probes");
        // A success in between starts the count again.
        assert_eq!(s.report("a", g["a"], UP), 0);
        s.report("a", g["a"], down());
        s.report("a", g["a"], down());
        assert_eq!(writer(&s).as_deref(), Some("a"));
        assert!(!kill.is_cancelled());
        assert_eq!(s.report("a", g["a"], down()), 3);
        assert_eq!(writer(&s).as_deref(), Some("b"), "three in a row");
        assert!(kill.is_cancelled(), "a writer found down loses its connections");
        let metrics = s.render_metrics();
        assert!(metrics.contains("atoll_proxy_backend_connect_failures_total{cluster=\"c\",backend=\"a\"} 1"), "{metrics}");
        assert!(metrics.contains("atoll_proxy_probes_failed_total{cluster=\"c\",backend=\"a\"} 5"), "{metrics}");
    }

    #[test]
    fn a_node_that_says_it_is_unfit_is_believed_at_once() {
        let (s, g) = shared(3);
        for n in ["a", "b", "c"] {
            s.report(n, g[n], UP);
        }
        s.report("a", g["a"], Probe::Up { state: ServerState::NonPrimary, ready: false, read_only: false });
        assert_eq!(writer(&s).as_deref(), Some("b"));
    }

    #[test]
    fn a_backend_never_seen_up_is_down_after_the_same_count() {
        let (s, g) = shared(2);
        s.report("b", g["b"], UP);
        s.report("c", g["c"], UP);
        s.report("a", g["a"], down());
        assert!(matches!(s.route(Kind::Rw, &[]), Decision::Wait(_)), "the table's writer is not given up on one probe");
        s.report("a", g["a"], down());
        assert_eq!(writer(&s).as_deref(), Some("b"));
        // Results of a replaced prober do not count.
        assert_eq!(s.report("b", g["b"] + 100, down()), 0);
    }

    #[test]
    fn connections_per_address_are_capped_and_given_back() {
        let (mut s, _) = shared(3);
        s.cfg.max_connections_per_ip = 2;
        let ip: IpAddr = "10.0.0.1".parse().unwrap_or_else(|_| unreachable!());
        let v6: IpAddr = "::ffff:10.0.0.1".parse().unwrap_or_else(|_| unreachable!());
        let first = s.enter_ip(ip);
        let second = s.enter_ip(v6);
        assert!(first.is_ok() && second.is_ok());
        assert_eq!(s.enter_ip(ip).err(), Some(2), "the same address, as IPv4 or mapped IPv6");
        assert!(s.enter_ip("10.0.0.2".parse().unwrap_or_else(|_| unreachable!())).is_ok(), "another address");
        drop(first);
        assert!(s.enter_ip(ip).is_ok());
    }
}

//! Which backend a new connection goes to: pure rules, so they can be
//! tested without sockets and so every proxy that sees the same probes
//! makes the same choice.

use std::collections::BTreeSet;

use atoll_api::routing::RoutingTable;
use atoll_core::ServerState;
use serde::{Deserialize, Serialize};

/// What the proxy's own probe last saw on a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Not probed yet (new table, new backend).
    Unknown,
    Up {
        /// The engine's reading of the node's replication status. A
        /// backend that becomes a donor (serving a joiner) is still in the
        /// primary component and committing, so it keeps what it has (the
        /// writer role, its connections); it is only not chosen anew.
        state: ServerState,
        ready: bool,
        read_only: bool,
    },
    /// The probe failed, its connection broke, or a client connect failed.
    Down { reason: String },
}

impl Probe {
    /// Synced and ready: safe to read from.
    pub fn readable(&self) -> bool {
        matches!(self, Probe::Up { state: ServerState::Synced, ready: true, .. })
    }

    /// Readable and not `read_only`: safe to write to.
    pub fn writable(&self) -> bool {
        matches!(self, Probe::Up { state: ServerState::Synced, ready: true, read_only: false })
    }

    /// Synced or a donor, and ready: its open connections stay.
    pub fn keepable(&self) -> bool {
        matches!(self, Probe::Up { state, ready: true, .. } if state.in_primary())
    }

    /// Keepable and not `read_only`: a writer in use stays the writer.
    pub fn keepable_writer(&self) -> bool {
        self.keepable() && matches!(self, Probe::Up { read_only: false, .. })
    }

    /// Known to be unfit to go on as the writer (as opposed to not known yet).
    fn known_unfit_writer(&self) -> bool {
        !matches!(self, Probe::Unknown) && !self.keepable_writer()
    }

    /// Why a backend is not used, for error messages and `/status`.
    pub fn describe(&self) -> String {
        match self {
            Probe::Unknown => "not probed yet".into(),
            Probe::Down { reason } => format!("down: {reason}"),
            Probe::Up { state, ready, read_only } => {
                let mut why = Vec::new();
                if *state != ServerState::Synced {
                    why.push(format!("{state} (not synced)"));
                }
                if !ready {
                    why.push("not ready for queries".to_string());
                }
                if *read_only {
                    why.push("read_only=ON".to_string());
                }
                if why.is_empty() { "healthy".into() } else { why.join(", ") }
            }
        }
    }

    pub fn kind(&self) -> ProbeKind {
        match self {
            Probe::Unknown => ProbeKind::Unknown,
            Probe::Up { .. } if self.readable() => ProbeKind::Up,
            Probe::Up { .. } => ProbeKind::Unfit,
            Probe::Down { .. } => ProbeKind::Down,
        }
    }
}

/// A probe result in one word (in `/status` and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Unknown,
    /// Synced and ready.
    Up,
    /// Answers, but is not Synced or not ready.
    Unfit,
    Down,
}

/// The outcome of a choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Backend(String),
    /// A backend that would come first is not probed yet: wait for its
    /// first probe rather than pick another one and move away again.
    Pending,
    /// Nothing is fit.
    None,
}

/// The writer rule with its memory. The writer is `table.writer` if our
/// probe says it is writable, else the first writable backend in the
/// table's order (the platform orders by writer preference, so every
/// proxy falls back to the same node). Sticky: once we moved away from a
/// writer, we do not go back to it until a newer table names a writer,
/// so writes never ping-pong between nodes while one flaps.
///
/// The sticky rule has an end: when no backend it allows is fit (every
/// node has been left, or the ones not left are down or unfit), the
/// picker forgets what it left and chooses as a proxy just started with
/// this table would: the first writable backend in the table's order.
/// That depends only on the table and the probes, so proxies with
/// different histories (one started later from the state file, one that
/// saw a flap the others did not) pick the same node while the platform
/// is away, and from then on are in the same state. Without it, three
/// writer kills in a row (each node restarted and Synced again) left
/// every proxy refusing writes with three healthy nodes until the
/// platform returned. The price: after such a restart, a node earlier in
/// the table's order that becomes writable again takes the writes back,
/// as it would for a freshly started proxy (all proxies move alike).
#[derive(Debug, Default, Clone)]
pub struct WriterPicker {
    version: Option<String>,
    avoided: BTreeSet<String>,
    in_use: Option<String>,
}

impl WriterPicker {
    pub fn in_use(&self) -> Option<&str> {
        self.in_use.as_deref()
    }

    /// Re-evaluates after a new table or a probe change; returns the choice
    /// and remembers it.
    pub fn update<'a>(&mut self, table: &RoutingTable, probe_of: impl Fn(&str) -> &'a Probe) -> Choice {
        if self.version.as_deref() != Some(table.version.as_str()) {
            self.version = Some(table.version.clone());
            if table.writer.is_some() {
                // A table that names a writer is the platform's decision:
                // it ends our own failover, unless the table itself says
                // that writer is not Synced.
                self.avoided = Self::avoided_by(table);
            }
        }
        if let Some(cur) = &self.in_use {
            let listed = table.backends.iter().any(|b| &b.name == cur);
            if !listed || probe_of(cur).known_unfit_writer() {
                self.avoided.insert(cur.clone());
            }
        }
        match self.first_fit(table, &probe_of, true) {
            Choice::None => {}
            c => return c,
        }
        // Nothing the sticky rule allows: start over as a proxy that has
        // just started with this table would, so every proxy ends up in
        // the same state whatever it left before.
        self.avoided = Self::avoided_by(table);
        match self.first_fit(table, &probe_of, true) {
            Choice::None => self.first_fit(table, &probe_of, false),
            c => c,
        }
    }

    /// What a table alone makes us avoid: the writer it names, when it
    /// says that writer is not in the primary component.
    fn avoided_by(table: &RoutingTable) -> BTreeSet<String> {
        table.writer.iter().filter(|w| !table.backends.iter().any(|b| &b.name == *w && b.state.in_primary())).cloned().collect()
    }

    /// The first candidate (`table.writer`, then the backends in order)
    /// that can take writes, skipping the avoided ones when `sticky`;
    /// `Pending` when one before it is not probed yet.
    fn first_fit<'a>(&mut self, table: &RoutingTable, probe_of: &impl Fn(&str) -> &'a Probe, sticky: bool) -> Choice {
        let candidates =
            table.writer.iter().chain(table.backends.iter().map(|b| &b.name)).filter(|n| table.backends.iter().any(|b| &b.name == *n));
        for name in candidates {
            if sticky && self.avoided.contains(name) {
                continue;
            }
            let p = probe_of(name);
            let in_use = self.in_use.as_deref() == Some(name.as_str());
            if p.writable() || (in_use && p.keepable_writer()) {
                self.in_use = Some(name.clone());
                return Choice::Backend(name.clone());
            }
            if matches!(p, Probe::Unknown) {
                return Choice::Pending;
            }
        }
        self.in_use = None;
        Choice::None
    }
}

/// A reader: among readable backends not in `exclude`, those in `zone`
/// if any, else all; the one with the fewest connections, ties broken
/// round-robin by `turn`.
pub fn pick_reader<'a>(
    table: &RoutingTable,
    probe_of: impl Fn(&str) -> &'a Probe,
    connections_of: impl Fn(&str) -> u64,
    zone: Option<&str>,
    turn: usize,
    exclude: &[String],
) -> Choice {
    let usable: Vec<_> = table.backends.iter().filter(|b| !exclude.contains(&b.name) && probe_of(&b.name).readable()).collect();
    if usable.is_empty() {
        let waiting = table.backends.iter().any(|b| !exclude.contains(&b.name) && matches!(probe_of(&b.name), Probe::Unknown));
        return if waiting { Choice::Pending } else { Choice::None };
    }
    let local: Vec<_> = usable.iter().filter(|b| zone.is_some_and(|z| b.zone == z)).copied().collect();
    let pool = if local.is_empty() { usable } else { local };
    let least = pool.iter().map(|b| connections_of(&b.name)).min().unwrap_or(0);
    let tied: Vec<_> = pool.iter().filter(|b| connections_of(&b.name) == least).collect();
    Choice::Backend(tied[turn % tied.len()].name.clone())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use atoll_api::routing::Backend;

    use super::*;
    use atoll_core::ServerState;

    fn table(version: &str, writer: Option<&str>) -> RoutingTable {
        RoutingTable {
            cluster: "c".into(),
            version: version.into(),
            writer: writer.map(str::to_string),
            moving_to: None,
            backends: ["a", "b", "c"]
                .iter()
                .enumerate()
                .map(|(i, n)| Backend {
                    name: n.to_string(),
                    zone: format!("z{}", i + 1),
                    address: format!("127.0.0.{}", i + 1),
                    port: 3306,
                    state: ServerState::Synced,
                })
                .collect(),
            monitor_user: "m".into(),
            monitor_password: "p".into(),
            servers: Vec::new(),
        }
    }

    const UP: Probe = Probe::Up { state: ServerState::Synced, ready: true, read_only: false };

    fn probes(list: &[(&str, Probe)]) -> HashMap<String, Probe> {
        list.iter().map(|(n, p)| (n.to_string(), p.clone())).collect()
    }

    fn pick(w: &mut WriterPicker, t: &RoutingTable, p: &HashMap<String, Probe>) -> Choice {
        w.update(t, |n| p.get(n).unwrap_or(&Probe::Unknown))
    }

    fn down() -> Probe {
        Probe::Down { reason: "gone".into() }
    }

    #[test]
    fn health_rules() {
        assert!(UP.writable());
        let ro = Probe::Up { state: ServerState::Synced, ready: true, read_only: true };
        assert!(ro.readable() && !ro.writable());
        assert!(!Probe::Up { state: ServerState::Donor, ready: true, read_only: false }.readable());
        assert!(!Probe::Up { state: ServerState::Synced, ready: false, read_only: false }.readable());
        assert_eq!(
            Probe::Up { state: ServerState::Joining, ready: false, read_only: true }.describe(),
            "joining (not synced), not ready for queries, read_only=ON"
        );
    }

    #[test]
    fn writer_then_fallback_in_table_order() {
        let t = table("1", Some("b"));
        let mut w = WriterPicker::default();
        let mut p = probes(&[("a", UP), ("b", UP), ("c", UP)]);
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("b".into()));
        p.insert("b".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()));
    }

    #[test]
    fn a_writer_that_becomes_a_donor_stays_the_writer() {
        let donor = Probe::Up { state: ServerState::Donor, ready: true, read_only: false };
        assert!(donor.keepable_writer() && !donor.writable() && !donor.readable());
        let mut w = WriterPicker::default();
        let mut p = probes(&[("a", UP), ("b", UP), ("c", UP)]);
        let mut t = table("1", Some("a"));
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()));
        p.insert("a".into(), donor.clone());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()), "our own probe sees it donate");
        t.version = "2".into();
        t.backends[0].state = ServerState::Donor;
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()), "and so does the platform");
        // A donor is not chosen anew.
        let mut fresh = WriterPicker::default();
        assert_eq!(pick(&mut fresh, &table("3", None), &p), Choice::Backend("b".into()));
    }

    #[test]
    fn sticky_until_a_newer_table_names_a_writer() {
        let t = table("1", Some("a"));
        let mut w = WriterPicker::default();
        let mut p = probes(&[("a", UP), ("b", UP), ("c", UP)]);
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()));
        p.insert("a".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("b".into()));
        // a comes back: writes stay on b.
        p.insert("a".into(), UP);
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("b".into()));
        // b goes too: c, not back to a while c is there.
        p.insert("b".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("c".into()));
        p.insert("a".into(), down());
        p.insert("c".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::None);
        // A newer table naming a (Synced) ends the failover.
        p.insert("a".into(), UP);
        assert_eq!(pick(&mut w, &table("2", Some("a")), &p), Choice::Backend("a".into()));
    }

    /// The platform is away and the writer is killed three times in a
    /// row, each node restarted and Synced again before the next kill:
    /// the third kill leaves every node avoided, and the writer is then
    /// the first Synced node in the table's order. That choice does not
    /// depend on history: a proxy started only then (from the state file)
    /// makes it too, and the two keep agreeing on later kills.
    #[test]
    fn every_node_left_falls_back_to_the_first_synced_in_table_order() {
        let t = table("1", Some("a"));
        let mut seen_all = WriterPicker::default();
        let mut p = probes(&[("a", UP), ("b", UP), ("c", UP)]);
        assert_eq!(pick(&mut seen_all, &t, &p), Choice::Backend("a".into()));
        for (killed, next) in [("a", "b"), ("b", "c")] {
            p.insert(killed.into(), down());
            assert_eq!(pick(&mut seen_all, &t, &p), Choice::Backend(next.into()));
            p.insert(killed.into(), UP);
            assert_eq!(pick(&mut seen_all, &t, &p), Choice::Backend(next.into()), "no return to {killed}");
        }
        p.insert("c".into(), down());
        assert_eq!(pick(&mut seen_all, &t, &p), Choice::Backend("a".into()), "every node left: the first Synced in order");
        let mut late = WriterPicker::default();
        assert_eq!(pick(&mut late, &t, &p), Choice::Backend("a".into()));
        // c comes back: writes stay on a (no ping-pong after the fallback).
        p.insert("c".into(), UP);
        assert_eq!(pick(&mut seen_all, &t, &p), Choice::Backend("a".into()));
        assert_eq!(pick(&mut late, &t, &p), Choice::Backend("a".into()));
        // Later kills: the same node for both.
        for (killed, next) in [("a", "b"), ("b", "c"), ("c", "a")] {
            p.insert(killed.into(), down());
            assert_eq!(pick(&mut seen_all, &t, &p), Choice::Backend(next.into()), "{killed} killed");
            assert_eq!(pick(&mut late, &t, &p), Choice::Backend(next.into()), "{killed} killed");
            p.insert(killed.into(), UP);
            assert_eq!(pick(&mut seen_all, &t, &p), Choice::Backend(next.into()));
            assert_eq!(pick(&mut late, &t, &p), Choice::Backend(next.into()));
        }
    }

    /// Not every node left, but the ones not left are down: the fallback
    /// too, rather than refusing writes until a dead node returns.
    #[test]
    fn nodes_not_left_but_down_fall_back_too() {
        let t = table("1", Some("a"));
        let mut w = WriterPicker::default();
        let mut p = probes(&[("a", UP), ("b", UP), ("c", down())]);
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()));
        p.insert("a".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("b".into()));
        p.insert("a".into(), UP);
        p.insert("b".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()));
        // The fallback waits for a node not probed yet that comes first.
        let mut fresh = WriterPicker::default();
        let p = probes(&[("b", UP), ("c", UP)]);
        assert_eq!(pick(&mut fresh, &t, &p), Choice::Pending);
    }

    /// The fallback never picks a node that cannot take writes.
    #[test]
    fn fallback_skips_unfit_nodes() {
        let t = table("1", Some("a"));
        let mut w = WriterPicker::default();
        let ro = Probe::Up { state: ServerState::Synced, ready: true, read_only: true };
        let joining = Probe::Up { state: ServerState::Joining, ready: false, read_only: false };
        let mut p = probes(&[("a", UP), ("b", UP), ("c", UP)]);
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("a".into()));
        p.insert("a".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("b".into()));
        p.insert("b".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("c".into()));
        p.insert("a".into(), ro);
        p.insert("b".into(), joining);
        p.insert("c".into(), down());
        assert_eq!(pick(&mut w, &t, &p), Choice::None);
        p.insert("b".into(), UP);
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("b".into()));
    }

    #[test]
    fn a_newer_table_naming_an_unsynced_writer_keeps_it_avoided() {
        let mut w = WriterPicker::default();
        let mut p = probes(&[("a", UP), ("b", UP), ("c", UP)]);
        assert_eq!(pick(&mut w, &table("1", Some("a")), &p), Choice::Backend("a".into()));
        p.insert("a".into(), down());
        assert_eq!(pick(&mut w, &table("1", Some("a")), &p), Choice::Backend("b".into()));
        p.insert("a".into(), UP);
        let mut t = table("2", Some("a"));
        t.backends[0].state = ServerState::Joining;
        assert_eq!(pick(&mut w, &t, &p), Choice::Backend("b".into()));
    }

    #[test]
    fn unknown_writer_is_waited_for_not_skipped() {
        let mut w = WriterPicker::default();
        let p = probes(&[("b", UP)]);
        assert_eq!(pick(&mut w, &table("1", Some("a")), &p), Choice::Pending);
    }

    #[test]
    fn read_only_node_is_never_the_writer() {
        let mut w = WriterPicker::default();
        let p = probes(&[("a", Probe::Up { state: ServerState::Synced, ready: true, read_only: true }), ("b", UP)]);
        assert_eq!(pick(&mut w, &table("1", Some("a")), &p), Choice::Backend("b".into()));
    }

    #[test]
    fn no_writer_in_table_falls_back_to_order() {
        let mut w = WriterPicker::default();
        let p = probes(&[("a", down()), ("b", UP), ("c", UP)]);
        assert_eq!(pick(&mut w, &table("1", None), &p), Choice::Backend("b".into()));
    }

    #[test]
    fn readers_prefer_the_zone_then_balance() {
        let t = table("1", Some("a"));
        let p = probes(&[("a", UP), ("b", UP), ("c", UP)]);
        let conns: HashMap<&str, u64> = [("a", 0), ("b", 5), ("c", 0)].into();
        let probe = |n: &str| p.get(n).unwrap_or(&Probe::Unknown);
        let count = |n: &str| conns.get(n).copied().unwrap_or(0);
        assert_eq!(pick_reader(&t, probe, count, Some("z2"), 0, &[]), Choice::Backend("b".into()));
        // Without a zone: least connections, ties in turn.
        assert_eq!(pick_reader(&t, probe, count, None, 0, &[]), Choice::Backend("a".into()));
        assert_eq!(pick_reader(&t, probe, count, None, 1, &[]), Choice::Backend("c".into()));
        // The zone's backend is excluded (connect failed): other zones.
        assert_eq!(pick_reader(&t, probe, count, Some("z2"), 0, &["b".into()]), Choice::Backend("a".into()));
    }

    #[test]
    fn readers_never_go_to_unfit_nodes() {
        let t = table("1", Some("a"));
        let p = probes(&[("a", down()), ("b", Probe::Up { state: ServerState::Donor, ready: true, read_only: false }), ("c", down())]);
        assert_eq!(pick_reader(&t, |n| p.get(n).unwrap_or(&Probe::Unknown), |_| 0, Some("z2"), 0, &[]), Choice::None);
        let p = probes(&[("a", down())]);
        assert_eq!(pick_reader(&t, |n| p.get(n).unwrap_or(&Probe::Unknown), |_| 0, None, 0, &[]), Choice::Pending);
    }
}

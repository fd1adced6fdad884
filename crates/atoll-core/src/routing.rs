//! Who takes a cluster's writes. One writer at a time avoids Galera's
//! certification conflicts; the rules here are shared by the platform
//! (which names the writer) and the proxies (which fall back on their own
//! probes before the platform notices), so both pick the same server.

use crate::ServerState;

/// Servers ordered by writer preference: the writer first, then the others
/// in the cluster's order, starting after the writer. A proxy whose writer
/// fails takes the first healthy entry, and so does the platform.
pub fn preference_order<'a>(writer: Option<&str>, servers: &[&'a str]) -> Vec<&'a str> {
    let start = writer.and_then(|w| servers.iter().position(|s| *s == w)).unwrap_or(0);
    servers.iter().cycle().skip(start).take(servers.len()).copied().collect()
}

/// The writer a cluster should have: the current one while it is Synced or
/// serving a state transfer as a donor (stable: a writer that donates to a
/// rejoining node, and a recovered former writer, keep things as they
/// are), else the first Synced server in preference order, else the
/// current one (nobody can take writes; changing would only churn).
pub fn next_writer<'a>(current: Option<&'a str>, servers: &[(&'a str, ServerState)]) -> Option<&'a str> {
    let synced = |name: &str| servers.iter().any(|(n, s)| *n == name && *s == ServerState::Synced);
    let keeps = |name: &str| servers.iter().any(|(n, s)| *n == name && s.in_primary());
    if let Some(w) = current.filter(|w| keeps(w)) {
        return Some(w);
    }
    let names: Vec<&str> = servers.iter().map(|(n, _)| *n).collect();
    preference_order(current, &names).into_iter().find(|n| synced(n)).or(current).or(names.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServerState::*;

    #[test]
    fn order_starts_at_the_writer_and_wraps() {
        let s = ["a", "b", "c"];
        assert_eq!(preference_order(Some("b"), &s), ["b", "c", "a"]);
        assert_eq!(preference_order(None, &s), ["a", "b", "c"]);
        assert_eq!(preference_order(Some("gone"), &s), ["a", "b", "c"]);
    }

    #[test]
    fn writer_is_stable_and_fails_over_in_order() {
        let all = [("a", Synced), ("b", Synced), ("c", Synced)];
        assert_eq!(next_writer(Some("b"), &all), Some("b"));
        assert_eq!(next_writer(None, &all), Some("a"));
        let b_donates = [("a", Synced), ("b", Donor), ("c", Joining)];
        assert_eq!(next_writer(Some("b"), &b_donates), Some("b"), "a writer serving a state transfer stays the writer");
        assert_eq!(next_writer(None, &[("a", Donor), ("b", Synced)]), Some("b"), "a donor is not chosen anew");
        let b_down = [("a", Synced), ("b", Crashed), ("c", Synced)];
        assert_eq!(next_writer(Some("b"), &b_down), Some("c"), "the next one after the writer, not the first");
        let only_a = [("a", Synced), ("b", Joining), ("c", Unknown)];
        assert_eq!(next_writer(Some("b"), &only_a), Some("a"));
        let none = [("a", NonPrimary), ("b", Crashed), ("c", Stopped)];
        assert_eq!(next_writer(Some("b"), &none), Some("b"), "no churn when nobody can write");
        assert_eq!(next_writer(None, &none), Some("a"));
        assert_eq!(next_writer(None, &[]), None);
    }
}

//! A node that was in the group and now stays out of it: Galera voted it
//! inconsistent (a write set it could not apply, e.g. on a full disk) or
//! the group evicted it. Its `mariadbd` keeps running, disconnected, and
//! nothing but a restart brings it back (with a state transfer). The
//! fault campaign found such nodes waiting for an operator; the agent is
//! that operator now.

use std::time::{Duration, Instant};

use atoll_api::db::WsrepStatus;

/// How long a node may stay out before it is restarted: longer than any
/// transient state seen while a node joins or a group re-forms.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// What to do about the process now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Ask it to shut down; its supervision restarts it.
    Terminate,
    /// It did not shut down within another grace period.
    Kill,
}

/// Follows one process's probes (a new process starts afresh).
#[derive(Debug, Default)]
pub(crate) struct Dropout {
    /// It was in a primary component at least once.
    joined: bool,
    out_since: Option<Instant>,
    terminated: bool,
}

impl Dropout {
    pub(crate) fn observe(&mut self, w: &WsrepStatus, now: Instant) -> Verdict {
        // A partitioned node keeps its group connection (`non-Primary`);
        // only a node with none left is out for good.
        if w.cluster_status != "Disconnected" {
            self.joined |= w.cluster_status == "Primary";
            self.out_since = None;
            self.terminated = false;
            return Verdict::Keep;
        }
        if !self.joined {
            return Verdict::Keep;
        }
        let since = *self.out_since.get_or_insert(now);
        match (now.duration_since(since) >= GRACE, self.terminated) {
            (false, _) => Verdict::Keep,
            (true, false) => {
                self.terminated = true;
                self.out_since = Some(now);
                Verdict::Terminate
            }
            (true, true) => Verdict::Kill,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(cluster_status: &str) -> WsrepStatus {
        WsrepStatus { cluster_status: cluster_status.into(), ..Default::default() }
    }

    #[test]
    fn a_node_voted_out_is_restarted_after_the_grace_and_killed_if_it_stays() {
        let mut d = Dropout::default();
        let t0 = Instant::now();
        // Starting up: disconnected before it ever joined, left alone.
        assert_eq!(d.observe(&status("Disconnected"), t0), Verdict::Keep);
        assert_eq!(d.observe(&status("Disconnected"), t0 + 3 * GRACE), Verdict::Keep);
        assert_eq!(d.observe(&status("Primary"), t0 + 3 * GRACE), Verdict::Keep);
        // Partitioned: still connected to the group machinery.
        assert_eq!(d.observe(&status("non-Primary"), t0 + 10 * GRACE), Verdict::Keep);
        let out = t0 + 11 * GRACE;
        assert_eq!(d.observe(&status("Disconnected"), out), Verdict::Keep);
        assert_eq!(d.observe(&status("Disconnected"), out + GRACE / 2), Verdict::Keep);
        assert_eq!(d.observe(&status("Disconnected"), out + GRACE), Verdict::Terminate);
        assert_eq!(d.observe(&status("Disconnected"), out + GRACE + GRACE / 2), Verdict::Keep);
        assert_eq!(d.observe(&status("Disconnected"), out + 2 * GRACE), Verdict::Kill);
    }

    #[test]
    fn a_node_back_in_the_group_is_left_alone() {
        let mut d = Dropout::default();
        let t0 = Instant::now();
        d.observe(&status("Primary"), t0);
        d.observe(&status("Disconnected"), t0);
        assert_eq!(d.observe(&status("Primary"), t0 + GRACE / 2), Verdict::Keep);
        assert_eq!(d.observe(&status("Disconnected"), t0 + GRACE), Verdict::Keep, "the clock starts again");
    }
}

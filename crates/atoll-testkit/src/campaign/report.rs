//! What the campaign measured, per fault and per kind, as text for the
//! console and Markdown for bench/RESULTS.md.
//!
//! Definitions (all on the workload's clock):
//! - outage: the longest time after the injection during which no writer
//!   committed anything, counted until the first commit after recovery
//!   (the gap that straddles the injection counts from the injection);
//! - worst client gap: the same for each writer alone, the worst of them
//!   (what one application connection saw, failing over between proxies);
//! - recovery: from the injection until the system is healthy again
//!   (see `health.rs`), holds included.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::faults::Kind;

/// The longest gap between `from` and the first commit at or after
/// `until`, over sorted commit times; `None` while writes have not resumed
/// after `until`.
pub fn longest_gap(from: u64, until: u64, commits: &[u64]) -> Option<u64> {
    let mut prev = from;
    let mut worst = 0;
    for &t in commits.iter().filter(|t| **t >= from) {
        worst = worst.max(t - prev);
        prev = t;
        if t >= until {
            return Some(worst);
        }
    }
    None
}

#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub n: usize,
    pub kind: Kind,
    pub what: String,
    /// Seconds into the campaign.
    pub at_s: f64,
    pub outage_ms: u64,
    pub client_gap_ms: u64,
    pub recovery_ms: u64,
    pub operator: Option<String>,
    pub task: Option<String>,
    pub acked: usize,
    pub lost: usize,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub profile: String,
    pub seed: u64,
    pub wall_s: f64,
    pub faults: Vec<FaultRecord>,
    /// Kinds not injected, and why.
    pub skipped: Vec<(Kind, String)>,
    pub self_test: String,
    pub acked_ids: usize,
    pub acked_transfers: usize,
    pub unknown: u64,
    pub lost: usize,
    pub final_check: String,
    /// Why the campaign failed, if it did.
    pub failure: Option<String>,
    pub logs: Option<String>,
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.lost == 0 && self.faults.iter().all(|f| f.error.is_none() && f.lost == 0)
    }

    /// Per kind: injected, survived, outage worst/median, recovery worst/median.
    pub fn by_kind(&self) -> String {
        let mut kinds: BTreeMap<Kind, Vec<&FaultRecord>> = BTreeMap::new();
        for f in &self.faults {
            kinds.entry(f.kind).or_default().push(f);
        }
        let mut s = String::from(
            "| fault kind | injected | survived | outage worst / median (s) | worst client gap (s) | recovery worst / median (s) |\n|---|--:|--:|--:|--:|--:|\n",
        );
        for (kind, fs) in &kinds {
            let survived = fs.iter().filter(|f| f.error.is_none() && f.lost == 0).count();
            let mut outage: Vec<u64> = fs.iter().map(|f| f.outage_ms).collect();
            let mut rec: Vec<u64> = fs.iter().map(|f| f.recovery_ms).collect();
            let gap = fs.iter().map(|f| f.client_gap_ms).max().unwrap_or(0);
            let (ow, rw) = (outage.iter().max().copied().unwrap_or(0), rec.iter().max().copied().unwrap_or(0));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} / {:.2} | {:.2} | {:.1} / {:.1} |",
                kind.label(),
                fs.len(),
                survived,
                ow as f64 / 1000.0,
                median(&mut outage) as f64 / 1000.0,
                gap as f64 / 1000.0,
                rw as f64 / 1000.0,
                median(&mut rec) as f64 / 1000.0
            );
        }
        for (kind, why) in &self.skipped {
            let _ = writeln!(s, "| {} | skipped: {why} | | | | |", kind.label());
        }
        s
    }

    /// One line per fault.
    pub fn fault_lines(&self) -> String {
        let mut s = String::from(
            "| # | at (s) | fault | outage (s) | client gap (s) | recovery (s) | acks checked | lost | notes |\n|--:|--:|---|--:|--:|--:|--:|--:|---|\n",
        );
        for f in &self.faults {
            let notes = [f.operator.clone(), f.task.clone(), f.error.clone()].into_iter().flatten().collect::<Vec<_>>().join("; ");
            let _ = writeln!(
                s,
                "| {} | {:.1} | {} | {:.2} | {:.2} | {:.1} | {} | {} | {} |",
                f.n,
                f.at_s,
                f.what,
                f.outage_ms as f64 / 1000.0,
                f.client_gap_ms as f64 / 1000.0,
                f.recovery_ms as f64 / 1000.0,
                f.acked,
                f.lost,
                notes
            );
        }
        s
    }

    pub fn summary(&self) -> String {
        let survived = self.faults.iter().filter(|f| f.error.is_none() && f.lost == 0).count();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "- Profile `{}`, seed {} (replay the schedule with `ATOLL_CAMPAIGN_SEED={}`), wall time {:.0} s",
            self.profile, self.seed, self.seed, self.wall_s
        );
        let _ = writeln!(s, "- Faults injected: **{}**, survived: **{survived}**", self.faults.len());
        let _ = writeln!(
            s,
            "- Acknowledged writes checked: **{}** ({} ids, {} transfers), lost: **{}**; writes with unknown outcome (error or timeout, not counted): {}",
            self.acked_ids + self.acked_transfers,
            self.acked_ids,
            self.acked_transfers,
            self.lost,
            self.unknown
        );
        let _ = writeln!(s, "- {}", self.self_test);
        let _ = writeln!(s, "- Final check: {}", self.final_check);
        let mut operator: BTreeMap<String, usize> = BTreeMap::new();
        for f in &self.faults {
            if let Some(o) = &f.operator {
                // "operator: WHAT (task ID)": counted by what.
                let what = o.split(": ").last().unwrap_or(o).split(" (task").next().unwrap_or(o);
                *operator.entry(format!("{} → {what}", f.kind.label())).or_default() += 1;
            }
        }
        for (what, n) in &operator {
            let _ = writeln!(s, "- Recovered only by an operator step: {what}: {n}");
        }
        let tasks: Vec<&str> = self.faults.iter().filter_map(|f| f.task.as_deref()).collect();
        if !tasks.is_empty() {
            let resumed = tasks.iter().filter(|t| t.contains("retry")).count();
            let _ = writeln!(
                s,
                "- Planned writer moves running when a fault landed: {}, finished: {}, resumed after a retry: {resumed}",
                tasks.len(),
                tasks.len() - resumed
            );
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(s, "- **FAILED**: {f}");
        }
        if let Some(l) = &self.logs {
            let _ = writeln!(s, "- Logs kept in {l}");
        }
        s
    }

    /// The whole report as Markdown.
    pub fn markdown(&self) -> String {
        format!("{}\n{}\n<details><summary>Every fault</summary>\n\n{}\n</details>\n", self.summary(), self.by_kind(), self.fault_lines())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outage_runs_from_the_injection_to_the_first_commit_after_recovery() {
        // Injected at 100, healthy at 900; commits resume at 1000.
        let commits = [50, 120, 150, 1000, 1010];
        assert_eq!(longest_gap(100, 900, &commits), Some(850));
        // No commit after recovery yet: not known.
        assert_eq!(longest_gap(100, 900, &[120, 150]), None);
        // Writes never stopped.
        assert_eq!(longest_gap(0, 30, &[10, 20, 30, 40]), Some(10));
    }
}

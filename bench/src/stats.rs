//! Latency summaries and what /proc says about the server process.

use std::time::Duration;

use anyhow::{Context, Result};

/// Request latencies in microseconds, plus how many requests failed.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    pub micros: Vec<u64>,
    pub errors: u64,
    /// The first failure, so a broken run says why.
    pub first_error: Option<String>,
}

impl Samples {
    pub fn record(&mut self, took: Duration) {
        self.micros.push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Sorted once, so every percentile after that is a lookup.
    pub fn summary(mut self, wall: Duration) -> Summary {
        self.micros.sort_unstable();
        let ok = self.micros.len() as u64;
        Summary {
            ok,
            errors: self.errors,
            first_error: self.first_error,
            per_s: ok as f64 / wall.as_secs_f64().max(1e-9),
            p50_ms: percentile(&self.micros, 0.50),
            p95_ms: percentile(&self.micros, 0.95),
            p99_ms: percentile(&self.micros, 0.99),
            max_ms: percentile(&self.micros, 1.0),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentile of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

/// The server's memory, threads and CPU time at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcSnapshot {
    pub rss_kib: u64,
    /// Peak RSS so far (`VmHWM`).
    pub hwm_kib: u64,
    pub threads: u64,
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
}

/// Linux's USER_HZ, which /proc/PID/stat counts in; 100 on every mainstream
/// architecture (reading it properly would need libc's sysconf).
const TICKS_PER_S: f64 = 100.0;

impl ProcSnapshot {
    pub fn read(pid: u32) -> Result<ProcSnapshot> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
        Ok(ProcSnapshot {
            rss_kib: status_field(&status, "VmRSS")?,
            hwm_kib: status_field(&status, "VmHWM")?,
            threads: status_field(&status, "Threads")?,
            cpu_ticks: cpu_ticks(&stat)?,
        })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }

    /// CPU seconds the server spent between `earlier` and `self`.
    pub fn cpu_s_since(&self, earlier: &ProcSnapshot) -> f64 {
        self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / TICKS_PER_S
    }
}

/// `VmRSS:     12345 kB` → 12345.
fn status_field(status: &str, key: &str) -> Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no {key} in /proc/PID/status"))
}

/// utime + stime: fields 14 and 15 of /proc/PID/stat, counted after the
/// `(comm)` field, which may itself contain spaces.
fn cpu_ticks(stat: &str) -> Result<u64> {
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state), so field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).context("malformed /proc/PID/stat");
    Ok(field(14)? + field(15)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s = Samples::default();
        for ms in 1..=100 {
            s.record(Duration::from_millis(ms));
        }
        let sum = s.summary(Duration::from_secs(1));
        assert_eq!((sum.p50_ms, sum.p99_ms, sum.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(sum.ok, 100);
    }

    #[test]
    fn parses_proc_files() {
        assert_eq!(status_field("Name:\tatoll\nVmRSS:\t   2048 kB\n", "VmRSS").ok(), Some(2048));
        let stat = "42 (atoll server) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20";
        assert_eq!(cpu_ticks(stat).ok(), Some(300));
    }
}

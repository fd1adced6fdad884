//! Synthetic exporters: what node_exporter and mysqld_exporter give for a
//! database host, as a fixed list of series whose values are a pure
//! function of (target, series, tick). Pure, so every consumer sees the
//! same data: the targets process serves it, the ingest benchmark appends
//! it directly, and the history written for Prometheus' backfill holds the
//! very values MonitorDB stored.
//!
//! The mix matters for bytes per sample: Gorilla compression costs almost
//! nothing for a constant, a few bits for a slowly moving gauge, and a
//! dozen or more for a counter moving by irregular amounts, the common
//! case of a busy server.

use std::fmt::Write as _;

/// How a series' value moves from one tick (one scrape interval) to the
/// next.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer counter gaining `rate` a tick on average (0.1..1.9 times
    /// it each tick: never decreasing, never regular).
    IntCounter { rate: f64 },
    /// A counter of seconds, kept to 1/100 s as node_exporter prints them.
    FloatCounter { rate: f64 },
    /// A gauge wandering around `center` by up to `amp` of it over
    /// `period` ticks, with noise, rounded to `quantum`.
    Gauge { center: f64, amp: f64, period: f64, quantum: f64 },
    /// Never changes: settings, sizes, info metrics.
    Const(f64),
}

/// One metric family of the exporter, with its series' label sets.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: &'static str,
    pub help: String,
    pub series: Vec<Series>,
}

/// One series of a family, the same on every target apart from its seed.
#[derive(Debug, Clone)]
pub struct Series {
    /// Exporter labels (no job/instance: scrapers add those).
    pub labels: Vec<(String, String)>,
    pub kind: Kind,
    /// Sample line up to the value: `name{a="1"} `.
    pub prefix: String,
}

/// The series every synthetic target exposes, in exposition order.
#[derive(Debug, Clone)]
pub struct Exporter {
    pub families: Vec<Family>,
}

/// How far apart the synthetic hosts' boot times are, in ticks.
const BOOT_SPREAD_TICKS: f64 = 500_000.0;

impl Exporter {
    /// About `n` series: node_exporter's CPU, memory, network, disk and
    /// file-system families, mysqld_exporter's status counters, InnoDB and
    /// wsrep gauges, variables (constants) and per-table row counts.
    pub fn new(n: usize) -> Exporter {
        let mut b = Builder::default();
        let modes = [
            ("idle", 8.0),
            ("user", 0.9),
            ("system", 0.35),
            ("iowait", 0.12),
            ("irq", 0.0),
            ("softirq", 0.04),
            ("steal", 0.01),
            ("nice", 0.0),
        ];
        b.family("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.");
        for cpu in 0..4 {
            for (mode, rate) in modes {
                let kind = if rate == 0.0 { Kind::Const(0.0) } else { Kind::FloatCounter { rate } };
                b.series(&[("cpu", &cpu.to_string()), ("mode", mode)], kind);
            }
        }
        for i in 0..40 {
            let name = format!("node_memory_{}_bytes", MEMORY[i % MEMORY.len()]);
            let name = if i < MEMORY.len() { name } else { format!("node_memory_x{i}_bytes") };
            b.family(&name, "gauge", "Memory information field.");
            let kind = if i % 4 == 0 {
                Kind::Const(8_589_934_592.0)
            } else {
                Kind::Gauge { center: 1.0e9 + i as f64 * 3.0e7, amp: 0.05, period: 4_320.0, quantum: 4096.0 }
            };
            b.series(&[], kind);
        }
        for dir in ["receive", "transmit"] {
            for (what, rate) in [("bytes", 2.5e6), ("packets", 9_000.0), ("errs", 0.0), ("drop", 0.02)] {
                b.family(&format!("node_network_{dir}_{what}_total"), "counter", "Network device statistic.");
                for (dev, scale) in [("eth0", 1.0), ("eth1", 0.3), ("lo", 0.05)] {
                    let kind = if rate == 0.0 { Kind::Const(0.0) } else { Kind::IntCounter { rate: rate * scale } };
                    b.series(&[("device", dev)], kind);
                }
            }
        }
        for (what, rate) in [
            ("reads_completed", 300.0),
            ("writes_completed", 1_800.0),
            ("read_bytes", 4.0e6),
            ("written_bytes", 2.6e7),
            ("io_time_seconds", 0.0),
        ] {
            b.family(&format!("node_disk_{what}_total"), "counter", "Disk statistic.");
            for dev in ["vda", "vdb"] {
                let kind = if what == "io_time_seconds" { Kind::FloatCounter { rate: 1.7 } } else { Kind::IntCounter { rate } };
                b.series(&[("device", dev)], kind);
            }
        }
        for what in ["size", "avail", "free", "files", "files_free"] {
            b.family(&format!("node_filesystem_{what}_bytes"), "gauge", "Filesystem statistic.");
            for (mount, size) in [("/", 4.0e10), ("/boot", 1.0e9), ("/var/lib/mysql", 2.0e11)] {
                let kind = match what {
                    "size" => Kind::Const(size),
                    "files" => Kind::Const(size / 16_384.0),
                    "files_free" => Kind::Gauge { center: size / 20_000.0, amp: 0.001, period: 8_640.0, quantum: 1.0 },
                    _ => Kind::Gauge { center: size * 0.4, amp: 0.01, period: 8_640.0, quantum: 4096.0 },
                };
                b.series(&[("mountpoint", mount)], kind);
            }
        }
        for (name, center) in [("node_load1", 0.8), ("node_load5", 0.7), ("node_load15", 0.6)] {
            b.family(name, "gauge", "Load average.");
            b.series(&[], Kind::Gauge { center, amp: 0.6, period: 360.0, quantum: 0.01 });
        }
        for (name, rate) in [("node_context_switches_total", 48_000.0), ("node_intr_total", 31_000.0), ("node_forks_total", 40.0)] {
            b.family(name, "counter", "Kernel statistic.");
            b.series(&[], Kind::IntCounter { rate });
        }
        b.family("mysql_global_status_commands_total", "counter", "Total number of executed MySQL commands.");
        for i in 0..150 {
            let command = COMMANDS.get(i).map_or_else(|| format!("com_x{i}"), |c| format!("com_{c}"));
            // A few busy commands; most move rarely or never.
            let rate = match i {
                0..=4 => 4_000.0 / (i + 1) as f64,
                5..=29 => 3.0,
                30..=79 => 0.05,
                _ => 0.0,
            };
            let kind = if rate == 0.0 { Kind::Const(0.0) } else { Kind::IntCounter { rate } };
            b.series(&[("command", &command)], kind);
        }
        b.family("mysql_global_status_handlers_total", "counter", "Total number of executed MySQL handlers.");
        for i in 0..20 {
            b.series(&[("handler", &format!("h{i}"))], Kind::IntCounter { rate: 20_000.0 / (i + 1) as f64 });
        }
        for i in 0..80 {
            let (kind_name, kind) = if i % 2 == 0 {
                ("counter", Kind::IntCounter { rate: 50.0 * (i + 1) as f64 })
            } else {
                ("gauge", Kind::Gauge { center: 1.0e5 * (i + 1) as f64, amp: 0.02, period: 1_440.0, quantum: 1.0 })
            };
            b.family(&format!("mysql_global_status_innodb_s{i}"), kind_name, "Generic InnoDB status.");
            b.series(&[], kind);
        }
        for i in 0..40 {
            let kind = match i % 4 {
                0 => Kind::IntCounter { rate: 1_200.0 },
                1 => Kind::Gauge { center: 0.002, amp: 0.5, period: 360.0, quantum: 1e-6 },
                2 => Kind::Const(3.0),
                _ => Kind::IntCounter { rate: 0.01 },
            };
            b.family(&format!("mysql_global_status_wsrep_s{i}"), "untyped", "Generic Galera status.");
            b.series(&[], kind);
        }
        for i in 0..20 {
            b.family(&format!("mysql_global_status_threads_g{i}"), "gauge", "Generic thread gauge.");
            b.series(&[], Kind::Gauge { center: 40.0 + i as f64, amp: 0.3, period: 720.0, quantum: 1.0 });
        }
        for i in 0..300 {
            b.family(&format!("mysql_global_variables_v{i:03}"), "gauge", "Generic gauge metric from SHOW GLOBAL VARIABLES.");
            let value = match i % 5 {
                0 => 1.0,
                1 => 0.0,
                2 => 134_217_728.0,
                3 => 151.0,
                _ => 28_800.0,
            };
            b.series(&[], Kind::Const(value));
        }
        b.family("mysql_info_schema_table_rows", "gauge", "The estimated number of rows in the table.");
        let mut t = 0;
        while b.count < n {
            b.series(&[("schema", "app"), ("table", &format!("t{t:04}"))], Kind::IntCounter { rate: 0.2 * (t % 7) as f64 });
            t += 1;
        }
        let mut families = b.families;
        // Only the first `n` series, families left empty dropped.
        let mut left = n;
        for f in &mut families {
            f.series.truncate(left);
            left -= f.series.len();
        }
        families.retain(|f| !f.series.is_empty());
        Exporter { families }
    }

    pub fn len(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// Every series with its index (the seed's second half).
    pub fn series(&self) -> impl Iterator<Item = (usize, &Family, &Series)> {
        self.families.iter().flat_map(|f| f.series.iter().map(move |s| (f, s))).enumerate().map(|(i, (f, s))| (i, f, s))
    }

    /// The text a scrape of `target` at `tick` answers.
    pub fn render(&self, target: usize, tick: i64, out: &mut String) {
        let mut i = 0;
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", f.name, f.help, f.name, f.kind);
            for s in &f.series {
                out.push_str(&s.prefix);
                push_value(out, value(s.kind, seed(target, i), tick));
                out.push('\n');
                i += 1;
            }
        }
    }
}

/// Appends `v` as exporters print it: integers without a fraction.
pub fn push_value(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A stable seed per (target, series).
pub fn seed(target: usize, series: usize) -> u64 {
    mix((target as u64) << 32 | series as u64)
}

/// splitmix64's finaliser: a good 64-bit hash of a counter.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a seed and a tick.
fn unit(seed: u64, tick: i64) -> f64 {
    (mix(seed ^ (tick as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 11) as f64 / (1u64 << 53) as f64
}

/// The value of a series at `tick` (Unix time / scrape interval).
pub fn value(kind: Kind, seed: u64, tick: i64) -> f64 {
    let phase = (seed >> 11) as f64 / (1u64 << 53) as f64;
    match kind {
        Kind::IntCounter { rate } => {
            let t = tick as f64 - boot_tick(seed);
            (rate * (t + 0.9 * unit(seed, tick))).floor().max(0.0)
        }
        Kind::FloatCounter { rate } => {
            let t = tick as f64 - boot_tick(seed);
            (rate * (t + 0.9 * unit(seed, tick)) * 100.0).floor().max(0.0) / 100.0
        }
        Kind::Gauge { center, amp, period, quantum } => {
            let wave = (std::f64::consts::TAU * (tick as f64 / period + phase)).sin();
            let noise = unit(seed, tick) - 0.5;
            let v = center * (1.0 + amp * (0.8 * wave + 0.2 * noise));
            (v / quantum).round() * quantum
        }
        Kind::Const(v) => v,
    }
}

/// When the series' host booted, in ticks: one to two `BOOT_SPREAD_TICKS`
/// (2-4 months) before mid-2026, so counters hold months' worth.
fn boot_tick(seed: u64) -> f64 {
    const NOW_TICK: f64 = 179_000_000.0;
    NOW_TICK - BOOT_SPREAD_TICKS * (1.0 + (seed & 0xffff) as f64 / 65_536.0)
}

const MEMORY: [&str; 12] =
    ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached", "Active", "Inactive", "Dirty", "Slab", "Shmem", "Mapped"];

const COMMANDS: [&str; 30] = [
    "select",
    "insert",
    "update",
    "delete",
    "commit",
    "begin",
    "set_option",
    "show_status",
    "show_variables",
    "replace",
    "rollback",
    "admin_commands",
    "show_tables",
    "show_databases",
    "stmt_execute",
    "stmt_prepare",
    "stmt_close",
    "change_db",
    "show_fields",
    "insert_select",
    "delete_multi",
    "update_multi",
    "create_table",
    "drop_table",
    "alter_table",
    "lock_tables",
    "unlock_tables",
    "flush",
    "kill",
    "load",
];

#[derive(Default)]
struct Builder {
    families: Vec<Family>,
    count: usize,
}

impl Builder {
    fn family(&mut self, name: &str, kind: &'static str, help: &str) {
        self.families.push(Family { name: name.to_string(), kind, help: help.to_string(), series: Vec::new() });
    }

    fn series(&mut self, labels: &[(&str, &str)], kind: Kind) {
        let Some(f) = self.families.last_mut() else { return };
        let labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut prefix = f.name.clone();
        if !labels.is_empty() {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = write!(prefix, "{{{}}}", inner.join(","));
        }
        prefix.push(' ');
        f.series.push(Series { labels, kind, prefix });
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exporter_has_the_size_asked_and_parses() {
        let e = Exporter::new(1000);
        assert_eq!(e.len(), 1000);
        let mut text = String::new();
        e.render(3, 179_000_123, &mut text);
        let samples = atoll_monitor::expo::lines(&text).filter(|l| matches!(l, Ok(atoll_monitor::expo::Line::Sample { .. }))).count();
        assert_eq!(samples, 1000);
        assert!(atoll_monitor::expo::lines(&text).all(|l| l.is_ok()));
        assert_eq!(Exporter::new(100).len(), 100);
    }

    #[test]
    fn counters_never_go_down_and_values_are_stable() {
        for (i, _, s) in Exporter::new(1000).series() {
            let sd = seed(7, i);
            let mut prev = f64::MIN;
            for tick in 179_000_000..179_000_200 {
                let v = value(s.kind, sd, tick);
                assert_eq!(v.to_bits(), value(s.kind, sd, tick).to_bits());
                if matches!(s.kind, Kind::IntCounter { .. } | Kind::FloatCounter { .. }) {
                    assert!(v >= prev, "series {i} went down at {tick}");
                }
                prev = v;
            }
        }
    }
}

//! The host's metrics in Prometheus text format (`GET /agent/v1/metrics`),
//! read from /proc and the filesystems at scrape time: CPU time by mode,
//! load, memory and swap, space per data mount, I/O per disk, traffic per
//! NIC, and the clock offset the agent measured against the platform; and
//! for each database server it runs, its status counters (statements by
//! kind, connections, slow queries, InnoDB, Galera), labelled by cluster
//! and server. Parsing is pure and tested on captured text.

use std::collections::HashMap;
use std::fmt::Write;

use atoll_core::Mount;

use crate::facts::read;

/// /proc/stat counts in USER_HZ, which the kernel fixes at 100 for every
/// architecture it exports it on, whatever its internal tick.
const USER_HZ: f64 = 100.0;
/// /proc/diskstats counts 512-byte sectors, whatever the device's own size.
const SECTOR: u64 = 512;

/// Renders every host metric now. `clock_offset_ms` is the agent's last
/// measurement (agent minus server), when it has one.
pub(crate) fn render(mounts: &[Mount], clock_offset_ms: Option<i64>, dbs: &[DbStatus]) -> String {
    let mut out = Out::default();
    if let Some(cpu) = read("/proc/stat").as_deref().and_then(parse_stat_cpu) {
        out.family("atoll_host_cpu_seconds_total", "counter", "CPU time of all cores together, by mode");
        for (mode, s) in cpu {
            out.sample("atoll_host_cpu_seconds_total", &[("mode", mode)], s);
        }
    }
    if let Some((l1, l5, l15)) = read("/proc/loadavg").as_deref().and_then(parse_loadavg) {
        for (name, v, help) in [
            ("atoll_host_load1", l1, "Load average over 1 minute"),
            ("atoll_host_load5", l5, "Load average over 5 minutes"),
            ("atoll_host_load15", l15, "Load average over 15 minutes"),
        ] {
            out.family(name, "gauge", help);
            out.sample(name, &[], v);
        }
    }
    if let Some(mem) = read("/proc/meminfo").map(|t| crate::facts::parse_meminfo(&t)) {
        for (name, key, help) in [
            ("atoll_host_memory_total_bytes", "MemTotal", "Physical memory"),
            ("atoll_host_memory_available_bytes", "MemAvailable", "Memory available to new work without swapping"),
            ("atoll_host_swap_total_bytes", "SwapTotal", "Swap space"),
            ("atoll_host_swap_free_bytes", "SwapFree", "Unused swap space"),
        ] {
            if let Some(v) = mem.get(key) {
                out.family(name, "gauge", help);
                out.sample(name, &[], *v as f64);
            }
        }
    }
    out.family("atoll_host_filesystem_size_bytes", "gauge", "Size of each data mount's filesystem");
    for m in mounts {
        out.sample("atoll_host_filesystem_size_bytes", &[("mount", &m.path), ("device", &m.device)], m.total_bytes as f64);
    }
    out.family("atoll_host_filesystem_free_bytes", "gauge", "Space left on each data mount for unprivileged users");
    for m in mounts {
        out.sample("atoll_host_filesystem_free_bytes", &[("mount", &m.path), ("device", &m.device)], m.free_bytes as f64);
    }
    // Alert rules compare one series with a threshold; the ratio saves
    // them dividing two.
    out.family(
        "atoll_host_filesystem_used_ratio",
        "gauge",
        "Share of each data mount's filesystem not available to unprivileged users (0 to 1)",
    );
    for m in mounts.iter().filter(|m| m.total_bytes > 0) {
        let used = 1.0 - m.free_bytes as f64 / m.total_bytes as f64;
        out.sample("atoll_host_filesystem_used_ratio", &[("mount", &m.path), ("device", &m.device)], used.clamp(0.0, 1.0));
    }
    if let Some(disks) = read("/proc/diskstats").as_deref().map(parse_diskstats) {
        let series: [Series<DiskStat, f64>; 5] = [
            ("atoll_host_disk_reads_total", "Reads completed", |d| d.reads as f64),
            ("atoll_host_disk_read_bytes_total", "Bytes read", |d| (d.read_sectors * SECTOR) as f64),
            ("atoll_host_disk_writes_total", "Writes completed", |d| d.writes as f64),
            ("atoll_host_disk_written_bytes_total", "Bytes written", |d| (d.write_sectors * SECTOR) as f64),
            ("atoll_host_disk_io_seconds_total", "Time the device had I/O in flight", |d| d.io_ms as f64 / 1000.0),
        ];
        for (name, help, value) in series {
            out.family(name, "counter", help);
            for d in &disks {
                out.sample(name, &[("device", &d.name)], value(d));
            }
        }
    }
    if let Some(nics) = read("/proc/net/dev").as_deref().map(parse_net_dev) {
        let series: [Series<NicStat, u64>; 6] = [
            ("atoll_host_network_receive_bytes_total", "Bytes received", |n| n.rx_bytes),
            ("atoll_host_network_transmit_bytes_total", "Bytes sent", |n| n.tx_bytes),
            ("atoll_host_network_receive_packets_total", "Packets received", |n| n.rx_packets),
            ("atoll_host_network_transmit_packets_total", "Packets sent", |n| n.tx_packets),
            ("atoll_host_network_receive_errors_total", "Receive errors and drops", |n| n.rx_errors),
            ("atoll_host_network_transmit_errors_total", "Transmit errors and drops", |n| n.tx_errors),
        ];
        for (name, help, value) in series {
            out.family(name, "counter", help);
            for n in &nics {
                out.sample(name, &[("device", &n.name)], value(n) as f64);
            }
        }
    }
    if let Some(ms) = clock_offset_ms {
        out.family("atoll_host_clock_offset_seconds", "gauge", "This host's clock minus the platform server's, as last measured");
        out.sample("atoll_host_clock_offset_seconds", &[], ms as f64 / 1000.0);
    }
    for (id, reading) in dbs {
        db_metrics(&mut out, id, reading.as_ref().ok());
    }
    out.text()
}

/// A database server's global status and latency, or why they could not
/// be read.
pub(crate) type DbStatus = (atoll_core::DbId, Result<DbReading, String>);

pub(crate) struct DbReading {
    pub status: HashMap<String, String>,
    pub latency: Option<atoll_engine::metrics::Histogram>,
}

fn db_metrics(out: &mut Out, id: &atoll_core::DbId, reading: Option<&DbReading>) {
    let status = reading.map(|r| &r.status);
    let base = [("cluster", id.cluster.as_str()), ("server", id.name.as_str())];
    out.family("atoll_db_up", "gauge", "1 when the agent could read the server's status, else 0");
    out.sample("atoll_db_up", &base, if status.is_some() { 1.0 } else { 0.0 });
    // Always present (0 for a server that is down), so that "not Synced"
    // fires for a dead server as well as a joining one.
    let synced = status.is_some_and(atoll_engine::metrics::is_synced);
    out.family("atoll_db_synced", "gauge", "1 when the server is Galera Synced and ready for queries, else 0");
    out.sample("atoll_db_synced", &base, if synced { 1.0 } else { 0.0 });
    if let Some(h) = reading.and_then(|r| r.latency.as_ref()) {
        const NAME: &str = "atoll_db_query_duration_seconds";
        out.family(NAME, "histogram", "Statement latency (MariaDB's query_response_time plugin)");
        for (le, n) in &h.buckets {
            let le = if le.is_infinite() { "+Inf".to_string() } else { le.to_string() };
            out.sample_of(NAME, "atoll_db_query_duration_seconds_bucket", &[base[0], base[1], ("le", &le)], *n as f64);
        }
        out.sample_of(NAME, "atoll_db_query_duration_seconds_sum", &base, h.sum);
        out.sample_of(NAME, "atoll_db_query_duration_seconds_count", &base, h.count as f64);
    }
    for m in status.map(atoll_engine::metrics::from_status).unwrap_or_default() {
        out.family(m.name, m.kind, m.help);
        match m.label {
            Some(label) => out.sample(m.name, &[base[0], base[1], label], m.value),
            None => out.sample(m.name, &base, m.value),
        }
    }
}

/// A metric family drawn from one parsed record: name, help, value.
type Series<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Text-format writer: families in the order first named, one `HELP` and
/// `TYPE` each however many servers add samples, escaped label values.
#[derive(Default)]
struct Out {
    families: Vec<Family>,
}

struct Family {
    name: &'static str,
    header: String,
    samples: String,
}

impl Out {
    fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        if !self.families.iter().any(|f| f.name == name) {
            self.families.push(Family { name, header: format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"), samples: String::new() });
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample_of(name, name, labels, value);
    }

    /// A sample of `family` under another name (a histogram's `_bucket`,
    /// `_sum` and `_count`).
    fn sample_of(&mut self, family: &str, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some(f) = self.families.iter_mut().find(|f| f.name == family) else { return };
        f.samples.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(f.samples, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(f.samples, " {value}");
    }

    fn text(self) -> String {
        self.families.into_iter().flat_map(|f| [f.header, f.samples]).collect()
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The `cpu` line of /proc/stat: seconds per mode, all cores together.
fn parse_stat_cpu(text: &str) -> Option<Vec<(&'static str, f64)>> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
    (ticks.len() >= 4).then(|| MODES.iter().zip(&ticks).map(|(m, t)| (*m, *t as f64 / USER_HZ)).collect())
}

fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut f = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some((f.next()??, f.next()??, f.next()??))
}

#[derive(Debug, PartialEq)]
struct DiskStat {
    name: String,
    reads: u64,
    read_sectors: u64,
    writes: u64,
    write_sectors: u64,
    io_ms: u64,
}

/// /proc/diskstats, without loop and RAM devices (no disk behind them).
fn parse_diskstats(text: &str) -> Vec<DiskStat> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            let name = (*f.get(2)?).to_string();
            if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
                return None;
            }
            Some(DiskStat { name, reads: n(3)?, read_sectors: n(5)?, writes: n(7)?, write_sectors: n(9)?, io_ms: n(12)? })
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct NicStat {
    name: String,
    rx_bytes: u64,
    rx_packets: u64,
    rx_errors: u64,
    tx_bytes: u64,
    tx_packets: u64,
    tx_errors: u64,
}

/// /proc/net/dev; errors include drops (both are lost traffic).
fn parse_net_dev(text: &str) -> Vec<NicStat> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            (f.len() >= 16).then(|| NicStat {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2] + f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10] + f[11],
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_by_mode() {
        let text = "cpu  1000 20 300 40000 50 0 6 0 0 0\ncpu0 500 10 150 20000 25 0 3 0 0 0\nintr 1\n";
        let cpu = parse_stat_cpu(text).unwrap();
        assert_eq!(cpu[0], ("user", 10.0));
        assert_eq!(cpu[3], ("idle", 400.0));
        assert_eq!(cpu.len(), 8);
        assert!(parse_stat_cpu("intr 1\n").is_none());
    }

    #[test]
    fn load_disks_and_nics() {
        assert_eq!(parse_loadavg("0.52 1.01 1.50 2/345 6789\n"), Some((0.52, 1.01, 1.5)));
        let disks = parse_diskstats(
            "   7       0 loop0 10 0 20 0 0 0 0 0 0 5 5 0 0 0 0\n 259       0 nvme0n1 1200 30 96000 400 800 50 64000 900 0 1500 1300 0 0 0 0\n",
        );
        assert_eq!(
            disks,
            vec![DiskStat { name: "nvme0n1".into(), reads: 1200, read_sectors: 96000, writes: 800, write_sectors: 64000, io_ms: 1500 }]
        );
        let nics = parse_net_dev(
            "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n  eth0: 1000 10 1 2 0 0 0 0 2000 20 3 4 0 0 0 0\n",
        );
        assert_eq!(nics.len(), 1);
        assert_eq!((nics[0].name.as_str(), nics[0].rx_bytes, nics[0].rx_errors, nics[0].tx_errors), ("eth0", 1000, 3, 7));
    }

    #[test]
    fn the_text_format_has_one_header_per_family_and_escaped_labels() {
        let mounts =
            vec![Mount { path: "/data \"x\"".into(), device: "/dev/sda1".into(), total_bytes: 100, free_bytes: 40, ..Default::default() }];
        let mut status = HashMap::new();
        for (k, v) in [
            ("Com_insert", "3"),
            ("Threads_connected", "2"),
            ("wsrep_cluster_size", "3"),
            ("wsrep_flow_control_paused", "0.25"),
            ("wsrep_local_state", "4"),
            ("wsrep_ready", "ON"),
        ] {
            status.insert(k.to_string(), v.to_string());
        }
        let latency = Some(atoll_engine::metrics::Histogram { buckets: vec![(0.001, 4), (f64::INFINITY, 5)], count: 5, sum: 2.5 });
        let dbs = vec![
            (atoll_core::DbId { cluster: "orders".into(), name: "orders-1".into() }, Ok(DbReading { status, latency })),
            (atoll_core::DbId { cluster: "orders".into(), name: "orders-2".into() }, Err("refused".into())),
        ];
        let text = render(&mounts, Some(-1500), &dbs);
        assert!(text.contains("atoll_db_statements_total{cluster=\"orders\",server=\"orders-1\",kind=\"insert\"} 3\n"), "{text}");
        assert!(text.contains("atoll_db_galera_cluster_size{cluster=\"orders\",server=\"orders-1\"} 3\n"), "{text}");
        assert!(text.contains("atoll_db_galera_flow_control_paused_ratio{cluster=\"orders\",server=\"orders-1\"} 0.25\n"), "{text}");
        assert!(text.contains("atoll_db_up{cluster=\"orders\",server=\"orders-2\"} 0\n"), "{text}");
        assert_eq!(text.matches("# TYPE atoll_db_up gauge").count(), 1, "{text}");
        for line in [
            "# TYPE atoll_db_query_duration_seconds histogram",
            "atoll_db_query_duration_seconds_bucket{cluster=\"orders\",server=\"orders-1\",le=\"0.001\"} 4",
            "atoll_db_query_duration_seconds_bucket{cluster=\"orders\",server=\"orders-1\",le=\"+Inf\"} 5",
            "atoll_db_query_duration_seconds_sum{cluster=\"orders\",server=\"orders-1\"} 2.5",
            "atoll_db_query_duration_seconds_count{cluster=\"orders\",server=\"orders-1\"} 5",
        ] {
            assert!(text.contains(line), "missing {line}: {text}");
        }
        assert!(text.contains("atoll_db_synced{cluster=\"orders\",server=\"orders-1\"} 1\n"), "{text}");
        assert!(text.contains("atoll_db_synced{cluster=\"orders\",server=\"orders-2\"} 0\n"), "a dead server is not Synced: {text}");
        assert!(text.contains("atoll_host_filesystem_used_ratio{mount=\"/data \\\"x\\\"\",device=\"/dev/sda1\"} 0.6\n"), "{text}");
        assert!(text.contains("atoll_host_filesystem_free_bytes{mount=\"/data \\\"x\\\"\",device=\"/dev/sda1\"} 40\n"), "{text}");
        assert!(text.contains("atoll_host_clock_offset_seconds -1.5\n"), "{text}");
        assert_eq!(text.matches("# TYPE atoll_host_cpu_seconds_total counter").count(), 1, "{text}");
        // This machine's own /proc reads.
        assert!(text.contains("atoll_host_cpu_seconds_total{mode=\"idle\"}"), "{text}");
        assert!(text.contains("atoll_host_memory_total_bytes "), "{text}");
        assert!(text.contains("atoll_host_network_receive_bytes_total{device=\"lo\"}"), "{text}");
    }
}

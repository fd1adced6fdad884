//! Which of the engine's status counters a host's metrics carry, under
//! which names: the agent reads `SHOW GLOBAL STATUS` and renders what this
//! returns; only this crate knows the counters' names.

use std::collections::HashMap;

/// One metric sample drawn from a server's status.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusMetric {
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    pub help: &'static str,
    /// The label that tells samples of one family apart, if any.
    pub label: Option<(&'static str, &'static str)>,
    pub value: f64,
}

/// Status counters as metrics: (status variable, metric, type, help).
const DB_SERIES: [(&str, &str, &str, &str); 16] = [
    ("Threads_connected", "atoll_db_connections", "gauge", "Open client connections"),
    ("Threads_running", "atoll_db_threads_running", "gauge", "Threads executing a statement now"),
    ("Connections", "atoll_db_connections_total", "counter", "Connection attempts"),
    ("Aborted_connects", "atoll_db_aborted_connects_total", "counter", "Connection attempts that failed"),
    ("Questions", "atoll_db_questions_total", "counter", "Statements sent by clients"),
    ("Slow_queries", "atoll_db_slow_queries_total", "counter", "Statements that took longer than long_query_time"),
    ("Innodb_buffer_pool_pages_total", "atoll_db_innodb_buffer_pool_pages", "gauge", "Pages in the InnoDB buffer pool"),
    ("Innodb_buffer_pool_pages_free", "atoll_db_innodb_buffer_pool_free_pages", "gauge", "Free pages in the InnoDB buffer pool"),
    ("Innodb_buffer_pool_pages_dirty", "atoll_db_innodb_buffer_pool_dirty_pages", "gauge", "Modified pages not yet written"),
    ("Innodb_buffer_pool_read_requests", "atoll_db_innodb_buffer_pool_read_requests_total", "counter", "Logical page reads"),
    ("Innodb_buffer_pool_reads", "atoll_db_innodb_buffer_pool_disk_reads_total", "counter", "Page reads the buffer pool could not serve"),
    ("wsrep_cluster_size", "atoll_db_galera_cluster_size", "gauge", "Nodes in this node's Galera component"),
    ("wsrep_local_state", "atoll_db_galera_local_state", "gauge", "Galera state: 1 joining, 2 donor, 3 joined, 4 synced"),
    ("wsrep_local_recv_queue", "atoll_db_galera_recv_queue", "gauge", "Write sets waiting to be applied"),
    ("wsrep_local_send_queue", "atoll_db_galera_send_queue", "gauge", "Write sets waiting to be sent"),
    // Each write transaction commits locally on exactly one node: summed
    // over a cluster's nodes, its rate is the cluster's write TPS.
    ("wsrep_local_commits", "atoll_db_galera_local_commits_total", "counter", "Write transactions committed by clients of this node"),
];

/// Status counters of one kind under one family with a label: family,
/// label, help, and each (status variable, label value).
type Labelled = (&'static str, &'static str, &'static str, &'static [(&'static str, &'static str)]);

const DB_LABELLED: [Labelled; 3] = [
    (
        "atoll_db_statements_total",
        "kind",
        "Statements executed, by kind",
        &[
            ("Com_select", "select"),
            ("Com_insert", "insert"),
            ("Com_update", "update"),
            ("Com_delete", "delete"),
            ("Com_replace", "replace"),
            ("Com_begin", "begin"),
            ("Com_commit", "commit"),
            ("Com_rollback", "rollback"),
        ],
    ),
    (
        "atoll_db_innodb_rows_total",
        "operation",
        "InnoDB row operations",
        &[
            ("Innodb_rows_read", "read"),
            ("Innodb_rows_inserted", "inserted"),
            ("Innodb_rows_updated", "updated"),
            ("Innodb_rows_deleted", "deleted"),
        ],
    ),
    (
        "atoll_db_galera_conflicts_total",
        "cause",
        "Galera transactions lost to a conflict",
        &[("wsrep_local_cert_failures", "certification"), ("wsrep_local_bf_aborts", "brute_force_abort")],
    ),
];

/// The metrics a server's `SHOW GLOBAL STATUS` answer gives; counters the
/// server does not report (an older version, Galera off) are left out.
pub fn from_status(status: &HashMap<String, String>) -> Vec<StatusMetric> {
    let num = |var: &str| status.get(var).and_then(|v| v.parse::<f64>().ok());
    let mut out = Vec::new();
    for (var, name, kind, help) in DB_SERIES {
        if let Some(value) = num(var) {
            out.push(StatusMetric { name, kind, help, label: None, value });
        }
    }
    // A share of time since the last FLUSH STATUS, not a counter.
    if let Some(value) = num("wsrep_flow_control_paused") {
        out.push(StatusMetric {
            name: "atoll_db_galera_flow_control_paused_ratio",
            kind: "gauge",
            help: "Share of time replication was paused by flow control",
            label: None,
            value,
        });
    }
    for (name, label, help, vars) in DB_LABELLED {
        for (var, label_value) in vars {
            if let Some(value) = num(var) {
                out.push(StatusMetric { name, kind: "counter", help, label: Some((label, label_value)), value });
            }
        }
    }
    out
}

/// Whether a server's `SHOW GLOBAL STATUS` says it is Galera Synced and
/// ready for queries (`wsrep_ready` is absent on old versions).
pub fn is_synced(status: &HashMap<String, String>) -> bool {
    status.get("wsrep_local_state").map(String::as_str) == Some("4") && status.get("wsrep_ready").is_none_or(|r| r == "ON")
}

/// A latency histogram in Prometheus' shape: cumulative counts per upper
/// bound (ascending, the last one +Inf), the count and the sum of seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// The histogram in a [`crate::sql::QUERY_RESPONSE_TIME`] answer (bound →
/// "count total"; the last bound reads `TOO LONG`); `None` when the plugin
/// is not loaded or the answer is not what it should be.
pub fn response_times(rows: &HashMap<String, String>) -> Option<Histogram> {
    let mut parsed: Vec<(f64, u64, f64)> = Vec::with_capacity(rows.len());
    for (bound, v) in rows {
        let le = if bound == "TOO LONG" { f64::INFINITY } else { bound.trim().parse().ok()? };
        let (count, total) = v.split_once(' ')?;
        // The last bucket's total reads `TOO LONG` too: its time is unknown.
        let total = if le.is_infinite() { total.trim().parse().unwrap_or(0.0) } else { total.trim().parse().ok()? };
        parsed.push((le, count.trim().parse().ok()?, total));
    }
    if parsed.is_empty() {
        return None;
    }
    parsed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut buckets = Vec::with_capacity(parsed.len());
    let (mut count, mut sum) = (0, 0.0);
    for (le, n, total) in parsed {
        count += n;
        sum += total;
        buckets.push((le, count));
    }
    Some(Histogram { buckets, count, sum })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_time_rows_become_a_cumulative_histogram() {
        let rows: HashMap<String, String> =
            [("0.000010", "5 0.000030"), ("0.000100", "10 0.000500"), ("1.000000", "2 0.300000"), ("TOO LONG", "1 TOO LONG")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let h = response_times(&rows).unwrap_or_else(|| panic!("parses"));
        assert_eq!(h.buckets, vec![(0.00001, 5), (0.0001, 15), (1.0, 17), (f64::INFINITY, 18)]);
        assert_eq!(h.count, 18);
        assert!((h.sum - 0.30053).abs() < 1e-9, "{}", h.sum);
        assert_eq!(response_times(&HashMap::new()), None);
        let bad: HashMap<String, String> = [("x".to_string(), "1 2".to_string())].into();
        assert_eq!(response_times(&bad), None);
    }

    #[test]
    fn counters_become_named_metrics() {
        let status: HashMap<String, String> = [
            ("Com_insert", "3"),
            ("wsrep_cluster_size", "3"),
            ("wsrep_flow_control_paused", "0.25"),
            ("Uptime", "9"),
            ("Slow_queries", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let m = from_status(&status);
        assert!(m.iter().any(|m| m.name == "atoll_db_statements_total" && m.label == Some(("kind", "insert")) && m.value == 3.0));
        assert!(m.iter().any(|m| m.name == "atoll_db_galera_cluster_size" && m.kind == "gauge" && m.value == 3.0));
        assert!(m.iter().any(|m| m.name == "atoll_db_galera_flow_control_paused_ratio" && m.value == 0.25));
        assert!(!m.iter().any(|m| m.name == "atoll_db_slow_queries_total"), "an unreadable value is left out");
        assert_eq!(m.len(), 3);
    }
}

//! MonitorDB on a real SQLite file: what goes in comes out through
//! queries, rollups are right, retention and the disk budget delete the
//! right chunks, and a restart keeps what was flushed.

use std::sync::Arc;
use std::time::Duration;

use atoll_monitor::{Agg, Monitor, MonitorConfig, MonitorError, Query, QueryError, Resolution, Retention, SeriesKey, SqlMonitorStore};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

fn key(metric: &str, host: &str) -> SeriesKey {
    SeriesKey::new(metric, [("host".to_string(), host.to_string())])
}

fn query(metric: &str, start_ms: i64, end_ms: i64) -> Query {
    Query { metric: metric.into(), matchers: vec![], start_ms, end_ms, step_ms: None, rate: false, agg: None, by: vec![] }
}

async fn open(dir: &std::path::Path, config: MonitorConfig) -> (Arc<Monitor>, SqlMonitorStore) {
    let store = SqlMonitorStore::open_sqlite(&dir.join("monitor.db")).await.expect("opens");
    let monitor = Monitor::open(Arc::new(store.clone()), config).await.expect("monitor opens");
    (monitor, store)
}

#[tokio::test]
async fn rollups_of_a_known_series_and_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let retention = Retention { raw_ms: 2 * DAY, minute_ms: 5 * DAY, hour_ms: 20 * DAY };
    let (monitor, _store) = open(dir.path(), MonitorConfig { retention, ..MonitorConfig::default() }).await;
    // A sawtooth per hour, every 10 s for 10 days: minute m of an hour
    // holds m*6 .. m*6+5, so min m*6, max m*6+5, avg m*6+2.5.
    let t0 = 1_000 * DAY;
    let s = monitor.series(key("saw", "a")).expect("series");
    let end = t0 + 10 * DAY;
    let mut ts = t0;
    while ts < end {
        let i = ((ts - t0) % HOUR) / 10_000;
        monitor.append(ts, &[(s, i as f64)]);
        ts += 10_000;
        if (ts - t0) % DAY == 0 {
            monitor.flush(false).await.expect("flush");
        }
    }
    monitor.flush(true).await.expect("flush");
    let now = end;

    // Minute resolution (a 2-day range ending now): step 1 min, each
    // value the minute's average.
    let q = Query { step_ms: Some(MIN), ..query("saw", now - 2 * DAY, now - 2 * DAY + 2 * HOUR) };
    let q = Query { end_ms: now, ..q };
    let a = monitor.query(&q, now).await.expect("query");
    assert_eq!(a.resolution, Resolution::Minute);
    let values = &a.series[0].values;
    // Timestamps are bucket starts; step t averages buckets in (t-1m, t].
    let at = |t: i64| values[a.timestamps.iter().position(|x| *x == t).expect("step")].expect("value");
    assert_eq!(at(now - 2 * DAY + 5 * MIN), 32.5);
    assert_eq!(at(now - 2 * DAY + 59 * MIN), 59.0 * 6.0 + 2.5);

    // Hour resolution with max and min across time via the rollup columns:
    // the hourly average of 0..=359 is 179.5 every hour.
    let a = monitor.query(&query("saw", t0, now), now).await.expect("query");
    assert_eq!(a.resolution, Resolution::Hour);
    assert!(a.series[0].values.iter().flatten().all(|v| (*v - 179.5).abs() < 1e-9), "{:?}", &a.series[0].values[..5]);

    // Raw resolution over the last hour: the samples themselves.
    let a = monitor.query(&Query { step_ms: Some(10_000), ..query("saw", now - HOUR, now) }, now).await.expect("query");
    assert_eq!(a.resolution, Resolution::Raw);
    assert_eq!(a.series[0].values.iter().flatten().count(), 360);

    // Retention: raw older than 2 days, minutes older than 5 go; hours stay.
    let usage_before = monitor.usage().await.expect("usage");
    let deleted = monitor.expire(now).await.expect("expire");
    assert!(deleted > 0);
    for (res, usage) in monitor.usage().await.expect("usage") {
        let keep = match res {
            Resolution::Raw => retention.raw_ms,
            Resolution::Minute => retention.minute_ms,
            Resolution::Hour => retention.hour_ms,
        };
        let oldest = usage.oldest_ms.expect("data left");
        // Whole chunks go: what is left may start up to one window early.
        assert!(oldest >= now - keep - 10 * DAY.min(keep), "{res:?} keeps data from {oldest}");
        let before = usage_before.iter().find(|(r, _)| *r == res).expect("res").1;
        if res == Resolution::Hour {
            assert_eq!(usage.chunks, before.chunks, "hours are within retention");
        } else {
            assert!(usage.chunks < before.chunks, "{res:?} lost nothing");
        }
    }
    let a = monitor.query(&Query { step_ms: Some(10_000), ..query("saw", now - 3 * DAY, now - 3 * DAY + HOUR) }, now).await;
    // Past raw retention a query reads rollups instead.
    assert_eq!(a.expect("query").resolution, Resolution::Minute);
}

#[tokio::test]
async fn rates_aggregates_restart_and_bad_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = MonitorConfig { flush_every: Duration::from_millis(50), ..MonitorConfig::default() };
    let (monitor, store) = open(dir.path(), config.clone()).await;
    let hosts = ["a", "b", "c"];
    let refs: Vec<_> = hosts.iter().map(|h| monitor.series(key("requests_total", h)).expect("series")).collect();
    monitor.describe("requests_total", "counter", "Requests served.");
    let t0 = 1_000 * DAY;
    for i in 0..=60 {
        // Host a: 1/s, b: 2/s, c: 3/s.
        let batch: Vec<_> = refs.iter().enumerate().map(|(n, r)| (*r, (i * 10 * (n as i64 + 1)) as f64)).collect();
        assert_eq!(monitor.append(t0 + i * 10_000, &batch), 3);
    }
    let now = t0 + 600_000;
    let rate = Query { rate: true, agg: Some(Agg::Sum), step_ms: Some(60_000), ..query("requests_total", t0 + 60_000, now) };
    // Before any flush the heads answer.
    let a = monitor.query(&rate, now).await.expect("query");
    assert_eq!(a.series.len(), 1);
    assert!(a.series[0].values.iter().all(|v| *v == Some(6.0)), "{:?}", a.series[0].values);

    let by = Query { agg: Some(Agg::Max), by: vec!["host".into()], matchers: vec!["host!=a".parse_matcher()], ..rate.clone() };
    let a = monitor.query(&by, now).await.expect("query");
    let got: Vec<_> = a.series.iter().map(|s| (s.labels["host"].clone(), s.values[0])).collect();
    assert_eq!(got, vec![("b".to_string(), Some(2.0)), ("c".to_string(), Some(3.0))]);

    // The background loop flushes; a new Monitor on the same file sees it.
    let cancel = tokio_util::sync::CancellationToken::new();
    let loop_task = tokio::spawn(Arc::clone(&monitor).run(cancel.clone()));
    cancel.cancel();
    loop_task.await.expect("loop ends");
    store.close().await;
    let (reopened, _store) = open(dir.path(), config).await;
    let a = reopened.query(&rate, now).await.expect("query after restart");
    assert!(a.series[0].values.iter().all(|v| *v == Some(6.0)));
    let listed = reopened.metrics();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].kind.as_str(), listed[0].help.as_str(), listed[0].series), ("counter", "Requests served.", 3));
    assert_eq!(listed[0].labels, vec!["host".to_string()]);

    // Bad queries name the problem.
    let err = reopened.query(&query("no_such_metric", t0, now), now).await.expect_err("unknown metric");
    assert!(matches!(err, MonitorError::Query(QueryError::UnknownMetric(ref m)) if m == "no_such_metric"), "{err}");
    let err = reopened.query(&query("requests_total", now, t0), now).await.expect_err("backwards range");
    assert!(err.to_string().contains("before or where it starts"), "{err}");
}

#[tokio::test]
async fn the_disk_budget_drops_the_oldest_raw_data_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (monitor, store) = open(dir.path(), MonitorConfig::default()).await;
    let refs: Vec<_> = (0..200).map(|i| monitor.series(key("noise", &format!("h{i}"))).expect("series")).collect();
    let t0 = 1_000 * DAY;
    // Noisy values compress badly: a few MB over a day.
    let mut x: u64 = 1;
    for step in 0..(DAY / 60_000) {
        let batch: Vec<_> = refs
            .iter()
            .map(|r| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (*r, (x >> 11) as f64)
            })
            .collect();
        monitor.append(t0 + step * 60_000, &batch);
    }
    monitor.flush(true).await.expect("flush");
    monitor.expire(t0 + DAY).await.expect("nothing expires, but the file is compacted");
    let used = monitor.disk_bytes().await.expect("size").expect("sqlite knows its size");
    let usage = monitor.usage().await.expect("usage");
    let raw_before = usage[0].1;
    let minute_before = usage[1].1;
    // A budget that half the raw data must go for (rollups, four columns
    // of noise, are most of this file).
    let budget = used - raw_before.bytes / 2;
    let (budget_monitor, _) = {
        store.close().await;
        let config = MonitorConfig { max_disk_bytes: Some(budget), ..MonitorConfig::default() };
        open(dir.path(), config).await
    };
    budget_monitor.free_space(false).await;
    let after = budget_monitor.disk_bytes().await.expect("size").expect("size");
    assert!(after <= budget, "{after} bytes left, budget {budget}");
    let usage = budget_monitor.usage().await.expect("usage");
    assert!(usage[0].1.chunks < raw_before.chunks && usage[0].1.chunks > 0, "some raw data went: {:?}", usage[0].1);
    assert!(usage[0].1.oldest_ms > raw_before.oldest_ms, "the oldest went first: {raw_before:?} {:?}", usage[0].1);
    assert_eq!(usage[1].1.chunks, minute_before.chunks, "rollups stay while raw data can go");
    let stats = budget_monitor.stats();
    assert!(stats.chunks_dropped_for_space > 0 && stats.last_space_event_ms.is_some());
}

trait ParseMatcher {
    fn parse_matcher(&self) -> atoll_monitor::Matcher;
}

impl ParseMatcher for str {
    fn parse_matcher(&self) -> atoll_monitor::Matcher {
        atoll_monitor::Matcher::parse(self).expect("matcher")
    }
}

#[tokio::test]
async fn a_second_server_reads_what_the_scraping_one_flushed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (writer, _s1) = open(dir.path(), MonitorConfig::default()).await;
    let (reader, _s2) = open(dir.path(), MonitorConfig::default()).await;
    let r = writer.series(key("late_metric", "a")).expect("series");
    let t0 = 1_000 * DAY;
    for i in 0..30 {
        writer.append(t0 + i * 10_000, &[(r, i as f64)]);
    }
    writer.flush(true).await.expect("flush");
    // The reader has never seen the metric: the query looks it up.
    let a = reader.query(&Query { step_ms: Some(10_000), ..query("late_metric", t0, t0 + 290_000) }, t0 + 300_000).await.expect("query");
    assert_eq!(a.series[0].values.iter().flatten().count(), 30);
}

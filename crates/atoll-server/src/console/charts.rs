//! Charts on console pages: MonitorDB queries drawn as SVG by the server,
//! so the console needs no chart library and makes no outside request.
//! A legend under each chart gives every series' last, min and max; the
//! page re-fetches the charts fragment to stay current.

use std::collections::BTreeMap;
use std::fmt::Write;

use atoll_monitor::{Agg, Answer, MonitorError, Query, QueryError};
use serde::Deserialize;

use crate::state::AppState;

/// What a page with charts takes in its query string.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    pub fragment: Option<String>,
    /// `15m`, `1h`, `6h`, `1d` or `7d`.
    pub range: Option<String>,
    /// A custom range in UTC (`YYYY-MM-DD HH:MM`), instead of `range`.
    pub from: Option<String>,
    pub to: Option<String>,
}

impl PageQuery {
    pub fn fragment(&self) -> Option<&str> {
        self.fragment.as_deref().filter(|f| !f.is_empty() && *f != "0")
    }
}

pub(crate) const RANGES: [&str; 5] = ["15m", "1h", "6h", "1d", "7d"];

/// The time a page's charts cover.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Range {
    pub start_ms: i64,
    pub end_ms: i64,
    /// One of [`RANGES`], or `custom`.
    pub picked: String,
    /// The custom form's fields, in UTC.
    pub from: String,
    pub to: String,
}

impl Range {
    /// The range asked for (default the last hour); an error names the
    /// field that is wrong.
    pub fn from_query(q: &PageQuery, now: i64) -> Result<Range, String> {
        let text = |ms: i64| atoll_core::time::utc(ms)[..16].to_string();
        if q.from.as_deref().is_some_and(|f| !f.is_empty()) || q.to.as_deref().is_some_and(|t| !t.is_empty()) {
            let parse = |v: &Option<String>, name: &str| {
                atoll_core::time::parse_utc(v.as_deref().unwrap_or("")).map_err(|e| format!("custom range, {name}: {e}"))
            };
            let (start, end) = (parse(&q.from, "from")?, parse(&q.to, "to")?);
            if end <= start {
                return Err("custom range: `to` must be after `from`".into());
            }
            if end - start > 400 * 86_400_000 {
                return Err("custom range: at most 400 days (the longest retention)".into());
            }
            return Ok(Range { start_ms: start, end_ms: end, picked: "custom".into(), from: text(start), to: text(end) });
        }
        let picked = q.range.as_deref().unwrap_or("1h");
        if !RANGES.contains(&picked) {
            return Err(format!("range `{picked}` is not offered; pick one of {}", RANGES.join(", ")));
        }
        let span = atoll_core::time::parse_duration_ms(picked)?;
        Ok(Range { start_ms: now - span, end_ms: now, picked: picked.into(), from: text(now - span), to: text(now) })
    }
}

/// How a chart's values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    PerSecond,
    Count,
    Bytes,
    BytesPerSecond,
    Ratio,
    /// 1 or 0: `yes` / `no`.
    Flag,
    Seconds,
}

/// One chart: a query and how to show it.
pub(crate) struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    pub metric: &'static str,
    pub matchers: Vec<String>,
    pub rate: bool,
    pub agg: Agg,
    /// Labels that make the lines, e.g. `["server"]`.
    pub by: &'static [&'static str],
    /// Divide by this metric, queried alike (an average from a sum and a
    /// count).
    pub per: Option<&'static str>,
}

impl Chart {
    /// A chart of `metric` summed by `by`, for the series matching `matchers`.
    pub fn new(
        id: &'static str,
        title: &'static str,
        unit: Unit,
        metric: &'static str,
        matchers: &[String],
        by: &'static [&'static str],
    ) -> Chart {
        Chart { id, title, unit, metric, matchers: matchers.to_vec(), rate: false, agg: Agg::Sum, by, per: None }
    }

    pub fn per(self, per: &'static str) -> Chart {
        Chart { per: Some(per), ..self }
    }

    pub fn rate(self) -> Chart {
        Chart { rate: true, ..self }
    }

    pub fn agg(self, agg: Agg) -> Chart {
        Chart { agg, ..self }
    }
}

/// A drawn chart.
pub(crate) struct ChartView {
    pub id: &'static str,
    pub title: &'static str,
    /// SVG, escaped where it carries labels.
    pub svg: String,
    pub legend: Vec<LegendRow>,
    /// Why there is nothing to draw.
    pub note: Option<String>,
}

pub(crate) struct LegendRow {
    pub name: String,
    pub color: &'static str,
    pub last: String,
    pub min: String,
    pub max: String,
}

/// The charts part of a page.
pub(crate) struct Charts {
    pub range: Range,
    pub ranges: [&'static str; 5],
    pub views: Vec<ChartView>,
    pub error: Option<String>,
}

impl Charts {
    /// Nothing drawn (page tests).
    #[cfg(test)]
    pub fn none() -> Charts {
        let range = Range { start_ms: 0, end_ms: 3_600_000, picked: "1h".into(), from: String::new(), to: String::new() };
        Charts { range, ranges: RANGES, views: Vec::new(), error: None }
    }

    pub fn is_picked(&self, r: &str) -> bool {
        self.range.picked == r
    }
}

/// The charts alone, for the page's refresh.
#[derive(askama::Template)]
#[template(path = "charts_fragment.html")]
pub(crate) struct ChartsFragment {
    pub charts: Charts,
}

/// What a database cluster's page charts.
pub(crate) fn for_cluster(name: &str) -> Vec<Chart> {
    use Unit::*;
    let m = [format!("cluster={name}")];
    vec![
        Chart::new("qps", "Queries per second", PerSecond, "atoll_db_questions_total", &m, &["server"]).rate(),
        Chart::new("tps", "Transactions per second (commits)", PerSecond, "atoll_db_galera_local_commits_total", &m, &["server"]).rate(),
        Chart::new("latency", "Statement latency (mean)", Seconds, "atoll_db_query_duration_seconds_sum", &m, &["server"])
            .rate()
            .per("atoll_db_query_duration_seconds_count"),
        Chart::new("connections", "Client connections", Count, "atoll_db_connections", &m, &["server"]),
        Chart::new("synced", "Synced", Flag, "atoll_db_synced", &m, &["server"]).agg(Agg::Min),
        Chart::new("flow-control", "Flow control paused", Ratio, "atoll_db_galera_flow_control_paused_ratio", &m, &["server"])
            .agg(Agg::Max),
        Chart::new("proxy-traffic", "Proxy traffic to clients", BytesPerSecond, "atoll_proxy_bytes_out_total", &m, &["proxy"]).rate(),
    ]
}

/// What a host's page charts (`host` is the name its metrics carry).
pub(crate) fn for_host(host: &str) -> Vec<Chart> {
    use Unit::*;
    let h = format!("host={host}");
    let m = [h.clone()];
    let nics = [h.clone(), "device!=lo".to_string()];
    vec![
        Chart::new("cpu", "CPU: cores busy, by mode", Count, "atoll_host_cpu_seconds_total", &[h.clone(), "mode!=idle".into()], &["mode"])
            .rate(),
        Chart::new("memory", "Memory available", Bytes, "atoll_host_memory_available_bytes", &m, &[]),
        Chart::new("disk", "Disk space used", Ratio, "atoll_host_filesystem_used_ratio", &m, &["mount"]).agg(Agg::Max),
        Chart::new("disk-io", "Disk busy", Ratio, "atoll_host_disk_io_seconds_total", &m, &["device"]).rate(),
        Chart::new("net-in", "Network received", BytesPerSecond, "atoll_host_network_receive_bytes_total", &nics, &["device"]).rate(),
        Chart::new("net-out", "Network sent", BytesPerSecond, "atoll_host_network_transmit_bytes_total", &nics, &["device"]).rate(),
    ]
}

/// What a proxy's page charts.
pub(crate) fn for_proxy(cluster: &str, proxy: &str) -> Vec<Chart> {
    use Unit::*;
    let m = [format!("cluster={cluster}"), format!("proxy={proxy}")];
    vec![
        Chart::new("connections", "Client connections, by port", Count, "atoll_proxy_connections", &m, &["port"]),
        Chart::new("traffic-out", "Traffic to clients", BytesPerSecond, "atoll_proxy_bytes_out_total", &m, &[]).rate(),
        Chart::new("traffic-in", "Traffic from clients", BytesPerSecond, "atoll_proxy_bytes_in_total", &m, &[]).rate(),
        Chart::new("backends", "Connections per backend", Count, "atoll_proxy_backend_connections", &m, &["backend"]),
        Chart::new("writer", "Healthy writer", Flag, "atoll_proxy_writer_healthy", &m, &[]).agg(Agg::Min),
        Chart::new("probes-failed", "Failed probes per second, by backend", PerSecond, "atoll_proxy_probes_failed_total", &m, &["backend"])
            .rate(),
        Chart::new("refused", "Connections refused per second", PerSecond, "atoll_proxy_connections_refused_total", &m, &["port"]).rate(),
    ]
}

/// Queries and draws `charts` over the range `q` asks for.
pub(crate) async fn draw(state: &AppState, charts: Vec<Chart>, q: &PageQuery, now: i64) -> Charts {
    let range = match Range::from_query(q, now) {
        Ok(r) => r,
        Err(e) => {
            let fallback = Range::from_query(&PageQuery::default(), now).ok();
            let range = fallback.unwrap_or(Range {
                start_ms: now - 3_600_000,
                end_ms: now,
                picked: "1h".into(),
                from: String::new(),
                to: String::new(),
            });
            return Charts { range, ranges: RANGES, views: Vec::new(), error: Some(e) };
        }
    };
    let mut views = Vec::with_capacity(charts.len());
    for c in charts {
        views.push(one(state, c, &range, now).await);
    }
    Charts { range, ranges: RANGES, views, error: None }
}

async fn one(state: &AppState, c: Chart, range: &Range, now: i64) -> ChartView {
    let view = |svg: String, legend: Vec<LegendRow>, note: Option<String>| ChartView { id: c.id, title: c.title, svg, legend, note };
    let matchers = match c.matchers.iter().map(|m| atoll_monitor::series::Matcher::parse(m)).collect::<Result<Vec<_>, _>>() {
        Ok(m) => m,
        Err(e) => return view(String::new(), Vec::new(), Some(e.to_string())),
    };
    let q = Query {
        metric: c.metric.to_string(),
        matchers,
        start_ms: range.start_ms,
        end_ms: range.end_ms,
        // About 240 points, but no step shorter than the scrape interval:
        // finer steps would mostly be empty.
        step_ms: Some(((range.end_ms - range.start_ms) / 240).max(i64::try_from(state.config.scrape_interval_ms).unwrap_or(10_000))),
        rate: c.rate,
        agg: Some(c.agg),
        by: c.by.iter().map(|l| l.to_string()).collect(),
    };
    let answer = match state.monitoring.db.query(&q, now).await {
        Ok(a) => match c.per {
            Some(per) => state.monitoring.db.query(&Query { metric: per.to_string(), ..q }, now).await.map(|d| divide(a, &d)),
            None => Ok(a),
        },
        Err(e) => Err(e),
    };
    match answer {
        Ok(answer) => {
            let (svg, legend) = svg(&answer, c.unit, range, c.by);
            let note = legend.is_empty().then(|| "no data in this range yet: samples arrive every scrape interval".to_string());
            view(svg, legend, note)
        }
        Err(MonitorError::Query(QueryError::UnknownMetric(_))) => {
            view(String::new(), Vec::new(), Some("no data yet: nothing has reported this metric".into()))
        }
        Err(e) => view(String::new(), Vec::new(), Some(format!("cannot read MonitorDB: {e}"))),
    }
}

/// `a / d` per series of equal labels and per step; a gap where `d` has
/// none or is zero (no statements: no latency to speak of).
fn divide(mut a: Answer, d: &Answer) -> Answer {
    let by_labels: BTreeMap<&BTreeMap<String, String>, &Vec<Option<f64>>> = d.series.iter().map(|s| (&s.labels, &s.values)).collect();
    for s in &mut a.series {
        let den = by_labels.get(&s.labels);
        for (i, v) in s.values.iter_mut().enumerate() {
            let q = den.and_then(|d| d.get(i).copied().flatten()).filter(|d| *d > 0.0);
            *v = v.zip(q).map(|(n, q)| n / q);
        }
    }
    a
}

const COLORS: [&str; 8] = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const W: f64 = 640.0;
const H: f64 = 180.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// The SVG of an answer and its legend. Pure, for tests.
pub(crate) fn svg(a: &Answer, unit: Unit, range: &Range, by: &[&str]) -> (String, Vec<LegendRow>) {
    let series: Vec<(String, Vec<(i64, f64)>)> = a
        .series
        .iter()
        .map(|s| {
            (
                name(&s.labels, by),
                a.timestamps.iter().zip(&s.values).filter_map(|(t, v)| v.filter(|v| v.is_finite()).map(|v| (*t, v))).collect(),
            )
        })
        .filter(|(_, pts): &(String, Vec<(i64, f64)>)| !pts.is_empty())
        .collect();
    let values = series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| *v));
    let (lo, hi) = values.fold((0.0_f64, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let hi = if unit == Unit::Flag {
        1.0
    } else if hi <= lo {
        lo + 1.0
    } else {
        hi
    };
    let step = if unit == Unit::Flag { 1.0 } else { nice_step((hi - lo) / 4.0) };
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let (t0, t1) = (range.start_ms as f64, range.end_ms as f64);
    let x = |t: i64| LEFT + (t as f64 - t0) / (t1 - t0).max(1.0) * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM);

    let mut out = String::new();
    let _ =
        write!(out, r#"<svg class="plot" viewBox="0 0 {W} {H}" role="img" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">"#);
    let mut v = lo;
    while v <= hi + step / 2.0 {
        let yy = y(v);
        let _ = write!(out, r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/>"#, W - RIGHT);
        let _ = write!(out, r#"<text class="ytick" x="{}" y="{:.1}">{}</text>"#, LEFT - 4.0, yy + 3.5, esc(&format_value(unit, v)));
        v += step;
    }
    let long = range.end_ms - range.start_ms > 86_400_000;
    for i in 0..=4 {
        let t = range.start_ms + (range.end_ms - range.start_ms) * i / 4;
        let label = atoll_core::time::utc(t);
        let label = if long { &label[5..16] } else { &label[11..16] };
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(out, r#"<text class="xtick" x="{:.1}" y="{}" text-anchor="{anchor}">{label}</text>"#, x(t), H - 6.0);
    }
    let mut legend = Vec::new();
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut d = String::new();
        let mut prev: Option<i64> = None;
        let gap = max_gap(pts, a.step_ms);
        for (t, v) in pts {
            let joined = prev.is_some_and(|p| t - p <= gap);
            let _ = write!(d, "{}{:.1} {:.1} ", if joined { "L" } else { "M" }, x(*t), y(*v));
            prev = Some(*t);
        }
        let last = pts.last().map_or(0.0, |(_, v)| *v);
        let (min, max) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| (a.min(*v), b.max(*v)));
        let _ = write!(
            out,
            r#"<path class="line" data-series="{}" d="{}" stroke="{color}"><title>{}: {}</title></path>"#,
            esc(label),
            d.trim_end(),
            esc(label),
            esc(&format_value(unit, last))
        );
        legend.push(LegendRow {
            name: label.clone(),
            color,
            last: format_value(unit, last),
            min: format_value(unit, min),
            max: format_value(unit, max),
        });
    }
    out.push_str("</svg>");
    (out, legend)
}

/// The longest distance two points may be apart and still be joined: two
/// steps, or two and a half times the series' usual spacing when its
/// samples come less often than every step. Longer is missing data.
fn max_gap(pts: &[(i64, f64)], step: i64) -> i64 {
    let mut spacing: Vec<i64> = pts.windows(2).map(|w| w[1].0 - w[0].0).collect();
    spacing.sort_unstable();
    let usual = spacing.get(spacing.len().saturating_sub(1) / 2).copied().unwrap_or(step);
    (2 * step).max(usual * 5 / 2)
}

/// A series' name in the legend: its `by` labels' values.
fn name(labels: &BTreeMap<String, String>, by: &[&str]) -> String {
    let parts: Vec<&str> = by.iter().filter_map(|l| labels.get(*l).map(String::as_str)).filter(|v| !v.is_empty()).collect();
    if parts.is_empty() { "all".into() } else { parts.join(" · ") }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * pow).find(|s| *s >= raw).unwrap_or(10.0 * pow)
}

pub(crate) fn format_value(unit: Unit, v: f64) -> String {
    let short = |v: f64| {
        let a = v.abs();
        if a >= 1e9 {
            format!("{:.1}G", v / 1e9)
        } else if a >= 1e6 {
            format!("{:.1}M", v / 1e6)
        } else if a >= 1e4 {
            format!("{:.1}k", v / 1e3)
        } else if a >= 100.0 || v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    };
    let bytes = |v: f64| {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = v;
        let mut i = 0;
        while v.abs() >= 1024.0 && i + 1 < units.len() {
            v /= 1024.0;
            i += 1;
        }
        if i == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", units[i]) }
    };
    match unit {
        Unit::PerSecond => format!("{}/s", short(v)),
        Unit::Count => short(v),
        Unit::Bytes => bytes(v),
        Unit::BytesPerSecond => format!("{}/s", bytes(v)),
        Unit::Ratio => format!("{:.0} %", v * 100.0),
        Unit::Flag => {
            if v >= 0.5 {
                "yes".into()
            } else {
                "no".into()
            }
        }
        Unit::Seconds if v.abs() < 1.0 => format!("{:.2} ms", v * 1000.0),
        Unit::Seconds => format!("{v:.2} s"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_monitor::query::Series;

    fn range() -> Range {
        Range { start_ms: 0, end_ms: 40_000, picked: "custom".into(), from: String::new(), to: String::new() }
    }

    #[test]
    fn draws_lines_with_gaps_and_a_legend() {
        let labels = |s: &str| [("server".to_string(), s.to_string())].into();
        let a = Answer {
            metric: "m".into(),
            resolution: atoll_monitor::Resolution::Raw,
            step_ms: 10_000,
            timestamps: vec![0, 10_000, 20_000, 30_000, 40_000],
            series: vec![
                Series { labels: labels("a<1>"), values: vec![Some(1.0), Some(2.0), None, None, Some(4.0)] },
                Series { labels: labels("b"), values: vec![None; 5] },
            ],
        };
        let (svg, legend) = svg(&a, Unit::PerSecond, &range(), &["server"]);
        assert_eq!(legend.len(), 1, "a series without values is left out");
        assert_eq!(
            (legend[0].name.as_str(), legend[0].last.as_str(), legend[0].min.as_str(), legend[0].max.as_str()),
            ("a<1>", "4/s", "1/s", "4/s")
        );
        assert!(svg.contains(r#"data-series="a&lt;1&gt;""#), "{svg}");
        // Two pieces: the gap of 30 s (three steps) breaks the line.
        let d = svg.split(" d=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert!(svg.contains("<title>a&lt;1&gt;: 4/s</title>"));
    }

    #[test]
    fn sparse_samples_stay_one_line() {
        // A sample every 10 s on 4 s steps is one line; a minute's hole is not.
        let pts: Vec<(i64, f64)> = [0, 12, 20, 32, 40, 100, 112].iter().map(|t| (t * 1000, 1.0)).collect();
        assert_eq!(max_gap(&pts, 4_000), 30_000);
        assert_eq!(max_gap(&[(0, 1.0)], 4_000), 10_000);
    }

    #[test]
    fn averages_divide_matching_series() {
        let labels = |s: &str| [("server".to_string(), s.to_string())].into();
        let answer = |series: Vec<Series>| Answer {
            metric: "m".into(),
            resolution: atoll_monitor::Resolution::Raw,
            step_ms: 10_000,
            timestamps: vec![0, 10_000, 20_000],
            series,
        };
        let sum = answer(vec![
            Series { labels: labels("a"), values: vec![Some(1.0), Some(2.0), Some(3.0)] },
            Series { labels: labels("b"), values: vec![Some(1.0), None, Some(1.0)] },
        ]);
        let count = answer(vec![Series { labels: labels("a"), values: vec![Some(4.0), Some(0.0), None] }]);
        let mean = divide(sum, &count);
        assert_eq!(mean.series[0].values, vec![Some(0.25), None, None]);
        assert_eq!(mean.series[1].values, vec![None, None, None], "no count for b");
    }

    #[test]
    fn ranges_from_the_query_string() {
        let now = 1_796_376_600_000;
        let q = |range: Option<&str>, from: Option<&str>, to: Option<&str>| PageQuery {
            fragment: None,
            range: range.map(String::from),
            from: from.map(String::from),
            to: to.map(String::from),
        };
        let r = Range::from_query(&q(None, None, None), now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.end_ms - r.start_ms, r.picked.as_str()), (3_600_000, "1h"));
        let r = Range::from_query(&q(Some("7d"), None, None), now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.end_ms - r.start_ms, 7 * 86_400_000);
        let r = Range::from_query(&q(None, Some("2026-12-04 08:00"), Some("2026-12-04T09:30")), now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.end_ms - r.start_ms, r.picked.as_str(), r.from.as_str()), (5_400_000, "custom", "2026-12-04 08:00"));
        assert!(Range::from_query(&q(Some("2h"), None, None), now).is_err_and(|e| e.contains("pick one of 15m, 1h")));
        assert!(Range::from_query(&q(None, Some("2026-12-04 10:00"), Some("2026-12-04 09:00")), now).is_err_and(|e| e.contains("after")));
        assert!(Range::from_query(&q(None, Some("soon"), Some("2026-12-04 09:00")), now).is_err_and(|e| e.contains("from")));
    }

    #[test]
    fn values_read_well() {
        assert_eq!(format_value(Unit::BytesPerSecond, 1536.0), "1.5 KiB/s");
        assert_eq!(format_value(Unit::Ratio, 0.853), "85 %");
        assert_eq!(format_value(Unit::PerSecond, 12_345.0), "12.3k/s");
        assert_eq!(format_value(Unit::Count, 2.5), "2.50");
        assert_eq!(format_value(Unit::Flag, 1.0), "yes");
        assert_eq!(format_value(Unit::Seconds, 0.00125), "1.25 ms");
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(0.0), 1.0);
    }
}

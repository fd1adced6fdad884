//! `monitordb-bench`: MonitorDB (crates/atoll-monitor) side by side with
//! Debian's Prometheus, on the same synthetic node/mysqld-exporter data.
//!
//! Three phases, each answering one question of the MonitorDB issue:
//!
//! 1. ingest: `Monitor::append` straight from memory for `targets ×
//!    series` series, with a flush of every open chunk after each 60 s of
//!    data (the server's flush interval), to see the capacity of the store
//!    itself apart from HTTP and parsing;
//! 2. history: days of samples appended with past timestamps (and the
//!    same samples backfilled into Prometheus with promtool), for bytes
//!    per sample on disk and query latency over a day and a week;
//! 3. scrape: one process serving `targets` synthetic exporters on
//!    loopback, scraped at the same time by MonitorDB's scraper (a process
//!    running the server's parse-and-append path) and by Prometheus, with
//!    CPU and memory of both read from /proc.
//!
//! The numbers are for ratios: both systems share two cores with the
//! targets process and with whatever else the machine does.

mod prom;
mod report;
mod scraper;
mod synth;
mod targets;
// Shared with platform-bench, which uses all of it; this binary reads /proc
// through it only.
#[allow(dead_code)]
#[path = "../stats.rs"]
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atoll_monitor::{Agg, Matcher, Monitor, MonitorConfig, Query, Resolution, SeriesKey, SeriesRef, SqlMonitorStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::prom::Prometheus;
use crate::report::{Report, Row, heading};
use crate::stats::ProcSnapshot;
use crate::synth::{Exporter, Kind};

/// The scrape interval of the sizing (and the server's default).
const INTERVAL_MS: i64 = 10_000;
/// The server's default scrape timeout.
const TIMEOUT_MS: i64 = 5_000;
/// The server's default flush interval, in scrape rounds.
const FLUSH_EVERY_ROUNDS: usize = 6;
const INGEST_TARGET: f64 = 200_000.0;
const Q_DAY_TARGET_MS: f64 = 50.0;
const Q_WEEK_TARGET_MS: f64 = 300.0;
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Prometheus' documented figure for its compressed blocks.
const PROM_DOC_BYTES_PER_SAMPLE: f64 = 1.3;

const USAGE: &str = "usage: monitordb-bench [--out RESULTS.md] [--targets N (1000)] [--series N per target (1000)] \
[--ingest-rounds N, a multiple of 6 (18)] [--steady-rounds N, a multiple of 6 (66)] [--steady-targets N (100)] [--steady-minutes N (210)] [--history-hosts N (100)] [--history-days N (7)] [--mix-hours N (12)] \
[--scrape-secs N (240)] [--query-reps N (40)] [--first-port P (21000)] [--prom-port P (19390)] \
[--prometheus PATH] [--promtool PATH] [--no-prometheus] [--phases ingest,history,scrape]";

#[derive(Debug, Clone)]
struct Args {
    out: Option<PathBuf>,
    targets: usize,
    series: usize,
    ingest_rounds: usize,
    steady_rounds: usize,
    steady_targets: usize,
    steady_minutes: i64,
    history_hosts: usize,
    history_days: i64,
    mix_hours: i64,
    scrape_secs: u64,
    query_reps: usize,
    first_port: u16,
    prom_port: u16,
    prometheus: Option<PathBuf>,
    promtool: Option<PathBuf>,
    no_prometheus: bool,
    phases: Vec<String>,
}

fn parse_args(argv: impl Iterator<Item = String>) -> Result<Args> {
    let mut a = Args {
        out: None,
        targets: 1000,
        series: 1000,
        ingest_rounds: 18,
        // Eleven flushes: the first is skipped, the ten after it hold one
        // that writes the open rollups too.
        steady_rounds: 66,
        steady_targets: 100,
        steady_minutes: 210,
        history_hosts: 100,
        history_days: 7,
        mix_hours: 12,
        scrape_secs: 240,
        query_reps: 40,
        first_port: 21_000,
        prom_port: 19_390,
        prometheus: None,
        promtool: None,
        no_prometheus: false,
        phases: vec!["ingest".into(), "history".into(), "scrape".into()],
    };
    let mut it = argv;
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--out" => a.out = Some(value()?.into()),
            "--targets" => a.targets = value()?.parse().context("--targets")?,
            "--series" => a.series = value()?.parse().context("--series")?,
            "--ingest-rounds" => a.ingest_rounds = value()?.parse().context("--ingest-rounds")?,
            "--steady-rounds" => a.steady_rounds = value()?.parse().context("--steady-rounds")?,
            "--steady-targets" => a.steady_targets = value()?.parse().context("--steady-targets")?,
            "--steady-minutes" => a.steady_minutes = value()?.parse().context("--steady-minutes")?,
            "--history-hosts" => a.history_hosts = value()?.parse().context("--history-hosts")?,
            "--history-days" => a.history_days = value()?.parse().context("--history-days")?,
            "--mix-hours" => a.mix_hours = value()?.parse().context("--mix-hours")?,
            "--scrape-secs" => a.scrape_secs = value()?.parse().context("--scrape-secs")?,
            "--query-reps" => a.query_reps = value()?.parse().context("--query-reps")?,
            "--first-port" => a.first_port = value()?.parse().context("--first-port")?,
            "--prom-port" => a.prom_port = value()?.parse().context("--prom-port")?,
            "--prometheus" => a.prometheus = Some(value()?.into()),
            "--promtool" => a.promtool = Some(value()?.into()),
            "--no-prometheus" => a.no_prometheus = true,
            "--phases" => a.phases = value()?.split(',').map(str::to_string).collect(),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    if a.targets == 0
        || a.series == 0
        || a.steady_targets == 0
        || a.steady_minutes < 1
        || a.history_hosts == 0
        || a.history_days < 1
        || a.mix_hours < 1
        || a.query_reps == 0
    {
        bail!("counts must be positive\n{USAGE}");
    }
    if [a.ingest_rounds, a.steady_rounds].iter().any(|r| *r == 0 || !r.is_multiple_of(FLUSH_EVERY_ROUNDS)) {
        bail!("--ingest-rounds and --steady-rounds must be positive multiples of {FLUSH_EVERY_ROUNDS} (one flush per 60 s of data)");
    }
    if usize::from(a.first_port) + a.targets > 65_535 {
        bail!("--first-port + --targets must stay below 65536");
    }
    if let Some(p) = a.phases.iter().find(|p| !["ingest", "history", "scrape"].contains(&p.as_str())) {
        bail!("unknown phase {p:?}; phases are ingest, history, scrape");
    }
    Ok(a)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut argv = std::env::args().skip(1).peekable();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    match argv.peek().map(String::as_str) {
        // The two helper processes the scrape phase starts from this binary.
        Some("targets") => {
            let f = flags(argv.skip(1))?;
            runtime.block_on(scraper_targets(&f))
        }
        Some("scrape") => {
            let f = flags(argv.skip(1))?;
            let args = scraper::ScrapeArgs {
                db: PathBuf::from(flag(&f, "--db")?),
                first_port: flag(&f, "--first-port")?.parse()?,
                targets: flag(&f, "--targets")?.parse()?,
                interval: Duration::from_millis(flag(&f, "--interval-ms")?.parse()?),
                timeout: Duration::from_millis(flag(&f, "--timeout-ms")?.parse()?),
                run_for: Duration::from_secs(flag(&f, "--seconds")?.parse()?),
            };
            runtime.block_on(scraper::run(args))
        }
        _ => {
            let args = parse_args(argv)?;
            runtime.block_on(orchestrate(args))
        }
    }
}

/// The `targets` helper process.
async fn scraper_targets(f: &HashMap<String, String>) -> Result<()> {
    let first_port = flag(f, "--first-port")?.parse()?;
    let targets = flag(f, "--targets")?.parse()?;
    let series = flag(f, "--series")?.parse()?;
    let interval_ms = flag(f, "--interval-ms")?.parse()?;
    targets::serve(first_port, targets, series, interval_ms).await
}

/// `--name value` pairs of a helper process.
fn flags(argv: impl Iterator<Item = String>) -> Result<HashMap<String, String>> {
    let args: Vec<String> = argv.collect();
    if !args.len().is_multiple_of(2) {
        bail!("helper arguments come in --name value pairs: {args:?}");
    }
    Ok(args.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect())
}

fn flag<'a>(f: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    f.get(name).map(String::as_str).with_context(|| format!("helper process needs {name}"))
}

/// Where the Prometheus binaries are, when the comparison runs.
struct PromBins {
    prometheus: PathBuf,
    promtool: PathBuf,
    version: String,
}

/// What was measured so far.
#[derive(Default)]
struct Bench {
    rows: Vec<Row>,
    verdicts: Vec<String>,
    reading: Vec<String>,
    notes: Vec<String>,
    setup: Vec<String>,
}

async fn orchestrate(args: Args) -> Result<()> {
    let load_before = loadavg();
    let prom = if args.no_prometheus {
        None
    } else {
        let find = |given: &Option<PathBuf>, name: &str| {
            given.clone().or_else(|| prom::find(name)).with_context(|| {
                format!("no `{name}` found: `apt-get install prometheus` (bench/monitordb.sh does), pass --{name} PATH, or --no-prometheus")
            })
        };
        let prometheus = find(&args.prometheus, "prometheus")?;
        let promtool = find(&args.promtool, "promtool")?;
        Some(PromBins { version: prom::version(&prometheus), prometheus, promtool })
    };
    check_fd_limit(args.targets)?;
    let work = tempfile::Builder::new().prefix("monitordb-bench-").tempdir().context("temporary directory")?;
    tracing::info!(dir = %work.path().display(), "working directory");
    let mut b = Bench::default();
    b.setup.push(format!(
        "data: synthetic node_exporter + mysqld_exporter series ({} per target: float CPU counters, irregular integer counters, \
         wandering gauges, about 40 % constants), one sample per series every {} s",
        args.series,
        INTERVAL_MS / 1000
    ));
    b.setup.push(format!(
        "MonitorDB: atoll-monitor on its own SQLite file, default MonitorConfig (flush every 60 s, 8 days raw); Prometheus: {}",
        prom.as_ref()
            .map_or("not run (--no-prometheus)".into(), |p| format!("`{}`, run by hand on 127.0.0.1 with temporary storage", p.version))
    ));
    let has = |p: &str| args.phases.iter().any(|x| x == p);
    if has("ingest") {
        b.ingest(&args, work.path()).await.context("ingest phase")?;
    }
    if has("history") {
        b.history(&args, work.path(), prom.as_ref()).await.context("history phase")?;
    }
    if has("scrape") {
        b.scrape(&args, work.path(), prom.as_ref()).await.context("scrape phase")?;
    }
    b.notes.push(format!(
        "load average (1/5/15 min) before the run {load_before}, after {}: another engineer's builds share this 2-core machine",
        loadavg()
    ));
    let report = Report {
        date: date_utc(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        setup: b.setup,
        rows: b.rows,
        verdicts: b.verdicts,
        reading: b.reading,
        notes: b.notes,
    };
    println!("\n{}", report.table());
    for v in &report.verdicts {
        println!("- {v}");
    }
    if let Some(out) = &args.out {
        report::write_section(out, &report.section())?;
        tracing::info!(file = %out.display(), "wrote the results section");
    }
    Ok(())
}

/// The scrape phase holds a connection per target in three processes.
fn check_fd_limit(targets: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < 3 * targets + 256
    {
        bail!("open-file limit {soft} is too low for {targets} targets; raise it (`ulimit -n 65536`, as bench/monitordb.sh does)");
    }
    Ok(())
}

/// The labels a scraper adds to target `index`'s series.
fn target_labels(first_port: u16, index: usize) -> [(String, String); 2] {
    [("instance".to_string(), format!("127.0.0.1:{}", usize::from(first_port) + index)), ("job".to_string(), "synthetic".to_string())]
}

/// Each target's fixed offset within the interval, as the scraper spreads
/// them: a sample timestamp of tick `t` for target `i`.
fn offset_ms(index: usize, targets: usize) -> i64 {
    (index as i64 * INTERVAL_MS) / targets.max(1) as i64
}

fn rate(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 { format!("{:.2} M/s", v / 1e6) } else { format!("{:.0} k/s", v / 1e3) }
}

fn fmt_ms(v: f64) -> String {
    format!("{v:.1} ms")
}

fn fmt_mib(v: f64) -> String {
    format!("{v:.0} MiB")
}

fn fmt_bytes(v: f64) -> String {
    format!("{v:.2} B")
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**NOT met**" }
}

/// A timestamp's series for the history phase, in both systems' terms.
struct HistSeries {
    key: SeriesKey,
    kind: Kind,
    seed: u64,
}

/// Seconds into the scrape window, MonitorDB's RSS, Prometheus' RSS (MiB).
type RssSample = (Duration, f64, Option<f64>);

/// Prometheus' own count of samples it stored.
const PROM_SAMPLES: &str = "prometheus_tsdb_head_samples_appended_total";

/// The scrape process' running sample count (0 before its first write).
fn read_count(path: &Path) -> f64 {
    std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0.0)
}

/// The history phase's counter family: what a dashboard sums across hosts.
const QUERIES: &str = "mysql_global_status_queries";

/// What a MonitorDB file holds after a history was appended.
struct Stored {
    samples: u64,
    raw_bytes: u64,
    minute_bytes: u64,
    hour_bytes: u64,
    file_bytes: u64,
    append_rate: f64,
    flushes: usize,
}

impl Bench {
    /// Phase 1: the store's own ingest capacity, from empty heads at full
    /// scale, then in a steady state (chunks as full as on average) at a
    /// tenth of it.
    async fn ingest(&mut self, args: &Args, work: &Path) -> Result<()> {
        let total = args.targets * args.series;
        let fresh = ingest_run(work, "ingest", args.targets, args.series, args.first_port, 0, args.ingest_rounds).await?;
        let steady_targets = args.steady_targets.min(args.targets);
        let warm_rounds = (args.steady_minutes * 60_000 / INTERVAL_MS) as usize;
        let steady = ingest_run(work, "steady", steady_targets, args.series, args.first_port, warm_rounds, args.steady_rounds).await?;

        self.rows.push(heading(&format!(
            "1. Ingest into MonitorDB, in process (`Monitor::append` per target scrape, `scheduled_flush` after every 60 s of data, open rollups every {}th); \
             a: {} targets × {} series from empty heads, {} rounds of 10 s; b: {} targets after {} min of data, {} rounds",
            atoll_monitor::ROLLUP_FLUSH_ROUNDS, args.targets, args.series, args.ingest_rounds, steady_targets, args.steady_minutes, args.steady_rounds
        )));
        self.rows.push(Row::new(
            format!("a. register {total} series (`Monitor::series`)"),
            format!("{:.1} s, {}", fresh.register.as_secs_f64(), fmt_rate(rate(total as f64, fresh.register))),
        ));
        self.rows.push(Row::new("a. append only", fmt_rate(fresh.append_rate())));
        self.rows
            .push(Row::new("a. sustained: append + flushes", fmt_rate(fresh.sustained())).target(format!("≥ {} k/s", INGEST_TARGET / 1e3)));
        self.rows.push(Row::new(
            "a. one flush: first (new series too) / later",
            format!(
                "{:.1} s / {:.1} s for {:.0} chunks",
                fresh.flushes.first().map_or(0.0, Duration::as_secs_f64),
                fresh.later_flush_s(),
                fresh.later_chunks()
            ),
        ));
        self.rows.push(Row::new("a. sustained without the first flush (series creation)", fmt_rate(fresh.sustained_later())));
        self.rows.push(Row::new("a. `Monitor::stats` (walks every head under the lock)", fmt_ms(fresh.stats_took.as_secs_f64() * 1e3)));
        self.rows.push(Row::new(
            "a. memory: heads (stats.head_bytes) / process RSS growth",
            format!(
                "{} / {} ({:.0} B per series)",
                fmt_mib(fresh.head_bytes as f64 / 1048576.0),
                fmt_mib(fresh.rss_growth_kib as f64 / 1024.0),
                (fresh.rss_growth_kib * 1024) as f64 / total as f64
            ),
        ));
        let steady_series = steady.series as f64;
        let per_series_flush = steady.later_flush_s() / steady_series;
        self.rows.push(Row::new(
            format!("b. one flush, {} series, open chunks as full as on average", steady.series),
            format!(
                "{:.2} s for {:.0} chunks ({:.1} µs per series)",
                steady.later_flush_s(),
                steady.later_chunks(),
                per_series_flush * 1e6
            ),
        ));
        self.rows.push(Row::new("b. sustained: append + flushes", fmt_rate(steady.sustained_later())));
        // The same per-series flush cost at full scale.
        let est_flush = per_series_flush * total as f64;
        let est = (total * FLUSH_EVERY_ROUNDS) as f64 / ((total * FLUSH_EVERY_ROUNDS) as f64 / fresh.append_rate() + est_flush);
        self.rows.push(
            Row::new(
                format!("b. estimated at {total} series (b's flush cost per series × {total})"),
                format!("{} (flush {est_flush:.0} s per minute)", fmt_rate(est)),
            )
            .target(format!("≥ {} k/s", INGEST_TARGET / 1e3)),
        );
        self.verdicts.push(format!(
            "ingest ≥ {} k samples/s sustained, {total} series: {} measured from empty heads — {}; {} estimated in the steady state — {}; append alone {}",
            INGEST_TARGET / 1e3,
            fmt_rate(fresh.sustained()),
            met(fresh.sustained() >= INGEST_TARGET),
            fmt_rate(est),
            met(est >= INGEST_TARGET),
            fmt_rate(fresh.append_rate()),
        ));
        // The flush cost is per series, not per sample: a longer interval
        // spreads it over more samples (and a crash loses more of them).
        let samples5 = (total * FLUSH_EVERY_ROUNDS * 5) as f64;
        let est5 = samples5 / (samples5 / fresh.append_rate() + est_flush);
        self.rows.push(Row::new("b. same estimate, flushing every 5 min (server setting monitordb_flush_s = 300)", fmt_rate(est5)));
        self.reading.push(format!(
            "Ingest: appending is cheap ({} from memory, one lock and a few bits per sample); the flush is the cost. Every flush rewrites each \
             series' open raw chunk whole, and its open minute and hour chunks every tenth flush. From empty heads that is {:.1} s per flush for {total} series; in the steady state each \
             series' chunks fill a B-tree page of their own, so a flush writes about a page per series ({:.0} µs per series, ≈ {est_flush:.0} s \
             a minute at {total} series): ≈ {} sustained, {} the 100 k/s of the 1,000 × 1,000 sizing and {} the 200 k/s target. \
             The flush interval is the lever at hand ({} at 5 min); the structural fix would keep open chunks apart from closed ones.",
            fmt_rate(fresh.append_rate()),
            fresh.later_flush_s(),
            per_series_flush * 1e6,
            fmt_rate(est),
            if est >= 100_000.0 { "above" } else { "below" },
            if est >= INGEST_TARGET { "meeting" } else { "short of" },
            fmt_rate(est5),
        ));
        Ok(())
    }

    /// Phase 2: bytes per sample and query latency over days of history.
    async fn history(&mut self, args: &Args, work: &Path, prom: Option<&PromBins>) -> Result<()> {
        let end_tick = atoll_core::time::now_ms() / INTERVAL_MS;
        let end_ms = end_tick * INTERVAL_MS;
        let days_ticks = args.history_days * DAY_MS / INTERVAL_MS;
        let mix_ticks = args.mix_hours * HOUR_MS / INTERVAL_MS;
        // 1: one counter family across hosts, for the queries.
        let counters: Vec<HistSeries> = (0..args.history_hosts)
            .map(|h| HistSeries {
                key: SeriesKey::new(
                    QUERIES,
                    [("instance".to_string(), format!("host-{h:03}:9104")), ("job".to_string(), "mysqld".to_string())],
                ),
                kind: Kind::IntCounter { rate: 1_500.0 + 100.0 * (h % 10) as f64 },
                seed: synth::seed(h, 1 << 20),
            })
            .collect();
        // 2: one host's whole exporter mix, for bytes per sample.
        let exporter = Exporter::new(args.series);
        let mix: Vec<HistSeries> = exporter
            .series()
            .map(|(i, f, s)| HistSeries {
                key: SeriesKey::new(
                    f.name.clone(),
                    s.labels
                        .iter()
                        .cloned()
                        .chain([("instance".to_string(), "host-mix:9100".to_string()), ("job".to_string(), "node".to_string())]),
                ),
                kind: s.kind,
                seed: synth::seed(1 << 16, i),
            })
            .collect();

        tracing::info!(series = counters.len(), days = args.history_days, "history: appending the counter history to MonitorDB");
        let (db, store, hist) = monitordb_history(&work.join("history.db"), &counters, end_tick - days_ticks, end_tick).await?;
        tracing::info!(series = mix.len(), hours = args.mix_hours, "history: appending the exporter mix to MonitorDB");
        let (mix_db, mix_store, mixed) = monitordb_history(&work.join("mix.db"), &mix, end_tick - mix_ticks, end_tick).await?;
        drop(mix_db);
        mix_store.close().await;

        // The same samples for Prometheus, as blocks.
        let mut prom_blocks = None;
        if let Some(p) = prom {
            let files = [("history", &counters, end_tick - days_ticks), ("mix", &mix, end_tick - mix_ticks)];
            let mut out = Vec::new();
            for (name, series, first) in files {
                let input = work.join(format!("{name}.om"));
                tracing::info!(file = %input.display(), "history: writing OpenMetrics for promtool");
                write_openmetrics(&input, series, first, end_tick)?;
                let dir = work.join(format!("prom-{name}"));
                std::fs::create_dir_all(&dir)?;
                let took = prom::backfill(&p.promtool, &input, &dir).await?;
                std::fs::remove_file(&input)?;
                let blocks = prom::blocks(&dir)?;
                tracing::info!(name, blocks = blocks.blocks, samples = blocks.samples, took_s = took.as_secs_f64(), "history: backfilled");
                out.push((dir, blocks, took));
            }
            prom_blocks = Some(out);
        }

        self.rows.push(heading("2. Bytes per stored sample"));
        let mut prom_mix = None;
        for (i, (name, stored)) in [("exporter mix, 1 host", &mixed), ("irregular counter, 100 hosts", &hist)].into_iter().enumerate() {
            let set = if i == 0 {
                format!("{name}: {} series × {} h", mix.len(), args.mix_hours)
            } else {
                format!("{QUERIES}, {} hosts × {} days", counters.len(), args.history_days)
            };
            let blocks = prom_blocks.as_ref().map(|b| b[1 - i].1);
            let n = stored.samples as f64;
            self.rows.push(
                Row::new(format!("*{set}* — samples stored"), format!("{:.2} M", n / 1e6))
                    .prometheus(blocks.map_or("—".into(), |b| format!("{:.2} M in {} blocks", b.samples as f64 / 1e6, b.blocks))),
            );
            let per = |bytes: u64, samples: u64| bytes as f64 / samples.max(1) as f64;
            let raw = Row::pair(
                "raw chunks only (MonitorDB blobs; Prometheus chunks/ files)",
                per(stored.raw_bytes, stored.samples),
                blocks.map(|b| per(b.chunk_bytes, b.samples)),
                fmt_bytes,
            );
            self.rows.push(if i == 0 { raw.target(format!("Prometheus documents ~{PROM_DOC_BYTES_PER_SAMPLE} B")) } else { raw });
            self.rows.push(Row::pair(
                "all on disk ÷ raw samples (MonitorDB: SQLite file with rollups, index, series; Prometheus: blocks with index)",
                per(stored.file_bytes, stored.samples),
                blocks.map(|b| per(b.total_bytes, b.samples)),
                fmt_bytes,
            ));
            self.rows.push(Row::new(
                "  of which minute / hour rollups (MonitorDB)",
                format!("{} / {}", fmt_bytes(per(stored.minute_bytes, stored.samples)), fmt_bytes(per(stored.hour_bytes, stored.samples))),
            ));
            self.rows.push(Row::new(
                "  appended at (with a flush per 60 s of data)",
                format!("{} over {} flushes", fmt_rate(stored.append_rate), stored.flushes),
            ));
            if i == 0 {
                prom_mix = blocks;
            }
        }
        if let Some(b) = prom_blocks.as_ref() {
            let took: Vec<String> = b
                .iter()
                .map(|(d, _, t)| format!("{} {:.0} s", d.file_name().and_then(|n| n.to_str()).unwrap_or("?"), t.as_secs_f64()))
                .collect();
            self.notes.push(format!(
                "Prometheus' history was backfilled with `promtool tsdb create-blocks-from openmetrics --max-block-duration=24h` (18 h blocks; took {}); \
                 its bytes are the block directories' files, its samples the blocks' meta.json numSamples",
                took.join(", ")
            ));
        }
        let mix_raw = mixed.raw_bytes as f64 / mixed.samples.max(1) as f64;
        self.verdicts.push(match prom_mix {
            Some(b) => format!(
                "bytes per raw sample (exporter mix): MonitorDB {mix_raw:.2} B vs Prometheus {:.2} B in its blocks ({:.2}×); all on disk {:.2} B vs {:.2} B",
                b.chunk_bytes as f64 / b.samples.max(1) as f64,
                mix_raw / (b.chunk_bytes as f64 / b.samples.max(1) as f64),
                mixed.file_bytes as f64 / mixed.samples.max(1) as f64,
                b.total_bytes as f64 / b.samples.max(1) as f64,
            ),
            None => format!("bytes per raw sample (exporter mix): MonitorDB {mix_raw:.2} B (Prometheus not run)"),
        });

        if let Some(b) = prom_mix {
            let p_raw = b.chunk_bytes as f64 / b.samples.max(1) as f64;
            let p_all = b.total_bytes as f64 / b.samples.max(1) as f64;
            let m_all = mixed.file_bytes as f64 / mixed.samples.max(1) as f64;
            let rollups = (mixed.minute_bytes + mixed.hour_bytes) as f64 / mixed.samples.max(1) as f64;
            self.reading.push(format!(
                "Bytes: the raw chunks are the same Gorilla encoding as Prometheus' and cost the same ({mix_raw:.2} vs {p_raw:.2} B per sample). \
                 On disk MonitorDB takes {:.1}× Prometheus' blocks ({m_all:.2} vs {p_all:.2} B per raw sample): {rollups:.2} B of it are the \
                 minute and hour rollups Prometheus does not keep (they are what makes week-long queries cheap and outlive raw data), the \
                 rest is SQLite's per-row keys, the start index and pages left part-empty by rewritten chunks.",
                m_all / p_all
            ));
        }

        // Query latency, same ranges and steps on both.
        let instance = format!("host-{:03}:9104", args.history_hosts / 2);
        let week = format!("sum over {} hosts, {} days (step 1 h)", args.history_hosts, args.history_days);
        let queries = [
            ("one series, 1 day (step 6 min)", DAY_MS, 360_000, Some(instance.clone()), None, Some(Q_DAY_TARGET_MS)),
            (week.as_str(), args.history_days * DAY_MS, HOUR_MS, None, Some(Agg::Sum), Some(Q_WEEK_TARGET_MS)),
            ("one series, 6 h (step 90 s)", 6 * HOUR_MS, 90_000, Some(instance.clone()), None, None),
        ];
        self.rows.push(heading(&format!(
            "3. Query latency, p50 / p95 of {} runs after 3 warm-ups ({} series × {} days of 10 s samples)",
            args.query_reps,
            counters.len(),
            args.history_days
        )));
        let mut mdb_p95 = Vec::new();
        for (what, range, step, instance, agg, _) in &queries {
            let q = Query {
                metric: QUERIES.into(),
                matchers: instance.iter().map(|i| Matcher::parse(&format!("instance={i}"))).collect::<Result<_, _>>()?,
                start_ms: end_ms - range,
                end_ms,
                step_ms: Some(*step),
                rate: false,
                agg: *agg,
                by: vec![],
            };
            let mut times = Vec::new();
            let mut res = Resolution::Raw;
            for i in 0..args.query_reps + 3 {
                let t = Instant::now();
                let a = db.query(&q, end_ms).await?;
                if i >= 3 {
                    times.push(t.elapsed());
                }
                if a.series.len() != 1 || a.series[0].values.iter().flatten().count() == 0 {
                    bail!("MonitorDB query {what} answered {} series", a.series.len());
                }
                res = a.resolution;
            }
            mdb_p95.push((what.to_string(), percentiles(&mut times), res));
        }
        drop(db);
        store.close().await;

        let mut prom_p95: Vec<Option<(f64, f64)>> = vec![None; queries.len()];
        let mut prom_alt = None;
        if let (Some(p), Some(blocks)) = (prom, prom_blocks.as_ref()) {
            let dir = &blocks[0].0;
            let prometheus =
                Prometheus::start(&p.prometheus, work, dir, "global:\n  scrape_interval: 10s\nscrape_configs: []\n", args.prom_port)
                    .await?;
            let end_s = end_ms / 1000;
            for (i, (what, range, step, instance, agg, _)) in queries.iter().enumerate() {
                let selector = match instance {
                    Some(i) => format!("{QUERIES}{{instance=\"{i}\"}}"),
                    None => QUERIES.to_string(),
                };
                let promql = if agg.is_some() { format!("sum({selector})") } else { selector };
                prom_p95[i] = Some(time_prom(&prometheus, what, &promql, end_s - range / 1000, end_s, step / 1000, args.query_reps).await?);
            }
            // MonitorDB answers a week from hour rollups (each step the
            // hour's average); Prometheus' closest is averaging raw samples.
            let avg = format!("sum(avg_over_time({QUERIES}[1h]))");
            prom_alt = Some(
                time_prom(&prometheus, "sum avg_over_time 1h", &avg, end_s - args.history_days * 86_400, end_s, 3600, args.query_reps)
                    .await?,
            );
            prometheus.stop().await?;
        }
        for (i, (what, _, _, _, _, target)) in queries.iter().enumerate() {
            let ((p50, p95), res) = (mdb_p95[i].1, mdb_p95[i].2);
            let label = format!("{what} — MonitorDB reads {} chunks", res.as_str());
            let mut row = Row::pair(format!("{label}: p95"), p95, prom_p95[i].map(|p| p.1), fmt_ms);
            row.monitordb = format!("{p50:.1} / {p95:.1} ms");
            if let Some((pp50, pp95)) = prom_p95[i] {
                row.prometheus = format!("{pp50:.1} / {pp95:.1} ms");
            }
            if let Some(t) = target {
                row = row.target(format!("p95 < {t} ms"));
                self.verdicts.push(format!("query p95, {what}: MonitorDB {p95:.1} ms — {}", met(p95 < *t)));
            }
            self.rows.push(row);
        }
        if let Some((p50, p95)) = prom_alt {
            self.rows.push(
                Row::new(
                    "  same week as `sum(avg_over_time(…[1h]))` (Prometheus averaging raw samples, as MonitorDB's hour rollups do)",
                    "—",
                )
                .prometheus(format!("{p50:.1} / {p95:.1} ms")),
            );
        }
        if let (Some((_, p_week)), Some(m_week)) = (prom_p95[1], mdb_p95.get(1).map(|q| q.1.1)) {
            self.reading.push(format!(
                "Queries: both are far inside the targets. The week-long sum is where the designs differ: MonitorDB reads {} rows of \
                 hour rollups per series, Prometheus decodes every raw sample ({:.1} M) — p95 {m_week:.1} vs {p_week:.1} ms here, a gap that grows \
                 with range and series count.",
                args.history_days * 24,
                hist.samples as f64 / 1e6
            ));
        }
        self.notes.push(
            "queries: MonitorDB is called in process (`Monitor::query`, SQLite pages warm), Prometheus over HTTP on loopback \
             (`/api/v1/query_range`, JSON included); both answer one series of ≤ 241 points, so the HTTP share is about a millisecond"
                .into(),
        );
        Ok(())
    }

    /// Phase 3: one process scraping `targets` targets, MonitorDB vs
    /// Prometheus at the same time.
    async fn scrape(&mut self, args: &Args, work: &Path, prom: Option<&PromBins>) -> Result<()> {
        let exe = std::env::current_exe().context("own path")?;
        let common = ["--first-port".to_string(), args.first_port.to_string(), "--targets".into(), args.targets.to_string()];
        tracing::info!(targets = args.targets, series = args.series, "scrape: starting the targets process");
        let mut targets = tokio::process::Command::new(&exe)
            .arg("targets")
            .args(&common)
            .args(["--series", &args.series.to_string(), "--interval-ms", &INTERVAL_MS.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the targets process")?;
        let targets_pid = targets.id().context("targets process gone")?;
        let mut lines = BufReader::new(targets.stdout.take().context("targets stdout")?).lines();
        match tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
            Ok(Ok(Some(l))) if l == "ready" => {}
            other => bail!("the targets process did not get ready: {other:?}"),
        }
        let targets_before = ProcSnapshot::read(targets_pid)?;

        let db_path = work.join("scrape.db");
        let samples_path = scraper::samples_file(&db_path);
        // Runs a little past the measured window, so the window ends
        // while both scrapers still run; its last flush comes after.
        let mut mdb = tokio::process::Command::new(&exe)
            .arg("scrape")
            .args(&common)
            .arg("--db")
            .arg(&db_path)
            .args(["--interval-ms", &INTERVAL_MS.to_string(), "--timeout-ms", &TIMEOUT_MS.to_string()])
            .args(["--seconds", &(args.scrape_secs + 10).to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting MonitorDB's scraper")?;
        let mdb_pid = mdb.id().context("scraper gone")?;
        let prom_storage = work.join("prom-scrape");
        let prometheus = match prom {
            Some(p) => {
                let list: Vec<String> = (0..args.targets).map(|i| format!("'127.0.0.1:{}'", usize::from(args.first_port) + i)).collect();
                let config = format!(
                    "global:\n  scrape_interval: {}s\n  scrape_timeout: {}s\nscrape_configs:\n  - job_name: synthetic\n    static_configs:\n      - targets: [{}]\n",
                    INTERVAL_MS / 1000,
                    TIMEOUT_MS / 1000,
                    list.join(", ")
                );
                std::fs::create_dir_all(&prom_storage)?;
                Some(Prometheus::start(&p.prometheus, work, &prom_storage, &config, args.prom_port + 1).await?)
            }
            None => None,
        };

        // The window: both running; /proc read every second.
        let window = Duration::from_secs(args.scrape_secs);
        let warm = Duration::from_secs(30).min(window / 4);
        let began = Instant::now();
        let first = (ProcSnapshot::read(mdb_pid)?, prometheus.as_ref().map(|p| ProcSnapshot::read(p.pid)).transpose()?);
        let mut at_warm = None;
        let mut rss: Vec<RssSample> = Vec::new();
        tracing::info!(seconds = args.scrape_secs, "scrape: both scrapers running");
        while began.elapsed() < window {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let m = ProcSnapshot::read(mdb_pid).context("MonitorDB's scraper exited early")?;
            let p = prometheus.as_ref().map(|p| ProcSnapshot::read(p.pid)).transpose().context("prometheus exited early")?;
            if at_warm.is_none() && began.elapsed() >= warm {
                let p_samples = match &prometheus {
                    Some(p) => p.own_metrics().await?.get(PROM_SAMPLES).copied().unwrap_or(0.0),
                    None => 0.0,
                };
                at_warm = Some((m, p, began.elapsed(), read_count(&samples_path), p_samples));
            }
            rss.push((began.elapsed(), m.rss_mib(), p.map(|p| p.rss_mib())));
        }
        let wall = began.elapsed();
        let last = (ProcSnapshot::read(mdb_pid)?, prometheus.as_ref().map(|p| ProcSnapshot::read(p.pid)).transpose()?);
        let m_samples_end = read_count(&samples_path);
        let targets_after = ProcSnapshot::read(targets_pid)?;
        let (warm_m, warm_p, warm_at, m_samples_warm, p_samples_warm) = at_warm.context("window shorter than its warm-up")?;

        let mut prom_numbers = None;
        if let Some(p) = prometheus {
            let own = p.own_metrics().await?;
            let up = p.scalar("count(up == 1)").await?.unwrap_or(0.0);
            let storage = prom::dir_bytes(&prom_storage)?;
            let wal = prom::dir_bytes(&prom_storage.join("wal"))?;
            let get = |k: &str| own.get(k).copied().unwrap_or(0.0);
            prom_numbers = Some((get(PROM_SAMPLES), get("prometheus_tsdb_head_series"), up, storage, wal));
            p.stop().await?;
        }
        // MonitorDB's scraper ends on its own after its last flush.
        let mut out = String::new();
        let status = tokio::time::timeout(Duration::from_secs(300), async {
            let mut stdout = mdb.stdout.take().context("scraper stdout")?;
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out).await?;
            mdb.wait().await.context("waiting for the scraper")
        })
        .await
        .context("MonitorDB's scraper did not finish its last flush within 300 s")??;
        if !status.success() {
            bail!("MonitorDB's scraper failed ({status})");
        }
        let summary: serde_json::Value = serde_json::from_str(out.trim()).with_context(|| format!("scraper summary {out:?}"))?;
        if let Some(stdin) = targets.stdin.as_mut() {
            let _ = stdin.shutdown().await;
        }
        drop(targets);

        let num = |k: &str| summary[k].as_f64().unwrap_or(0.0);
        let steady_s = (wall - warm_at).as_secs_f64();
        let cpu_pct = |a: &ProcSnapshot, b: &ProcSnapshot, secs: f64| 100.0 * b.cpu_s_since(a) / secs;
        let tail_rss = |f: &dyn Fn(&RssSample) -> Option<f64>| {
            let last: Vec<f64> = rss.iter().filter(|r| r.0 + Duration::from_secs(60) >= wall).filter_map(f).collect();
            last.iter().sum::<f64>() / last.len().max(1) as f64
        };
        let m_cpu_total = last.0.cpu_s_since(&first.0);
        let p_cpu_total = last.1.zip(first.1).map(|(l, f)| l.cpu_s_since(&f));
        self.rows.push(heading(&format!(
            "4. Scraping {} targets × {} series every {} s, same run, side by side ({} s)",
            args.targets,
            args.series,
            INTERVAL_MS / 1000,
            args.scrape_secs
        )));
        let (p_samples, p_series, p_up, p_storage, p_wal) = prom_numbers.unwrap_or_default();
        self.rows.push(
            Row::new("targets up / scrapes failed", format!("{:.0} ok, {:.0} failed", num("scrapes_ok"), num("scrapes_failed")))
                .prometheus(if prom.is_some() { format!("{p_up:.0} of {} up at the end", args.targets) } else { "—".into() }),
        );
        self.rows.push(Row::pair("series", num("series"), prom.map(|_| p_series), |v| format!("{:.3} M", v / 1e6)));
        let m_steady = m_samples_end - m_samples_warm;
        let p_steady = p_samples - p_samples_warm;
        self.rows.push(Row::pair(
            format!("samples appended after the first {} s", warm_at.as_secs()),
            m_steady,
            prom.map(|_| p_steady),
            |v| format!("{:.1} M", v / 1e6),
        ));
        self.rows.push(Row::pair("CPU over the window (s)", m_cpu_total, p_cpu_total, |v| format!("{v:.1} s")));
        self.rows.push(Row::pair(
            format!("CPU, steady (after the first {} s), % of one core", warm_at.as_secs()),
            cpu_pct(&warm_m, &last.0, steady_s),
            last.1.zip(warm_p).map(|(l, w)| cpu_pct(&w, &l, steady_s)),
            |v| format!("{v:.0} %"),
        ));
        let per_cpu = |samples: f64, cpu: f64| samples / cpu.max(1e-9);
        let m_cpu_steady = last.0.cpu_s_since(&warm_m);
        let p_cpu_steady = last.1.zip(warm_p).map(|(l, w)| l.cpu_s_since(&w));
        self.rows.push(Row::pair(
            "samples per CPU-second, steady (HTTP, parsing and storing)",
            per_cpu(m_steady, m_cpu_steady),
            p_cpu_steady.map(|c| per_cpu(p_steady, c)),
            |v| format!("{:.0} k", v / 1e3),
        ));
        self.rows.push(Row::pair("RSS, peak (VmHWM)", last.0.hwm_mib(), last.1.map(|p| p.hwm_mib()), fmt_mib));
        self.rows.push(Row::pair(
            "RSS, steady (mean of the last 60 s)",
            tail_rss(&|r| Some(r.1)),
            prom.map(|_| tail_rss(&|r| r.2)),
            fmt_mib,
        ));
        self.rows.push(Row::pair(
            "on disk at the end ÷ samples (MonitorDB: SQLite file + WAL after its last flush; Prometheus: storage dir, head only)",
            num("file_bytes") / num("samples_appended").max(1.0),
            prom.map(|_| p_storage as f64 / p_samples.max(1.0)),
            fmt_bytes,
        ));
        if prom.is_some() {
            self.notes.push(format!(
                "scrape run: Prometheus' storage is its write-ahead log ({:.0} MiB of {:.0} MiB) plus memory-mapped head chunks; its compressed blocks appear \
                 only after 2-3 h, so the bytes-per-sample comparison that counts is table 2",
                p_wal as f64 / 1048576.0,
                p_storage as f64 / 1048576.0
            ));
        }
        self.rows.push(Row::new(
            "targets process (serves both), CPU over the window",
            format!(
                "{:.1} s ({:.0} % of a core)",
                targets_after.cpu_s_since(&targets_before),
                100.0 * targets_after.cpu_s_since(&targets_before) / wall.as_secs_f64()
            ),
        ));
        self.rows.push(Row::new(
            "MonitorDB last flush at shutdown / chunks written / failed flushes",
            format!("{:.1} s / {:.0} / {:.0}", num("last_flush_s"), num("chunks_written"), num("flushes_failed")),
        ));
        if let Some(err) = summary["last_flush_error"].as_str() {
            self.notes.push(format!("MonitorDB's last flush error: {err}"));
        }
        if let (Some(p), Some(pl)) = (p_cpu_steady, last.1) {
            self.reading.push(format!(
                "Scraping: on the same targets at the same time, MonitorDB's process used {:.2}× Prometheus' CPU after the first {} s \
                 ({:.0} vs {:.0} k samples per CPU-second, both including HTTP and parsing) and {:.2}× its peak memory. Prometheus keeps \
                 a write-ahead log of samples; MonitorDB rewrites open chunks every minute instead, which is where its CPU goes once \
                 series are many (table 1).",
                m_cpu_steady / p.max(1e-9),
                warm_at.as_secs(),
                per_cpu(m_steady, m_cpu_steady) / 1e3,
                per_cpu(p_steady, p) / 1e3,
                last.0.hwm_mib() / pl.hwm_mib().max(1e-9),
            ));
        }
        if let Some(p) = p_cpu_total {
            self.verdicts.push(format!(
                "one server scraping {} targets: CPU MonitorDB {:.1} s vs Prometheus {p:.1} s ({:.2}×), peak RSS {} vs {} ({:.2}×)",
                args.targets,
                m_cpu_total,
                m_cpu_total / p.max(1e-9),
                fmt_mib(last.0.hwm_mib()),
                fmt_mib(last.1.map_or(0.0, |p| p.hwm_mib())),
                last.0.hwm_mib() / last.1.map_or(1.0, |p| p.hwm_mib()),
            ));
        }
        Ok(())
    }
}

/// One in-process ingest run.
struct IngestRun {
    series: usize,
    register: Duration,
    appending: Duration,
    flushes: Vec<Duration>,
    chunks: Vec<usize>,
    kept: usize,
    stats_took: Duration,
    head_bytes: usize,
    rss_growth_kib: u64,
}

impl IngestRun {
    fn append_rate(&self) -> f64 {
        rate(self.kept as f64, self.appending)
    }

    fn sustained(&self) -> f64 {
        rate(self.kept as f64, self.appending + self.flushes.iter().sum::<Duration>())
    }

    /// Leaving out the first flush, which also records every new series:
    /// per flush interval, its samples over its append and flush time.
    fn sustained_later(&self) -> f64 {
        let later = self.flushes.len().saturating_sub(1).max(1) as f64;
        let per_flush = self.kept as f64 / self.flushes.len().max(1) as f64;
        let append_per_flush = self.appending.as_secs_f64() / self.flushes.len().max(1) as f64;
        let flush = self.flushes.iter().skip(1).sum::<Duration>().as_secs_f64() / later;
        per_flush / (append_per_flush + flush)
    }

    fn later_flush_s(&self) -> f64 {
        let later: Vec<f64> = self.flushes.iter().skip(1).map(Duration::as_secs_f64).collect();
        later.iter().sum::<f64>() / later.len().max(1) as f64
    }

    fn later_chunks(&self) -> f64 {
        let later: Vec<usize> = self.chunks.iter().skip(1).copied().collect();
        later.iter().sum::<usize>() as f64 / later.len().max(1) as f64
    }
}

/// `targets × series` series from the synthetic exporter appended for
/// `warm` untimed rounds (flushed once at the end), then `rounds` timed
/// rounds with a flush after every 60 s of data. Timestamps are in the
/// past and start at a 6 h boundary, so after 3.5 h of warm-up the timed
/// rounds find the open chunks about half full, their average over a
/// window, whether rollup windows are 1 h or 6 h long.
async fn ingest_run(
    work: &Path,
    name: &str,
    targets: usize,
    series: usize,
    first_port: u16,
    warm: usize,
    rounds: usize,
) -> Result<IngestRun> {
    let total = targets * series;
    tracing::info!(name, series = total, warm_rounds = warm, rounds, "ingest: registering series");
    let exporter = Exporter::new(series);
    let kinds: Vec<Kind> = exporter.series().map(|(_, _, s)| s.kind).collect();
    let path = work.join(format!("{name}.db"));
    let store = SqlMonitorStore::open_sqlite(&path).await?;
    let db = Monitor::open(Arc::new(store.clone()), MonitorConfig::default()).await?;
    let me = std::process::id();
    let before = ProcSnapshot::read(me)?;
    let began = Instant::now();
    let mut refs: Vec<Vec<SeriesRef>> = Vec::with_capacity(targets);
    for target in 0..targets {
        let labels = target_labels(first_port, target);
        let mut mine = Vec::with_capacity(series);
        for (_, f, s) in exporter.series() {
            let key = SeriesKey::new(f.name.clone(), s.labels.iter().cloned().chain(labels.iter().cloned()));
            mine.push(db.series(key)?);
        }
        refs.push(mine);
    }
    let register = began.elapsed();

    let window = 6 * HOUR_MS / INTERVAL_MS;
    let latest = atoll_core::time::now_ms() / INTERVAL_MS - (warm + rounds) as i64 - 1 - window;
    let first_tick = latest - latest.rem_euclid(window);
    let mut batches: Vec<Vec<(SeriesRef, f64)>> = refs.iter().map(|r| Vec::with_capacity(r.len())).collect();
    let mut run = IngestRun {
        series: total,
        register,
        appending: Duration::ZERO,
        flushes: Vec::new(),
        chunks: Vec::new(),
        kept: 0,
        stats_took: Duration::ZERO,
        head_bytes: 0,
        rss_growth_kib: 0,
    };
    for round in 0..warm + rounds {
        let tick = first_tick + round as i64;
        // The values are computed outside the timed part: they are the
        // exporters' work, not MonitorDB's.
        for (target, batch) in batches.iter_mut().enumerate() {
            batch.clear();
            batch.extend(
                refs[target].iter().zip(&kinds).enumerate().map(|(i, (r, k))| (*r, synth::value(*k, synth::seed(target, i), tick))),
            );
        }
        let t = Instant::now();
        let mut kept = 0;
        for (target, batch) in batches.iter().enumerate() {
            kept += db.append(tick * INTERVAL_MS + offset_ms(target, targets), batch);
        }
        if kept < total {
            bail!("{} of {total} samples of round {round} were dropped", total - kept);
        }
        if round + 1 == warm {
            let t = Instant::now();
            db.flush(true).await?;
            tracing::info!(name, flush_s = t.elapsed().as_secs_f64(), "ingest: warmed up");
        }
        if round < warm {
            continue;
        }
        run.appending += t.elapsed();
        run.kept += kept;
        if (round - warm + 1).is_multiple_of(FLUSH_EVERY_ROUNDS) {
            let t = Instant::now();
            // As the server's background writer: open rollups every
            // ROLLUP_FLUSH_ROUNDS flushes.
            let n = ((round - warm + 1) / FLUSH_EVERY_ROUNDS) as u64;
            run.chunks.push(db.scheduled_flush(n).await?);
            run.flushes.push(t.elapsed());
            tracing::info!(name, flush_s = t.elapsed().as_secs_f64(), append_s = run.appending.as_secs_f64(), "ingest: flushed");
        }
    }
    let t = Instant::now();
    run.head_bytes = db.stats().head_bytes;
    run.stats_took = t.elapsed();
    run.rss_growth_kib = ProcSnapshot::read(me)?.rss_kib.saturating_sub(before.rss_kib);
    drop(db);
    store.close().await;
    std::fs::remove_file(&path)?;
    Ok(run)
}

/// Appends `series` from `first` to `end` (exclusive) ticks into a new
/// MonitorDB file, flushing after every 60 s of data as the server would,
/// and returns the open Monitor (for queries) and what the file holds.
async fn monitordb_history(path: &Path, series: &[HistSeries], first: i64, end: i64) -> Result<(Arc<Monitor>, SqlMonitorStore, Stored)> {
    let store = SqlMonitorStore::open_sqlite(path).await?;
    let db = Monitor::open(Arc::new(store.clone()), MonitorConfig::default()).await?;
    let refs: Vec<SeriesRef> = series.iter().map(|s| db.series(s.key.clone())).collect::<Result<_, _>>()?;
    let mut batch = Vec::with_capacity(series.len());
    let (mut appending, mut flushes, mut kept) = (Duration::ZERO, 0, 0);
    for tick in first..end {
        batch.clear();
        batch.extend(refs.iter().zip(series).map(|(r, s)| (*r, synth::value(s.kind, s.seed, tick))));
        let t = Instant::now();
        kept += db.append(tick * INTERVAL_MS, &batch);
        appending += t.elapsed();
        if (tick - first + 1) % FLUSH_EVERY_ROUNDS as i64 == 0 {
            db.flush(true).await?;
            flushes += 1;
        }
    }
    db.flush(true).await?;
    // Freed pages back to the file system and the WAL into the file, so the
    // file size is what the data takes.
    atoll_monitor::MonitorStore::compact(&store).await?;
    let usage: HashMap<Resolution, atoll_monitor::store::ResolutionUsage> = db.usage().await?.into_iter().collect();
    let bytes = |r: Resolution| usage.get(&r).map_or(0, |u| u.bytes);
    let samples = usage.get(&Resolution::Raw).map_or(0, |u| u.rows);
    if samples != kept as u64 {
        bail!("MonitorDB holds {samples} raw samples of the {kept} appended");
    }
    let stored = Stored {
        samples,
        raw_bytes: bytes(Resolution::Raw),
        minute_bytes: bytes(Resolution::Minute),
        hour_bytes: bytes(Resolution::Hour),
        file_bytes: file_len(path) + file_len(&path.with_extension("db-wal")),
        append_rate: rate(kept as f64, appending),
        flushes,
    };
    Ok((db, store, stored))
}

/// The samples of `series` from `first` to `end` ticks as OpenMetrics text:
/// families one after another, each series' samples in time order.
fn write_openmetrics(path: &Path, series: &[HistSeries], first: i64, end: i64) -> Result<()> {
    use std::io::Write as _;
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut family = "";
    let mut line = String::new();
    for s in series {
        if s.key.metric != family {
            family = &s.key.metric;
            writeln!(w, "# TYPE {family} unknown")?;
        }
        let prefix = format!("{} ", s.key);
        for tick in first..end {
            line.clear();
            line.push_str(&prefix);
            synth::push_value(&mut line, synth::value(s.kind, s.seed, tick));
            line.push(' ');
            line.push_str(&(tick * INTERVAL_MS / 1000).to_string());
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
    }
    writeln!(w, "# EOF")?;
    w.flush()?;
    Ok(())
}

/// p50 and p95 of a Prometheus range query, after 3 warm-ups.
async fn time_prom(p: &Prometheus, what: &str, promql: &str, start_s: i64, end_s: i64, step_s: i64, reps: usize) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    for i in 0..reps + 3 {
        let t = Instant::now();
        let n = p.query_range(promql, start_s, end_s, step_s).await?;
        if i >= 3 {
            times.push(t.elapsed());
        }
        if n != 1 {
            bail!("prometheus query {what} ({promql}) answered {n} series");
        }
    }
    Ok(percentiles(&mut times))
}

/// Nearest-rank p50 and p95, in milliseconds.
fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    times.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1));
        times.get(rank - 1).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.5), at(0.95))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn date_utc() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("unix {}", atoll_core::time::now_ms() / 1000))
}

/// The machine's load, which says how much the numbers were disturbed.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    if fields.is_empty() { "unknown".into() } else { fields.join(" ") }
}

/// `nproc 2, AMD EPYC, 23.5 GiB RAM, x86_64`.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| "?".into(), |kib| format!("{:.1}", kib / 1024.0 / 1024.0));
    format!("nproc {cores}, {model}, {mem_gib} GiB RAM, {}", std::env::consts::ARCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let a = parse_args(["--targets", "10", "--ingest-rounds", "12"].into_iter().map(String::from)).expect("parses");
        assert_eq!((a.targets, a.series, a.ingest_rounds), (10, 1000, 12));
        assert!(parse_args(["--ingest-rounds", "7"].into_iter().map(String::from)).is_err());
        assert!(parse_args(["--phases", "nope"].into_iter().map(String::from)).is_err());
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut t: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentiles(&mut t), (50.0, 95.0));
    }
}

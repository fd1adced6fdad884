//! The MonitorDB side of the side-by-side run, as a process of its own so
//! its CPU and memory can be read from /proc next to Prometheus'. A copy of
//! the server's scraper (crates/atoll-server/src/monitoring/scrape.rs)
//! without the platform around it: one task per target at a fixed offset
//! within the interval, the body parsed whole with `expo::lines`, a series
//! cache keyed by the sample line's text, one `Monitor::append` per
//! scrape, the target's `up`, duration and sample count, and
//! `Monitor::run` flushing in the background at the server's default
//! interval. `Monitor::stats` is read once per interval, as the server's
//! own /metrics does when it is scraped.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use atoll_core::time::now_ms;
use atoll_monitor::expo::{self, Line};
use atoll_monitor::{Monitor, MonitorConfig, SeriesKey, SeriesRef, SqlMonitorStore};
use tokio_util::sync::CancellationToken;

/// A body larger than this is refused, as in the server.
const MAX_BODY: usize = 32 << 20;

/// What the `scrape` process is told.
#[derive(Debug, Clone)]
pub struct ScrapeArgs {
    pub db: PathBuf,
    pub first_port: u16,
    pub targets: usize,
    pub interval: Duration,
    pub timeout: Duration,
    pub run_for: Duration,
}

/// Scrape outcomes across all targets.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Samples `Monitor::append` kept, for the benchmark to read per
    /// second (from `samples_file`) without `Monitor::stats`' lock.
    samples: AtomicU64,
}

/// Where the scrape process leaves its running sample count.
pub fn samples_file(db: &std::path::Path) -> PathBuf {
    db.with_extension("samples")
}

/// Scrapes for `run_for`, lets `Monitor::run` do its last flush, and prints
/// one JSON line of what happened on stdout.
pub async fn run(args: ScrapeArgs) -> Result<()> {
    let store = SqlMonitorStore::open_sqlite(&args.db).await.context("opening MonitorDB")?;
    let db = Monitor::open(Arc::new(store.clone()), MonitorConfig::default()).await.context("loading MonitorDB")?;
    let cancel = CancellationToken::new();
    let writer = tokio::spawn(Arc::clone(&db).run(cancel.clone()));
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(3)).build().context("HTTP client")?;
    let counts = Arc::new(Counts::default());
    let scrapers = cancel.child_token();
    let mut tasks = Vec::new();
    for i in 0..args.targets {
        let port = usize::from(args.first_port) + i;
        let target = Target {
            id: format!("synthetic/{port}"),
            url: format!("http://127.0.0.1:{port}/metrics"),
            labels: [("job".to_string(), "synthetic".to_string()), ("instance".to_string(), format!("127.0.0.1:{port}"))].into(),
        };
        let scraper = Scraper::new(Arc::clone(&db), http.clone(), target, args.timeout, Arc::clone(&counts));
        tasks.push(tokio::spawn(scraper.run(args.interval, scrapers.clone())));
    }
    let stats_task = {
        let (db, cancel, every) = (Arc::clone(&db), scrapers.clone(), args.interval);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(every) => { let _ = db.stats(); }
                }
            }
        })
    };
    let count_task = {
        let (counts, cancel, path) = (Arc::clone(&counts), scrapers.clone(), samples_file(&args.db));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let n = counts.samples.load(Ordering::Relaxed).to_string();
                if let Err(e) = tokio::fs::write(&path, n).await {
                    tracing::warn!(error = %e, "cannot write the sample count");
                }
            }
        })
    };
    tokio::time::sleep(args.run_for).await;
    scrapers.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let _ = stats_task.await;
    let _ = count_task.await;
    let flush_began = Instant::now();
    cancel.cancel();
    writer.await.context("MonitorDB's writer task")?;
    let last_flush_s = flush_began.elapsed().as_secs_f64();
    let stats = db.stats();
    let usage = db.usage().await.context("usage")?;
    let raw = usage.iter().find(|(r, _)| *r == atoll_monitor::Resolution::Raw).map(|(_, u)| *u).unwrap_or_default();
    let file_bytes = file_len(&args.db) + file_len(&args.db.with_extension("db-wal"));
    let summary = serde_json::json!({
        "scrapes_ok": counts.ok.load(Ordering::Relaxed),
        "scrapes_failed": counts.failed.load(Ordering::Relaxed),
        "series": stats.series,
        "samples_appended": stats.samples_appended,
        "samples_dropped": stats.samples_dropped,
        "chunks_written": stats.chunks_written,
        "flushes_failed": stats.flushes_failed,
        "last_flush_error": stats.last_flush_error,
        "last_flush_s": last_flush_s,
        "raw_chunk_bytes": raw.bytes,
        "raw_rows": raw.rows,
        "file_bytes": file_bytes,
    });
    store.close().await;
    println!("{summary}");
    Ok(())
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

struct Target {
    id: String,
    url: String,
    labels: BTreeMap<String, String>,
}

/// One target's scrapes and its series cache, as in the server.
struct Scraper {
    db: Arc<Monitor>,
    http: reqwest::Client,
    target: Target,
    timeout: Duration,
    counts: Arc<Counts>,
    series: HashMap<String, SeriesRef>,
    described: HashMap<String, (String, String)>,
    own: [Option<SeriesRef>; 3],
}

impl Scraper {
    fn new(db: Arc<Monitor>, http: reqwest::Client, target: Target, timeout: Duration, counts: Arc<Counts>) -> Self {
        let own = |metric: &str| db.series(SeriesKey::new(metric, target.labels.clone())).ok();
        let own = [own("up"), own("scrape_duration_seconds"), own("scrape_samples_scraped")];
        db.describe("up", "gauge", "1 when the last scrape of the target succeeded.");
        db.describe("scrape_duration_seconds", "gauge", "How long the last scrape of the target took.");
        db.describe("scrape_samples_scraped", "gauge", "Samples the last scrape of the target returned.");
        Scraper { db, http, target, timeout, counts, series: HashMap::new(), described: HashMap::new(), own }
    }

    async fn run(mut self, interval: Duration, cancel: CancellationToken) {
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        let offset = Duration::from_millis(hasher.hash_one(&self.target.id) % interval.as_millis().max(1) as u64);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            self.scrape_once().await;
        }
    }

    async fn scrape_once(&mut self) {
        let at = now_ms();
        let began = Instant::now();
        let result = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(Ok(body)) => self.ingest(at, &body),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        let took = began.elapsed();
        let (up, samples) = match &result {
            Ok(n) => (1.0, *n),
            Err(e) => {
                tracing::debug!(target = %self.target.id, error = %e, "scrape failed");
                (0.0, 0)
            }
        };
        let counter = if result.is_ok() { &self.counts.ok } else { &self.counts.failed };
        counter.fetch_add(1, Ordering::Relaxed);
        let own: Vec<(SeriesRef, f64)> =
            self.own.iter().zip([up, took.as_secs_f64(), samples as f64]).filter_map(|(r, v)| r.map(|r| (r, v))).collect();
        let kept = self.db.append(at, &own);
        self.counts.samples.fetch_add((samples + kept) as u64, Ordering::Relaxed);
    }

    async fn fetch(&self) -> Result<String, String> {
        let mut resp = self.http.get(&self.target.url).send().await.map_err(|e| format!("cannot reach {}: {e}", self.target.url))?;
        if !resp.status().is_success() {
            return Err(format!("{} answered HTTP {}", self.target.url, resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading {}: {e}", self.target.url))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("{} answered more than {} MiB", self.target.url, MAX_BODY >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| format!("{} answered bytes that are not UTF-8 text", self.target.url))
    }

    /// The server's `ingest`, line for line.
    fn ingest(&mut self, at: i64, body: &str) -> Result<usize, String> {
        let lines: Vec<Line<'_>> = expo::lines(body).collect::<Result<_, _>>().map_err(|e| format!("not Prometheus text: {e}"))?;
        let mut batch = Vec::with_capacity(lines.len());
        let mut help: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for line in &lines {
            match *line {
                Line::Sample { series, value } => {
                    if let Some(r) = self.series.get(series) {
                        batch.push((*r, value));
                        continue;
                    }
                    let mut key = expo::parse_series(series).map_err(|e| format!("not Prometheus text: {e}"))?;
                    for (k, v) in &self.target.labels {
                        key.labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    match self.db.series(key) {
                        Ok(r) => {
                            self.series.insert(series.to_string(), r);
                            batch.push((r, value));
                        }
                        Err(e) => tracing::warn!(target = %self.target.id, error = %e, "series refused"),
                    }
                }
                Line::Help { metric, text } => help.entry(metric).or_default().1 = text,
                Line::Type { metric, kind } => help.entry(metric).or_default().0 = kind,
            }
        }
        for (metric, (kind, text)) in help {
            let seen = self.described.get(metric);
            if seen.is_none_or(|(k, t)| k != kind || t != text) {
                self.db.describe(metric, kind, text);
                self.described.insert(metric.to_string(), (kind.to_string(), text.to_string()));
            }
        }
        self.db.append(at, &batch);
        Ok(batch.len())
    }
}

//! The scraper: one task per target, each at its own fixed offset within
//! the interval (so a thousand targets do not all fire at once, and each
//! series' timestamps stay regular, which is what compresses), each bounded
//! by the scrape timeout (so a hung target slows nobody else).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_core::time::now_ms;
use atoll_monitor::expo::{self, Line};
use atoll_monitor::{SeriesKey, SeriesRef};
use tokio_util::sync::CancellationToken;

use super::{Monitoring, Target, TargetStatus, targets};
use crate::state::AppState;

/// A body larger than this is refused: no exporter of ours comes close.
const MAX_BODY: usize = 32 << 20;

/// Keeps one scrape task per target while this server leads.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let interval = Duration::from_millis(state.config.scrape_interval_ms);
    // Agents serve HTTPS with the platform's CA when the platform does.
    let http = match atoll_client::platform_http(reqwest::Client::builder().connect_timeout(Duration::from_secs(3))) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the scraper's HTTP client; no metrics will be collected");
            return;
        }
    };
    let mut running: HashMap<String, (Target, CancellationToken)> = HashMap::new();
    loop {
        let wanted = if state.platform.leading().is_some() {
            match tokio::time::timeout(interval, targets::current(&state)).await {
                Ok(Ok(t)) => Some(t),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot list scrape targets; keeping the current ones");
                    None
                }
                Err(_) => None,
            }
        } else {
            Some(Vec::new())
        };
        if let Some(wanted) = wanted {
            let by_id: HashMap<&str, &Target> = wanted.iter().map(|t| (t.id.as_str(), t)).collect();
            running.retain(|id, (target, cancel)| {
                // A target whose address, token or labels changed restarts.
                let keep = by_id.get(id.as_str()) == Some(&&*target);
                if !keep {
                    cancel.cancel();
                }
                keep
            });
            state.monitoring.retain(|id| by_id.contains_key(id));
            for target in wanted {
                if running.contains_key(&target.id) {
                    continue;
                }
                let cancel = shutdown.child_token();
                let scraper = Scraper::new(Arc::clone(&state.monitoring), http.clone(), target.clone(), &state.config);
                tokio::spawn(scraper.run(state.clone(), interval, cancel.clone()));
                running.insert(target.id.clone(), (target, cancel));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    for (_, (_, cancel)) in running {
        cancel.cancel();
    }
}

/// One target's scrapes and its series cache.
struct Scraper {
    monitoring: Arc<Monitoring>,
    http: reqwest::Client,
    target: Target,
    timeout: Duration,
    /// A sample line's series text → its handle, with the target's labels
    /// added: a known series costs a lookup, not a parse.
    series: HashMap<String, SeriesRef>,
    described: HashMap<String, (String, String)>,
    up: Option<SeriesRef>,
    duration: Option<SeriesRef>,
    scraped: Option<SeriesRef>,
}

/// A scrape that failed: why, in words for the targets page.
type ScrapeError = String;

impl Scraper {
    fn new(monitoring: Arc<Monitoring>, http: reqwest::Client, target: Target, config: &crate::ServerConfig) -> Self {
        let timeout = Duration::from_millis(config.scrape_timeout_ms);
        let own = |metric: &str| {
            let key = SeriesKey::new(metric, target.labels.clone());
            let r = monitoring.db.series(key.clone()).ok()?;
            if let Some(remote) = &monitoring.remote {
                remote.learn(r, &key);
            }
            Some(r)
        };
        let (up, duration, scraped) = (own("up"), own("scrape_duration_seconds"), own("scrape_samples_scraped"));
        monitoring.db.describe("up", "gauge", "1 when the last scrape of the target succeeded.");
        monitoring.db.describe("scrape_duration_seconds", "gauge", "How long the last scrape of the target took.");
        monitoring.db.describe("scrape_samples_scraped", "gauge", "Samples the last scrape of the target returned.");
        Scraper { monitoring, http, target, timeout, series: HashMap::new(), described: HashMap::new(), up, duration, scraped }
    }

    async fn run(mut self, state: AppState, interval: Duration, cancel: CancellationToken) {
        // A fixed offset per target within the interval.
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        let offset = Duration::from_millis(hasher.hash_one(&self.target.id) % interval.as_millis().max(1) as u64);
        let start = tokio::time::Instant::now() + offset;
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if state.platform.leading().is_none() {
                continue;
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
            Err(_) => Err(format!("no answer within {} ms (scrape_timeout_ms)", self.timeout.as_millis())),
        };
        let took = began.elapsed();
        let (up, samples, error) = match result {
            Ok(n) => (true, n, None),
            Err(e) => (false, 0, Some(e)),
        };
        if let Some(e) = &error {
            tracing::debug!(target = %self.target.id, error = %e, "scrape failed");
        }
        let own: Vec<(SeriesRef, f64)> =
            [(self.up, if up { 1.0 } else { 0.0 }), (self.duration, took.as_secs_f64()), (self.scraped, samples as f64)]
                .into_iter()
                .filter_map(|(r, v)| r.map(|r| (r, v)))
                .collect();
        self.monitoring.db.append(at, &own);
        if let Some(remote) = &self.monitoring.remote {
            remote.push(at, &own);
        }
        self.monitoring.set_status(TargetStatus {
            target: self.target.clone(),
            up: Some(up),
            last_scrape_ms: Some(at),
            duration_ms: Some(took.as_millis() as u64),
            samples,
            error,
        });
    }

    async fn fetch(&self) -> Result<String, ScrapeError> {
        let mut req = self.http.get(&self.target.url);
        if let Some(token) = &self.target.token {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(|e| format!("cannot reach {}: {}", self.target.url, atoll_client::describe(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("{} answered HTTP {}", self.target.url, resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading {}: {}", self.target.url, atoll_client::describe(&e)))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("{} answered more than {} MiB", self.target.url, MAX_BODY >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| format!("{} answered bytes that are not UTF-8 text", self.target.url))
    }

    /// Parses the whole body first: garbage anywhere means no samples at
    /// all from this scrape, and the target down with the line named.
    fn ingest(&mut self, at: i64, body: &str) -> Result<usize, ScrapeError> {
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
                        // The exporter's own label wins, as `honor_labels`.
                        key.labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    match self.monitoring.db.series(key.clone()) {
                        Ok(r) => {
                            if let Some(remote) = &self.monitoring.remote {
                                remote.learn(r, &key);
                            }
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
                self.monitoring.db.describe(metric, kind, text);
                self.described.insert(metric.to_string(), (kind.to_string(), text.to_string()));
            }
        }
        self.monitoring.db.append(at, &batch);
        if let Some(remote) = &self.monitoring.remote {
            remote.push(at, &batch);
        }
        Ok(batch.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use atoll_monitor::{Monitor, Query, SqlMonitorStore};
    use axum::routing::get;

    #[tokio::test]
    async fn bad_targets_are_down_with_the_reason_and_slow_nobody_else() {
        let app = axum::Router::new()
            .route("/good", get(|| async { "# HELP m A gauge.\n# TYPE m gauge\nm{kind=\"a\"} 1.5\nm{kind=\"b\"} 2\n" }))
            .route("/garbage", get(|| async { "m 1\n<html>503 Service Unavailable</html>\n" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "m 1\n"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let store = SqlMonitorStore::open_sqlite(&dir.path().join("m.db")).await.unwrap();
        let db = Monitor::open(Arc::new(store), atoll_monitor::MonitorConfig::default()).await.unwrap();
        let monitoring = Arc::new(Monitoring { db, status: std::sync::RwLock::new(Default::default()), remote: None });
        let config = crate::ServerConfig { scrape_timeout_ms: 500, ..crate::ServerConfig::default() };
        let target = |path: &str| Target {
            id: format!("test/{path}"),
            url: format!("http://{addr}/{path}"),
            token: None,
            labels: [("job".to_string(), "test".to_string()), ("instance".to_string(), path.to_string())].into(),
        };
        atoll_pki::install_provider();
        let http = reqwest::Client::new();
        let mut scrapers: Vec<Scraper> = ["good", "garbage", "slow", "missing"]
            .iter()
            .map(|p| Scraper::new(Arc::clone(&monitoring), http.clone(), target(p), &config))
            .collect();
        let began = Instant::now();
        futures::future::join_all(scrapers.iter_mut().map(Scraper::scrape_once)).await;
        assert!(began.elapsed() < Duration::from_secs(2), "the slow target held the others up: {:?}", began.elapsed());

        let status: BTreeMap<String, TargetStatus> =
            monitoring.targets().into_iter().map(|t| (t.target.instance().to_string(), t)).collect();
        assert_eq!((status["good"].up, status["good"].samples), (Some(true), 2));
        let reason = |p: &str| status[p].error.clone().unwrap_or_default();
        assert_eq!(status["garbage"].up, Some(false));
        assert!(reason("garbage").contains("line 2"), "{}", reason("garbage"));
        assert!(reason("slow").contains("no answer within 500 ms"), "{}", reason("slow"));
        assert!(reason("missing").contains("HTTP 404"), "{}", reason("missing"));

        // The good target's series carry its labels; `up` says who is down.
        let now = now_ms();
        let q = |metric: &str| Query {
            metric: metric.into(),
            matchers: vec![],
            start_ms: now - 60_000,
            end_ms: now + 1_000,
            step_ms: Some(1_000),
            rate: false,
            agg: None,
            by: vec![],
        };
        let m = monitoring.db.query(&q("m"), now).await.unwrap();
        assert_eq!(m.series.len(), 2, "garbage added nothing: {m:?}");
        assert!(m.series.iter().all(|s| s.labels["job"] == "test" && s.labels["instance"] == "good"));
        let up = monitoring.db.query(&q("up"), now).await.unwrap();
        let up: BTreeMap<&str, f64> =
            up.series.iter().map(|s| (s.labels["instance"].as_str(), s.values.iter().flatten().copied().last().unwrap())).collect();
        assert_eq!(up, [("garbage", 0.0), ("good", 1.0), ("missing", 0.0), ("slow", 0.0)].into());
        assert_eq!(monitoring.db.metrics().iter().find(|m| m.name == "m").map(|m| m.help.clone()), Some("A gauge.".into()));
    }
}

//! MonitorDB: the platform's metric history.
//!
//! Samples arrive in batches from the scraper and go to each series'
//! in-memory head ([`head`]), which fills Gorilla-compressed chunks
//! ([`codec`]) and rolls minutes and hours up as it goes. A background
//! loop ([`Monitor::run`]) writes closed and changed chunks to the store
//! ([`store`]) in batches, deletes what is past its retention, and keeps
//! the store under its disk budget by dropping the oldest raw data first.
//! Ingest never waits for the store.

pub mod codec;
pub mod expo;
mod head;
pub mod query;
pub mod series;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use atoll_core::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::codec::{ChunkError, ChunkReader};
use crate::head::SeriesHead;
pub use crate::query::{Agg, Answer, Query, QueryError};
pub use crate::series::{Matcher, SeriesKey};
pub use crate::store::{MetricHelp, MonitorStore, Resolution, SqlMonitorStore, StoreError, StoredChunk};

/// How long each resolution is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: i64,
    pub minute_ms: i64,
    pub hour_ms: i64,
}

impl Default for Retention {
    /// 8 days raw, 30 days of minutes, 400 days of hours.
    fn default() -> Self {
        const DAY: i64 = 86_400_000;
        Retention { raw_ms: 8 * DAY, minute_ms: 30 * DAY, hour_ms: 400 * DAY }
    }
}

impl Retention {
    fn of(&self, res: Resolution) -> i64 {
        match res {
            Resolution::Raw => self.raw_ms,
            Resolution::Minute => self.minute_ms,
            Resolution::Hour => self.hour_ms,
        }
    }
}

/// Open rollup chunks are written every this many background flushes.
pub const ROLLUP_FLUSH_ROUNDS: u64 = 10;

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub retention: Retention,
    /// How often changed chunks are written: what a crash can lose.
    pub flush_every: Duration,
    /// Disk the store may take; past it the oldest raw data goes first.
    pub max_disk_bytes: Option<u64>,
    /// Series beyond this many are refused (a label gone wild must not eat
    /// the server's memory).
    pub max_series: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig { retention: Retention::default(), flush_every: Duration::from_secs(60), max_disk_bytes: None, max_series: 2_000_000 }
    }
}

/// A series' handle for [`Monitor::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesRef(u32);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("MonitorDB chunk of series {series}: {error}")]
    Chunk { series: i64, error: ChunkError },
    #[error("MonitorDB holds {0} series, its limit; new series are refused (raise max_series or drop the label that multiplies them)")]
    SeriesLimit(usize),
}

/// Counters about MonitorDB itself, for the server's own metrics and the
/// alarm on a full disk.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub series: usize,
    pub samples_appended: u64,
    pub samples_dropped: u64,
    pub chunks_written: u64,
    pub flushes_failed: u64,
    pub last_flush_error: Option<String>,
    /// Chunks deleted to stay under the disk budget or after a full disk.
    pub chunks_dropped_for_space: u64,
    pub last_space_event_ms: Option<i64>,
    pub chunks_expired: u64,
    pub head_bytes: usize,
    pub pending_chunks: usize,
}

struct State {
    keys: Vec<Arc<SeriesKey>>,
    heads: Vec<SeriesHead>,
    by_id: HashMap<i64, u32>,
    by_metric: HashMap<String, Vec<u32>>,
    new_series: Vec<SeriesKey>,
    help: HashMap<String, MetricHelp>,
    new_help: Vec<(String, MetricHelp)>,
    /// Closed chunks (and failed writes) waiting for the next flush.
    closed: Vec<StoredChunk>,
    /// Chunks a flush is writing now: still visible to queries.
    in_flight: Arc<Vec<StoredChunk>>,
    stats: Stats,
    /// The newest series recording read from the store.
    seen_series_ms: i64,
}

/// MonitorDB: heads in memory over a [`MonitorStore`].
pub struct Monitor {
    store: Arc<dyn MonitorStore>,
    config: MonitorConfig,
    state: Mutex<State>,
    /// One flush or clean-up at a time.
    writing: tokio::sync::Mutex<()>,
}

/// Pending chunks kept in memory at most while the store refuses writes;
/// the oldest raw ones go first past this.
const MAX_PENDING: usize = 2_000_000;

impl Monitor {
    /// Loads the series catalogue and metric help from `store`.
    pub async fn open(store: Arc<dyn MonitorStore>, config: MonitorConfig) -> Result<Arc<Monitor>, MonitorError> {
        let (series, newest) = store.load_series(0).await?;
        let help = store.load_help().await?;
        let mut state = State {
            keys: Vec::new(),
            heads: Vec::new(),
            by_id: HashMap::new(),
            by_metric: HashMap::new(),
            new_series: Vec::new(),
            help: help.into_iter().collect(),
            new_help: Vec::new(),
            closed: Vec::new(),
            in_flight: Arc::new(Vec::new()),
            stats: Stats::default(),
            seen_series_ms: newest,
        };
        for key in series {
            state.add(key, false);
        }
        Ok(Arc::new(Monitor { store, config, state: Mutex::new(state), writing: tokio::sync::Mutex::new(()) }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters at worst; keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The handle of `key`, registering the series when new.
    pub fn series(&self, key: SeriesKey) -> Result<SeriesRef, MonitorError> {
        let mut state = self.lock();
        if let Some(r) = state.by_id.get(&key.id()) {
            return Ok(SeriesRef(*r));
        }
        if state.keys.len() >= self.config.max_series {
            return Err(MonitorError::SeriesLimit(state.keys.len()));
        }
        Ok(state.add(key, true))
    }

    /// Picks up series and help texts other servers recorded (another
    /// server scrapes while this one answers queries). Series recorded in
    /// the last minute are read again: clocks and commits are not ordered.
    pub async fn refresh(&self) -> Result<usize, MonitorError> {
        let since = self.lock().seen_series_ms - 60_000;
        let (series, newest) = self.store.load_series(since.max(0)).await?;
        let help = self.store.load_help().await?;
        let mut state = self.lock();
        let mut added = 0;
        for key in series {
            if !state.by_id.contains_key(&key.id()) && state.keys.len() < self.config.max_series {
                state.add(key, false);
                added += 1;
            }
        }
        state.seen_series_ms = state.seen_series_ms.max(newest);
        for (metric, h) in help {
            state.help.entry(metric).or_insert(h);
        }
        Ok(added)
    }

    /// Records what a metric is (from HELP and TYPE lines), when it changed.
    pub fn describe(&self, metric: &str, kind: &str, help: &str) {
        let mut state = self.lock();
        let new = MetricHelp { kind: kind.to_string(), help: help.to_string() };
        if state.help.get(metric) != Some(&new) {
            state.help.insert(metric.to_string(), new.clone());
            state.new_help.push((metric.to_string(), new));
        }
    }

    /// Adds one timestamp's samples. Returns how many were kept: a sample
    /// not after its series' last one is dropped.
    pub fn append(&self, ts: i64, samples: &[(SeriesRef, f64)]) -> usize {
        let mut state = self.lock();
        let state = &mut *state;
        let mut kept = 0;
        for (r, value) in samples {
            if let Some(head) = state.heads.get_mut(r.0 as usize)
                && head.append(ts, *value, &mut state.closed)
            {
                kept += 1;
            }
        }
        state.stats.samples_appended += kept as u64;
        state.stats.samples_dropped += (samples.len() - kept) as u64;
        if state.closed.len() > MAX_PENDING {
            state.shed_pending();
        }
        kept
    }

    /// Writes new series, help texts, closed chunks and (with `partial`)
    /// the open chunks that changed. On failure everything taken is kept
    /// for the next flush.
    pub async fn flush(&self, partial: bool) -> Result<usize, MonitorError> {
        self.flush_open(partial, partial).await
    }

    /// The flush of the background writer's `round`: closed chunks and
    /// open raw ones every time, open rollups every [`ROLLUP_FLUSH_ROUNDS`]
    /// rounds. An open rollup chunk spans hours or days, so rewriting it on
    /// every flush was two thirds of the rows written for nothing a query
    /// of a recent range needs (the benchmark's steady-state ingest rose
    /// from 131k to 250-280k samples/s at 1M series); what a crash can lose of rollups grows
    /// to that many flush intervals.
    pub async fn scheduled_flush(&self, round: u64) -> Result<usize, MonitorError> {
        self.flush_open(true, round.is_multiple_of(ROLLUP_FLUSH_ROUNDS)).await
    }

    async fn flush_open(&self, raw: bool, rollups: bool) -> Result<usize, MonitorError> {
        let _writing = self.writing.lock().await;
        let (series, help, chunks) = {
            let mut state = self.lock();
            let mut chunks = std::mem::take(&mut state.closed);
            if raw {
                for head in &mut state.heads {
                    head.take_dirty(&mut chunks, rollups);
                }
            }
            let chunks = Arc::new(chunks);
            state.in_flight = Arc::clone(&chunks);
            (std::mem::take(&mut state.new_series), std::mem::take(&mut state.new_help), chunks)
        };
        let mut result = self.write(&series, &help, &chunks).await;
        if let Err(e) = &result
            && e.is_disk_full()
        {
            tracing::warn!(error = %e, "MonitorDB's disk is full; dropping the oldest raw data");
            self.free_space(true).await;
            result = self.write(&series, &help, &chunks).await;
        }
        let mut state = self.lock();
        state.in_flight = Arc::new(Vec::new());
        match result {
            Ok(()) => {
                state.stats.chunks_written += chunks.len() as u64;
                state.stats.last_flush_error = None;
                Ok(chunks.len())
            }
            Err(e) => {
                state.stats.flushes_failed += 1;
                state.stats.last_flush_error = Some(e.to_string());
                let newer = std::mem::take(&mut state.closed);
                state.closed = chunks.iter().cloned().chain(newer).collect();
                state.new_series.extend(series);
                state.new_help.extend(help);
                Err(e.into())
            }
        }
    }

    async fn write(&self, series: &[SeriesKey], help: &[(String, MetricHelp)], chunks: &[StoredChunk]) -> Result<(), StoreError> {
        self.store.put_series(series, now_ms()).await?;
        self.store.put_help(help).await?;
        self.store.put_chunks(chunks).await
    }

    /// Deletes chunks past their retention, a batch at a time. Returns how
    /// many went.
    pub async fn expire(&self, now_ms: i64) -> Result<u64, MonitorError> {
        let _writing = self.writing.lock().await;
        let mut total = 0;
        for res in Resolution::ALL {
            let before = now_ms - self.config.retention.of(res);
            loop {
                let n = self.store.delete_before(res, before, 2_000).await?;
                total += n;
                if n < 2_000 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        if total > 0 {
            self.store.compact().await?;
        }
        self.lock().stats.chunks_expired += total;
        Ok(total)
    }

    /// Keeps the store under its budget (or, after a full disk, frees some
    /// room): oldest raw chunks first, then minutes, then hours.
    pub async fn free_space(&self, disk_full: bool) {
        let mut dropped = 0;
        for res in Resolution::ALL {
            loop {
                let over = match (self.store.disk_bytes().await, self.config.max_disk_bytes) {
                    (Ok(Some(used)), Some(max)) => used > max,
                    _ => false,
                };
                if !(over || (disk_full && dropped == 0)) {
                    break;
                }
                // A tenth of the raw chunks per round, at least a thousand.
                let limit = match self.store.usage(res).await {
                    Ok(u) => (u.chunks / 10).clamp(1_000, 50_000) as u32,
                    Err(_) => 1_000,
                };
                match self.store.delete_oldest(res, limit).await {
                    Ok(0) => break,
                    Ok(n) => dropped += n,
                    Err(e) => {
                        tracing::warn!(error = %e, "MonitorDB could not delete old chunks to free space");
                        return;
                    }
                }
                if let Err(e) = self.store.compact().await {
                    tracing::warn!(error = %e, "MonitorDB could not give freed space back");
                }
            }
        }
        if dropped > 0 {
            tracing::warn!(chunks = dropped, "MonitorDB dropped its oldest data to stay within its disk space");
            let mut state = self.lock();
            state.stats.chunks_dropped_for_space += dropped;
            state.stats.last_space_event_ms = Some(now_ms());
        }
    }

    /// Flushes every `flush_every`, expires and checks the budget every
    /// ten flushes, and flushes once more when cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut round = 0u64;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.flush_every) => {}
            }
            round += 1;
            if let Err(e) = self.scheduled_flush(round).await {
                tracing::warn!(error = %e, "MonitorDB flush failed; kept in memory for the next one");
            }
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "MonitorDB: cannot read new series");
            }
            if round == 1 || round.is_multiple_of(10) {
                if let Err(e) = self.expire(now_ms()).await {
                    tracing::warn!(error = %e, "MonitorDB retention failed");
                }
                let _writing = self.writing.lock().await;
                self.free_space(false).await;
            }
        }
        if let Err(e) = self.flush(true).await {
            tracing::warn!(error = %e, "MonitorDB's last flush failed; recent samples are lost");
        }
    }

    pub fn stats(&self) -> Stats {
        let state = self.lock();
        let mut stats = state.stats.clone();
        stats.series = state.keys.len();
        stats.head_bytes = state.heads.iter().map(SeriesHead::open_bytes).sum();
        stats.pending_chunks = state.closed.len();
        stats
    }

    /// Usage per resolution, from the store.
    pub async fn usage(&self) -> Result<Vec<(Resolution, store::ResolutionUsage)>, MonitorError> {
        let mut out = Vec::new();
        for res in Resolution::ALL {
            out.push((res, self.store.usage(res).await?));
        }
        Ok(out)
    }

    pub async fn disk_bytes(&self) -> Result<Option<u64>, MonitorError> {
        Ok(self.store.disk_bytes().await?)
    }

    /// Every metric with its help text, kind, label names and series count.
    pub fn metrics(&self) -> Vec<MetricInfo> {
        let state = self.lock();
        let mut out: Vec<MetricInfo> = state
            .by_metric
            .iter()
            .map(|(name, refs)| {
                let mut labels: Vec<String> = refs.iter().flat_map(|r| state.keys[*r as usize].labels.keys().cloned()).collect();
                labels.sort();
                labels.dedup();
                let help = state.help.get(name).cloned().unwrap_or_default();
                MetricInfo { name: name.clone(), kind: help.kind, help: help.help, labels, series: refs.len() }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Runs `q` over stored and in-memory data.
    pub async fn query(&self, q: &Query, now_ms: i64) -> Result<Answer, MonitorError> {
        let mut step = q.validate()?;
        if !self.lock().by_metric.contains_key(&q.metric) {
            // Perhaps another server recorded it since our last refresh.
            self.refresh().await?;
        }
        let res = query::pick_resolution(q.start_ms, q.end_ms, now_ms, &self.config.retention);
        step = step.max(res.bucket_ms());
        let from = q.start_ms - 2 * step;
        // Which series, and the chunks only memory has.
        let (selected, mut memory) = {
            let state = self.lock();
            let refs = state.by_metric.get(&q.metric).ok_or_else(|| QueryError::UnknownMetric(q.metric.clone()))?;
            let selected: Vec<(i64, Arc<SeriesKey>)> = refs
                .iter()
                .map(|r| &state.keys[*r as usize])
                .filter(|k| q.matchers.iter().all(|m| m.matches(k)))
                .map(|k| (k.id(), Arc::clone(k)))
                .collect();
            if selected.len() > query::MAX_SERIES {
                return Err(QueryError::TooManySeries { found: selected.len(), max: query::MAX_SERIES }.into());
            }
            let wanted: std::collections::HashSet<i64> = selected.iter().map(|(id, _)| *id).collect();
            let overlaps = |c: &&StoredChunk| c.res == res && wanted.contains(&c.series) && c.end_ms >= from && c.start_ms <= q.end_ms;
            let mut memory: Vec<StoredChunk> = state.closed.iter().chain(state.in_flight.iter()).filter(overlaps).cloned().collect();
            for (id, _) in &selected {
                if let Some(chunk) = state.by_id.get(id).and_then(|r| state.heads[*r as usize].open_chunk(res))
                    && chunk.end_ms >= from
                    && chunk.start_ms <= q.end_ms
                {
                    memory.push(chunk);
                }
            }
            (selected, memory)
        };
        let ids: Vec<i64> = selected.iter().map(|(id, _)| *id).collect();
        let mut chunks = self.store.chunks(&ids, res, from, q.end_ms).await?;
        chunks.append(&mut memory);
        // The same chunk from memory and from the store: keep the longest.
        chunks.sort_by_key(|c| (c.series, c.start_ms, std::cmp::Reverse(c.rows)));
        chunks.dedup_by(|later, earlier| later.series == earlier.series && later.start_ms == earlier.start_ms);

        let col = match (res, q.rate) {
            (Resolution::Raw, _) => 0,
            (_, true) => 3,
            (_, false) => 2,
        };
        let timestamps = query::steps(q.start_ms, q.end_ms, step);
        let mut by_series: HashMap<i64, Vec<(i64, f64)>> = HashMap::new();
        let mut row = [0.0; 4];
        for c in &chunks {
            let rows = by_series.entry(c.series).or_default();
            let damaged = |error| MonitorError::Chunk { series: c.series, error };
            let mut reader = ChunkReader::new(&c.data).map_err(damaged)?;
            let cols = reader.cols().min(4);
            while let Some(ts) = reader.next_row(&mut row[..cols]).map_err(damaged)? {
                if ts >= from && ts <= q.end_ms {
                    rows.push((ts, row[col.min(cols - 1)]));
                }
            }
        }
        let mut series = Vec::with_capacity(selected.len());
        for (id, key) in &selected {
            let Some(mut rows) = by_series.remove(id) else { continue };
            // Chunks of two writers (a leader change) may overlap.
            rows.sort_by_key(|r| r.0);
            rows.dedup_by_key(|r| r.0);
            series.push(query::Series { labels: key.labels.clone(), values: query::align(&rows, &timestamps, step, q.rate) });
        }
        if let Some(agg) = q.agg {
            series = query::aggregate(series, agg, &q.by);
        }
        Ok(Answer { metric: q.metric.clone(), resolution: res, step_ms: step, timestamps, series })
    }
}

impl State {
    /// Registers a series; `persist` when the store does not have it yet.
    fn add(&mut self, key: SeriesKey, persist: bool) -> SeriesRef {
        let id = key.id();
        let r = self.keys.len() as u32;
        self.by_metric.entry(key.metric.clone()).or_default().push(r);
        self.by_id.insert(id, r);
        self.heads.push(SeriesHead::new(id));
        if persist {
            self.new_series.push(key.clone());
        }
        self.keys.push(Arc::new(key));
        SeriesRef(r)
    }

    /// The store has refused writes for long: drop the oldest raw chunks
    /// rather than grow without bound (rollups are kept).
    fn shed_pending(&mut self) {
        let before = self.closed.len();
        let excess = before - MAX_PENDING / 2;
        let mut raw_seen = 0;
        self.closed.retain(|c| {
            if c.res == Resolution::Raw && raw_seen < excess {
                raw_seen += 1;
                false
            } else {
                true
            }
        });
        self.stats.chunks_dropped_for_space += (before - self.closed.len()) as u64;
        self.stats.last_space_event_ms = Some(now_ms());
    }
}

/// A metric as `GET /api/v1/metrics` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MetricInfo {
    pub name: String,
    pub kind: String,
    pub help: String,
    pub labels: Vec<String>,
    pub series: usize,
}

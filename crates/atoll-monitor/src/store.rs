//! Where chunks live: one trait, one SQL implementation over sqlx's `Any`
//! driver, on a SQLite file of its own (single node) or a database on the
//! platform's Galera (multi-node, replicated like MetaDB).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
// Every dynamic statement below only repeats `?` placeholders.
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

use crate::series::SeriesKey;

/// How finely a chunk's rows are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    /// Samples as scraped.
    Raw,
    /// One row per minute: min, max, avg, last.
    Minute,
    /// One row per hour: min, max, avg, last.
    Hour,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::Raw, Resolution::Minute, Resolution::Hour];

    /// As the API names it (the same as its serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
        }
    }

    pub(crate) fn code(self) -> i64 {
        match self {
            Resolution::Raw => 0,
            Resolution::Minute => 1,
            Resolution::Hour => 2,
        }
    }

    /// The bucket width of a rollup; 0 for raw.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Resolution::Raw => 0,
            Resolution::Minute => 60_000,
            Resolution::Hour => 3_600_000,
        }
    }

    /// Chunks never straddle a multiple of this, so retention drops whole
    /// chunks and a chunk's rows stay few enough to rewrite cheaply.
    pub(crate) fn window_ms(self) -> i64 {
        match self {
            Resolution::Raw => 2 * 3_600_000,
            Resolution::Minute => 6 * 3_600_000,
            Resolution::Hour => 10 * 86_400_000,
        }
    }

    pub(crate) fn cols(self) -> u8 {
        match self {
            Resolution::Raw => 1,
            Resolution::Minute | Resolution::Hour => 4,
        }
    }
}

/// One stored chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub series: i64,
    pub res: Resolution,
    pub start_ms: i64,
    pub end_ms: i64,
    pub rows: u32,
    pub data: Vec<u8>,
}

/// What a metric is, for the metric list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricHelp {
    pub kind: String,
    pub help: String,
}

/// Chunk count and bytes at one resolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResolutionUsage {
    pub chunks: u64,
    pub rows: u64,
    pub bytes: u64,
    pub oldest_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("MonitorDB: {0}")]
    Db(#[from] sqlx::Error),
    #[error("MonitorDB location `{0}` is not sqlite://… or mysql://…")]
    UnsupportedUrl(String),
    #[error("MonitorDB holds a damaged row: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The disk (or the database's quota) is full: SQLite's SQLITE_FULL,
    /// MySQL's "table is full" / "out of disk space" errors.
    pub fn is_disk_full(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(d)) = self else {
            return false;
        };
        if let Some(my) = d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            return matches!(my.number(), 1114 | 1021 | 3 | 28);
        }
        matches!(d.code().as_deref(), Some("13"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// MonitorDB's storage. Writes are idempotent (a chunk is keyed by series,
/// resolution and start, and a rewrite replaces it), so a flush that failed
/// halfway is simply repeated.
#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Series recorded at or after `since_ms` (0: all), and the newest
    /// recording time seen (for the next call).
    async fn load_series(&self, since_ms: i64) -> Result<(Vec<SeriesKey>, i64)>;
    /// Records series as of `now_ms`.
    async fn put_series(&self, series: &[SeriesKey], now_ms: i64) -> Result<()>;
    async fn load_help(&self) -> Result<Vec<(String, MetricHelp)>>;
    async fn put_help(&self, help: &[(String, MetricHelp)]) -> Result<()>;
    async fn put_chunks(&self, chunks: &[StoredChunk]) -> Result<()>;
    /// Chunks of `series` at `res` with rows in `[from, to]`, by start.
    async fn chunks(&self, series: &[i64], res: Resolution, from: i64, to: i64) -> Result<Vec<StoredChunk>>;
    /// Deletes up to `limit` chunks at `res` that ended before `before`.
    async fn delete_before(&self, res: Resolution, before: i64, limit: u32) -> Result<u64>;
    /// Deletes up to `limit` of the oldest chunks at `res`.
    async fn delete_oldest(&self, res: Resolution, limit: u32) -> Result<u64>;
    async fn usage(&self, res: Resolution) -> Result<ResolutionUsage>;
    /// Bytes the store takes on disk, where it can tell (the SQLite file).
    async fn disk_bytes(&self) -> Result<Option<u64>>;
    /// Gives freed space back to the file system, where that is a thing.
    async fn compact(&self) -> Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    MySql,
}

/// [`MonitorStore`] on SQLite or MySQL/MariaDB.
#[derive(Debug, Clone)]
pub struct SqlMonitorStore {
    pool: AnyPool,
    backend: Backend,
}

/// Rows per multi-row statement: SQLite allows 32766 bound values.
const BATCH: usize = 500;

impl SqlMonitorStore {
    /// `sqlite://PATH` or `mysql://USER:PASS@HOST:PORT/DB`; creates the
    /// schema when missing.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, pool) = if url.starts_with("sqlite:") {
            let url = if url.contains("mode=") { url.to_string() } else { format!("{url}?mode=rwc") };
            let pool = AnyPoolOptions::new()
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        // Before any table exists, so deleted chunks can be
                        // handed back to the file system (see `compact`).
                        conn.execute("PRAGMA auto_vacuum = INCREMENTAL").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        // Losing the last commits on a power cut costs
                        // seconds of metrics; never a corrupt file.
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        // A flush rewrites every series' open chunks: with
                        // SQLite's default 2 MiB cache its transaction
                        // spills pages to the WAL and rereads them. Pages
                        // are taken only as the file grows.
                        conn.execute("PRAGMA cache_size = -65536").await?;
                        // The WAL holds a whole flush; give the disk back
                        // after each checkpoint.
                        conn.execute("PRAGMA journal_size_limit = 67108864").await?;
                        // Each multi-row REPLACE inside the flush's
                        // transaction keeps a statement journal of every
                        // page it changes; in a temporary file that was
                        // most of a flush's writes.
                        conn.execute("PRAGMA temp_store = MEMORY").await?;
                        Ok(())
                    })
                })
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect(&url)
                .await?;
            (Backend::Sqlite, pool)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let pool = AnyPoolOptions::new().max_connections(4).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
            (Backend::MySql, pool)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let store = SqlMonitorStore { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// The embedded MonitorDB file at `path`.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Self> {
        let text = path.to_str().ok_or_else(|| StoreError::UnsupportedUrl(path.display().to_string()))?;
        let escaped = text.replace('%', "%25").replace('?', "%3F").replace('#', "%23");
        Self::connect(&format!("sqlite://{escaped}")).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<()> {
        let (blob, without_rowid) = match self.backend {
            Backend::Sqlite => ("BLOB", " WITHOUT ROWID"),
            Backend::MySql => ("MEDIUMBLOB", ""),
        };
        let statements = [
            // `added_ms` lets other servers pick up new series cheaply.
            "CREATE TABLE IF NOT EXISTS series (id BIGINT NOT NULL PRIMARY KEY, text TEXT NOT NULL, added_ms BIGINT NOT NULL)".to_string(),
            "CREATE INDEX IF NOT EXISTS series_by_added ON series (added_ms)".to_string(),
            "CREATE TABLE IF NOT EXISTS metric_help (metric VARCHAR(200) NOT NULL PRIMARY KEY, kind VARCHAR(40) NOT NULL, help TEXT NOT NULL)".to_string(),
            // Clustered by series, resolution, start: a query's chunks are
            // one range scan per series.
            format!(
                "CREATE TABLE IF NOT EXISTS chunks (series_id BIGINT NOT NULL, res INTEGER NOT NULL, start_ms BIGINT NOT NULL, \
                 end_ms BIGINT NOT NULL, nrows INTEGER NOT NULL, data {blob} NOT NULL, PRIMARY KEY (series_id, res, start_ms)){without_rowid}"
            ),
            // For retention and the disk budget. On the start, which a
            // rewrite of an open chunk never changes, so a flush leaves this
            // index alone; an index on the end (as first built) had an entry
            // moved for every chunk of every flush.
            "CREATE INDEX IF NOT EXISTS chunks_by_start ON chunks (res, start_ms)".to_string(),
            match self.backend {
                Backend::Sqlite => "DROP INDEX IF EXISTS chunks_by_end".to_string(),
                Backend::MySql => "DROP INDEX IF EXISTS chunks_by_end ON chunks".to_string(),
            },
        ];
        for sql in statements {
            self.pool.execute(AssertSqlSafe(sql)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MonitorStore for SqlMonitorStore {
    async fn load_series(&self, since_ms: i64) -> Result<(Vec<SeriesKey>, i64)> {
        let rows = sqlx::query("SELECT text, added_ms FROM series WHERE added_ms >= ?").bind(since_ms).fetch_all(&self.pool).await?;
        let mut newest = since_ms;
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            let text: String = r.try_get("text")?;
            newest = newest.max(r.try_get("added_ms")?);
            keys.push(crate::expo::parse_series(&text).map_err(StoreError::Corrupt)?);
        }
        Ok((keys, newest))
    }

    async fn put_series(&self, series: &[SeriesKey], now_ms: i64) -> Result<()> {
        // One transaction per statement on MySQL (Galera's write sets), one
        // for all on SQLite: a first scrape of a thousand targets brings a
        // million series, and a commit per 500 cost most of that flush.
        let per_transaction = match self.backend {
            Backend::Sqlite => series.len().max(1),
            Backend::MySql => BATCH,
        };
        for group in series.chunks(per_transaction) {
            let mut tx = self.pool.begin().await?;
            for batch in group.chunks(BATCH) {
                let sql = format!("REPLACE INTO series (id, text, added_ms) VALUES {}", placeholders(batch.len(), 3));
                let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
                for key in batch {
                    q = q.bind(key.id()).bind(key.to_string()).bind(now_ms);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    async fn load_help(&self) -> Result<Vec<(String, MetricHelp)>> {
        let rows = sqlx::query("SELECT metric, kind, help FROM metric_help").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("metric")?, MetricHelp { kind: r.try_get("kind")?, help: r.try_get("help")? }))).collect()
    }

    async fn put_help(&self, help: &[(String, MetricHelp)]) -> Result<()> {
        for batch in help.chunks(BATCH) {
            let sql = format!("REPLACE INTO metric_help (metric, kind, help) VALUES {}", placeholders(batch.len(), 3));
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
            for (metric, h) in batch {
                q = q.bind(metric).bind(&h.kind).bind(&h.help);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn put_chunks(&self, chunks: &[StoredChunk]) -> Result<()> {
        // In primary-key order: series ids are hashes, so in arrival order
        // every row lands on another B-tree page and each transaction
        // rewrites thousands of pages (SQLite's WAL, InnoDB's pages).
        // Sorted, neighbouring rows share pages and a flush writes each
        // page about once. The sort is stable: of two versions of one
        // chunk (a failed flush's and a newer one), the later still wins.
        let mut sorted: Vec<&StoredChunk> = chunks.iter().collect();
        sorted.sort_by_key(|c| (c.series, c.res.code(), c.start_ms));
        // On MySQL, transactions of a few thousand rows: small enough for
        // Galera's write sets. On SQLite, the whole flush in one, so a page
        // that several slices touch (an interior page, the series index)
        // goes to the WAL once. Readers are not blocked in WAL mode, and
        // MonitorDB's file has no other writer.
        let per_transaction = match self.backend {
            Backend::Sqlite => sorted.len().max(1),
            Backend::MySql => BATCH * 8,
        };
        // An upsert rather than REPLACE: REPLACE deletes the old row and
        // inserts the new one, index entries included; the update changes
        // the row in place and no indexed column.
        let upsert = match self.backend {
            Backend::Sqlite => {
                "ON CONFLICT (series_id, res, start_ms) DO UPDATE SET end_ms = excluded.end_ms, nrows = excluded.nrows, data = excluded.data"
            }
            Backend::MySql => "ON DUPLICATE KEY UPDATE end_ms = VALUES(end_ms), nrows = VALUES(nrows), data = VALUES(data)",
        };
        for group in sorted.chunks(per_transaction) {
            let mut tx = self.pool.begin().await?;
            for batch in group.chunks(BATCH) {
                let sql = format!(
                    "INSERT INTO chunks (series_id, res, start_ms, end_ms, nrows, data) VALUES {} {upsert}",
                    placeholders(batch.len(), 6)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql.as_str()));
                for c in batch {
                    q = q.bind(c.series).bind(c.res.code()).bind(c.start_ms).bind(c.end_ms).bind(i64::from(c.rows)).bind(c.data.as_slice());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    async fn chunks(&self, series: &[i64], res: Resolution, from: i64, to: i64) -> Result<Vec<StoredChunk>> {
        let mut out = Vec::new();
        for batch in series.chunks(BATCH) {
            let marks = vec!["?"; batch.len()].join(",");
            let sql = format!(
                "SELECT series_id, start_ms, end_ms, nrows, data FROM chunks \
                 WHERE res = ? AND series_id IN ({marks}) AND end_ms >= ? AND start_ms <= ? ORDER BY series_id, start_ms"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str())).bind(res.code());
            for id in batch {
                q = q.bind(*id);
            }
            for r in q.bind(from).bind(to).fetch_all(&self.pool).await? {
                let rows: i64 = r.try_get("nrows")?;
                out.push(StoredChunk {
                    series: r.try_get("series_id")?,
                    res,
                    start_ms: r.try_get("start_ms")?,
                    end_ms: r.try_get("end_ms")?,
                    rows: u32::try_from(rows).map_err(|_| StoreError::Corrupt(format!("chunk with {rows} rows")))?,
                    data: r.try_get("data")?,
                });
            }
        }
        Ok(out)
    }

    async fn delete_before(&self, res: Resolution, before: i64, limit: u32) -> Result<u64> {
        // MySQL cannot LIMIT a subquery on the table being deleted from, and
        // SQLite's DELETE … LIMIT is a compile-time option: pick the keys first.
        // A chunk ends after it starts: the start bound picks the range
        // of `chunks_by_start` to read, the end bound the chunks to delete.
        let rows =
            sqlx::query("SELECT series_id, start_ms FROM chunks WHERE res = ? AND start_ms < ? AND end_ms < ? ORDER BY start_ms LIMIT ?")
                .bind(res.code())
                .bind(before)
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        self.delete_keys(res, &rows).await
    }

    async fn delete_oldest(&self, res: Resolution, limit: u32) -> Result<u64> {
        let rows = sqlx::query("SELECT series_id, start_ms FROM chunks WHERE res = ? ORDER BY start_ms LIMIT ?")
            .bind(res.code())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        self.delete_keys(res, &rows).await
    }

    async fn usage(&self, res: Resolution) -> Result<ResolutionUsage> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(nrows), 0) AS r, COALESCE(SUM(LENGTH(data)), 0) AS b, MIN(start_ms) AS o FROM chunks WHERE res = ?",
        )
        .bind(res.code())
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = r.try_get("n")?;
        // SUM over BIGINT is DECIMAL in MySQL; read it as text-safe f64.
        let rows = sum(&r, "r")?;
        let bytes = sum(&r, "b")?;
        Ok(ResolutionUsage { chunks: n.max(0) as u64, rows, bytes, oldest_ms: r.try_get("o")? })
    }

    async fn disk_bytes(&self) -> Result<Option<u64>> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let pages: i64 = sqlx::query("PRAGMA page_count").fetch_one(&self.pool).await?.try_get(0)?;
        let size: i64 = sqlx::query("PRAGMA page_size").fetch_one(&self.pool).await?.try_get(0)?;
        Ok(Some((pages.max(0) as u64).saturating_mul(size.max(0) as u64)))
    }

    async fn compact(&self) -> Result<()> {
        if self.backend == Backend::Sqlite {
            self.pool.execute("PRAGMA incremental_vacuum").await?;
            self.pool.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
        }
        Ok(())
    }
}

impl SqlMonitorStore {
    async fn delete_keys(&self, res: Resolution, rows: &[sqlx::any::AnyRow]) -> Result<u64> {
        let mut deleted = 0;
        let mut tx = self.pool.begin().await?;
        for r in rows {
            let series: i64 = r.try_get("series_id")?;
            let start: i64 = r.try_get("start_ms")?;
            let done = sqlx::query("DELETE FROM chunks WHERE series_id = ? AND res = ? AND start_ms = ?")
                .bind(series)
                .bind(res.code())
                .bind(start)
                .execute(&mut *tx)
                .await?;
            deleted += done.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }
}

/// `(?,?),(?,?)…`: `rows` groups of `cols` placeholders.
fn placeholders(rows: usize, cols: usize) -> String {
    let one = format!("({})", vec!["?"; cols].join(","));
    vec![one; rows].join(",")
}

/// An aggregate that SQLite returns as an integer and MySQL as a decimal.
fn sum(row: &sqlx::any::AnyRow, col: &str) -> Result<u64> {
    if let Ok(v) = row.try_get::<i64, _>(col) {
        return Ok(v.max(0) as u64);
    }
    if let Ok(v) = row.try_get::<f64, _>(col) {
        return Ok(v.max(0.0) as u64);
    }
    let text: String = row.try_get(col)?;
    text.split('.').next().and_then(|t| t.parse().ok()).ok_or_else(|| StoreError::Corrupt(format!("{col} = {text}")))
}

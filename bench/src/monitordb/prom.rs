//! Debian's Prometheus as the comparison: started by hand as a child of
//! this benchmark (temporary config and storage, 127.0.0.1 only, never
//! the system service), asked over its HTTP API, stopped by its pid; and
//! `promtool` to backfill history into blocks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// `name` on PATH, or in /usr/bin (Debian's place) when PATH is thin.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The version line, for the report.
pub fn version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().map(str::to_string)
        })
        .unwrap_or_else(|| "unknown version".into())
}

/// A running Prometheus.
pub struct Prometheus {
    child: tokio::process::Child,
    pub pid: u32,
    pub url: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts `bin` with `config` (YAML) written into `work`, storage in
    /// `storage`, listening on 127.0.0.1:`port`; waits until it is ready.
    pub async fn start(bin: &Path, work: &Path, storage: &Path, config: &str, port: u16) -> Result<Prometheus> {
        let config_path = work.join("prometheus.yml");
        std::fs::write(&config_path, config).with_context(|| format!("writing {}", config_path.display()))?;
        let log_path = work.join("prometheus.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = tokio::process::Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=15d")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("prometheus exited at once")?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let mut p = Prometheus { child, pid, url: format!("http://127.0.0.1:{port}"), http };
        let began = Instant::now();
        loop {
            if let Some(status) = p.child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("prometheus exited with {status} before it was ready; its log:\n{}", tail(&log, 20));
            }
            let ready = p.http.get(format!("{}/-/ready", p.url)).send().await.map(|r| r.status().is_success()).unwrap_or(false);
            if ready {
                break;
            }
            if began.elapsed() > Duration::from_secs(120) {
                bail!("prometheus was not ready within 120 s; see {}", log_path.display());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(p)
    }

    /// Runs a range query; returns how many series it answered. Fails on
    /// an error answer, so a broken query never passes for a fast one.
    pub async fn query_range(&self, query: &str, start_s: i64, end_s: i64, step_s: i64) -> Result<usize> {
        let params =
            [("query", query.to_string()), ("start", start_s.to_string()), ("end", end_s.to_string()), ("step", step_s.to_string())];
        let resp = self.http.get(format!("{}/api/v1/query_range", self.url)).query(&params).send().await.context("query_range")?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.context("query_range answer")?;
        if !status.is_success() || body["status"] != "success" {
            bail!("prometheus refused {query}: HTTP {status}: {body}");
        }
        Ok(body["data"]["result"].as_array().map_or(0, Vec::len))
    }

    /// An instant query's first value (e.g. `count(up == 1)`).
    pub async fn scalar(&self, query: &str) -> Result<Option<f64>> {
        let resp = self.http.get(format!("{}/api/v1/query", self.url)).query(&[("query", query)]).send().await.context("query")?;
        let body: serde_json::Value = resp.json().await.context("query answer")?;
        Ok(body["data"]["result"].get(0).and_then(|r| r["value"][1].as_str()).and_then(|v| v.parse().ok()))
    }

    /// Its own metrics (/metrics), summed per metric name.
    pub async fn own_metrics(&self) -> Result<HashMap<String, f64>> {
        let text =
            self.http.get(format!("{}/metrics", self.url)).send().await.context("/metrics")?.text().await.context("/metrics body")?;
        let mut out = HashMap::new();
        for line in atoll_monitor::expo::lines(&text).flatten() {
            if let atoll_monitor::expo::Line::Sample { series, value } = line {
                let name = series.split('{').next().unwrap_or(series);
                *out.entry(name.to_string()).or_insert(0.0) += value;
            }
        }
        Ok(out)
    }

    /// SIGTERM by pid (a clean shutdown writes nothing we measure, but
    /// leaves no lock file behind), then SIGKILL after 30 s.
    pub async fn stop(mut self) -> Result<()> {
        let _ = tokio::process::Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status.context("waiting for prometheus")?;
            }
            Err(_) => {
                tracing::warn!(pid = self.pid, "prometheus did not stop within 30 s of SIGTERM; killing it");
                self.child.kill().await.context("killing prometheus")?;
            }
        }
        Ok(())
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `promtool tsdb create-blocks-from openmetrics` into `out`, with blocks of
/// up to a day (18 h, the largest aligned size) as compaction would make
/// them: the default 2 h blocks would make promtool reread the whole file
/// once per block, and Prometheus itself never keeps 2 h blocks for long.
pub async fn backfill(promtool: &Path, input: &Path, out: &Path) -> Result<Duration> {
    let began = Instant::now();
    let o = tokio::process::Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h", "-q"])
        .arg(input)
        .arg(out)
        .kill_on_drop(true)
        .output()
        .await
        .context("running promtool")?;
    if !o.status.success() {
        bail!("promtool failed ({}): {}", o.status, tail(&String::from_utf8_lossy(&o.stderr), 20));
    }
    Ok(began.elapsed())
}

/// What the persistent blocks under a storage directory hold.
#[derive(Debug, Default, Clone, Copy)]
pub struct Blocks {
    pub blocks: usize,
    pub samples: u64,
    /// Compressed chunk files only.
    pub chunk_bytes: u64,
    /// Everything in the block directories: chunks, index, meta, tombstones.
    pub total_bytes: u64,
}

/// Sums every block's meta.json sample count and its files' sizes.
pub fn blocks(storage: &Path) -> Result<Blocks> {
    let mut b = Blocks::default();
    for entry in std::fs::read_dir(storage).with_context(|| format!("listing {}", storage.display()))? {
        let dir = entry?.path();
        let meta = dir.join("meta.json");
        if !meta.is_file() {
            continue;
        }
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta)?).with_context(|| format!("{}", meta.display()))?;
        b.blocks += 1;
        b.samples += meta["stats"]["numSamples"].as_u64().unwrap_or(0);
        b.chunk_bytes += dir_bytes(&dir.join("chunks"))?;
        b.total_bytes += dir_bytes(&dir)?;
    }
    Ok(b)
}

/// Bytes of the files under `dir`, recursively (0 when missing).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { dir_bytes(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

//! Server configuration: a TOML file, every key overridable by a flag or an
//! environment variable (the CLI layers those on top of [`ServerConfig`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the API and console.
    pub listen: SocketAddr,
    /// Holds the embedded MetaDB and nothing else.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `mysql://USER:PASS@HOST:PORT/DB`; default
    /// `sqlite://DATA_DIR/meta.db`.
    pub metadb_url: Option<String>,
    /// `mysql://…` of a MetaDB node to read from, directly, when MetaDB
    /// has no quorum (Galera's dirty reads: the node's last state). Reads
    /// are then answered, marked stale; changes are still refused.
    #[serde(default)]
    pub metadb_read_url: Option<String>,
    /// URL agents and people use to reach this server (printed in join
    /// commands); default `http://LISTEN`.
    pub public_url: Option<String>,
    pub heartbeat_interval_ms: u64,
    /// A host is offline after this long without a heartbeat.
    pub offline_after_ms: u64,
    /// Console sessions end after this long unused.
    pub session_idle_s: u64,
    pub login_max_failures: u32,
    pub login_window_s: u64,
    pub login_lock_s: u64,
    /// Task step leases: how soon another server resumes a dead one's step.
    pub task_lease_ms: u64,
    /// The controllers' lease: how soon another server takes over the
    /// work that runs on one server at a time when its holder dies.
    pub leader_lease_ms: u64,
    /// Default directory under which databases will live on hosts.
    pub host_data_dir: String,
    /// Default precheck profile.
    pub profile: String,
    /// The 32-byte key that seals database passwords in MetaDB; every
    /// server of one platform must share it. Default `DATA_DIR/platform.key`
    /// (made on the first start).
    pub secret_key_file: Option<PathBuf>,
    /// MonitorDB: `sqlite://PATH` or `mysql://…`; default
    /// `DATA_DIR/monitor.db`, a file apart from MetaDB.
    pub monitordb_url: Option<String>,
    /// How often every agent, proxy and server is scraped.
    pub scrape_interval_ms: u64,
    /// A scrape taking longer is abandoned and its target marked down.
    pub scrape_timeout_ms: u64,
    /// How long raw samples, minute rollups and hour rollups are kept.
    pub retention_raw_days: u32,
    pub retention_minute_days: u32,
    pub retention_hour_days: u32,
    /// Disk MonitorDB may take (MiB); past it the oldest raw data goes
    /// first. 0: no limit but the disk's.
    pub monitordb_max_mb: u64,
    /// How often new samples are written to MonitorDB: what a crash of the
    /// scraping server can lose (of minute and hour rollups, ten times it).
    pub monitordb_flush_s: u64,
    /// A firing alarm is notified again after this many seconds.
    pub alert_repeat_s: u64,
    /// Also send every scraped sample to this Prometheus remote-write
    /// endpoint (Prometheus `…/api/v1/write` with its receiver enabled,
    /// VictoriaMetrics `…/api/v1/write`).
    pub remote_write_url: Option<String>,
    /// The SMTP relay email channels send through (`HOST:PORT`, plain
    /// SMTP), and the sender address (default `atoll@localhost`).
    pub smtp_server: Option<String>,
    pub smtp_from: Option<String>,
    /// Serve the API and console over HTTPS, with a certificate from the
    /// platform's CA (or the one in `tls_cert_file`/`tls_key_file`), and
    /// everything else over TLS too (default; `false` for plain HTTP).
    pub tls: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Largest package upload (MiB), and how long one may take (s).
    pub package_max_mb: u64,
    pub package_upload_timeout_s: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("/var/lib/atoll"),
            metadb_url: None,
            metadb_read_url: None,
            public_url: None,
            heartbeat_interval_ms: 2_000,
            offline_after_ms: 6_000,
            session_idle_s: 1_800,
            login_max_failures: 5,
            login_window_s: 300,
            login_lock_s: 300,
            task_lease_ms: 6_000,
            leader_lease_ms: 5_000,
            host_data_dir: "/var/lib/atoll/db".into(),
            profile: "production".into(),
            secret_key_file: None,
            monitordb_url: None,
            scrape_interval_ms: 10_000,
            scrape_timeout_ms: 5_000,
            retention_raw_days: 8,
            retention_minute_days: 30,
            retention_hour_days: 400,
            monitordb_max_mb: 0,
            monitordb_flush_s: 60,
            alert_repeat_s: 4 * 3_600,
            remote_write_url: None,
            smtp_server: None,
            smtp_from: None,
            tls: true,
            tls_cert_file: None,
            tls_key_file: None,
            package_max_mb: 2048,
            package_upload_timeout_s: 3600,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file; unknown keys are an error naming the key.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    pub fn secret_key_file(&self) -> PathBuf {
        self.secret_key_file.clone().unwrap_or_else(|| self.data_dir.join("platform.key"))
    }

    pub fn monitor_config(&self) -> atoll_monitor::MonitorConfig {
        const DAY: i64 = 86_400_000;
        atoll_monitor::MonitorConfig {
            retention: atoll_monitor::Retention {
                raw_ms: i64::from(self.retention_raw_days) * DAY,
                minute_ms: i64::from(self.retention_minute_days) * DAY,
                hour_ms: i64::from(self.retention_hour_days) * DAY,
            },
            flush_every: std::time::Duration::from_secs(self.monitordb_flush_s),
            max_disk_bytes: (self.monitordb_max_mb > 0).then(|| self.monitordb_max_mb.saturating_mul(1 << 20)),
            ..atoll_monitor::MonitorConfig::default()
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }

    /// Refuses settings that cannot work together.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.offline_after_ms < 2 * self.heartbeat_interval_ms {
            anyhow::bail!(
                "offline_after_ms ({}) must be at least twice heartbeat_interval_ms ({}), or hosts flap offline",
                self.offline_after_ms,
                self.heartbeat_interval_ms
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            anyhow::bail!("give tls_cert_file and tls_key_file together (a certificate and its key), or neither");
        }
        if self.tls_cert_file.is_some() && !self.tls {
            anyhow::bail!("tls_cert_file is set but tls is off: drop --no-tls (or tls = false)");
        }
        if self.task_lease_ms < 300 {
            anyhow::bail!("task_lease_ms ({}) must be at least 300", self.task_lease_ms);
        }
        if self.leader_lease_ms < 1_000 {
            anyhow::bail!(
                "leader_lease_ms ({}) must be at least 1000: a shorter lease lapses on every slow MetaDB write",
                self.leader_lease_ms
            );
        }
        self.profile.parse::<atoll_plan::profile::ProfileName>()?;
        if self.scrape_interval_ms < 1_000 || self.scrape_timeout_ms == 0 || self.scrape_timeout_ms >= self.scrape_interval_ms {
            anyhow::bail!(
                "scrape_interval_ms ({}) must be at least 1000 and scrape_timeout_ms ({}) above 0 and below it, or scrapes overlap",
                self.scrape_interval_ms,
                self.scrape_timeout_ms
            );
        }
        if !(self.retention_raw_days <= self.retention_minute_days && self.retention_minute_days <= self.retention_hour_days)
            || self.retention_raw_days == 0
        {
            anyhow::bail!(
                "retention must grow with coarser data and keep raw samples at least a day: raw {} ≤ minute {} ≤ hour {} days",
                self.retention_raw_days,
                self.retention_minute_days,
                self.retention_hour_days
            );
        }
        if self.monitordb_flush_s == 0 {
            anyhow::bail!("monitordb_flush_s must be at least 1");
        }
        if let Some(url) = &self.remote_write_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("remote_write_url {url:?} must be an http:// or https:// URL, e.g. http://prometheus:9090/api/v1/write");
        }
        if self.alert_repeat_s < 60 {
            anyhow::bail!("alert_repeat_s ({}) must be at least 60, or a firing alarm floods its channels", self.alert_repeat_s);
        }
        if let Some(url) = &self.metadb_read_url
            && !(url.starts_with("mysql://") || url.starts_with("mariadb://"))
        {
            anyhow::bail!("metadb_read_url must be a mysql:// URL of one MetaDB node (reads during a loss of quorum are a Galera feature)");
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::ServerConfig;

    #[test]
    fn file_keys_override_defaults_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("atoll.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nsession_idle_s = 60\n").unwrap();
        let c = ServerConfig::from_file(&path).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.session_idle_s, 60);
        assert_eq!(c.heartbeat_interval_ms, ServerConfig::default().heartbeat_interval_ms);
        std::fs::write(&path, "listne = \"127.0.0.1:9000\"\n").unwrap();
        let err = ServerConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn contradictory_settings_are_refused() {
        let c = ServerConfig { heartbeat_interval_ms: 5_000, offline_after_ms: 6_000, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
        let c = ServerConfig { profile: "prod".into(), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("production, sandbox"));
        assert!(ServerConfig::default().validate().is_ok());
    }
}

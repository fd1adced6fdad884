//! The SQL back end: one implementation of every store trait over sqlx's
//! `Any` driver, so the embedded SQLite MetaDB and the HA MySQL/MariaDB
//! (Galera) MetaDB run the very same statements and cannot drift apart.
//!
//! Why the statements look the way they do:
//! - `Any` decodes only bool, integers, floats, text and blobs, so times are
//!   BIGINT unix-ms, flags are 0/1 integers and JSON is TEXT;
//! - Galera has no cross-node `GET_LOCK`/`LOCK TABLES` and reports write
//!   conflicts at COMMIT, so writes are small transactions or single
//!   conditional UPDATEs, retried on conflict (see [`retry`]);
//! - upserts differ between the two dialects, so every "insert or update"
//!   is a select followed by an insert or an update in one transaction.
//!
//! The only place the two back ends differ at run time is how a write
//! transaction starts (see [`SqlStore::begin_write`]) and the migration files.

mod accounts;
mod alerts;
pub use accounts::TOUCH_EVERY_MS;
mod audit;
mod clusters;
mod copy;
mod hosts;
mod migrate;
mod packages;
mod platform;
mod retry;
mod routing;
mod row;
mod settings;
mod tasks;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::{MetaStore, Result, StoreError};

/// Which server is behind the pool; decides the few things `Any` cannot
/// hide (migration files, how write transactions start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    MySql,
}

/// MetaDB on SQLite or MySQL/MariaDB. Cheap to clone (it is a pool handle).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

/// Makes MetaDB's file readable by its owner only before SQLite opens it
/// (it holds password hashes and sealed secrets); SQLite gives its journal
/// files the same mode. An existing file with looser bits is tightened.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map(drop)
        }
        Err(e) => Err(e),
    }
}

impl SqlStore {
    /// Opens the store at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (the file is created when missing), `sqlite::memory:`
    /// (one connection, since each connection would otherwise see its own
    /// empty database), or `mysql://USER:PASS@HOST:PORT/DB` (also
    /// `mariadb://`).
    pub async fn connect(url: &str) -> Result<SqlStore> {
        // Idempotent: sqlx guards it with a `Once`, so other crates calling it
        // too is harmless.
        sqlx::any::install_default_drivers();
        let (backend, pool) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_pool(url).await?)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let pool = never_reuse_open_transactions(AnyPoolOptions::new())
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            (Backend::MySql, pool)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let store = SqlStore { pool, backend };
        migrate::run(&store.pool, store.backend).await?;
        Ok(store)
    }

    /// A MetaDB node read directly, for the time MetaDB has no quorum: each
    /// connection asks for Galera's dirty reads (the node's last state;
    /// writes still fail). Connects on first use and runs no migration:
    /// the schema is the platform's.
    pub fn connect_replica(url: &str) -> Result<SqlStore> {
        sqlx::any::install_default_drivers();
        if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *conn, "SET SESSION wsrep_dirty_reads = ON").await?;
                    Ok(())
                })
            })
            .connect_lazy(url)?;
        Ok(SqlStore { pool, backend: Backend::MySql })
    }

    /// Opens (creating if needed) the SQLite database file at `path`,
    /// creating its directory too: the embedded MetaDB's usual entry point.
    pub async fn open_sqlite(path: &Path) -> Result<SqlStore> {
        let Some(text) = path.to_str() else {
            return Err(StoreError::UnsupportedUrl(path.display().to_string()));
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        private_file(path).map_err(sqlx::Error::Io)?;
        // sqlx percent-decodes the path, so characters that would end it
        // early (or `%` itself) must be escaped.
        let escaped = text.replace('%', "%25").replace('?', "%3F").replace('#', "%23");
        Self::connect(&format!("sqlite://{escaped}")).await
    }

    /// Closes every connection; later calls fail. Lets tests and shutdown
    /// release the database file promptly.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that will write.
    ///
    /// SQLite: `BEGIN IMMEDIATE` takes the write lock up front (waiting up to
    /// `busy_timeout`). A plain deferred `BEGIN` that reads and then writes
    /// fails at once with `SQLITE_BUSY` when another connection committed in
    /// between, since its snapshot is stale; the busy handler cannot help.
    /// MySQL: a plain transaction; row locks and Galera certification sort
    /// out concurrent writers, and [`retry`] repeats the losers.
    /// Stores what a host's agent reports about the processes it runs
    /// (`CLUSTER/NAME` → status) with `update`, an UPDATE of `status_json`,
    /// `status_at_ms` keyed by cluster, name and host, so an agent can
    /// only report for what runs on its own host.
    async fn record_statuses(
        &self,
        update: &'static str,
        host: atoll_core::HostId,
        statuses: &[(atoll_core::DbId, serde_json::Value)],
        now: atoll_core::UnixMs,
    ) -> Result<()> {
        for (id, status) in statuses {
            let (cluster, name) = (&id.cluster, &id.name);
            let json = row::to_json("status_json", status)?;
            retry::retry(|| async {
                sqlx::query(update).bind(&json).bind(now).bind(cluster).bind(name).bind(host.to_string()).execute(&self.pool).await?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Marks reports fresh with `update` (`UPDATE t SET status_at_ms = ?
    /// WHERE cluster = ? AND name = ? AND host_id = ?`), in one transaction.
    async fn touch_statuses(
        &self,
        update: &'static str,
        reports: &[(atoll_core::HostId, atoll_core::DbId)],
        at: atoll_core::UnixMs,
    ) -> Result<()> {
        if reports.is_empty() {
            return Ok(());
        }
        retry::retry(|| async {
            let mut tx = self.begin_write().await?;
            for (host, id) in reports {
                sqlx::query(update).bind(at).bind(&id.cluster).bind(&id.name).bind(host.to_string()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::MySql => self.pool.begin().await?,
        })
    }
}

/// Pool for a SQLite URL, with the pragmas MetaDB relies on set on every
/// connection (pragmas are per connection, not per file, except WAL).
async fn sqlite_pool(url: &str) -> Result<AnyPool> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let url = if in_memory || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let options = AnyPoolOptions::new().after_connect(|conn, _meta| {
        Box::pin(async move {
            // busy_timeout makes writers queue instead of failing (set first:
            // switching a new file to WAL needs a lock too); WAL lets readers
            // run beside the one writer; foreign keys are off by default in
            // SQLite.
            conn.execute("PRAGMA busy_timeout = 5000").await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            // In WAL mode NORMAL syncs at checkpoints, not every commit: a
            // power cut may lose the last commits but never corrupts the
            // file. Heartbeats (the bulk of writes) repeat anyway, and task
            // steps are idempotent, so a lost completion only reruns one.
            conn.execute("PRAGMA synchronous = NORMAL").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            Ok(())
        })
    });
    let options = if in_memory {
        // The database lives only as long as its one connection: never let
        // the pool retire it.
        options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
    } else {
        // SQLite has one writer at a time; more connections only add page
        // caches and threads, and make waiting writers back off longer
        // (measured in bench/RESULTS.md: 2 beats 8 on RSS and heartbeat p99).
        never_reuse_open_transactions(options).max_connections(2)
    };
    Ok(options.acquire_timeout(Duration::from_secs(10)).connect(&url).await?)
}

/// Closes a connection that comes back still inside a transaction instead
/// of handing it out again. A COMMIT the database refused (SQLite's
/// SQLITE_FULL on a full disk) leaves the transaction open, and sqlx then
/// refused every later `BEGIN IMMEDIATE` on that connection, for ever.
fn never_reuse_open_transactions(options: AnyPoolOptions) -> AnyPoolOptions {
    options.after_release(|conn, _meta| Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) }))
}

#[async_trait]
impl MetaStore for SqlStore {
    async fn ping(&self) -> Result<()> {
        // A table, not `SELECT 1`: a Galera node outside the primary
        // component still answers `SELECT 1`, but refuses table reads.
        sqlx::query("SELECT COUNT(*) AS n FROM schema_version").fetch_one(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::MySql => "mysql",
        }
    }
}

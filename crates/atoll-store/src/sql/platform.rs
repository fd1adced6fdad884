//! Leases with a fencing generation, and the servers of the platform.
//!
//! Every lease change is a single conditional UPDATE (or the first INSERT),
//! so two servers racing for a lapsed lease cannot both win on SQLite, on
//! one MariaDB, or across Galera nodes (where the loser's commit fails
//! certification and is retried, then sees the winner). A fenced write
//! updates the lease row in its own transaction: on Galera that makes it
//! conflict with a concurrent takeover instead of slipping past it.

use async_trait::async_trait;
use atoll_core::UnixMs;
use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::SqlStore;
use super::retry::retry;
use super::row::{self, is_unique_violation};
use crate::{Fence, LeaseRecord, PlatformServerRecord, PlatformStore, Result, StoreError};

fn decode_lease(r: &AnyRow) -> Result<LeaseRecord> {
    Ok(LeaseRecord {
        name: row::text(r, "name")?,
        holder: row::text(r, "holder")?,
        generation: row::int(r, "generation")?,
        acquired_at_ms: row::int(r, "acquired_at_ms")?,
        expires_ms: row::int(r, "expires_ms")?,
    })
}

fn decode_server(r: &AnyRow) -> Result<PlatformServerRecord> {
    Ok(PlatformServerRecord {
        id: row::text(r, "id")?,
        url: row::text(r, "url")?,
        version: row::text(r, "version")?,
        started_at_ms: row::int(r, "started_at_ms")?,
        seen_at_ms: row::int(r, "seen_at_ms")?,
        errors_logged: row::int(r, "errors_logged")?,
    })
}

const SELECT_LEASE: &str = "SELECT name, holder, generation, acquired_at_ms, expires_ms FROM leases WHERE name = ?";

/// Refuses the transaction's writes unless `fence` is still the live
/// lease at `now`; writes the lease row so Galera certifies against it.
pub(super) async fn check_fence(tx: &mut Transaction<'static, Any>, fence: &Fence, now: UnixMs) -> Result<()> {
    let done = sqlx::query("UPDATE leases SET fenced_at_ms = ? WHERE name = ? AND holder = ? AND generation = ? AND expires_ms > ?")
        .bind(now)
        .bind(&fence.lease)
        .bind(&fence.holder)
        .bind(fence.generation)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Fenced { lease: fence.lease.clone(), generation: fence.generation });
    }
    Ok(())
}

impl SqlStore {
    async fn acquire_lease_once(&self, name: &str, holder: &str, ttl_ms: i64, now: UnixMs) -> Result<LeaseRecord> {
        let mut tx = self.begin_write().await?;
        let renewed = sqlx::query("UPDATE leases SET expires_ms = ? WHERE name = ? AND holder = ? AND expires_ms > ?")
            .bind(now + ttl_ms)
            .bind(name)
            .bind(holder)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if renewed == 0 {
            let taken = sqlx::query(
                "UPDATE leases SET holder = ?, generation = generation + 1, acquired_at_ms = ?, expires_ms = ? \
                 WHERE name = ? AND expires_ms <= ?",
            )
            .bind(holder)
            .bind(now)
            .bind(now + ttl_ms)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken == 0 && sqlx::query(SELECT_LEASE).bind(name).fetch_optional(&mut *tx).await?.is_none() {
                sqlx::query(
                    "INSERT INTO leases (name, holder, generation, acquired_at_ms, expires_ms, fenced_at_ms) VALUES (?, ?, 1, ?, ?, 0)",
                )
                .bind(name)
                .bind(holder)
                .bind(now)
                .bind(now + ttl_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        let current = sqlx::query(SELECT_LEASE).bind(name).fetch_one(&mut *tx).await?;
        let lease = decode_lease(&current)?;
        tx.commit().await?;
        Ok(lease)
    }

    async fn record_platform_server_once(&self, s: &PlatformServerRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM platform_servers WHERE id = ?").bind(&s.id).fetch_optional(&mut *tx).await?.is_some();
        let statement = if exists {
            "UPDATE platform_servers SET url = ?, version = ?, started_at_ms = ?, seen_at_ms = ?, errors_logged = ? WHERE id = ?"
        } else {
            "INSERT INTO platform_servers (url, version, started_at_ms, seen_at_ms, errors_logged, id) VALUES (?, ?, ?, ?, ?, ?)"
        };
        sqlx::query(statement)
            .bind(&s.url)
            .bind(&s.version)
            .bind(s.started_at_ms)
            .bind(s.seen_at_ms)
            .bind(s.errors_logged)
            .bind(&s.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl PlatformStore for SqlStore {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now: UnixMs) -> Result<LeaseRecord> {
        // Two first-ever acquirers both INSERT; the loser's duplicate key
        // means the row exists now, so the next round reads the winner.
        for _ in 0..3 {
            match retry(|| self.acquire_lease_once(name, holder, ttl_ms, now)).await {
                Err(e) if is_unique_violation(&e) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("lease {name:?} kept changing hands; try again")))
    }

    async fn release_lease(&self, fence: &Fence) -> Result<()> {
        retry(|| async {
            sqlx::query("UPDATE leases SET expires_ms = 0 WHERE name = ? AND holder = ? AND generation = ?")
                .bind(&fence.lease)
                .bind(&fence.holder)
                .bind(fence.generation)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn get_lease(&self, name: &str) -> Result<Option<LeaseRecord>> {
        sqlx::query(SELECT_LEASE).bind(name).fetch_optional(&self.pool).await?.map(|r| decode_lease(&r)).transpose()
    }

    async fn record_platform_server(&self, server: &PlatformServerRecord) -> Result<()> {
        for _ in 0..3 {
            match retry(|| self.record_platform_server_once(server)).await {
                Err(e) if is_unique_violation(&e) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("server {:?} kept changing; try again", server.id)))
    }

    async fn list_platform_servers(&self) -> Result<Vec<PlatformServerRecord>> {
        let rows = sqlx::query("SELECT id, url, version, started_at_ms, seen_at_ms, errors_logged FROM platform_servers ORDER BY url, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_server).collect()
    }

    async fn delete_platform_server(&self, id: &str) -> Result<bool> {
        retry(|| async {
            let done = sqlx::query("DELETE FROM platform_servers WHERE id = ?").bind(id).execute(&self.pool).await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }
}

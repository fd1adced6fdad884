//! Who takes a cluster's writes, and the proxies that route to it.

use async_trait::async_trait;
use atoll_core::{HostId, UnixMs};
use sqlx::any::AnyRow;

use super::SqlStore;
use super::retry::retry;
use super::row;
use crate::{ProxyRecord, Result, RoutingRecord, RoutingStore, StoreError};

macro_rules! select_proxies {
    ($tail:literal) => {
        concat!(
            "SELECT cluster, name, host_id, zone, address, rw_port, ro_port, admin_port, status_json, status_at_ms FROM proxies ",
            $tail
        )
    };
}

fn port(r: &AnyRow, col: &'static str) -> Result<u16> {
    let v = row::int(r, col)?;
    u16::try_from(v).map_err(|_| StoreError::Corrupt { what: col, detail: format!("{v} is not a port") })
}

fn decode_proxy(r: &AnyRow) -> Result<ProxyRecord> {
    Ok(ProxyRecord {
        cluster: row::text(r, "cluster")?,
        name: row::text(r, "name")?,
        host_id: row::parsed::<HostId>(r, "host_id")?,
        zone: row::text(r, "zone")?,
        address: row::text(r, "address")?,
        rw_port: port(r, "rw_port")?,
        ro_port: port(r, "ro_port")?,
        admin_port: port(r, "admin_port")?,
        status: row::opt_json(r, "status_json")?,
        status_at_ms: row::opt_int(r, "status_at_ms")?,
    })
}

fn decode_routing(r: &AnyRow) -> Result<RoutingRecord> {
    Ok(RoutingRecord {
        writer: row::opt_text(r, "writer")?,
        moving_to: row::opt_text(r, "moving_to")?,
        changed_at_ms: row::int(r, "changed_at_ms")?,
    })
}

impl SqlStore {
    async fn set_routing_once(&self, cluster: &str, expected: Option<&RoutingRecord>, new: &RoutingRecord) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // The row is locked while we compare: under InnoDB a plain read is
        // a snapshot, and a second CAS that read the same row would wait
        // on our UPDATE and then overwrite it (both would "win"). SQLite's
        // `BEGIN IMMEDIATE` already serialises the whole transaction.
        let select = match self.backend {
            super::Backend::Sqlite => "SELECT writer, moving_to, changed_at_ms FROM cluster_routing WHERE cluster = ?",
            super::Backend::MySql => "SELECT writer, moving_to, changed_at_ms FROM cluster_routing WHERE cluster = ? FOR UPDATE",
        };
        let current = sqlx::query(select).bind(cluster).fetch_optional(&mut *tx).await?.map(|r| decode_routing(&r)).transpose()?;
        let same = |a: &RoutingRecord, b: &RoutingRecord| a.writer == b.writer && a.moving_to == b.moving_to;
        match (&current, expected) {
            (None, None) => {
                sqlx::query("INSERT INTO cluster_routing (cluster, writer, moving_to, changed_at_ms) VALUES (?, ?, ?, ?)")
                    .bind(cluster)
                    .bind(new.writer.as_deref())
                    .bind(new.moving_to.as_deref())
                    .bind(new.changed_at_ms)
                    .execute(&mut *tx)
                    .await?;
            }
            (Some(cur), Some(exp)) if same(cur, exp) => {
                sqlx::query("UPDATE cluster_routing SET writer = ?, moving_to = ?, changed_at_ms = ? WHERE cluster = ?")
                    .bind(new.writer.as_deref())
                    .bind(new.moving_to.as_deref())
                    .bind(new.changed_at_ms)
                    .bind(cluster)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => return Ok(false),
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn put_proxies_once(&self, proxies: &[ProxyRecord]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for p in proxies {
            sqlx::query("DELETE FROM proxies WHERE cluster = ? AND name = ?").bind(&p.cluster).bind(&p.name).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO proxies (cluster, name, host_id, zone, address, rw_port, ro_port, admin_port, status_json, status_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&p.cluster)
            .bind(&p.name)
            .bind(p.host_id.to_string())
            .bind(&p.zone)
            .bind(&p.address)
            .bind(i64::from(p.rw_port))
            .bind(i64::from(p.ro_port))
            .bind(i64::from(p.admin_port))
            .bind(p.status.as_ref().map(|s| row::to_json("status_json", s)).transpose()?)
            .bind(p.status_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl RoutingStore for SqlStore {
    async fn get_routing(&self, cluster: &str) -> Result<Option<RoutingRecord>> {
        sqlx::query("SELECT writer, moving_to, changed_at_ms FROM cluster_routing WHERE cluster = ?")
            .bind(cluster)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| decode_routing(&r))
            .transpose()
    }

    async fn set_routing(&self, cluster: &str, expected: Option<&RoutingRecord>, new: &RoutingRecord) -> Result<bool> {
        match retry(|| self.set_routing_once(cluster, expected, new)).await {
            // Another server inserted the first row between our read and ours.
            Err(e) if row::is_unique_violation(&e) => Ok(false),
            other => other,
        }
    }

    async fn put_proxies(&self, proxies: &[ProxyRecord]) -> Result<()> {
        retry(|| self.put_proxies_once(proxies)).await
    }

    async fn cluster_proxies(&self, cluster: &str) -> Result<Vec<ProxyRecord>> {
        sqlx::query(select_proxies!("WHERE cluster = ? ORDER BY zone, name"))
            .bind(cluster)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_proxy)
            .collect()
    }

    async fn proxies_on_host(&self, host: HostId) -> Result<Vec<ProxyRecord>> {
        sqlx::query(select_proxies!("WHERE host_id = ? ORDER BY cluster, name"))
            .bind(host.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_proxy)
            .collect()
    }

    async fn record_proxy_statuses(&self, host: HostId, statuses: &[(atoll_core::DbId, serde_json::Value)], now: UnixMs) -> Result<()> {
        let update = "UPDATE proxies SET status_json = ?, status_at_ms = ? WHERE cluster = ? AND name = ? AND host_id = ?";
        self.record_statuses(update, host, statuses, now).await
    }

    async fn touch_proxy_statuses(&self, reports: &[(HostId, atoll_core::DbId)], at: UnixMs) -> Result<()> {
        self.touch_statuses("UPDATE proxies SET status_at_ms = ? WHERE cluster = ? AND name = ? AND host_id = ?", reports, at).await
    }
}

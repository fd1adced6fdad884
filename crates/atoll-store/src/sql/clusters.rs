//! Database clusters and the servers placed on hosts.

use async_trait::async_trait;
use atoll_core::{ClusterSpec, ClusterStatus, DbId, HostId, Ports, UnixMs};
use sqlx::any::AnyRow;

use super::SqlStore;
use super::retry::retry;
use super::row;
use crate::{ClusterRecord, ClusterStore, DbServerRecord, Fence, Result, StoreError};

macro_rules! select_clusters {
    ($tail:literal) => {
        concat!(
            "SELECT name, engine, durability, status, spec_json, secrets_json, created_by, created_at_ms, updated_at_ms FROM clusters ",
            $tail
        )
    };
}

macro_rules! select_servers {
    ($tail:literal) => {
        concat!(
            "SELECT cluster, name, host_id, zone, segment, address, sql_port, gcomm_port, ist_port, sst_port, dir, status_json, status_at_ms ",
            "FROM db_servers ",
            $tail
        )
    };
}

fn decode_cluster(r: &AnyRow) -> Result<ClusterRecord> {
    let name = row::text(r, "name")?;
    let spec = row::json(r, "spec_json").map_err(|e| StoreError::Corrupt {
        what: "spec_json",
        detail: format!(
            "cluster {name}'s stored spec does not decode ({e}); restore the row from a backup, or fix spec_json by hand to the shape `atoll cluster create` takes"
        ),
    })?;
    Ok(ClusterRecord {
        name,
        engine: row::text(r, "engine")?,
        durability: row::parsed(r, "durability")?,
        status: row::parsed(r, "status")?,
        spec,
        secrets: row::json(r, "secrets_json")?,
        created_by: row::text(r, "created_by")?,
        created_at_ms: row::int(r, "created_at_ms")?,
        updated_at_ms: row::int(r, "updated_at_ms")?,
    })
}

fn port(r: &AnyRow, col: &'static str) -> Result<u16> {
    let v = row::int(r, col)?;
    u16::try_from(v).map_err(|_| StoreError::Corrupt { what: col, detail: format!("{v} is not a port") })
}

fn decode_server(r: &AnyRow) -> Result<DbServerRecord> {
    let segment = row::int(r, "segment")?;
    Ok(DbServerRecord {
        cluster: row::text(r, "cluster")?,
        name: row::text(r, "name")?,
        host_id: row::parsed::<HostId>(r, "host_id")?,
        zone: row::text(r, "zone")?,
        segment: u8::try_from(segment).map_err(|_| StoreError::Corrupt { what: "segment", detail: segment.to_string() })?,
        address: row::text(r, "address")?,
        ports: Ports { sql: port(r, "sql_port")?, gcomm: port(r, "gcomm_port")?, ist: port(r, "ist_port")?, sst: port(r, "sst_port")? },
        dir: row::text(r, "dir")?,
        status: row::opt_json(r, "status_json")?,
        status_at_ms: row::opt_int(r, "status_at_ms")?,
    })
}

impl SqlStore {
    async fn create_cluster_once(&self, c: &ClusterRecord, servers: &[DbServerRecord]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT name FROM clusters WHERE name = ?").bind(&c.name).fetch_optional(&mut *tx).await?.is_some();
        if exists {
            return Err(StoreError::Conflict(format!("a cluster named {} already exists", c.name)));
        }
        sqlx::query(
            "INSERT INTO clusters (name, engine, durability, status, spec_json, secrets_json, created_by, created_at_ms, updated_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.name)
        .bind(&c.engine)
        .bind(c.durability.as_str())
        .bind(c.status.as_str())
        .bind(row::to_json("spec_json", &c.spec)?)
        .bind(row::to_json("secrets_json", &c.secrets)?)
        .bind(&c.created_by)
        .bind(c.created_at_ms)
        .bind(c.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        for s in servers {
            insert_server(&mut tx, s).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn add_db_server_once(&self, s: &DbServerRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT name FROM clusters WHERE name = ?").bind(&s.cluster).fetch_optional(&mut *tx).await?.is_none() {
            return Err(StoreError::Conflict(format!("cluster {} no longer exists", s.cluster)));
        }
        let taken = sqlx::query("SELECT name FROM db_servers WHERE cluster = ? AND name = ?")
            .bind(&s.cluster)
            .bind(&s.name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            return Err(StoreError::Conflict(format!("cluster {} already has a server named {}", s.cluster, s.name)));
        }
        insert_server(&mut tx, s).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_db_server_once(&self, cluster: &str, name: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let zone: Option<String> = sqlx::query("SELECT zone FROM db_servers WHERE cluster = ? AND name = ?")
            .bind(cluster)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| row::text(&r, "zone"))
            .transpose()?;
        let Some(zone) = zone else { return Ok(false) };
        sqlx::query("DELETE FROM db_servers WHERE cluster = ? AND name = ?").bind(cluster).bind(name).execute(&mut *tx).await?;
        let left = sqlx::query("SELECT name FROM db_servers WHERE cluster = ? AND zone = ?")
            .bind(cluster)
            .bind(&zone)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !left {
            sqlx::query("DELETE FROM proxies WHERE cluster = ? AND zone = ?").bind(cluster).bind(&zone).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

async fn insert_server(tx: &mut sqlx::Transaction<'_, sqlx::Any>, s: &DbServerRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO db_servers (cluster, name, host_id, zone, segment, address, sql_port, gcomm_port, ist_port, sst_port, dir) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&s.cluster)
    .bind(&s.name)
    .bind(s.host_id.to_string())
    .bind(&s.zone)
    .bind(i64::from(s.segment))
    .bind(&s.address)
    .bind(i64::from(s.ports.sql))
    .bind(i64::from(s.ports.gcomm))
    .bind(i64::from(s.ports.ist))
    .bind(i64::from(s.ports.sst))
    .bind(&s.dir)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl ClusterStore for SqlStore {
    async fn create_cluster(&self, cluster: &ClusterRecord, servers: &[DbServerRecord]) -> Result<()> {
        retry(|| self.create_cluster_once(cluster, servers)).await
    }

    async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRecord>> {
        sqlx::query(select_clusters!("WHERE name = ?")).bind(name).fetch_optional(&self.pool).await?.map(|r| decode_cluster(&r)).transpose()
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterRecord>> {
        sqlx::query(select_clusters!("ORDER BY name")).fetch_all(&self.pool).await?.iter().map(decode_cluster).collect()
    }

    async fn cluster_servers(&self, cluster: &str) -> Result<Vec<DbServerRecord>> {
        sqlx::query(select_servers!("WHERE cluster = ? ORDER BY segment, name"))
            .bind(cluster)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_server)
            .collect()
    }

    async fn servers_on_host(&self, host: HostId) -> Result<Vec<DbServerRecord>> {
        sqlx::query(select_servers!("WHERE host_id = ? ORDER BY cluster, name"))
            .bind(host.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(decode_server)
            .collect()
    }

    async fn set_cluster_status(&self, name: &str, status: ClusterStatus, now: UnixMs, fence: Option<&Fence>) -> Result<()> {
        retry(|| async {
            let mut tx = self.begin_write().await?;
            if let Some(fence) = fence {
                super::platform::check_fence(&mut tx, fence, now).await?;
            }
            sqlx::query("UPDATE clusters SET status = ?, updated_at_ms = ? WHERE name = ?")
                .bind(status.as_str())
                .bind(now)
                .bind(name)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn set_cluster_spec(&self, name: &str, spec: &ClusterSpec, now: UnixMs) -> Result<()> {
        let json = row::to_json("spec_json", spec)?;
        retry(|| async {
            sqlx::query("UPDATE clusters SET spec_json = ?, updated_at_ms = ? WHERE name = ?")
                .bind(&json)
                .bind(now)
                .bind(name)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn record_server_statuses(&self, host: HostId, statuses: &[(DbId, serde_json::Value)], now: UnixMs) -> Result<()> {
        let update = "UPDATE db_servers SET status_json = ?, status_at_ms = ? WHERE cluster = ? AND name = ? AND host_id = ?";
        self.record_statuses(update, host, statuses, now).await
    }

    async fn touch_server_statuses(&self, reports: &[(HostId, DbId)], at: UnixMs) -> Result<()> {
        self.touch_statuses("UPDATE db_servers SET status_at_ms = ? WHERE cluster = ? AND name = ? AND host_id = ?", reports, at).await
    }

    async fn delete_cluster(&self, name: &str) -> Result<bool> {
        retry(|| async {
            let mut tx = self.begin_write().await?;
            for table in [
                "DELETE FROM db_servers WHERE cluster = ?",
                "DELETE FROM proxies WHERE cluster = ?",
                "DELETE FROM cluster_routing WHERE cluster = ?",
            ] {
                sqlx::query(table).bind(name).execute(&mut *tx).await?;
            }
            let gone = sqlx::query("DELETE FROM clusters WHERE name = ?").bind(name).execute(&mut *tx).await?.rows_affected() > 0;
            tx.commit().await?;
            Ok(gone)
        })
        .await
    }

    async fn add_db_server(&self, server: &DbServerRecord) -> Result<()> {
        retry(|| self.add_db_server_once(server)).await
    }

    async fn remove_db_server(&self, cluster: &str, name: &str) -> Result<bool> {
        retry(|| self.remove_db_server_once(cluster, name)).await
    }
}

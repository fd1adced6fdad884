//! Engine packages: one row per registered tarball, unique by name and by
//! content (SHA-256).

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::retry::retry;
use super::row;
use crate::{PackageRecord, PackageStore, Result, StoreError};

macro_rules! select_packages {
    ($tail:literal) => {
        concat!("SELECT name, version, sha256, size_bytes, mariadbd, install_db, galera, created_by, created_at_ms FROM packages ", $tail)
    };
}

fn decode(r: &AnyRow) -> Result<PackageRecord> {
    let size = row::int(r, "size_bytes")?;
    Ok(PackageRecord {
        name: row::text(r, "name")?,
        version: row::text(r, "version")?,
        sha256: row::text(r, "sha256")?,
        size_bytes: u64::try_from(size).map_err(|_| StoreError::Corrupt { what: "size_bytes", detail: size.to_string() })?,
        mariadbd: row::text(r, "mariadbd")?,
        install_db: row::text(r, "install_db")?,
        galera: row::text(r, "galera")?,
        created_by: row::text(r, "created_by")?,
        created_at_ms: row::int(r, "created_at_ms")?,
    })
}

impl SqlStore {
    async fn insert_package_once(&self, p: &PackageRecord) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let clash = sqlx::query(select_packages!("WHERE name = ? OR sha256 = ?"))
            .bind(&p.name)
            .bind(&p.sha256)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| decode(&r))
            .transpose()?;
        if let Some(other) = clash {
            return Err(StoreError::Conflict(if other.name == p.name {
                format!("a package named {} already exists (sha256 {}); choose another --name or remove it first", p.name, other.sha256)
            } else {
                format!("this tarball (sha256 {}) is already registered as package {}", p.sha256, other.name)
            }));
        }
        let size = i64::try_from(p.size_bytes).map_err(|_| StoreError::Corrupt { what: "size_bytes", detail: p.size_bytes.to_string() })?;
        sqlx::query(
            "INSERT INTO packages (name, version, sha256, size_bytes, mariadbd, install_db, galera, created_by, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&p.name)
        .bind(&p.version)
        .bind(&p.sha256)
        .bind(size)
        .bind(&p.mariadbd)
        .bind(&p.install_db)
        .bind(&p.galera)
        .bind(&p.created_by)
        .bind(p.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| row::conflict_on_unique(e, || format!("package {} or its content was registered at the same moment", p.name)))?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl PackageStore for SqlStore {
    async fn insert_package(&self, p: &PackageRecord) -> Result<()> {
        retry(|| self.insert_package_once(p)).await
    }

    async fn get_package(&self, name: &str) -> Result<Option<PackageRecord>> {
        sqlx::query(select_packages!("WHERE name = ?")).bind(name).fetch_optional(&self.pool).await?.map(|r| decode(&r)).transpose()
    }

    async fn find_package_by_sha256(&self, sha256: &str) -> Result<Option<PackageRecord>> {
        sqlx::query(select_packages!("WHERE sha256 = ?")).bind(sha256).fetch_optional(&self.pool).await?.map(|r| decode(&r)).transpose()
    }

    async fn list_packages(&self) -> Result<Vec<PackageRecord>> {
        sqlx::query(select_packages!("ORDER BY name")).fetch_all(&self.pool).await?.iter().map(decode).collect()
    }

    async fn delete_package(&self, name: &str) -> Result<bool> {
        retry(|| async { Ok(sqlx::query("DELETE FROM packages WHERE name = ?").bind(name).execute(&self.pool).await?.rows_affected() > 0) })
            .await
    }
}

//! Platform settings: a small key/value table.

use async_trait::async_trait;

use super::SqlStore;
use super::retry::retry;
use super::row::{self, is_unique_violation};
use crate::{Result, SettingStore, StoreError};

impl SqlStore {
    /// Select, then update or insert: the portable stand-in for an upsert.
    async fn put_setting_once(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists =
            sqlx::query("SELECT setting_key FROM settings WHERE setting_key = ?").bind(key).fetch_optional(&mut *tx).await?.is_some();
        let statement = if exists {
            "UPDATE settings SET value = ? WHERE setting_key = ?"
        } else {
            "INSERT INTO settings (value, setting_key) VALUES (?, ?)"
        };
        sqlx::query(statement).bind(value).bind(key).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl SettingStore for SqlStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let r = sqlx::query("SELECT value FROM settings WHERE setting_key = ?").bind(key).fetch_optional(&self.pool).await?;
        r.map(|r| row::text(&r, "value")).transpose()
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        // A concurrent first write of the same key makes our INSERT a
        // duplicate: the row exists now, so the next round updates it.
        for _ in 0..3 {
            match retry(|| self.put_setting_once(key, value)).await {
                Err(e) if is_unique_violation(&e) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("setting {key:?} kept changing; try again")))
    }
}

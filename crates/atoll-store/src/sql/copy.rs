//! Copying a whole MetaDB into another, empty one: how a platform started
//! on the embedded SQLite file (the bootstrap of `atoll deploy` and of the
//! three-node playground) moves onto its replicated MetaDB.

use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use super::SqlStore;
use crate::{Result, StoreError};

/// Every table worth carrying over, parents before children (foreign
/// keys). Leases and the list of running servers stay behind: they
/// describe the processes of the old store, not the platform.
pub(crate) const TABLES: &[&str] = &[
    "hosts",
    "users",
    "sessions",
    "api_tokens",
    "login_failures",
    "audit_log",
    "settings",
    "tasks",
    "task_steps",
    "step_logs",
    "clusters",
    "db_servers",
    "packages",
    "cluster_routing",
    "proxies",
    "documents",
    "alarms",
];

/// Tables that describe the running processes of one store.
#[cfg(test)]
pub(crate) const LEFT_BEHIND: &[&str] = &["leases", "platform_servers", "schema_version"];

/// A value as `Any` can carry it.
enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

fn value(r: &AnyRow, i: usize) -> Result<Value> {
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return Ok(v.map_or(Value::Null, Value::Int));
    }
    if let Ok(v) = r.try_get::<Option<f64>, _>(i) {
        return Ok(v.map_or(Value::Null, Value::Float));
    }
    if let Ok(v) = r.try_get::<Option<String>, _>(i) {
        return Ok(v.map_or(Value::Null, Value::Text));
    }
    match r.try_get::<Option<Vec<u8>>, _>(i) {
        Ok(v) => Ok(v.map_or(Value::Null, Value::Bytes)),
        Err(e) => Err(StoreError::Corrupt { what: "copied column", detail: format!("{}: {e}", r.columns()[i].name()) }),
    }
}

impl SqlStore {
    /// Copies every row of this store into `to`, which must be empty (no
    /// host, user or task yet: a freshly migrated database), one
    /// transaction per table. Returns the rows copied per table.
    pub async fn copy_into(&self, to: &SqlStore) -> Result<Vec<(&'static str, u64)>> {
        for table in TABLES {
            let n: i64 =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}"))).fetch_one(&to.pool).await?.try_get("n")?;
            // The target's own first start may have written its settings
            // (nothing else): those give way to the copied ones.
            if n > 0 && *table != "settings" {
                return Err(StoreError::Conflict(format!(
                    "the target metadata store is not empty ({table} has {n} rows): copy only into a new database"
                )));
            }
        }
        let mut copied = Vec::new();
        for table in TABLES {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}"))).fetch_all(&self.pool).await?;
            let mut tx = to.begin_write().await?;
            if *table == "settings" {
                sqlx::query("DELETE FROM settings").execute(&mut *tx).await?;
            }
            for r in &rows {
                let columns: Vec<&str> = r.columns().iter().map(|c| c.name()).collect();
                let marks = vec!["?"; columns.len()].join(", ");
                let insert = format!("INSERT INTO {table} ({}) VALUES ({marks})", columns.join(", "));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(insert));
                for i in 0..columns.len() {
                    q = match value(r, i)? {
                        Value::Null => q.bind(None::<String>),
                        Value::Int(v) => q.bind(v),
                        Value::Float(v) => q.bind(v),
                        Value::Text(v) => q.bind(v),
                        Value::Bytes(v) => q.bind(v),
                    };
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            copied.push((*table, rows.len() as u64));
        }
        Ok(copied)
    }
}

//! The audit log: append-only, paged newest first by its auto-increment id,
//! which orders entries without trusting server clocks and makes paging
//! stable while entries are added. (On Galera, nodes hand out interleaved
//! ids, so entries written through different nodes at nearly the same time
//! may swap places; each node's own entries stay in order.)

use async_trait::async_trait;

use super::SqlStore;
use super::retry::retry;
use super::row;
use crate::{AuditRecord, AuditStore, NewAudit, Result};

#[async_trait]
impl AuditStore for SqlStore {
    async fn append_audit(&self, e: &NewAudit) -> Result<()> {
        let detail = &row::to_json("detail_json", &e.detail)?;
        retry(|| async move {
            sqlx::query(
                "INSERT INTO audit_log (at_ms, actor, source, action, target, detail_json, outcome) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(e.at_ms)
            .bind(&e.actor)
            .bind(&e.source)
            .bind(&e.action)
            .bind(&e.target)
            .bind(detail)
            .bind(&e.outcome)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, before_id: Option<i64>, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, at_ms, actor, source, action, target, detail_json, outcome FROM audit_log \
             WHERE id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(row::page(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: row::int(r, "id")?,
                    at_ms: row::int(r, "at_ms")?,
                    actor: row::text(r, "actor")?,
                    source: row::text(r, "source")?,
                    action: row::text(r, "action")?,
                    target: row::text(r, "target")?,
                    detail: row::json(r, "detail_json")?,
                    outcome: row::text(r, "outcome")?,
                })
            })
            .collect()
    }
}

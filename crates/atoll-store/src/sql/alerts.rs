//! Documents (alert rules, silences, channels) and alarms.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::retry::retry;
use super::row::{self, conflict_on_unique};
use crate::{AlarmFilter, AlarmRecord, AlarmStore, DocKind, DocRecord, DocStore, Result, StoreError, UnixMs};

fn doc(kind: DocKind, r: &AnyRow) -> Result<DocRecord> {
    Ok(DocRecord { kind, name: row::text(r, "name")?, body: row::text(r, "body")?, updated_ms: row::int(r, "updated_ms")? })
}

fn alarm(r: &AnyRow) -> Result<AlarmRecord> {
    Ok(AlarmRecord {
        id: row::text(r, "id")?,
        rule: row::text(r, "rule")?,
        state: row::text(r, "state")?,
        started_ms: row::int(r, "started_ms")?,
        ended_ms: row::opt_int(r, "ended_ms")?,
        body: row::text(r, "body")?,
    })
}

#[async_trait]
impl DocStore for SqlStore {
    async fn list_docs(&self, kind: DocKind) -> Result<Vec<DocRecord>> {
        let rows = sqlx::query("SELECT name, body, updated_ms FROM documents WHERE kind = ? ORDER BY name")
            .bind(kind.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| doc(kind, r)).collect()
    }

    async fn get_doc(&self, kind: DocKind, name: &str) -> Result<Option<DocRecord>> {
        let r = sqlx::query("SELECT name, body, updated_ms FROM documents WHERE kind = ? AND name = ?")
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| doc(kind, &r)).transpose()
    }

    async fn insert_doc(&self, d: &DocRecord) -> Result<()> {
        retry(|| async move {
            sqlx::query("INSERT INTO documents (kind, name, body, updated_ms) VALUES (?, ?, ?, ?)")
                .bind(d.kind.as_str())
                .bind(&d.name)
                .bind(&d.body)
                .bind(d.updated_ms)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    conflict_on_unique(e, || format!("a {} named {:?} exists already", d.kind.as_str().replace('_', " "), d.name))
                })?;
            Ok(())
        })
        .await
    }

    async fn put_doc(&self, d: &DocRecord) -> Result<()> {
        // Select, then update or insert (see the module notes in sql/mod.rs);
        // a concurrent first insert makes ours a duplicate: go round again.
        for _ in 0..3 {
            let once = retry(|| async move {
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query("UPDATE documents SET body = ?, updated_ms = ? WHERE kind = ? AND name = ?")
                    .bind(&d.body)
                    .bind(d.updated_ms)
                    .bind(d.kind.as_str())
                    .bind(&d.name)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    sqlx::query("INSERT INTO documents (kind, name, body, updated_ms) VALUES (?, ?, ?, ?)")
                        .bind(d.kind.as_str())
                        .bind(&d.name)
                        .bind(&d.body)
                        .bind(d.updated_ms)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            })
            .await;
            match once {
                Err(e) if row::is_unique_violation(&e) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict(format!("{} {:?} kept changing; try again", d.kind.as_str(), d.name)))
    }

    async fn delete_doc(&self, kind: DocKind, name: &str) -> Result<bool> {
        retry(|| async move {
            let r =
                sqlx::query("DELETE FROM documents WHERE kind = ? AND name = ?").bind(kind.as_str()).bind(name).execute(&self.pool).await?;
            Ok(r.rows_affected() > 0)
        })
        .await
    }
}

#[async_trait]
impl AlarmStore for SqlStore {
    async fn put_alarms(&self, alarms: &[AlarmRecord]) -> Result<()> {
        if alarms.is_empty() {
            return Ok(());
        }
        retry(|| async move {
            let mut tx = self.begin_write().await?;
            for a in alarms {
                let updated = sqlx::query("UPDATE alarms SET rule = ?, state = ?, started_ms = ?, ended_ms = ?, body = ? WHERE id = ?")
                    .bind(&a.rule)
                    .bind(&a.state)
                    .bind(a.started_ms)
                    .bind(a.ended_ms)
                    .bind(&a.body)
                    .bind(&a.id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    sqlx::query("INSERT INTO alarms (id, rule, state, started_ms, ended_ms, body) VALUES (?, ?, ?, ?, ?, ?)")
                        .bind(&a.id)
                        .bind(&a.rule)
                        .bind(&a.state)
                        .bind(a.started_ms)
                        .bind(a.ended_ms)
                        .bind(&a.body)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn delete_alarms(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        retry(|| async move {
            let mut tx = self.begin_write().await?;
            for id in ids {
                sqlx::query("DELETE FROM alarms WHERE id = ?").bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn list_alarms(&self, f: &AlarmFilter) -> Result<Vec<AlarmRecord>> {
        let rows = sqlx::query(
            "SELECT id, rule, state, started_ms, ended_ms, body FROM alarms \
             WHERE (? = 0 OR state IN ('pending', 'firing')) AND (? IS NULL OR rule = ?) AND started_ms < ? \
             ORDER BY started_ms DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(f.active))
        .bind(f.rule.as_deref())
        .bind(f.rule.as_deref())
        .bind(f.before_ms.unwrap_or(UnixMs::MAX))
        .bind(row::page(f.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alarm).collect()
    }

    async fn prune_alarms(&self, before: UnixMs) -> Result<u64> {
        retry(|| async move {
            let r = sqlx::query("DELETE FROM alarms WHERE state = 'resolved' AND ended_ms < ?").bind(before).execute(&self.pool).await?;
            Ok(r.rows_affected())
        })
        .await
    }
}

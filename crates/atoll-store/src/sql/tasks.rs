//! Tasks, their steps and step logs: the persistent half of the task engine.
//!
//! Executors on several servers share this table. A step is owned through a
//! lease (`lease_owner`, `lease_expires_ms`) taken and given up only by
//! conditional UPDATEs whose WHERE clause states what the caller believes;
//! exactly one of two racing callers sees "1 row changed". No row locks are
//! held between statements, which keeps Galera transactions tiny.

use async_trait::async_trait;
use std::collections::HashMap;

use atoll_core::{Progress, StepStatus, TaskStatus, UnixMs};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::retry::retry;
use super::row::{self, bind_u32, conflict_on_unique};
use crate::{
    NewStepLog, Result, StepClaim, StepCompletion, StepLogRecord, StepRecord, StoreError, TaskFilter, TaskRecord, TaskStore, TaskUpdate,
};

const TASK_COLUMNS: &str = "id, kind, title, target, status, phase, cancel_requested, params_json, created_by, \
     created_at_ms, updated_at_ms, finished_at_ms";

macro_rules! select_tasks {
    ($tail:literal) => {
        concat!(
            "SELECT id, kind, title, target, status, phase, cancel_requested, params_json, created_by, ",
            "created_at_ms, updated_at_ms, finished_at_ms FROM tasks ",
            $tail
        )
    };
}

macro_rules! select_steps {
    ($tail:literal) => {
        concat!(
            "SELECT task_id, step_key, seq, kind, title, params_json, deps_json, status, attempts, max_attempts, ",
            "timeout_ms, not_before_ms, lease_owner, lease_expires_ms, started_at_ms, finished_at_ms, ",
            "output_json, error FROM task_steps ",
            $tail
        )
    };
}

macro_rules! select_logs {
    ($tail:literal) => {
        concat!("SELECT id, task_id, step_key, attempt, at_ms, level, message FROM step_logs ", $tail)
    };
}

fn task(r: &AnyRow) -> Result<TaskRecord> {
    Ok(TaskRecord {
        id: row::text(r, "id")?,
        kind: row::text(r, "kind")?,
        title: row::text(r, "title")?,
        target: row::text(r, "target")?,
        status: row::parsed(r, "status")?,
        phase: row::parsed(r, "phase")?,
        cancel_requested: row::flag(r, "cancel_requested")?,
        params: row::json(r, "params_json")?,
        created_by: row::text(r, "created_by")?,
        created_at_ms: row::int(r, "created_at_ms")?,
        updated_at_ms: row::int(r, "updated_at_ms")?,
        finished_at_ms: row::opt_int(r, "finished_at_ms")?,
    })
}

fn step(r: &AnyRow) -> Result<StepRecord> {
    Ok(StepRecord {
        task_id: row::text(r, "task_id")?,
        key: row::text(r, "step_key")?,
        seq: row::int(r, "seq")?,
        kind: row::text(r, "kind")?,
        title: row::text(r, "title")?,
        params: row::json(r, "params_json")?,
        deps: row::json(r, "deps_json")?,
        status: row::parsed(r, "status")?,
        attempts: row::count(r, "attempts")?,
        max_attempts: row::count(r, "max_attempts")?,
        timeout_ms: row::int(r, "timeout_ms")?,
        not_before_ms: row::int(r, "not_before_ms")?,
        lease_owner: row::opt_text(r, "lease_owner")?,
        lease_expires_ms: row::opt_int(r, "lease_expires_ms")?,
        started_at_ms: row::opt_int(r, "started_at_ms")?,
        finished_at_ms: row::opt_int(r, "finished_at_ms")?,
        output: row::opt_json(r, "output_json")?,
        error: row::opt_text(r, "error")?,
    })
}

fn log_line(r: &AnyRow) -> Result<StepLogRecord> {
    Ok(StepLogRecord {
        id: row::int(r, "id")?,
        task_id: row::text(r, "task_id")?,
        step: row::text(r, "step_key")?,
        attempt: row::count(r, "attempt")?,
        at_ms: row::int(r, "at_ms")?,
        level: row::text(r, "level")?,
        message: row::text(r, "message")?,
    })
}

/// The key an active task holds: its kind's resource and its target
/// (`cluster:orders`, `host:db1`), so one change runs per resource.
fn lock_key(kind: &str, target: &str) -> String {
    format!("{}:{target}", kind.split('.').next().unwrap_or(kind))
}

/// The active task holding `key`, if any.
async fn lock_holder(tx: &mut sqlx::Transaction<'static, sqlx::Any>, key: &str) -> Result<Option<String>> {
    let r = sqlx::query("SELECT id FROM tasks WHERE active_target = ?").bind(key).fetch_optional(&mut **tx).await?;
    r.as_ref().map(|r| row::text(r, "id")).transpose()
}

fn busy(target: &str, holder: &str) -> StoreError {
    StoreError::Conflict(format!("{target} is busy with task {holder}; wait for it (`atoll task watch {holder}`) or cancel it"))
}

/// `?, ?, ?` for an IN list of `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl SqlStore {
    async fn create_task_once(&self, t: &TaskRecord, steps: &[StepRecord]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM tasks WHERE id = ?").bind(&t.id).fetch_optional(&mut *tx).await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!("task {:?} already exists", t.id)));
        }
        let key = (!t.status.is_settled()).then(|| lock_key(&t.kind, &t.target));
        if let Some(key) = &key
            && let Some(holder) = lock_holder(&mut tx, key).await?
        {
            return Err(busy(&t.target, &holder));
        }
        sqlx::query(
            "INSERT INTO tasks (id, kind, title, target, status, phase, cancel_requested, params_json, created_by, \
             created_at_ms, updated_at_ms, finished_at_ms, active_target) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.kind)
        .bind(&t.title)
        .bind(&t.target)
        .bind(t.status.as_str())
        .bind(t.phase.as_str())
        .bind(i64::from(t.cancel_requested))
        .bind(row::to_json("params_json", &t.params)?)
        .bind(&t.created_by)
        .bind(t.created_at_ms)
        .bind(t.updated_at_ms)
        .bind(t.finished_at_ms)
        .bind(key.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("{} is busy with another task; wait for it (`atoll task list`)", t.target)))?;
        for s in steps {
            sqlx::query(
                "INSERT INTO task_steps (task_id, step_key, seq, kind, title, params_json, deps_json, status, \
                 attempts, max_attempts, timeout_ms, not_before_ms, lease_owner, lease_expires_ms, started_at_ms, \
                 finished_at_ms, output_json, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&t.id)
            .bind(&s.key)
            .bind(s.seq)
            .bind(&s.kind)
            .bind(&s.title)
            .bind(row::to_json("params_json", &s.params)?)
            .bind(row::to_json("deps_json", &s.deps)?)
            .bind(s.status.as_str())
            .bind(bind_u32(s.attempts))
            .bind(bind_u32(s.max_attempts))
            .bind(s.timeout_ms)
            .bind(s.not_before_ms)
            .bind(s.lease_owner.as_deref())
            .bind(s.lease_expires_ms)
            .bind(s.started_at_ms)
            .bind(s.finished_at_ms)
            .bind(s.output.as_ref().map(|o| row::to_json("output_json", o)).transpose()?)
            .bind(s.error.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("step {:?} appears twice in task {:?}", s.key, t.id)))?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl TaskStore for SqlStore {
    async fn create_task(&self, task: &TaskRecord, steps: &[StepRecord]) -> Result<()> {
        retry(|| self.create_task_once(task, steps)).await
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let r = sqlx::query(select_tasks!("WHERE id = ?")).bind(id).fetch_optional(&self.pool).await?;
        r.as_ref().map(task).transpose()
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        // Only fixed fragments go into the text; values are all bound.
        let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE 1 = 1");
        if filter.status.is_some() {
            sql.push_str(" AND status = ?");
        }
        if filter.target.is_some() {
            sql.push_str(" AND target = ?");
        }
        sql.push_str(" ORDER BY created_at_ms DESC, id DESC LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        if let Some(t) = &filter.target {
            q = q.bind(t.clone());
        }
        q.bind(row::page(filter.limit)).fetch_all(&self.pool).await?.iter().map(task).collect()
    }

    async fn active_tasks(&self) -> Result<Vec<TaskRecord>> {
        sqlx::query(select_tasks!("WHERE status IN (?, ?, ?) ORDER BY created_at_ms, id"))
            .bind(TaskStatus::Running.as_str())
            .bind(TaskStatus::Cancelling.as_str())
            .bind(TaskStatus::RollingBack.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(task)
            .collect()
    }

    async fn task_steps(&self, task_id: &str) -> Result<Vec<StepRecord>> {
        sqlx::query(select_steps!("WHERE task_id = ? ORDER BY seq, step_key"))
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(step)
            .collect()
    }

    async fn task_progress(&self, task_ids: &[String]) -> Result<HashMap<String, Progress>> {
        let mut out: HashMap<String, Progress> = HashMap::new();
        // Bounded chunks keep the statement under every back end's
        // placeholder limit; only `?`s go into the text.
        for ids in task_ids.chunks(500) {
            let marks = vec!["?"; ids.len()].join(", ");
            let sql =
                format!("SELECT task_id, status, COUNT(*) AS steps FROM task_steps WHERE task_id IN ({marks}) GROUP BY task_id, status");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in ids {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(&self.pool).await? {
                let status: StepStatus = row::parsed(&r, "status")?;
                let steps = usize::try_from(row::int(&r, "steps")?).unwrap_or(0);
                out.entry(row::text(&r, "task_id")?).or_default().count(status, steps);
            }
        }
        Ok(out)
    }

    async fn get_step(&self, task_id: &str, key: &str) -> Result<Option<StepRecord>> {
        let r = sqlx::query(select_steps!("WHERE task_id = ? AND step_key = ?")).bind(task_id).bind(key).fetch_optional(&self.pool).await?;
        r.as_ref().map(step).transpose()
    }

    async fn claim_step(&self, c: &StepClaim) -> Result<bool> {
        retry(|| async move {
            let done = sqlx::query(
                "UPDATE task_steps SET status = ?, attempts = attempts + 1, lease_owner = ?, lease_expires_ms = ?, \
                 started_at_ms = ?, finished_at_ms = NULL, error = NULL \
                 WHERE task_id = ? AND step_key = ? AND status = ? \
                 AND (lease_owner IS NULL OR lease_expires_ms < ?)",
            )
            .bind(c.to.as_str())
            .bind(&c.owner)
            .bind(c.lease_until)
            .bind(c.now)
            .bind(&c.task_id)
            .bind(&c.key)
            .bind(c.expect.as_str())
            .bind(c.now)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn renew_lease(&self, task_id: &str, key: &str, owner: &str, until: UnixMs) -> Result<bool> {
        retry(|| async move {
            let done = sqlx::query(
                "UPDATE task_steps SET lease_expires_ms = ? \
                 WHERE task_id = ? AND step_key = ? AND lease_owner = ? AND status IN (?, ?)",
            )
            .bind(until)
            .bind(task_id)
            .bind(key)
            .bind(owner)
            .bind(StepStatus::Running.as_str())
            .bind(StepStatus::RollingBack.as_str())
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn complete_step(&self, d: &StepCompletion) -> Result<bool> {
        let output = &d.output.as_ref().map(|o| row::to_json("output_json", o)).transpose()?;
        retry(|| async move {
            let done = sqlx::query(
                "UPDATE task_steps SET status = ?, output_json = ?, error = ?, not_before_ms = ?, finished_at_ms = ?, \
                 lease_owner = NULL, lease_expires_ms = NULL \
                 WHERE task_id = ? AND step_key = ? AND lease_owner = ?",
            )
            .bind(d.status.as_str())
            .bind(output.as_deref())
            .bind(d.error.as_deref())
            .bind(d.not_before_ms)
            .bind(d.now)
            .bind(&d.task_id)
            .bind(&d.key)
            .bind(&d.owner)
            .execute(&self.pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// The error of the last attempt stays (it is history). A step going back
    /// to pending loses its `finished_at_ms` and back-off; one moved to a
    /// final state (skipped, cancelled) is finished at `now`.
    async fn reset_step(
        &self,
        task_id: &str,
        key: &str,
        from: &[StepStatus],
        to: StepStatus,
        extra_attempts: u32,
        now: UnixMs,
    ) -> Result<bool> {
        if from.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            "UPDATE task_steps SET status = ?, max_attempts = max_attempts + ?, lease_owner = NULL, \
             lease_expires_ms = NULL, not_before_ms = 0, finished_at_ms = ? \
             WHERE task_id = ? AND step_key = ? AND status IN ({})",
            placeholders(from.len())
        );
        let finished = match to {
            StepStatus::Pending | StepStatus::Running | StepStatus::RollingBack => None,
            _ => Some(now),
        };
        let sql = &sql;
        retry(|| async move {
            let mut q = sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(to.as_str())
                .bind(bind_u32(extra_attempts))
                .bind(finished)
                .bind(task_id)
                .bind(key);
            for s in from {
                q = q.bind(s.as_str());
            }
            Ok(q.execute(&self.pool).await?.rows_affected() == 1)
        })
        .await
    }

    async fn update_task(&self, u: &TaskUpdate) -> Result<()> {
        retry(|| async move {
            let mut tx = self.begin_write().await?;
            let Some(r) = sqlx::query("SELECT kind, target FROM tasks WHERE id = ?").bind(&u.id).fetch_optional(&mut *tx).await? else {
                return Ok(());
            };
            let (kind, target) = (row::text(&r, "kind")?, row::text(&r, "target")?);
            // A task that runs again (a retried step) takes its key back,
            // unless another task took it meanwhile.
            let key = (!u.status.is_settled()).then(|| lock_key(&kind, &target));
            if let Some(key) = &key
                && let Some(holder) = lock_holder(&mut tx, key).await?.filter(|h| *h != u.id)
            {
                return Err(busy(&target, &holder));
            }
            sqlx::query(
                "UPDATE tasks SET status = ?, phase = ?, cancel_requested = ?, updated_at_ms = ?, finished_at_ms = ?, \
                 active_target = ? WHERE id = ?",
            )
            .bind(u.status.as_str())
            .bind(u.phase.as_str())
            .bind(i64::from(u.cancel_requested))
            .bind(u.now)
            .bind(u.finished_at_ms)
            .bind(key.as_deref())
            .bind(&u.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("{target} is busy with another task; wait for it (`atoll task list`)")))?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn append_step_log(&self, l: &NewStepLog) -> Result<()> {
        retry(|| async move {
            sqlx::query("INSERT INTO step_logs (task_id, step_key, attempt, at_ms, level, message) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(&l.task_id)
                .bind(&l.step)
                .bind(bind_u32(l.attempt))
                .bind(l.at_ms)
                .bind(&l.level)
                .bind(&l.message)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn step_logs(&self, task_id: &str, step: Option<&str>, after_id: i64, limit: u32) -> Result<Vec<StepLogRecord>> {
        let rows = match step {
            Some(s) => {
                sqlx::query(select_logs!("WHERE task_id = ? AND step_key = ? AND id > ? ORDER BY id LIMIT ?"))
                    .bind(task_id)
                    .bind(s)
                    .bind(after_id)
                    .bind(row::page(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(select_logs!("WHERE task_id = ? AND id > ? ORDER BY id LIMIT ?"))
                    .bind(task_id)
                    .bind(after_id)
                    .bind(row::page(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(log_line).collect()
    }
}

//! Submitting tasks and the operator's levers: retry, skip, cancel, roll back.

use atoll_core::task::validate_dag;
use atoll_core::{Phase, StepStatus, TaskStatus};
use atoll_store::{StepRecord, TaskRecord, TaskUpdate};

use crate::executor::Executor;
use crate::{TaskError, TaskSpec};
use atoll_core::time::now_ms;

impl Executor {
    /// Validates and stores a task; executors pick it up at once.
    pub async fn submit(&self, spec: TaskSpec, created_by: &str) -> Result<TaskRecord, TaskError> {
        if spec.steps.is_empty() {
            return Err(TaskError::Invalid("a task needs at least one step".into()));
        }
        validate_dag(spec.steps.iter().map(|s| (s.key.as_str(), s.deps.as_slice()))).map_err(TaskError::Invalid)?;
        if let Some(s) = spec.steps.iter().find(|s| !self.handlers.contains_key(&s.kind)) {
            return Err(TaskError::Invalid(format!("step {:?} has unknown kind {:?}", s.key, s.kind)));
        }
        let now = now_ms();
        let task = TaskRecord {
            id: uuid::Uuid::new_v4().to_string(),
            kind: spec.kind,
            title: spec.title,
            target: spec.target,
            status: TaskStatus::Running,
            phase: Phase::Forward,
            cancel_requested: false,
            params: spec.params,
            created_by: created_by.to_string(),
            created_at_ms: now,
            updated_at_ms: now,
            finished_at_ms: None,
        };
        let steps: Vec<StepRecord> = spec
            .steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| StepRecord {
                task_id: task.id.clone(),
                key: s.key,
                seq: i as i64,
                kind: s.kind,
                title: s.title,
                params: s.params,
                deps: s.deps,
                status: StepStatus::Pending,
                attempts: 0,
                max_attempts: s.max_attempts.max(1),
                timeout_ms: s.timeout.as_millis() as i64,
                not_before_ms: 0,
                lease_owner: None,
                lease_expires_ms: None,
                started_at_ms: None,
                finished_at_ms: None,
                output: None,
                error: None,
            })
            .collect();
        self.store.create_task(&task, &steps).await?;
        tracing::info!(task = %task.id, kind = %task.kind, target = %task.target, steps = steps.len(), "task submitted");
        self.wake.notify_one();
        Ok(task)
    }

    /// Runs a failed step again (or, while rolling back, its rollback).
    pub async fn retry_step(&self, task_id: &str, key: &str) -> Result<TaskRecord, TaskError> {
        let (task, step) = self.task_and_step(task_id, key).await?;
        let (from, to) = match task.phase {
            Phase::Forward => (StepStatus::Failed, StepStatus::Pending),
            Phase::Rollback => (StepStatus::RollbackFailed, StepStatus::Failed),
        };
        if step.status != from {
            return Err(TaskError::State(format!("step {key} is {}; only a {from} step can be retried", step.status)));
        }
        let extra = (step.attempts + 1).saturating_sub(step.max_attempts).max(1);
        self.reset(&task, key, &[from], to, extra).await
    }

    /// Marks a failed or pending step as skipped so the steps after it run.
    pub async fn skip_step(&self, task_id: &str, key: &str) -> Result<TaskRecord, TaskError> {
        let (task, step) = self.task_and_step(task_id, key).await?;
        if task.phase != Phase::Forward || task.cancel_requested {
            return Err(TaskError::State(format!("task {task_id} is {}; steps can only be skipped while it runs forward", task.status)));
        }
        let from = [StepStatus::Failed, StepStatus::Pending];
        if !from.contains(&step.status) {
            return Err(TaskError::State(format!("step {key} is {}; only a failed or pending step can be skipped", step.status)));
        }
        self.reset(&task, key, &from, StepStatus::Skipped, 0).await
    }

    /// Stops a running task: pending steps never start, running ones are
    /// told to stop.
    pub async fn cancel(&self, task_id: &str) -> Result<TaskRecord, TaskError> {
        let task = self.task(task_id).await?;
        if task.phase != Phase::Forward || !matches!(task.status, TaskStatus::Running | TaskStatus::Failed) {
            return Err(TaskError::State(format!("task {task_id} is {}; only a running or failed task can be cancelled", task.status)));
        }
        let now = now_ms();
        for s in self.store.task_steps(task_id).await? {
            self.store.reset_step(task_id, &s.key, &[StepStatus::Pending, StepStatus::Failed], StepStatus::Cancelled, 0, now).await?;
        }
        self.update(&task, task.phase, true).await
    }

    /// Undoes a failed or cancelled task, step by step in reverse order.
    pub async fn rollback(&self, task_id: &str) -> Result<TaskRecord, TaskError> {
        let task = self.task(task_id).await?;
        if !matches!(task.status, TaskStatus::Failed | TaskStatus::Cancelled) || task.phase != Phase::Forward {
            return Err(TaskError::State(format!(
                "task {task_id} is {}; only a failed or cancelled task can be rolled back (cancel a running one first)",
                task.status
            )));
        }
        self.update(&task, Phase::Rollback, false).await
    }

    async fn reset(&self, task: &TaskRecord, key: &str, from: &[StepStatus], to: StepStatus, extra: u32) -> Result<TaskRecord, TaskError> {
        if !self.store.reset_step(&task.id, key, from, to, extra, now_ms()).await? {
            return Err(TaskError::State(format!("step {key} changed meanwhile; look again with `atoll task show {}`", task.id)));
        }
        self.update(task, task.phase, task.cancel_requested).await
    }

    async fn update(&self, task: &TaskRecord, phase: Phase, cancel_requested: bool) -> Result<TaskRecord, TaskError> {
        let mut next = task.clone();
        next.phase = phase;
        next.cancel_requested = cancel_requested;
        let steps = self.store.task_steps(&task.id).await?;
        next.status = atoll_core::task::derive_status(&crate::executor::states(&steps), phase, cancel_requested);
        next.updated_at_ms = now_ms();
        next.finished_at_ms = next.status.is_settled().then_some(next.updated_at_ms);
        self.store
            .update_task(&TaskUpdate {
                id: next.id.clone(),
                status: next.status,
                phase,
                cancel_requested,
                now: next.updated_at_ms,
                finished_at_ms: next.finished_at_ms,
            })
            .await?;
        self.wake.notify_one();
        Ok(next)
    }

    async fn task(&self, id: &str) -> Result<TaskRecord, TaskError> {
        self.store.get_task(id).await?.ok_or_else(|| TaskError::NotFound(id.to_string()))
    }

    async fn task_and_step(&self, task_id: &str, key: &str) -> Result<(TaskRecord, StepRecord), TaskError> {
        let task = self.task(task_id).await?;
        let step =
            self.store.get_step(task_id, key).await?.ok_or_else(|| TaskError::NoSuchStep { task: task_id.into(), step: key.into() })?;
        Ok((task, step))
    }

    /// Wakes the executor now (after an external change).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

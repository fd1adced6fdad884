//! The executor: claims ready steps under leases, runs them, records the
//! outcome, and keeps each task's status equal to what its steps imply.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use atoll_core::task::{derive_status, ready_steps};
use atoll_core::{Phase, StepState, StepStatus, TaskStatus};
use atoll_store::{MetaStore, StepClaim, StepCompletion, StepRecord, TaskRecord, TaskUpdate};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{StepContext, StepError, StepHandler, TaskError};
use atoll_core::time::now_ms;

#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// How long a claimed step stays ours without renewal. Another executor
    /// resumes the step this long after we die.
    pub lease: Duration,
    /// How often the executor looks for work when nobody wakes it.
    pub poll: Duration,
    /// Steps this executor runs at once.
    pub max_parallel: usize,
    /// First back-off after a retryable failure; doubles per attempt.
    pub retry_backoff: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self { lease: Duration::from_secs(10), poll: Duration::from_millis(500), max_parallel: 16, retry_backoff: Duration::from_secs(1) }
    }
}

pub struct Executor {
    pub(crate) store: Arc<dyn MetaStore>,
    pub(crate) handlers: HashMap<String, Arc<dyn StepHandler>>,
    /// Identifies this executor's leases; new for every process.
    pub(crate) owner: String,
    pub(crate) config: ExecutorConfig,
    pub(crate) wake: Notify,
    running: AtomicUsize,
}

/// The outcome of one attempt, before it is written down.
enum Attempt {
    Done(Option<serde_json::Value>),
    Failed(StepError),
    Cancelled,
    LeaseLost,
}

impl Executor {
    pub fn new(store: Arc<dyn MetaStore>, config: ExecutorConfig) -> Self {
        Self {
            store,
            handlers: HashMap::new(),
            owner: format!("exec-{}", uuid::Uuid::new_v4()),
            config,
            wake: Notify::new(),
            running: AtomicUsize::new(0),
        }
    }

    pub fn register(&mut self, kind: &str, handler: Arc<dyn StepHandler>) {
        self.handlers.insert(kind.to_string(), handler);
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs the executor until `shutdown`. Steps still running then are
    /// abandoned with their leases, for whichever executor comes next.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.tick(&shutdown).await {
                tracing::warn!(error = %e, "task executor pass failed; retrying");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }

    /// One scheduling pass over every active task.
    pub async fn tick(self: &Arc<Self>, shutdown: &CancellationToken) -> Result<(), TaskError> {
        for task in self.store.active_tasks().await? {
            let steps = self.store.task_steps(&task.id).await?;
            self.settle(&task, &steps).await?;
            self.start_ready(&task, &steps, shutdown).await?;
        }
        Ok(())
    }

    /// Writes the task status its steps imply, if it differs.
    pub(crate) async fn settle(&self, task: &TaskRecord, steps: &[StepRecord]) -> Result<TaskStatus, TaskError> {
        let status = derive_status(&states(steps), task.phase, task.cancel_requested);
        if status != task.status {
            let now = now_ms();
            self.store
                .update_task(&TaskUpdate {
                    id: task.id.clone(),
                    status,
                    phase: task.phase,
                    cancel_requested: task.cancel_requested,
                    now,
                    finished_at_ms: status.is_settled().then_some(now),
                })
                .await?;
            tracing::info!(task = %task.id, kind = %task.kind, from = %task.status, to = %status, "task status changed");
        }
        Ok(status)
    }

    async fn start_ready(self: &Arc<Self>, task: &TaskRecord, steps: &[StepRecord], shutdown: &CancellationToken) -> Result<(), TaskError> {
        let now = now_ms();
        let (run_status, mut candidates): (StepStatus, Vec<(&StepRecord, StepStatus)>) = match task.phase {
            Phase::Forward if task.cancel_requested => return Ok(()),
            Phase::Forward => (StepStatus::Running, Vec::new()),
            Phase::Rollback => (StepStatus::RollingBack, Vec::new()),
        };
        let by_key: HashMap<&str, &StepRecord> = steps.iter().map(|s| (s.key.as_str(), s)).collect();
        for key in ready_steps(&states(steps), task.phase, now) {
            if let Some(s) = by_key.get(key) {
                candidates.push((s, s.status));
            }
        }
        // Steps whose executor died: their lease ran out while they ran.
        for s in steps {
            let orphaned = s.status == run_status && s.lease_expires_ms.is_some_and(|t| t < now);
            if orphaned {
                candidates.push((s, run_status));
            }
        }
        for (step, expect) in candidates {
            if self.running.load(Ordering::SeqCst) >= self.config.max_parallel {
                break;
            }
            let claim = StepClaim {
                task_id: task.id.clone(),
                key: step.key.clone(),
                expect,
                to: run_status,
                owner: self.owner.clone(),
                now,
                lease_until: now + self.config.lease.as_millis() as i64,
            };
            if !self.store.claim_step(&claim).await? {
                continue; // another executor took it
            }
            let mut step = step.clone();
            step.attempts += 1;
            if expect == run_status {
                tracing::warn!(task = %task.id, step = %step.key, attempt = step.attempts, "resuming a step whose executor stopped");
            }
            self.running.fetch_add(1, Ordering::SeqCst);
            let engine = Arc::clone(self);
            let phase = task.phase;
            let shutdown = shutdown.child_token();
            tokio::spawn(async move {
                Arc::clone(&engine).run_step(step, phase, shutdown).await;
                engine.running.fetch_sub(1, Ordering::SeqCst);
                engine.wake.notify_one();
            });
        }
        Ok(())
    }

    async fn run_step(self: Arc<Self>, step: StepRecord, phase: Phase, shutdown: CancellationToken) {
        let cancel = CancellationToken::new();
        let ctx = StepContext {
            task_id: step.task_id.clone(),
            key: step.key.clone(),
            attempt: step.attempts,
            phase,
            params: step.params.clone(),
            cancel: cancel.clone(),
            store: Arc::clone(&self.store),
        };
        let verb = if phase == Phase::Forward { "run" } else { "rollback" };
        ctx.info(format!("{verb} attempt {} of {} started by {}", step.attempts, step.max_attempts, self.owner)).await;

        let keeper = tokio::spawn(Arc::clone(&self).keep_lease(step.task_id.clone(), step.key.clone(), cancel.clone()));
        let attempt = tokio::select! {
            a = self.attempt(&ctx, &step, phase) => a,
            _ = shutdown.cancelled() => {
                keeper.abort();
                return; // the lease expires and the step is resumed elsewhere
            }
        };
        keeper.abort();
        if let Err(e) = self.record(&ctx, &step, phase, attempt).await {
            tracing::warn!(task = %step.task_id, step = %step.key, error = %e, "could not record step outcome; it will be resumed when its lease expires");
        }
    }

    async fn attempt(&self, ctx: &StepContext, step: &StepRecord, phase: Phase) -> Attempt {
        let Some(handler) = self.handlers.get(&step.kind) else {
            return Attempt::Failed(StepError::fatal(format!(
                "this server has no handler for step kind {:?}; upgrade it or run the task from a server that has",
                step.kind
            )));
        };
        let timeout = Duration::from_millis(step.timeout_ms.max(1) as u64);
        let work = async {
            match phase {
                Phase::Forward => handler.run(ctx).await.map(Some),
                Phase::Rollback => handler.rollback(ctx).await.map(|()| None),
            }
        };
        // Biased towards the cancel branch: a handler that wakes on the same
        // token and returns may not turn an operator's cancel into a success.
        let outcome = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                return match self.store.get_task(&ctx.task_id).await {
                    Ok(Some(t)) if t.cancel_requested => Attempt::Cancelled,
                    _ => Attempt::LeaseLost,
                };
            }
            r = tokio::time::timeout(timeout, work) => r,
        };
        match outcome {
            Ok(Ok(output)) => {
                failpoint_after_run().await;
                Attempt::Done(output)
            }
            Ok(Err(e)) => Attempt::Failed(e),
            Err(_) => Attempt::Failed(StepError::retryable(format!("step timed out after {:.1} s", timeout.as_secs_f64()))),
        }
    }

    /// Renews the lease while the step runs; cancels it when the lease is
    /// lost or the task is cancelled.
    async fn keep_lease(self: Arc<Self>, task_id: String, key: String, cancel: CancellationToken) {
        let every = self.config.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let until = now_ms() + self.config.lease.as_millis() as i64;
            let held = self.store.renew_lease(&task_id, &key, &self.owner, until).await;
            let cancelled = matches!(self.store.get_task(&task_id).await, Ok(Some(t)) if t.cancel_requested && t.phase == Phase::Forward);
            match held {
                Ok(false) => {
                    tracing::warn!(task = %task_id, step = %key, "lease lost; stopping this attempt");
                    cancel.cancel();
                    return;
                }
                _ if cancelled => {
                    cancel.cancel();
                    return;
                }
                Ok(true) => {}
                Err(e) => tracing::warn!(task = %task_id, step = %key, error = %e, "lease renewal failed"),
            }
        }
    }

    async fn record(&self, ctx: &StepContext, step: &StepRecord, phase: Phase, attempt: Attempt) -> Result<(), TaskError> {
        let now = now_ms();
        let mut done = StepCompletion {
            task_id: step.task_id.clone(),
            key: step.key.clone(),
            owner: self.owner.clone(),
            status: StepStatus::Succeeded,
            output: None,
            error: None,
            not_before_ms: 0,
            now,
        };
        match attempt {
            Attempt::LeaseLost => return Ok(()),
            Attempt::Done(output) => {
                done.status = if phase == Phase::Forward { StepStatus::Succeeded } else { StepStatus::RolledBack };
                done.output = output.or_else(|| step.output.clone());
                ctx.info("done").await;
            }
            Attempt::Cancelled => {
                done.status = StepStatus::Cancelled;
                done.error = Some("cancelled by an operator while running".into());
                ctx.warn("cancelled").await;
            }
            Attempt::Failed(e) => {
                let again = matches!(e, StepError::Retryable(_)) && step.attempts < step.max_attempts && phase == Phase::Forward;
                done.error = Some(e.to_string());
                done.output = step.output.clone();
                if again {
                    let backoff = self.config.retry_backoff.as_millis() as i64 * (1 << step.attempts.min(6)) / 2;
                    done.status = StepStatus::Pending;
                    done.not_before_ms = now + backoff;
                    ctx.warn(format!("failed: {e}; retrying in {:.1} s", backoff as f64 / 1000.0)).await;
                } else {
                    done.status = if phase == Phase::Forward { StepStatus::Failed } else { StepStatus::RollbackFailed };
                    ctx.log("error", format!("failed: {e}")).await;
                }
            }
        }
        if self.store.complete_step(&done).await?
            && let Some(task) = self.store.get_task(&step.task_id).await?
        {
            let steps = self.store.task_steps(&task.id).await?;
            self.settle(&task, &steps).await?;
        }
        Ok(())
    }
}

pub(crate) fn states(steps: &[StepRecord]) -> Vec<StepState> {
    steps.iter().map(|s| StepState { key: s.key.clone(), deps: s.deps.clone(), status: s.status, not_before_ms: s.not_before_ms }).collect()
}

/// Test hook: `FAILPOINTS=tasks::after_run=return(MS)` holds a finished
/// step for MS before its success is recorded, so a test can kill the
/// server between a step's effect and its bookkeeping.
async fn failpoint_after_run() {
    hold_at("tasks::after_run").await;
}

/// Test hook for step handlers: `FAILPOINTS=NAME=return(MS)` pauses here
/// for MS, so a test can inject a fault at that point of a step. Nothing
/// without the `failpoints` feature.
pub async fn hold_at(name: &str) {
    #[cfg(feature = "failpoints")]
    if let Some(ms) = fail::eval(name, |v| v.and_then(|v| v.parse::<u64>().ok())).flatten() {
        tracing::warn!(ms, failpoint = name, "failpoint: holding the step");
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

//! What a step's code sees while it runs.

use std::sync::Arc;

use async_trait::async_trait;
use atoll_core::Phase;
use atoll_core::time::now_ms;
use atoll_store::{MetaStore, NewStepLog};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::StepError;

/// The code behind one kind of step. Both directions must be idempotent:
/// a run may be repeated after its executor died half-way.
#[async_trait]
pub trait StepHandler: Send + Sync {
    /// Does the step's work; the returned value is kept as its output.
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError>;

    /// Undoes the step's effect. The default has nothing to undo.
    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        ctx.info("nothing to undo").await;
        Ok(())
    }
}

pub struct StepContext {
    pub task_id: String,
    pub key: String,
    pub attempt: u32,
    pub phase: Phase,
    pub params: Value,
    /// Cancelled when the task is cancelled or the lease is lost; long
    /// steps should stop at the next safe point.
    pub cancel: CancellationToken,
    pub(crate) store: Arc<dyn MetaStore>,
}

impl StepContext {
    /// The same for every attempt of this step in this direction, so an
    /// effect keyed by it happens once however often the step reruns.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}/{}", self.task_id, self.key, self.phase)
    }

    /// The step's parameters as its kind's typed struct. A shape that does
    /// not decode fails the step for good: retrying would not change it.
    pub fn params<P: serde::de::DeserializeOwned>(&self) -> Result<P, StepError> {
        P::deserialize(&self.params).map_err(|e| StepError::fatal(format!("step {} has unusable parameters: {e}", self.key)))
    }

    /// The output another step of this task returned.
    pub async fn output_of(&self, key: &str) -> Option<Value> {
        self.store.get_step(&self.task_id, key).await.ok().flatten().and_then(|s| s.output)
    }

    pub async fn info(&self, message: impl Into<String>) {
        self.log("info", message.into()).await;
    }

    pub async fn warn(&self, message: impl Into<String>) {
        self.log("warn", message.into()).await;
    }

    pub(crate) async fn log(&self, level: &str, message: String) {
        tracing::info!(task = %self.task_id, step = %self.key, attempt = self.attempt, level, "{message}");
        let line = NewStepLog {
            task_id: self.task_id.clone(),
            step: self.key.clone(),
            attempt: self.attempt,
            at_ms: now_ms(),
            level: level.to_string(),
            message,
        };
        if let Err(e) = self.store.append_step_log(&line).await {
            tracing::warn!(task = %self.task_id, step = %self.key, error = %e, "step log line lost");
        }
    }
}

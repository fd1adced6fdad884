//! The task engine: every operation that changes hosts runs as a task, a
//! persisted DAG of idempotent steps.
//!
//! A task is submitted whole (validated first, stored in one transaction),
//! then any executor claims ready steps under expiring leases in MetaDB. An
//! executor that dies loses its leases; another one (or the same server
//! restarted) reclaims those steps and runs them again, which is why every
//! step must be idempotent: [`StepContext::idempotency_key`] is the same for
//! every attempt, and effects on hosts are keyed by it so a rerun replays.

mod error;
mod executor;
mod handler;
mod ops;

pub use error::{StepError, TaskError};
pub use executor::{Executor, ExecutorConfig, hold_at};
pub use handler::{StepContext, StepHandler};

use serde_json::Value;
use std::time::Duration;

/// A step as a caller describes it.
#[derive(Debug, Clone)]
pub struct StepSpec {
    /// Unique within the task, e.g. `dirs@db1`.
    pub key: String,
    /// Name of the registered [`StepHandler`] that runs it.
    pub kind: String,
    pub title: String,
    pub params: Value,
    pub deps: Vec<String>,
    pub max_attempts: u32,
    pub timeout: Duration,
}

impl StepSpec {
    pub fn new(key: impl Into<String>, kind: impl Into<String>, title: impl Into<String>, params: Value) -> Self {
        Self {
            key: key.into(),
            kind: kind.into(),
            title: title.into(),
            params,
            deps: Vec::new(),
            max_attempts: 3,
            timeout: Duration::from_secs(120),
        }
    }

    /// A step whose parameters are its kind's typed struct, read back by
    /// the handler with [`StepContext::params`].
    pub fn typed(key: impl Into<String>, kind: impl Into<String>, title: impl Into<String>, params: &impl serde::Serialize) -> Self {
        // Parameter structs are plain fields and always serialise; were one
        // not to, the step fails when it runs, saying why.
        let params = serde_json::to_value(params).unwrap_or_else(|e| serde_json::json!({ "unserialisable": e.to_string() }));
        Self::new(key, kind, title, params)
    }

    pub fn after(mut self, dep: impl Into<String>) -> Self {
        self.deps.push(dep.into());
        self
    }
}

/// A task as a caller describes it.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub kind: String,
    pub title: String,
    pub target: String,
    pub params: Value,
    pub steps: Vec<StepSpec>,
}

/// Reads `FAILPOINTS` from the environment when built with the
/// `failpoints` feature (tests only); does nothing otherwise.
pub fn setup_failpoints() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}

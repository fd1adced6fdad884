use atoll_store::StoreError;
use thiserror::Error;

/// Why an operator's or caller's request about a task was refused.
#[derive(Debug, Error)]
pub enum TaskError {
    #[error("no task {0:?}: `atoll task list` shows the tasks there are")]
    NotFound(String),
    #[error("task {task} has no step {step:?}")]
    NoSuchStep { task: String, step: String },
    /// The task or step is not in a state that allows the request.
    #[error("{0}")]
    State(String),
    /// The submitted DAG is malformed (a programming error in the caller).
    #[error("invalid task: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a step attempt failed.
#[derive(Debug, Error)]
pub enum StepError {
    /// Worth another attempt after a back-off (a host did not answer, a
    /// transient conflict).
    #[error("{0}")]
    Retryable(String),
    /// Another attempt would fail the same way; an operator must act.
    #[error("{0}")]
    Fatal(String),
}

impl StepError {
    pub fn retryable(msg: impl Into<String>) -> Self {
        Self::Retryable(msg.into())
    }

    pub fn fatal(msg: impl Into<String>) -> Self {
        Self::Fatal(msg.into())
    }
}

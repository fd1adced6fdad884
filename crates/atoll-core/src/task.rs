//! The task state machine: which steps of a DAG may run next and what the
//! task's overall status is. The task engine persists these states; the rules
//! live here so they can be tested without a database.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnixMs;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok(Self::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    TaskStatus {
        Running = "running",
        Succeeded = "succeeded",
        /// Stopped on a failed step; retry, skip or roll back.
        Failed = "failed",
        /// Cancel requested; waiting for running steps to stop.
        Cancelling = "cancelling",
        Cancelled = "cancelled",
        RollingBack = "rolling_back",
        RolledBack = "rolled_back",
    }
}

impl TaskStatus {
    /// Whether the task waits for nothing but an operator.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::RolledBack)
    }
}

string_enum! {
    /// Which way a task runs: its steps forward, or their rollbacks in reverse.
    Phase {
        Forward = "forward",
        Rollback = "rollback",
    }
}

string_enum! {
    StepStatus {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
        Cancelled = "cancelled",
        RollingBack = "rolling_back",
        RolledBack = "rolled_back",
        RollbackFailed = "rollback_failed",
    }
}

impl StepStatus {
    /// Whether the step counts as done in a task's progress.
    pub fn is_done(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped | Self::RolledBack)
    }
}

/// How far a task has come: what listings show instead of its steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

impl Progress {
    pub fn count(&mut self, status: StepStatus, steps: usize) {
        self.total += steps;
        if status.is_done() {
            self.done += steps;
        }
    }
}

/// What the rules need to know about one step.
#[derive(Debug, Clone)]
pub struct StepState {
    pub key: String,
    pub deps: Vec<String>,
    pub status: StepStatus,
    /// A failed attempt is retried automatically, but not before this time.
    pub not_before_ms: UnixMs,
}

/// Keys of the steps that may start now.
///
/// Forward: pending steps whose dependencies all succeeded or were skipped.
/// Rollback: steps that ran (succeeded or failed) once every step depending
/// on them is undone or never ran, so effects are undone in reverse order.
pub fn ready_steps(steps: &[StepState], phase: Phase, now_ms: UnixMs) -> Vec<&str> {
    let status: HashMap<&str, StepStatus> = steps.iter().map(|s| (s.key.as_str(), s.status)).collect();
    match phase {
        Phase::Forward => steps
            .iter()
            .filter(|s| s.status == StepStatus::Pending && s.not_before_ms <= now_ms)
            .filter(|s| s.deps.iter().all(|d| matches!(status.get(d.as_str()), Some(StepStatus::Succeeded | StepStatus::Skipped))))
            .map(|s| s.key.as_str())
            .collect(),
        Phase::Rollback => steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Failed))
            .filter(|s| {
                steps
                    .iter()
                    .filter(|d| d.deps.contains(&s.key))
                    .all(|d| matches!(d.status, StepStatus::Pending | StepStatus::Cancelled | StepStatus::Skipped | StepStatus::RolledBack))
            })
            .map(|s| s.key.as_str())
            .collect(),
    }
}

/// The task's status implied by its steps.
pub fn derive_status(steps: &[StepState], phase: Phase, cancel_requested: bool) -> TaskStatus {
    let any = |st: StepStatus| steps.iter().any(|s| s.status == st);
    match phase {
        Phase::Forward => {
            if cancel_requested {
                return if any(StepStatus::Running) { TaskStatus::Cancelling } else { TaskStatus::Cancelled };
            }
            if steps.iter().all(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped)) {
                return TaskStatus::Succeeded;
            }
            if any(StepStatus::Running) {
                return TaskStatus::Running;
            }
            // Pending steps that can still become ready keep the task running;
            // a failure only stops the task once nothing else can progress.
            let blocked = !any(StepStatus::Failed) || can_progress(steps);
            if blocked { TaskStatus::Running } else { TaskStatus::Failed }
        }
        Phase::Rollback => {
            if any(StepStatus::RollingBack) {
                TaskStatus::RollingBack
            } else if any(StepStatus::RollbackFailed) {
                TaskStatus::Failed
            } else if ready_steps(steps, Phase::Rollback, UnixMs::MAX).is_empty() {
                TaskStatus::RolledBack
            } else {
                TaskStatus::RollingBack
            }
        }
    }
}

/// Whether some pending step could still run (ignoring retry back-off).
fn can_progress(steps: &[StepState]) -> bool {
    !ready_steps(steps, Phase::Forward, UnixMs::MAX).is_empty()
}

/// Checks a DAG before it is stored: unique keys, known dependencies, no cycle.
pub fn validate_dag<'a>(steps: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Result<(), String> {
    let steps: Vec<(&str, &[String])> = steps.into_iter().collect();
    let mut index = HashMap::new();
    for (i, (key, _)) in steps.iter().enumerate() {
        if index.insert(*key, i).is_some() {
            return Err(format!("step {key:?} appears twice"));
        }
    }
    for (key, deps) in &steps {
        if let Some(d) = deps.iter().find(|d| !index.contains_key(d.as_str())) {
            return Err(format!("step {key:?} depends on unknown step {d:?}"));
        }
    }
    // Kahn's algorithm: whatever cannot be ordered sits on a cycle.
    let mut remaining: Vec<usize> = steps.iter().map(|(_, d)| d.len()).collect();
    let mut queue: Vec<usize> = (0..steps.len()).filter(|&i| remaining[i] == 0).collect();
    let mut ordered = 0;
    while let Some(i) = queue.pop() {
        ordered += 1;
        for (j, (_, deps)) in steps.iter().enumerate() {
            if deps.iter().any(|d| d == steps[i].0) {
                remaining[j] -= 1;
                if remaining[j] == 0 {
                    queue.push(j);
                }
            }
        }
    }
    if ordered == steps.len() { Ok(()) } else { Err("steps depend on each other in a cycle".into()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepStatus::*;

    fn step(key: &str, deps: &[&str], status: StepStatus) -> StepState {
        StepState { key: key.into(), deps: deps.iter().map(|d| d.to_string()).collect(), status, not_before_ms: 0 }
    }

    #[test]
    fn fan_out_runs_in_parallel_after_shared_dependency() {
        let s = vec![step("a", &[], Succeeded), step("b", &["a"], Pending), step("c", &["a"], Pending)];
        assert_eq!(ready_steps(&s, Phase::Forward, 0), vec!["b", "c"]);
        assert_eq!(derive_status(&s, Phase::Forward, false), TaskStatus::Running);
    }

    #[test]
    fn failure_stops_only_when_nothing_else_can_run() {
        let s = vec![step("a", &[], Failed), step("b", &[], Pending), step("c", &["a"], Pending)];
        assert_eq!(derive_status(&s, Phase::Forward, false), TaskStatus::Running);
        let s = vec![step("a", &[], Failed), step("b", &[], Succeeded), step("c", &["a"], Pending)];
        assert_eq!(derive_status(&s, Phase::Forward, false), TaskStatus::Failed);
    }

    #[test]
    fn skipped_dependency_unblocks() {
        let s = vec![step("a", &[], Skipped), step("b", &["a"], Pending)];
        assert_eq!(ready_steps(&s, Phase::Forward, 0), vec!["b"]);
    }

    #[test]
    fn back_off_delays_retry() {
        let mut s = vec![step("a", &[], Pending)];
        s[0].not_before_ms = 100;
        assert!(ready_steps(&s, Phase::Forward, 50).is_empty());
        assert_eq!(ready_steps(&s, Phase::Forward, 100), vec!["a"]);
        assert_eq!(derive_status(&s, Phase::Forward, false), TaskStatus::Running);
    }

    #[test]
    fn rollback_runs_in_reverse_order() {
        let s = vec![step("a", &[], Succeeded), step("b", &["a"], Succeeded), step("c", &["b"], Failed)];
        assert_eq!(ready_steps(&s, Phase::Rollback, 0), vec!["c"]);
        let s = vec![step("a", &[], Succeeded), step("b", &["a"], Succeeded), step("c", &["b"], RolledBack)];
        assert_eq!(ready_steps(&s, Phase::Rollback, 0), vec!["b"]);
        assert_eq!(derive_status(&s, Phase::Rollback, false), TaskStatus::RollingBack);
        let s = vec![step("a", &[], RolledBack), step("b", &["a"], RolledBack), step("c", &["b"], Pending)];
        assert_eq!(derive_status(&s, Phase::Rollback, false), TaskStatus::RolledBack);
        let s = vec![step("a", &[], Succeeded), step("b", &["a"], RollbackFailed)];
        assert!(ready_steps(&s, Phase::Rollback, 0).is_empty());
        assert_eq!(derive_status(&s, Phase::Rollback, false), TaskStatus::Failed);
    }

    #[test]
    fn cancel_waits_for_running_steps() {
        let s = vec![step("a", &[], Running), step("b", &[], Cancelled)];
        assert_eq!(derive_status(&s, Phase::Forward, true), TaskStatus::Cancelling);
        let s = vec![step("a", &[], Succeeded), step("b", &[], Cancelled)];
        assert_eq!(derive_status(&s, Phase::Forward, true), TaskStatus::Cancelled);
    }

    #[test]
    fn dag_validation() {
        let d = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (a, b, c) = (d(&[]), d(&["a"]), d(&["b"]));
        assert!(validate_dag([("a", &a[..]), ("b", &b[..]), ("c", &c[..])]).is_ok());
        let cyc = d(&["c"]);
        assert!(validate_dag([("a", &cyc[..]), ("b", &b[..]), ("c", &c[..])]).unwrap_err().contains("cycle"));
        assert!(validate_dag([("a", &a[..]), ("a", &a[..])]).unwrap_err().contains("twice"));
        let unknown = d(&["x"]);
        assert!(validate_dag([("a", &unknown[..])]).unwrap_err().contains("unknown"));
    }
}

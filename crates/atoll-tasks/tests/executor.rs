//! The task engine against a real MetaDB (SQLite file): parallel fan-out,
//! automatic and operator retries, lease takeover after an executor dies,
//! cancellation, timeouts and rollback order.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use atoll_core::{StepStatus, TaskStatus};
use atoll_store::{MetaStore, SqlStore, TaskRecord};
use atoll_tasks::{Executor, ExecutorConfig, StepContext, StepError, StepHandler, StepSpec, TaskError, TaskSpec};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Records what ran, in order, and behaves as each step's params say:
/// `{"fail_times": N, "fatal": bool, "sleep_ms": M}`.
#[derive(Default)]
struct Probe {
    runs: Mutex<Vec<(String, String)>>,
    rollbacks: Mutex<Vec<String>>,
    attempts: Mutex<HashMap<String, u32>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// Steps that have started at least once.
    started: AtomicUsize,
}

struct Handler(Arc<Probe>);

#[async_trait]
impl StepHandler for Handler {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        let n = self.0.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.max_active.fetch_max(n, Ordering::SeqCst);
        self.0.runs.lock().unwrap().push((ctx.key.clone(), ctx.idempotency_key()));
        let sleep = ctx.params["sleep_ms"].as_u64().unwrap_or(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(sleep)) => {}
            _ = ctx.cancel.cancelled() => {}
        }
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        let attempt = {
            let mut a = self.0.attempts.lock().unwrap();
            let e = a.entry(ctx.key.clone()).or_default();
            *e += 1;
            *e
        };
        let fail_times = ctx.params["fail_times"].as_u64().unwrap_or(0) as u32;
        if attempt <= fail_times {
            return Err(if ctx.params["fatal"].as_bool().unwrap_or(false) {
                StepError::fatal("broken for good")
            } else {
                StepError::retryable("flaky")
            });
        }
        ctx.info("worked").await;
        Ok(json!({ "attempt": attempt }))
    }

    async fn rollback(&self, ctx: &StepContext) -> Result<(), StepError> {
        self.0.rollbacks.lock().unwrap().push(ctx.key.clone());
        Ok(())
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<dyn MetaStore>,
    probe: Arc<Probe>,
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetaStore> =
            Arc::new(SqlStore::connect(&format!("sqlite://{}", dir.path().join("meta.db").display())).await.unwrap());
        Rig { _dir: dir, store, probe: Arc::new(Probe::default()) }
    }

    fn engine(&self, lease_ms: u64) -> Arc<Executor> {
        let config = ExecutorConfig {
            lease: Duration::from_millis(lease_ms),
            poll: Duration::from_millis(50),
            max_parallel: 8,
            retry_backoff: Duration::from_millis(20),
        };
        let mut e = Executor::new(Arc::clone(&self.store), config);
        e.register("probe", Arc::new(Handler(Arc::clone(&self.probe))));
        Arc::new(e)
    }

    fn start(&self, engine: &Arc<Executor>) -> CancellationToken {
        let token = CancellationToken::new();
        tokio::spawn(Arc::clone(engine).run(token.clone()));
        token
    }

    async fn settled(&self, id: &str) -> TaskRecord {
        for _ in 0..400 {
            let t = self.store.get_task(id).await.unwrap().unwrap();
            if t.status.is_settled() {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("task {id} did not settle");
    }

    async fn step_status(&self, id: &str, key: &str) -> StepStatus {
        self.store.get_step(id, key).await.unwrap().unwrap().status
    }
}

fn step(key: &str, params: Value) -> StepSpec {
    let mut s = StepSpec::new(key, "probe", format!("step {key}"), params);
    s.timeout = Duration::from_secs(10);
    s
}

fn task(steps: Vec<StepSpec>) -> TaskSpec {
    TaskSpec { kind: "test".into(), title: "test".into(), target: "t".into(), params: json!({}), steps }
}

#[tokio::test]
async fn fan_out_runs_in_parallel_after_its_root() {
    let rig = Rig::new().await;
    let e = rig.engine(2000);
    let _run = rig.start(&e);
    let steps = vec![
        step("root", json!({})),
        step("a", json!({ "sleep_ms": 300 })).after("root"),
        step("b", json!({ "sleep_ms": 300 })).after("root"),
        step("c", json!({ "sleep_ms": 300 })).after("root"),
        step("join", json!({})).after("a").after("b").after("c"),
    ];
    let t = e.submit(task(steps), "tester").await.unwrap();
    let done = rig.settled(&t.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    assert!(rig.probe.max_active.load(Ordering::SeqCst) >= 2, "branches did not overlap");
    let runs = rig.probe.runs.lock().unwrap().clone();
    assert_eq!(runs.first().unwrap().0, "root");
    assert_eq!(runs.last().unwrap().0, "join");
    let logs = rig.store.step_logs(&t.id, Some("join"), 0, 100).await.unwrap();
    assert!(logs.iter().any(|l| l.message == "worked"));
}

#[tokio::test]
async fn retryable_failures_are_retried_then_fatal_ones_wait_for_an_operator() {
    let rig = Rig::new().await;
    let e = rig.engine(2000);
    let _run = rig.start(&e);
    let t = e.submit(task(vec![step("flaky", json!({ "fail_times": 2 }))]), "tester").await.unwrap();
    assert_eq!(rig.settled(&t.id).await.status, TaskStatus::Succeeded);
    let s = rig.store.get_step(&t.id, "flaky").await.unwrap().unwrap();
    assert_eq!(s.attempts, 3);

    let t = e
        .submit(task(vec![step("broken", json!({ "fail_times": 1, "fatal": true })), step("after", json!({})).after("broken")]), "tester")
        .await
        .unwrap();
    let failed = rig.settled(&t.id).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    let s = rig.store.get_step(&t.id, "broken").await.unwrap().unwrap();
    assert_eq!((s.status, s.attempts), (StepStatus::Failed, 1), "a fatal error is not retried automatically");
    assert_eq!(s.error.as_deref(), Some("broken for good"));
    assert_eq!(rig.step_status(&t.id, "after").await, StepStatus::Pending);
    // Skipping a step that is not failed or pending is refused.
    e.retry_step(&t.id, "broken").await.unwrap();
    assert_eq!(rig.settled(&t.id).await.status, TaskStatus::Succeeded);
    assert!(matches!(e.retry_step(&t.id, "broken").await, Err(TaskError::State(_))));
    assert!(matches!(e.skip_step(&t.id, "nope").await, Err(TaskError::NoSuchStep { .. })));
}

#[tokio::test]
async fn a_dead_executors_step_is_resumed_by_another_with_the_same_key() {
    let rig = Rig::new().await;
    let first = rig.engine(400);
    let stop_first = rig.start(&first);
    let t = first.submit(task(vec![step("slow", json!({ "sleep_ms": 1500 }))]), "tester").await.unwrap();
    while rig.probe.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first executor dies with the step in flight.
    stop_first.cancel();
    let second = rig.engine(400);
    let _run = rig.start(&second);
    let done = rig.settled(&t.id).await;
    assert_eq!(done.status, TaskStatus::Succeeded);
    let s = rig.store.get_step(&t.id, "slow").await.unwrap().unwrap();
    assert_eq!(s.attempts, 2);
    let runs = rig.probe.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].1, runs[1].1, "both attempts carry the same idempotency key");
    let logs = rig.store.step_logs(&t.id, None, 0, 100).await.unwrap();
    assert!(logs.iter().any(|l| l.message.contains(second.owner())), "the log names the executor that resumed it");
}

#[tokio::test]
async fn cancel_stops_running_and_pending_steps_then_rollback_undoes_in_reverse() {
    let rig = Rig::new().await;
    let e = rig.engine(300);
    let _run = rig.start(&e);
    let steps = vec![
        step("a", json!({})),
        step("b", json!({})).after("a"),
        step("c", json!({ "sleep_ms": 5000 })).after("b"),
        step("d", json!({})).after("c"),
    ];
    let t = e.submit(task(steps), "tester").await.unwrap();
    while rig.step_status(&t.id, "c").await != StepStatus::Running {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = e.cancel(&t.id).await.unwrap();
    assert!(matches!(r.status, TaskStatus::Cancelling | TaskStatus::Cancelled));
    let done = rig.settled(&t.id).await;
    assert_eq!(done.status, TaskStatus::Cancelled);
    assert_eq!(rig.step_status(&t.id, "c").await, StepStatus::Cancelled);
    assert_eq!(rig.step_status(&t.id, "d").await, StepStatus::Cancelled);
    assert!(matches!(e.cancel(&t.id).await, Err(TaskError::State(_))));

    e.rollback(&t.id).await.unwrap();
    let rolled = rig.settled(&t.id).await;
    assert_eq!(rolled.status, TaskStatus::RolledBack);
    assert_eq!(*rig.probe.rollbacks.lock().unwrap(), vec!["b".to_string(), "a".to_string()], "undone in reverse order");
}

#[tokio::test]
async fn a_step_that_overruns_its_timeout_fails_with_the_reason() {
    let rig = Rig::new().await;
    let e = rig.engine(2000);
    let _run = rig.start(&e);
    let mut s = step("slow", json!({ "sleep_ms": 2000 }));
    s.timeout = Duration::from_millis(100);
    s.max_attempts = 2;
    let t = e.submit(task(vec![s]), "tester").await.unwrap();
    assert_eq!(rig.settled(&t.id).await.status, TaskStatus::Failed);
    let s = rig.store.get_step(&t.id, "slow").await.unwrap().unwrap();
    assert_eq!(s.attempts, 2);
    assert!(s.error.unwrap().contains("timed out"));
}

#[tokio::test]
async fn malformed_tasks_are_refused_before_anything_is_stored() {
    let rig = Rig::new().await;
    let e = rig.engine(2000);
    let cyc = task(vec![step("a", json!({})).after("b"), step("b", json!({})).after("a")]);
    assert!(matches!(e.submit(cyc, "t").await, Err(TaskError::Invalid(m)) if m.contains("cycle")));
    let unknown = task(vec![StepSpec::new("a", "nope", "x", json!({}))]);
    assert!(matches!(e.submit(unknown, "t").await, Err(TaskError::Invalid(m)) if m.contains("unknown kind")));
    assert!(matches!(e.submit(task(vec![]), "t").await, Err(TaskError::Invalid(_))));
    assert!(rig.store.list_tasks(&Default::default()).await.unwrap().is_empty());
}

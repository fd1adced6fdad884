//! Tasks on real hosts: preparing hosts, a server killed mid-step, a step
//! that keeps failing, and the operator's retry, skip and roll back.

#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use std::time::Duration;

use atoll_api::agent::OpJournalEntry;
use atoll_api::v1::TaskView;
use atoll_core::{StepStatus, TaskStatus};
use atoll_testkit::{Agent, Platform, ServerOpts, wait_for};
use serde_json::json;

async fn online_platform(opts: ServerOpts, ips: &[&str]) -> (Platform, Vec<Agent>) {
    let mut p = Platform::start(opts).await.unwrap();
    p.login_admin().await.unwrap();
    let join = p.join_token().await.unwrap();
    let agents: Vec<Agent> = ips.iter().enumerate().map(|(i, ip)| p.start_agent(&format!("a{i}"), ip, None, &join).unwrap()).collect();
    p.wait_hosts_online(ips.len()).await.unwrap();
    (p, agents)
}

async fn settled(p: &Platform, id: &str, timeout: Duration) -> TaskView {
    p.wait_task(id, timeout).await.unwrap()
}

/// The agent's journal, read with the server's token for that host, which
/// the test takes from MetaDB's API... it is not exposed, so read the
/// journal files directly: they are the agent's record of every effect.
fn journal(agent: &Agent) -> Vec<OpJournalEntry> {
    let dir = agent.data_dir.join("ops");
    let mut v: Vec<OpJournalEntry> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect();
    v.sort_by_key(|e| e.at_ms);
    v
}

#[tokio::test]
async fn killed_server_resumes_task_and_no_effect_runs_twice() {
    // Hold every finished step for 4 s before its success is recorded, so
    // the kill lands between a step's effect and its bookkeeping.
    let mut opts = ServerOpts::default();
    opts.env.push(("FAILPOINTS".into(), "tasks::after_run=return(4000)".into()));
    let (mut p, agents) = online_platform(opts, &["127.0.0.21", "127.0.0.22"]).await;
    let data_dir = p.host_data_dir().display().to_string();
    let t: TaskView = p
        .client()
        .post("/api/v1/hosts/prepare", &json!({ "hosts": ["127.0.0.21", "127.0.0.22"], "profile": "sandbox", "data_dir": data_dir }))
        .await
        .unwrap();
    // Wait until both directory effects happened on the hosts.
    wait_for("directories created", Duration::from_secs(15), || async { agents.iter().all(|a| !journal(a).is_empty()).then_some(()) })
        .await
        .unwrap();
    let mid: TaskView = p.client().get(&format!("/api/v1/tasks/{}", t.id)).await.unwrap();
    assert_eq!(mid.status, TaskStatus::Running);
    assert!(mid.steps.iter().any(|s| s.status == StepStatus::Running), "a step must be in flight when the server dies");

    // SIGKILL the server mid-step and start it again without the hold.
    p.restart_server(ServerOpts::default()).await.unwrap();
    let done = settled(&p, &t.id, Duration::from_secs(60)).await;
    let dirs: Vec<_> = done.steps.iter().filter(|s| s.kind == "host.dirs").collect();
    assert_eq!(dirs.len(), 2);
    for s in &dirs {
        assert_eq!(s.status, StepStatus::Succeeded, "{s:?}");
        assert_eq!(s.attempts, 2, "step {} was resumed after the kill", s.key);
    }
    // Each host did the work exactly once and answered the resumed attempt
    // from its journal.
    for a in &agents {
        let j = journal(a);
        assert_eq!(j.len(), 1, "one operation per host: {j:?}");
        assert_eq!(j[0].executions, 1);
        assert!(j[0].replays >= 1, "the resumed attempt must be a replay: {j:?}");
    }
    let logs: Vec<atoll_api::v1::StepLogView> = p.client().get(&format!("/api/v1/tasks/{}/logs", t.id)).await.unwrap();
    assert!(logs.iter().any(|l| l.message.contains("already done")), "the log says the effect was replayed");
    // Whatever the checks found, the directory exists on disk.
    assert!(std::path::Path::new(&data_dir).is_dir());
}

#[tokio::test]
async fn failing_step_is_retried_skipped_and_rolled_back() {
    let (p, _agents) = online_platform(ServerOpts::default(), &["127.0.0.23"]).await;
    let c = p.client();
    // A data dir below a regular file can never be created: the step fails
    // for good, with the reason.
    let file = p.dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("db").display().to_string();
    let t: TaskView =
        c.post("/api/v1/hosts/prepare", &json!({ "hosts": ["127.0.0.23"], "profile": "sandbox", "data_dir": bad })).await.unwrap();
    let failed = settled(&p, &t.id, Duration::from_secs(30)).await;
    assert_eq!(failed.status, TaskStatus::Failed);
    let step = failed.steps.iter().find(|s| s.kind == "host.dirs").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    assert!(step.error.as_deref().unwrap().contains("cannot create"), "{step:?}");
    assert_eq!(failed.steps.iter().find(|s| s.kind == "host.check").unwrap().status, StepStatus::Pending);

    // Retry: runs again, fails again the same way.
    let _: TaskView = c.post(&format!("/api/v1/tasks/{}/steps/{}/retry", t.id, step.key), &json!({})).await.unwrap();
    let again = settled(&p, &t.id, Duration::from_secs(30)).await;
    let step2 = again.steps.iter().find(|s| s.key == step.key).unwrap();
    assert_eq!(again.status, TaskStatus::Failed);
    assert!(step2.attempts > step.attempts);
    // Retrying a step that did not fail is refused with the reason.
    let err = c.post::<_, TaskView>(&format!("/api/v1/tasks/{}/steps/check@host-127-0-0-23/retry", t.id), &json!({})).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");

    // Skip it: the check runs and fails (the directory does not exist).
    let _: TaskView = c.post(&format!("/api/v1/tasks/{}/steps/{}/skip", t.id, step.key), &json!({})).await.unwrap();
    let skipped = settled(&p, &t.id, Duration::from_secs(30)).await;
    assert_eq!(skipped.steps.iter().find(|s| s.key == step.key).unwrap().status, StepStatus::Skipped);
    let check = skipped.steps.iter().find(|s| s.kind == "host.check").unwrap();
    assert_eq!(check.status, StepStatus::Failed, "{check:?}");
    assert!(check.error.as_deref().unwrap().contains("data_dir.writable"), "{check:?}");

    // A prepare whose directory works but whose check fails (a port is
    // taken): roll it back, and the directory it made is gone.
    let _holder = std::net::TcpListener::bind("127.0.0.23:3306").unwrap();
    let good = p.host_data_dir().join("rollback-me").display().to_string();
    let t2: TaskView =
        c.post("/api/v1/hosts/prepare", &json!({ "hosts": ["127.0.0.23"], "profile": "sandbox", "data_dir": good })).await.unwrap();
    let t2 = settled(&p, &t2.id, Duration::from_secs(30)).await;
    assert_eq!(t2.status, TaskStatus::Failed, "{t2:?}");
    assert!(t2.steps.iter().any(|s| s.error.as_deref().is_some_and(|e| e.contains("port.3306"))), "{t2:?}");
    assert!(std::path::Path::new(&good).is_dir());
    let _: TaskView = c.post(&format!("/api/v1/tasks/{}/rollback", t2.id), &json!({})).await.unwrap();
    let rolled = settled(&p, &t2.id, Duration::from_secs(30)).await;
    assert_eq!(rolled.status, TaskStatus::RolledBack, "{rolled:?}");
    assert!(!std::path::Path::new(&good).exists(), "rollback removes the directory it created");
    // Only failed or cancelled tasks roll back.
    let err = c.post::<_, TaskView>(&format!("/api/v1/tasks/{}/rollback", t2.id), &json!({})).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    let audit: Vec<atoll_api::v1::AuditView> = c.get("/api/v1/audit").await.unwrap();
    for action in ["task.retry", "task.skip", "task.rollback", "host.prepare"] {
        assert!(audit.iter().any(|a| a.action == action), "audit lacks {action}");
    }
}

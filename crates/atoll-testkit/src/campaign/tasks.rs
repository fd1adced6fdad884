//! Platform work during faults: before some faults the campaign asks for
//! a planned writer move, so a task is running when the fault lands.
//! Afterwards the task must have finished, or finish once its failed
//! steps are retried (resumable): one that neither does is a failure.

use std::time::{Duration, Instant};

use atoll_api::v1::{ClusterView, TaskView};
use atoll_core::{ServerState, StepStatus, TaskStatus};
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use super::rig::{CLUSTER, Rig};

fn client(rig: &Rig) -> atoll_client::Client {
    atoll_client::Client::with_timeout(&rig.platform.url, rig.platform.token.clone(), Duration::from_secs(5))
}

/// Asks for a move of the writer to another synced server; the task's id,
/// or `None` when the platform refused (e.g. another task runs).
pub async fn start_move(rig: &Rig, rng: &mut StdRng) -> Option<String> {
    let c = client(rig);
    let v: ClusterView = c.get(&format!("/api/v1/clusters/{CLUSTER}")).await.ok()?;
    let others: Vec<&str> = v
        .zones
        .iter()
        .flat_map(|z| &z.servers)
        .filter(|s| Some(&s.name) != v.writer.as_ref() && s.state == ServerState::Synced)
        .map(|s| s.name.as_str())
        .collect();
    let to = *others.get(rng.random_range(0..others.len().max(1)))?;
    let t: TaskView = c.post(&format!("/api/v1/clusters/{CLUSTER}/writer"), &json!({ "server": to })).await.ok()?;
    Some(t.id)
}

async fn settled(rig: &Rig, id: &str, deadline: Instant) -> Result<TaskView, String> {
    loop {
        match client(rig).get::<TaskView>(&format!("/api/v1/tasks/{id}")).await {
            Ok(t) if t.status.is_settled() => return Ok(t),
            Ok(t) if Instant::now() > deadline => return Err(format!("task {id} ({}) still {} at the deadline", t.title, t.status)),
            Err(e) if Instant::now() > deadline => return Err(format!("task {id}: {e}")),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for task `id`; retries its failed steps once if it failed.
/// `Ok("finished" | "resumed after a retry (failed: why)")`, or why it
/// is stuck.
pub async fn settle(rig: &Rig, id: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let t = settled(rig, id, deadline).await?;
    match t.status {
        TaskStatus::Succeeded => return Ok("finished".into()),
        TaskStatus::Failed => {}
        other => return Err(format!("task {id} ({}) ended {other}", t.title)),
    }
    let failed: Vec<String> = t.steps.iter().filter(|s| s.status == StepStatus::Failed).map(|s| s.key.clone()).collect();
    let errors: Vec<String> = t.steps.iter().filter_map(|s| s.error.clone()).collect();
    for step in &failed {
        client(rig)
            .post::<_, TaskView>(&format!("/api/v1/tasks/{id}/steps/{step}/retry"), &json!({}))
            .await
            .map_err(|e| format!("retrying step {step} of task {id}: {e}"))?;
    }
    let t = settled(rig, id, Instant::now() + timeout).await?;
    if t.status == TaskStatus::Succeeded {
        Ok(format!("resumed after a retry (failed: {})", errors.join("; ")))
    } else {
        Err(format!("task {id} ({}) failed ({}) and ended {} after a retry", t.title, errors.join("; "), t.status))
    }
}

/// Every task on the platform is settled (none left running for ever).
pub async fn none_running(rig: &Rig, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks: Vec<TaskView> = client(rig).get("/api/v1/tasks").await.map_err(|e| format!("listing tasks: {e}"))?;
        match tasks.iter().find(|t| !t.status.is_settled()) {
            None => return Ok(()),
            Some(t) if Instant::now() > deadline => return Err(format!("task {} ({}) is still {}", t.id, t.title, t.status)),
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

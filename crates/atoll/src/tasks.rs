//! `atoll task`: follow, inspect and steer tasks.

use std::io::IsTerminal;
use std::time::Duration;

use atoll_api::v1::{StepLogView, TaskView};
use atoll_client::Client;
use atoll_core::TaskStatus;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::{Conn, Res, client};
use crate::output::{self, Exit};

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        conn: Conn,
    },
    Show {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Follow a task until it settles (exit 3 unless it succeeds).
    Watch {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    Logs {
        id: String,
        #[arg(long)]
        step: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    Retry {
        id: String,
        step: String,
        #[command(flatten)]
        conn: Conn,
    },
    Skip {
        id: String,
        step: String,
        #[command(flatten)]
        conn: Conn,
    },
    Cancel {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    Rollback {
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn follow_new(c: &Client, t: TaskView, no_wait: bool, json: bool) -> Res {
    if no_wait {
        if json {
            output::print_json(&t)?;
        } else {
            println!("task {} started: {}  (follow it with `atoll task watch {}`)", t.id, t.title, t.id);
        }
        return Ok(Exit::Ok);
    }
    if !json {
        eprintln!("task {}: {}", t.id, t.title);
    }
    watch(c, &t.id, json).await
}

/// Follows a task with a progress bar until it settles.
async fn watch(c: &Client, id: &str, json: bool) -> Res {
    let bar = if json || !std::io::stderr().is_terminal() { ProgressBar::hidden() } else { ProgressBar::new(1) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} steps  {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut last_log = 0;
    let t = loop {
        let t: TaskView = c.get(&format!("/api/v1/tasks/{id}")).await?;
        bar.set_length(t.steps_total as u64);
        bar.set_position(t.steps_done as u64);
        let running: Vec<&str> = t.steps.iter().filter(|s| s.status.as_str().ends_with("ing")).map(|s| s.title.as_str()).collect();
        bar.set_message(running.join(", "));
        let logs: Vec<StepLogView> = c.get(&format!("/api/v1/tasks/{id}/logs?after={last_log}")).await?;
        for l in &logs {
            if !json {
                bar.println(format!("{} {} [{}#{}] {}", output::time(Some(l.at_ms)), l.level, l.step, l.attempt, l.message));
            }
            last_log = l.id;
        }
        if t.status.is_settled() {
            break t;
        }
        bar.tick();
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    bar.finish_and_clear();
    if json {
        output::print_json(&t)?;
    } else {
        print_task(&t);
    }
    Ok(if t.status == TaskStatus::Succeeded { Exit::Ok } else { Exit::Failed })
}

fn print_task(t: &TaskView) {
    println!("task {}  {}  [{}]  {}/{} steps", t.id, t.title, t.status, t.steps_done, t.steps_total);
    let mut table = output::table(&["step", "status", "attempts", "after", "error"]);
    for s in &t.steps {
        table.add_row(vec![
            s.key.clone(),
            s.status.to_string(),
            format!("{}/{}", s.attempts, s.max_attempts),
            s.deps.join(", "),
            s.error.clone().unwrap_or_default(),
        ]);
    }
    println!("{table}");
    match t.status {
        TaskStatus::Failed => println!(
            "failed: retry a step with `atoll task retry {} STEP`, skip it with `atoll task skip`, or `atoll task rollback {}`",
            t.id, t.id
        ),
        TaskStatus::Cancelled => println!("cancelled: undo what ran with `atoll task rollback {}`", t.id),
        _ => {}
    }
}

pub async fn run(cmd: TaskCmd) -> Res {
    match cmd {
        TaskCmd::List { status, limit, conn } => {
            let mut path = format!("/api/v1/tasks?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            let tasks: Vec<TaskView> = client(&conn)?.get(&path).await?;
            if conn.json {
                output::print_json(&tasks)?;
                return Ok(Exit::Ok);
            }
            let mut t = output::table(&["id", "title", "status", "steps", "by", "created"]);
            for task in &tasks {
                t.add_row(vec![
                    task.id.clone(),
                    task.title.clone(),
                    task.status.to_string(),
                    format!("{}/{}", task.steps_done, task.steps_total),
                    task.created_by.clone(),
                    output::time(Some(task.created_at_ms)),
                ]);
            }
            println!("{t}");
            Ok(Exit::Ok)
        }
        TaskCmd::Show { id, conn } => {
            let t: TaskView = client(&conn)?.get(&format!("/api/v1/tasks/{id}")).await?;
            if conn.json {
                output::print_json(&t)?;
            } else {
                print_task(&t);
            }
            Ok(Exit::Ok)
        }
        TaskCmd::Watch { id, conn } => watch(&client(&conn)?, &id, conn.json).await,
        TaskCmd::Logs { id, step, conn } => {
            let path = match step {
                Some(s) => format!("/api/v1/tasks/{id}/logs?step={s}"),
                None => format!("/api/v1/tasks/{id}/logs"),
            };
            let logs: Vec<StepLogView> = client(&conn)?.get(&path).await?;
            if conn.json {
                output::print_json(&logs)?;
            } else {
                for l in logs {
                    println!("{} {} [{}#{}] {}", output::time(Some(l.at_ms)), l.level, l.step, l.attempt, l.message);
                }
            }
            Ok(Exit::Ok)
        }
        TaskCmd::Retry { id, step, conn } => act(&conn, &format!("/api/v1/tasks/{id}/steps/{step}/retry")).await,
        TaskCmd::Skip { id, step, conn } => act(&conn, &format!("/api/v1/tasks/{id}/steps/{step}/skip")).await,
        TaskCmd::Cancel { id, conn } => act(&conn, &format!("/api/v1/tasks/{id}/cancel")).await,
        TaskCmd::Rollback { id, conn } => act(&conn, &format!("/api/v1/tasks/{id}/rollback")).await,
    }
}

async fn act(conn: &Conn, path: &str) -> Res {
    let t: TaskView = client(conn)?.post(path, &json!({})).await?;
    if conn.json {
        output::print_json(&t)?;
    } else {
        print_task(&t);
    }
    Ok(Exit::Ok)
}

//! `/tasks` and `/tasks/{id}`: the task list, and one task's DAG drawn as
//! columns by depth, kept live by `console.js` polling the JSON API.

use std::collections::HashMap;

use askama::Template;
use atoll_store::{StepRecord, TaskFilter};
use axum::extract::{Path, Query, State};
use axum::response::Response;

use super::{Chrome, FragmentQuery, Session, error_page, fmt, page};
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) struct TaskRow {
    id: String,
    short_id: String,
    title: String,
    kind: String,
    target: String,
    status: &'static str,
    done: usize,
    total: usize,
    created_by: String,
    created_at: String,
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPage {
    chrome: Chrome,
    rows: Vec<TaskRow>,
}

#[derive(Template)]
#[template(path = "tasks_table.html")]
struct TasksFragment {
    rows: Vec<TaskRow>,
}

pub async fn list(State(state): State<AppState>, Session(caller): Session, Query(q): Query<FragmentQuery>) -> Response {
    let rows = match rows(&state).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&caller), e),
    };
    if q.wanted() { page(&TasksFragment { rows }) } else { page(&TasksPage { chrome: Chrome::for_caller(&caller, "tasks"), rows }) }
}

async fn rows(state: &AppState) -> Result<Vec<TaskRow>, ApiError> {
    let tasks = state.store.list_tasks(&TaskFilter { limit: 100, ..TaskFilter::default() }).await?;
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let mut progress = state.store.task_progress(&ids).await?;
    let mut rows = Vec::with_capacity(tasks.len());
    for t in tasks {
        let p = progress.remove(&t.id).unwrap_or_default();
        rows.push(TaskRow {
            short_id: fmt::short_id(&t.id).to_string(),
            title: t.title,
            kind: t.kind,
            target: t.target,
            status: t.status.as_str(),
            done: p.done,
            total: p.total,
            created_by: t.created_by,
            created_at: fmt::utc(t.created_at_ms),
            id: t.id,
        });
    }
    Ok(rows)
}

/// Each step's depth: the longest path to it from a step without
/// dependencies. Unknown dependencies are ignored and a cycle (which the
/// engine refuses anyway) cannot loop: relaxation stops after `n` rounds.
pub fn depths(steps: &[(&str, &[String])]) -> Vec<usize> {
    let index: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
    let mut depth = vec![0usize; steps.len()];
    for _ in 0..steps.len() {
        let mut changed = false;
        for (i, (_, deps)) in steps.iter().enumerate() {
            let d = deps.iter().filter_map(|d| index.get(d.as_str())).map(|&j| depth[j] + 1).max().unwrap_or(0).min(steps.len());
            if d != depth[i] {
                depth[i] = d;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    depth
}

pub(crate) struct StepBox {
    key: String,
    title: String,
    kind: String,
    status: &'static str,
    attempts: u32,
    max_attempts: u32,
    deps: String,
    error: Option<String>,
}

pub(crate) struct LogLine {
    text: String,
    level: String,
}

#[derive(Template)]
#[template(path = "task.html")]
struct TaskPage {
    chrome: Chrome,
    id: String,
    title: String,
    kind: String,
    target: String,
    status: &'static str,
    phase: &'static str,
    settled: bool,
    cancel_requested: bool,
    done: usize,
    total: usize,
    created_by: String,
    created_at: String,
    finished_at: String,
    /// Steps by depth: column 0 holds the roots.
    columns: Vec<Vec<StepBox>>,
    logs: Vec<LogLine>,
    last_log: i64,
}

/// A log line as the page shows it (the same shape `console.js` appends).
fn log_text(at_ms: i64, step: &str, attempt: u32, level: &str, message: &str) -> String {
    format!("{}  {step}  #{attempt}  {level}  {message}", fmt::utc(at_ms))
}

fn columns(steps: Vec<StepRecord>) -> Vec<Vec<StepBox>> {
    let pairs: Vec<(&str, &[String])> = steps.iter().map(|s| (s.key.as_str(), s.deps.as_slice())).collect();
    let depth = depths(&pairs);
    let mut columns: Vec<Vec<StepBox>> = Vec::new();
    for (s, d) in steps.into_iter().zip(depth) {
        if columns.len() <= d {
            columns.resize_with(d + 1, Vec::new);
        }
        columns[d].push(StepBox {
            title: s.title,
            kind: s.kind,
            status: s.status.as_str(),
            attempts: s.attempts,
            max_attempts: s.max_attempts,
            deps: s.deps.join(", "),
            error: s.error,
            key: s.key,
        });
    }
    columns
}

pub async fn detail(State(state): State<AppState>, Session(caller): Session, Path(id): Path<String>) -> Response {
    match load(&state, &caller, &id).await {
        Ok(p) => page(&p),
        Err(e) => error_page(Some(&caller), e),
    }
}

async fn load(state: &AppState, caller: &crate::auth::Caller, id: &str) -> Result<TaskPage, ApiError> {
    let t = state
        .store
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}: the tasks page lists the tasks there are")))?;
    let steps = state.store.task_steps(id).await?;
    let logs = state.store.step_logs(id, None, 0, 5000).await?;
    let last_log = logs.last().map_or(0, |l| l.id);
    Ok(TaskPage {
        chrome: Chrome::for_caller(caller, "tasks"),
        title: t.title,
        kind: t.kind,
        target: t.target,
        status: t.status.as_str(),
        phase: t.phase.as_str(),
        settled: t.status.is_settled(),
        cancel_requested: t.cancel_requested,
        done: steps.iter().filter(|s| s.status.is_done()).count(),
        total: steps.len(),
        created_by: t.created_by,
        created_at: fmt::utc(t.created_at_ms),
        finished_at: fmt::utc_opt(t.finished_at_ms),
        columns: columns(steps),
        logs: logs
            .iter()
            .map(|l| LogLine { text: log_text(l.at_ms, &l.step, l.attempt, &l.level, &l.message), level: l.level.clone() })
            .collect(),
        last_log,
        id: t.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::StepStatus;

    fn d(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn depth_is_longest_path_from_a_root() {
        // a → b → d, a → c, and d also after c; e alone.
        let (a, b, c, dd, e) = (d(&[]), d(&["a"]), d(&["a"]), d(&["b", "c"]), d(&[]));
        let steps = [("a", &a[..]), ("b", &b[..]), ("c", &c[..]), ("d", &dd[..]), ("e", &e[..])];
        assert_eq!(depths(&steps), vec![0, 1, 1, 2, 0]);
        // Declared out of order, and a shortcut edge a → f next to a → b → f.
        let (f, b2, a2) = (d(&["a", "b"]), d(&["a"]), d(&[]));
        assert_eq!(depths(&[("f", &f[..]), ("b", &b2[..]), ("a", &a2[..])]), vec![2, 1, 0]);
    }

    #[test]
    fn depth_survives_bad_graphs() {
        let unknown = d(&["nope"]);
        assert_eq!(depths(&[("a", &unknown[..])]), vec![0]);
        let (x, y) = (d(&["y"]), d(&["x"]));
        let got = depths(&[("x", &x[..]), ("y", &y[..])]);
        assert!(got.iter().all(|&v| v <= 2), "{got:?}");
        assert!(depths(&[]).is_empty());
    }

    #[test]
    fn steps_go_in_columns() {
        let step = |key: &str, deps: &[&str]| StepRecord {
            task_id: "t".into(),
            key: key.into(),
            seq: 0,
            kind: "k".into(),
            title: key.into(),
            params: serde_json::Value::Null,
            deps: d(deps),
            status: StepStatus::Pending,
            attempts: 0,
            max_attempts: 3,
            timeout_ms: 0,
            not_before_ms: 0,
            lease_owner: None,
            lease_expires_ms: None,
            started_at_ms: None,
            finished_at_ms: None,
            output: None,
            error: None,
        };
        let cols = columns(vec![step("a", &[]), step("b", &["a"]), step("c", &["a"]), step("d", &["b", "c"])]);
        let keys: Vec<Vec<&str>> = cols.iter().map(|c| c.iter().map(|s| s.key.as_str()).collect()).collect();
        assert_eq!(keys, vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
        assert_eq!(log_text(0, "b", 2, "info", "hi"), "1970-01-01 00:00:00  b  #2  info  hi");
    }

    #[test]
    fn task_page_renders_steps_and_logs() {
        let caller = crate::auth::Caller {
            user: "ann".into(),
            role: atoll_core::Role::Operator,
            must_change_password: false,
            kind: crate::auth::AuthKind::Session,
            credential_hash: String::new(),
            source: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        let step = |key: &str, status: StepStatus| StepBox {
            key: key.into(),
            title: format!("do {key}"),
            kind: "k".into(),
            status: status.as_str(),
            attempts: 1,
            max_attempts: 3,
            deps: String::new(),
            error: (status == StepStatus::Failed).then(|| "boom <now>".to_string()),
        };
        let p = TaskPage {
            chrome: Chrome::for_caller(&caller, "tasks"),
            id: "t-1".into(),
            title: "prepare".into(),
            kind: "host.prepare".into(),
            target: "db-1".into(),
            status: "failed",
            phase: "forward",
            settled: true,
            cancel_requested: false,
            done: 1,
            total: 2,
            created_by: "ann".into(),
            created_at: fmt::utc(0),
            finished_at: fmt::utc(1000),
            columns: vec![vec![step("a", StepStatus::Succeeded)], vec![step("b", StepStatus::Failed)]],
            logs: vec![LogLine { text: log_text(0, "b", 1, "error", "x < y"), level: "error".into() }],
            last_log: 7,
        };
        let html = p.render().expect("renders");
        assert!(html.contains(r#"class="task ts-failed ph-forward" data-task="t-1" data-settled="true" data-last-log="7""#), "{html}");
        assert!(html.contains(r#"<div class="step st-failed" data-step="b">"#), "{html}");
        assert!(html.contains(r#"<span class="step-status badge s-failed">failed</span>"#), "{html}");
        assert!(html.contains("boom &#60;now&#62;") || html.contains("boom &lt;now&gt;"), "{html}");
        assert!(html.contains(r#"data-action="retry""#) && html.contains(r#"id="rollback-task""#), "{html}");
        assert!(html.contains(r#"<span id="user">ann</span>"#), "{html}");
    }
}

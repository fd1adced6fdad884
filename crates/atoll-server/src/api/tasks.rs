//! Tasks: watching them and the operator's levers.

use atoll_api::ErrorBody;
use atoll_api::v1::{StepLogView, StepView, TaskView};
use atoll_core::{Progress, TaskStatus};
use atoll_store::{StepRecord, TaskFilter, TaskRecord};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Caller, Operator};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(task_logs))
        .routes(routes!(cancel_task))
        .routes(routes!(rollback_task))
        .routes(routes!(retry_step))
        .routes(routes!(skip_step))
}

pub fn task_view(t: TaskRecord, steps: Vec<StepRecord>) -> TaskView {
    let mut progress = Progress::default();
    for s in &steps {
        progress.count(s.status, 1);
    }
    let mut v = task_summary(t, progress);
    v.steps = steps
        .into_iter()
        .map(|s| StepView {
            key: s.key,
            kind: s.kind,
            title: s.title,
            deps: s.deps,
            status: s.status,
            attempts: s.attempts,
            max_attempts: s.max_attempts,
            started_at_ms: s.started_at_ms,
            finished_at_ms: s.finished_at_ms,
            error: s.error,
            output: s.output,
        })
        .collect();
    v
}

/// A task as listings show it: progress counts, no steps.
pub fn task_summary(t: TaskRecord, progress: Progress) -> TaskView {
    TaskView {
        id: t.id,
        kind: t.kind,
        title: t.title,
        target: t.target,
        status: t.status,
        phase: t.phase,
        cancel_requested: t.cancel_requested,
        created_by: t.created_by,
        created_at_ms: t.created_at_ms,
        updated_at_ms: t.updated_at_ms,
        finished_at_ms: t.finished_at_ms,
        steps_done: progress.done,
        steps_total: progress.total,
        steps: Vec::new(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    target: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", security(("bearer" = ["viewer"])), params(ListQuery), responses((status = 200, body = Vec<TaskView>), (status = 400, body = ErrorBody)))]
async fn list_tasks(State(state): State<AppState>, _caller: Caller, Query(q): Query<ListQuery>) -> ApiResult<Json<Vec<TaskView>>> {
    let status = q.status.map(|s| s.parse::<TaskStatus>()).transpose().map_err(|e| {
        ApiError::BadRequest(format!("{e}: use running, succeeded, failed, cancelling, cancelled, rolling_back or rolled_back"))
    })?;
    let filter = TaskFilter { status, target: q.target, limit: q.limit.unwrap_or(100).min(1000) };
    let tasks = state.store.list_tasks(&filter).await?;
    let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
    let mut progress = state.store.task_progress(&ids).await?;
    Ok(Json(
        tasks
            .into_iter()
            .map(|t| {
                let p = progress.remove(&t.id).unwrap_or_default();
                task_summary(t, p)
            })
            .collect(),
    ))
}

async fn load(state: &AppState, id: &str) -> ApiResult<TaskView> {
    let t = state
        .store
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no task {id}: `atoll task list` shows the tasks there are")))?;
    let steps = state.store.task_steps(id).await?;
    Ok(task_view(t, steps))
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", security(("bearer" = ["viewer"])), params(("id" = String, Path)), responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
async fn get_task(State(state): State<AppState>, _caller: Caller, Path(id): Path<String>) -> ApiResult<Json<TaskView>> {
    Ok(Json(load(&state, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    step: Option<String>,
    /// Only lines after this id (for following a log).
    after: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}/logs", tag = "tasks", security(("bearer" = ["viewer"])), params(("id" = String, Path), LogQuery),
    responses((status = 200, body = Vec<StepLogView>), (status = 404, body = ErrorBody)))]
async fn task_logs(
    State(state): State<AppState>,
    _caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<Vec<StepLogView>>> {
    if state.store.get_task(&id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no task {id}")));
    }
    let lines = state.store.step_logs(&id, q.step.as_deref(), q.after.unwrap_or(0), q.limit.unwrap_or(1000).min(5000)).await?;
    Ok(Json(
        lines
            .into_iter()
            .map(|l| StepLogView { id: l.id, step: l.step, attempt: l.attempt, at_ms: l.at_ms, level: l.level, message: l.message })
            .collect(),
    ))
}

async fn act(state: &AppState, caller: &Caller, action: &str, id: &str, step: Option<&str>) -> ApiResult<Json<TaskView>> {
    let executor = &state.executor;
    let result = match (action, step) {
        ("task.cancel", _) => executor.cancel(id).await,
        ("task.rollback", _) => executor.rollback(id).await,
        ("task.retry", Some(s)) => executor.retry_step(id, s).await,
        ("task.skip", Some(s)) => executor.skip_step(id, s).await,
        _ => return Err(ApiError::Internal(format!("unknown task action {action}"))),
    };
    match result {
        Ok(_) => {
            state.audit_ok(caller, action, id, json!({ "step": step })).await;
            Ok(Json(load(state, id).await?))
        }
        Err(e) => {
            state.audit(&caller.user, caller.source, action, id, json!({ "step": step }), &format!("refused: {e}")).await;
            Err(e.into())
        }
    }
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", security(("bearer" = ["operator"])), params(("id" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_task(State(state): State<AppState>, Operator(caller): Operator, Path(id): Path<String>) -> ApiResult<Json<TaskView>> {
    act(&state, &caller, "task.cancel", &id, None).await
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/rollback", tag = "tasks", security(("bearer" = ["operator"])), params(("id" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rollback_task(State(state): State<AppState>, Operator(caller): Operator, Path(id): Path<String>) -> ApiResult<Json<TaskView>> {
    act(&state, &caller, "task.rollback", &id, None).await
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/steps/{step}/retry", tag = "tasks", security(("bearer" = ["operator"])), params(("id" = String, Path), ("step" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn retry_step(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path((id, step)): Path<(String, String)>,
) -> ApiResult<Json<TaskView>> {
    act(&state, &caller, "task.retry", &id, Some(&step)).await
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/steps/{step}/skip", tag = "tasks", security(("bearer" = ["operator"])), params(("id" = String, Path), ("step" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn skip_step(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path((id, step)): Path<(String, String)>,
) -> ApiResult<Json<TaskView>> {
    act(&state, &caller, "task.skip", &id, Some(&step)).await
}

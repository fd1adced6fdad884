//! The platform's own servers: who is up and who runs the controllers.

use atoll_api::ErrorBody;
use atoll_api::v1::{CaView, LeaseView, PlatformServerView, PlatformView, RotateCaRequest, TaskView};
use atoll_core::time::now_ms;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::platform::{CONTROLLERS, is_live};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(platform)).routes(routes!(ca)).routes(routes!(rotate_ca))
}

/// The platform's CA: which issues, which are trusted, where a rotation
/// stands and which servers and hosts it waits for.
#[utoipa::path(get, path = "/api/v1/platform/ca", tag = "platform", security(("bearer" = ["viewer"])), responses((status = 200, body = CaView), (status = 401, body = ErrorBody)))]
async fn ca(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<CaView>> {
    Ok(Json(crate::ca_rotation::view(&state).await?))
}

/// Rotates the platform's CA without downtime (admin only): a task that
/// makes a new CA, has everyone trust it, reissues every certificate from
/// it and then drops the old CA. Run again after a failure, it carries on.
#[utoipa::path(post, path = "/api/v1/platform/ca/rotate", tag = "platform", security(("bearer" = ["admin"])), request_body = RotateCaRequest,
    responses((status = 202, body = TaskView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rotate_ca(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<RotateCaRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    if !state.config.tls {
        return Err(ApiError::Conflict(
            "this platform runs without TLS: nothing uses its CA. Serve TLS (remove `tls = false` / --no-tls) first".into(),
        ));
    }
    if req.wait_s.is_some_and(|w| !(10..=86_400).contains(&w)) {
        return Err(ApiError::BadRequest("wait_s must be between 10 and 86400 seconds".into()));
    }
    let task = state.executor.submit(crate::ca_rotation::task(req.wait_s), &caller.user).await?;
    state.audit_ok(&caller, "platform.rotate_ca", "ca", json!({ "task": task.id })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Every server of the platform, by URL, with the holder of the
/// controllers' lease.
#[utoipa::path(get, path = "/api/v1/platform", tag = "platform", security(("bearer" = ["viewer"])), responses((status = 200, body = PlatformView), (status = 401, body = ErrorBody)))]
async fn platform(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<PlatformView>> {
    let now = now_ms();
    let lease = state.store.get_lease(CONTROLLERS).await?.filter(|l| l.expires_ms > now);
    let servers = state
        .store
        .list_platform_servers()
        .await?
        .into_iter()
        .map(|s| PlatformServerView {
            live: is_live(&state, &s, now),
            leader: lease.as_ref().is_some_and(|l| l.holder == s.id),
            id: s.id,
            url: s.url,
            version: s.version,
            started_at_ms: s.started_at_ms,
            seen_at_ms: s.seen_at_ms,
            errors_logged: s.errors_logged,
        })
        .collect();
    Ok(Json(PlatformView {
        answered_by: state.platform.id.clone(),
        metadb: state.store.backend().to_string(),
        servers,
        leader: lease.map(|l| LeaseView {
            holder: l.holder,
            generation: l.generation,
            acquired_at_ms: l.acquired_at_ms,
            expires_ms: l.expires_ms,
        }),
    }))
}

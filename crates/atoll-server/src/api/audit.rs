//! The audit log: who changed what, when, from where.

use atoll_api::ErrorBody;
use atoll_api::v1::AuditView;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries older than this id (paging backwards).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// Newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = ["viewer"])), params(AuditQuery), responses((status = 200, body = Vec<AuditView>), (status = 401, body = ErrorBody)))]
async fn list_audit(State(state): State<AppState>, _caller: Caller, Query(q): Query<AuditQuery>) -> ApiResult<Json<Vec<AuditView>>> {
    Ok(Json(audit_page(&state, q).await?))
}

pub async fn audit_page(state: &AppState, q: AuditQuery) -> ApiResult<Vec<AuditView>> {
    let rows = state.store.list_audit(q.before, q.limit.unwrap_or(100).min(1000)).await?;
    Ok(rows
        .into_iter()
        .map(|a| AuditView {
            id: a.id,
            at_ms: a.at_ms,
            actor: a.actor,
            source: a.source,
            action: a.action,
            target: a.target,
            detail: a.detail,
            outcome: a.outcome,
        })
        .collect())
}

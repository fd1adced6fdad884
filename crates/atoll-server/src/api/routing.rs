//! Routing: the table proxies long-poll, and planned writer moves.

use std::time::Duration;

use atoll_api::ErrorBody;
use atoll_api::routing::{RoutingQuery, RoutingTable, SetWriterRequest};
use atoll_api::v1::TaskView;
use atoll_core::secret::constant_time_eq;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::clusters::{ensure_idle, load};
use crate::auth::Operator;
use crate::clusters::secrets::SealedSecrets;
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(routing)).routes(routes!(set_writer))
}

/// The cluster's routing table, for its proxies (bearer: the cluster's
/// proxy token) and operators (without the monitoring password). With `since`, waits up to `wait_ms` for a
/// version other than `since`.
#[utoipa::path(get, path = "/api/v1/clusters/{name}/routing", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path), RoutingQuery),
    responses((status = 200, body = RoutingTable), (status = 404, body = ErrorBody)))]
async fn routing(
    State(state): State<AppState>,
    ProxyPeer(mutual): ProxyPeer,
    headers: HeaderMap,
    operator: Result<Operator, ApiError>,
    Path(name): Path<String>,
    Query(q): Query<RoutingQuery>,
) -> ApiResult<Json<RoutingTable>> {
    // Only the proxies probe with the monitoring account: an operator sees
    // the table without its password (the credentials route, for admins,
    // is where passwords are handed out, audited).
    let for_proxy = operator.is_err();
    if let Err(refused) = operator {
        // Not an operator: only this cluster's proxy token will do, and a
        // caller without it learns nothing, not even whether the cluster exists.
        let presented =
            headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(presented) = presented else { return Err(refused) };
        let Some(c) = state.store.get_cluster(&name).await? else { return Err(refused) };
        let expected = SealedSecrets::of(&c)?
            .proxy_token
            .map(|t| state.secrets.open(&t))
            .transpose()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if !expected.is_some_and(|e| constant_time_eq(presented.trim().as_bytes(), e.as_bytes())) {
            return Err(refused);
        }
        if state.config.tls && !mutual {
            return Err(ApiError::Unauthorized(
                "proxies call a TLS platform over mutual TLS: present the host's certificate (`atoll proxy --cert-file --key-file`; \
                 agents pass it to the proxies they start)"
                    .into(),
            ));
        }
    }
    load(&state, &name).await?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(crate::clusters::routing::MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = state.routing.subscribe();
    loop {
        changes.borrow_and_update();
        let (c, servers) = load(&state, &name).await?;
        let mut table = crate::clusters::routing::table(&state, &c, &servers).await?;
        if q.since.as_deref() != Some(table.version.as_str()) || tokio::time::Instant::now() >= deadline {
            if !for_proxy {
                table.monitor_password.clear();
            }
            return Ok(Json(table));
        }
        // Another platform server may change MetaDB without telling this
        // one: look again at least every second.
        let next = deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
        let _ = tokio::time::timeout_at(next, changes.changed()).await;
    }
}

/// Whether the caller presented a certificate of the platform's CA.
struct ProxyPeer(bool);

impl axum::extract::FromRequestParts<AppState> for ProxyPeer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(ProxyPeer(crate::tls::client_cert(parts)))
    }
}

/// Moves the cluster's writer to another synced server. Proxies hold new
/// read-write connections during the move instead of refusing them.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/writer", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path)), request_body = SetWriterRequest,
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody, description = "the cluster has no such server"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_writer(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SetWriterRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let (c, servers) = load(&state, &name).await?;
    let Some(server) = servers.iter().find(|s| s.name == req.server) else {
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        return Err(ApiError::BadRequest(format!("cluster {name} has no server {:?}; its servers are {}", req.server, names.join(", "))));
    };
    if !crate::clusters::status::is_live(c.status) {
        return Err(ApiError::Conflict(format!("cluster {name} is {}; start it first", c.status)));
    }
    let st = crate::clusters::status::server_state(&state, server).0;
    if st != atoll_core::ServerState::Synced {
        return Err(ApiError::Conflict(format!("{} is {st}; only a synced server can take writes", req.server)));
    }
    ensure_idle(&state, &name).await?;
    let task = state.executor.submit(crate::clusters::writer::set_writer_task(&name, &req.server), &caller.user).await?;
    state.audit_ok(&caller, "cluster.set_writer", &name, json!({ "task": task.id, "server": req.server })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

//! Hosts: adding, listing, checking, preparing and removing them.

use std::net::IpAddr;

use atoll_api::ErrorBody;
use atoll_api::v1::{
    AddHostRequest, AddedHost, CheckRequest, CheckResponse, HostCheckReport, HostListItem, HostView, JoinTokenInfo, JoinTokenRequest,
    JoinTokenView, JoinTokensRevoked, PrepareRequest, RemoveHostRequest, TaskView,
};
use atoll_core::time::now_ms;
use atoll_core::{Host, HostId, HostStatus};
use atoll_store::{HostRecord, HostSummaryRecord};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Caller, Operator};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::hostops;
use crate::state::AppState;
use crate::{host_steps, join};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_hosts, add_host))
        .routes(routes!(get_host, remove_host))
        .routes(routes!(host_metrics))
        .routes(routes!(check_hosts))
        .routes(routes!(prepare_hosts))
        .routes(routes!(mint_join_token, list_join_tokens, revoke_join_tokens))
}

pub fn host_view(r: HostRecord) -> HostView {
    let checks = r.checks.and_then(|c| serde_json::from_value::<HostCheckReport>(c).ok());
    HostView { host: r.host, checks }
}

pub fn host_list_item(r: HostSummaryRecord) -> HostListItem {
    let checks = hostops::check_summary(&r);
    HostListItem {
        id: r.id,
        name: r.name,
        address: r.address,
        agent_url: r.agent_url,
        zone: r.zone,
        region: r.region,
        status: r.status,
        agent_version: r.agent_version,
        created_at_ms: r.created_at_ms,
        last_heartbeat_ms: r.last_heartbeat_ms,
        cpu_cores: r.cpu_cores,
        memory_bytes: r.memory_bytes,
        clock_offset_ms: r.clock_offset_ms,
        checks,
    }
}

/// Lists the hosts by name, summarised.
///
/// Which hosts to list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListHostsQuery {
    /// Page size (at most 1000); without it, every host.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The last name of the previous page (what the `Link: rel="next"`
    /// header carries).
    pub after: Option<String>,
    /// `online`, `offline` or `pending`.
    pub status: Option<HostStatus>,
    pub zone: Option<String>,
    /// Names starting with this.
    pub name: Option<String>,
}

const MAX_PAGE: u32 = 1000;

/// Each host comes with a summary of its facts (cores, memory, clock
/// offset) and of its last precheck. The facts and precheck results
/// themselves are in `GET /api/v1/hosts/{host}`: left out here so a
/// listing of many hosts stays small and fast. With `limit`, one page in
/// name order; a `Link: <…>; rel="next"` header points to the next one.
#[utoipa::path(get, path = "/api/v1/hosts", tag = "hosts", security(("bearer" = ["viewer"])), params(ListHostsQuery),
    responses((status = 200, body = Vec<HostListItem>, description = "hosts in name order, summarised"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_hosts(
    State(state): State<AppState>,
    _caller: Caller,
    Query(q): Query<ListHostsQuery>,
) -> ApiResult<([(axum::http::HeaderName, String); 1], Json<Vec<HostListItem>>)> {
    if q.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::BadRequest(format!("limit must be 1 to {MAX_PAGE}")));
    }
    // One more than asked, to know whether a next page exists.
    let filter = atoll_store::HostFilter {
        after: q.after.clone(),
        limit: q.limit.map(|l| l + 1),
        status: q.status,
        zone: q.zone.clone(),
        name_prefix: q.name.clone(),
    };
    let mut hosts = state.store.list_host_summaries(&filter).await?;
    let mut link = String::new();
    if let Some(limit) = q.limit
        && hosts.len() > limit as usize
    {
        hosts.truncate(limit as usize);
        let last = hosts.last().map(|h| h.name.clone()).unwrap_or_default();
        let mut next = format!("/api/v1/hosts?limit={limit}&after={last}");
        for (k, v) in [("status", q.status.map(|s| s.as_str().to_string())), ("zone", q.zone), ("name", q.name)] {
            if let Some(v) = v {
                next.push_str(&format!("&{k}={v}"));
            }
        }
        link = format!("<{next}>; rel=\"next\"");
    }
    Ok(([(axum::http::header::LINK, link)], Json(hosts.into_iter().map(host_list_item).collect())))
}

/// Declares a host before its agent runs; returns the command that starts
/// the agent there.
#[utoipa::path(post, path = "/api/v1/hosts", tag = "hosts", security(("bearer" = ["operator"])), request_body = AddHostRequest,
    responses((status = 201, body = AddedHost), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn add_host(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(req): JsonBody<AddHostRequest>,
) -> ApiResult<(StatusCode, Json<AddedHost>)> {
    let address: IpAddr = req.address.parse().map_err(|_| {
        ApiError::BadRequest(format!("invalid address {:?}: give the IP address the host's agent will listen on", req.address))
    })?;
    let name = req.name.clone().unwrap_or_else(|| format!("host-{}", address.to_string().replace(['.', ':'], "-")));
    if !atoll_core::valid_name(&name) {
        return Err(ApiError::BadRequest(format!("invalid host name {name:?}: use a lowercase letter, then letters, digits or dashes")));
    }
    for (what, v) in [("zone", &req.zone), ("region", &req.region)] {
        if let Some(v) = v.as_ref().filter(|v| !atoll_core::valid_name(v)) {
            return Err(ApiError::BadRequest(format!("invalid {what} {v:?}: use a lowercase letter, then letters, digits or dashes")));
        }
    }
    let record = HostRecord {
        host: Host {
            id: HostId::new(),
            name: name.clone(),
            address: address.to_string(),
            agent_url: None,
            zone: req.zone.clone(),
            region: req.region.clone(),
            status: HostStatus::Pending,
            facts: None,
            agent_version: None,
            created_at_ms: now_ms(),
            last_heartbeat_ms: None,
        },
        agent_token_hash: None,
        server_token: None,
        checks: None,
        checked_at_ms: None,
    };
    state.store.insert_host(&record).await?;
    state.audit_ok(&caller, "host.add", &name, json!({ "address": record.host.address, "zone": req.zone, "region": req.region })).await;
    let (token, _) = join::mint(&state, join::HOST_TTL_S, true, Some(&record.host), &caller.user).await?;
    let agent_command = join::agent_command(&state, &token, Some(&record.host));
    Ok((StatusCode::CREATED, Json(AddedHost { host: host_view(record), agent_command })))
}

async fn find(state: &AppState, key: &str) -> ApiResult<HostRecord> {
    state
        .store
        .find_host(key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no host {key:?}: `atoll host list` shows the hosts there are")))
}

/// One host in full.
///
/// With its facts (mounts, NICs, sysctls...) and the results of its last
/// precheck; `GET /api/v1/hosts` lists hosts without them.
#[utoipa::path(get, path = "/api/v1/hosts/{host}", tag = "hosts", security(("bearer" = ["viewer"])), params(("host" = String, Path, description = "id, name or address")),
    responses((status = 200, body = HostView, description = "the host with its facts and last precheck"), (status = 404, body = ErrorBody)))]
async fn get_host(State(state): State<AppState>, _caller: Caller, Path(key): Path<String>) -> ApiResult<Json<HostView>> {
    Ok(Json(host_view(find(&state, &key).await?)))
}

/// The host's metrics, read from its agent now.
///
/// Prometheus text format: CPU time by mode, load, memory and swap, space
/// per data mount, I/O per disk, traffic per NIC, clock offset.
#[utoipa::path(get, path = "/api/v1/hosts/{host}/metrics", tag = "hosts", security(("bearer" = ["viewer"])), params(("host" = String, Path, description = "id, name or address")),
    responses((status = 200, body = String, content_type = "text/plain", description = "the host's metrics"), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the host's agent has not registered yet"),
        (status = 502, body = ErrorBody, description = "the agent did not answer")))]
async fn host_metrics(State(state): State<AppState>, _caller: Caller, Path(key): Path<String>) -> ApiResult<axum::response::Response> {
    let h = find(&state, &key).await?;
    let agent = hostops::agent_with_timeout(&state, &h, std::time::Duration::from_secs(5))?;
    let resp = agent.get_streaming("/agent/v1/metrics").await.map_err(|e| hostops::unreachable(&h, e))?;
    let text = resp.text().await.map_err(|e| {
        hostops::unreachable(&h, atoll_client::ClientError::Unreachable { url: h.host.name.clone(), detail: e.to_string() })
    })?;
    Ok(axum::response::IntoResponse::into_response(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)))
}

/// Removes a host as a task: optionally purges what `prepare` created, then
/// forgets the host (its agent stops on its next heartbeat).
#[utoipa::path(delete, path = "/api/v1/hosts/{host}", tag = "hosts", security(("bearer" = ["operator"])), params(("host" = String, Path), RemoveHostRequest),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "servers or proxies are placed on it (see `force`), or a task is changing it")))]
async fn remove_host(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(key): Path<String>,
    Query(req): Query<RemoveHostRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let host = find(&state, &key).await?;
    let servers = state.store.servers_on_host(host.host.id).await?;
    let proxies = state.store.proxies_on_host(host.host.id).await?;
    let placed_any = !servers.is_empty() || !proxies.is_empty();
    if placed_any && !req.force {
        let mut placed: Vec<String> = servers.iter().map(|s| format!("server {}/{}", s.cluster, s.name)).collect();
        placed.extend(proxies.iter().map(|p| format!("proxy {}/{}", p.cluster, p.name)));
        return Err(ApiError::Conflict(format!(
            "host {} runs {}: remove them from their clusters first (`atoll cluster scale CLUSTER --remove SERVER`, \
             or `atoll cluster delete CLUSTER`), or pass --force if the machine is gone for good",
            host.host.name,
            placed.join(", ")
        )));
    }
    let spec = host_steps::remove_task(&state, &host, req.purge);
    let task = state.executor.submit(spec, &caller.user).await?;
    state.audit_ok(&caller, "host.remove", &host.host.name, json!({ "task": task.id, "purge": req.purge, "force": req.force })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Runs the environment precheck now on the given hosts (all by default).
#[utoipa::path(post, path = "/api/v1/hosts/check", tag = "hosts", security(("bearer" = ["operator"])), request_body = CheckRequest,
    responses((status = 200, body = CheckResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn check_hosts(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(req): JsonBody<CheckRequest>,
) -> ApiResult<Json<CheckResponse>> {
    let profile = hostops::profile(req.profile.as_deref(), &state)?;
    let hosts = hostops::resolve_hosts(&state, &req.hosts).await?;
    if hosts.is_empty() {
        return Err(ApiError::NotFound("there are no hosts yet: add one with `atoll host add`".into()));
    }
    let data_dir = req.data_dir.unwrap_or_else(|| state.config.host_data_dir.clone());
    let ports = req.ports.unwrap_or_else(hostops::default_db_ports);
    let resp = hostops::check_hosts(&state, &hosts, &profile, &data_dir, &ports).await;
    state
        .audit_ok(
            &caller,
            "host.check",
            &hosts.iter().map(|h| h.host.name.as_str()).collect::<Vec<_>>().join(","),
            json!({ "profile": resp.profile, "worst": resp.worst }),
        )
        .await;
    Ok(Json(resp))
}

/// Prepares hosts as a task: directories with the right owner, then the
/// precheck; one branch per host, in parallel.
#[utoipa::path(post, path = "/api/v1/hosts/prepare", tag = "hosts", security(("bearer" = ["operator"])), request_body = PrepareRequest,
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn prepare_hosts(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(req): JsonBody<PrepareRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    if req.hosts.is_empty() {
        return Err(ApiError::BadRequest("name at least one host to prepare".into()));
    }
    let profile = hostops::profile(req.profile.as_deref(), &state)?;
    let hosts = hostops::resolve_hosts(&state, &req.hosts).await?;
    let pending: Vec<&str> = hosts.iter().filter(|h| h.host.status == HostStatus::Pending).map(|h| h.host.name.as_str()).collect();
    if !pending.is_empty() {
        return Err(ApiError::Conflict(format!("host {} has not registered yet: start its agent first", pending.join(", "))));
    }
    let data_dir = req.data_dir.unwrap_or_else(|| state.config.host_data_dir.clone());
    let mut problems = host_steps::check_data_dir(&data_dir);
    problems.extend(host_steps::check_owner(req.owner.as_deref()));
    if !problems.is_empty() {
        return Err(ApiError::BadRequest(problems.join("; ")));
    }
    let spec = host_steps::prepare_task(&hosts, &profile, &data_dir, req.owner.as_deref());
    let task = state.executor.submit(spec, &caller.user).await?;
    let names: Vec<&str> = hosts.iter().map(|h| h.host.name.as_str()).collect();
    state
        .audit_ok(&caller, "host.prepare", &names.join(","), json!({ "task": task.id, "data_dir": data_dir, "profile": profile.name }))
        .await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Mints a join token (admin only): it admits new hosts until it expires
/// (or once, when single-use), never a host that is registered already.
#[utoipa::path(post, path = "/api/v1/join-tokens", tag = "hosts", security(("bearer" = ["admin"])), request_body = JoinTokenRequest,
    responses((status = 201, body = JoinTokenView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn mint_join_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    JsonBody(req): JsonBody<JoinTokenRequest>,
) -> ApiResult<(StatusCode, Json<JoinTokenView>)> {
    let (token, grant) = join::mint(&state, req.ttl_s.unwrap_or(join::DEFAULT_TTL_S), req.single_use, None, &caller.user).await?;
    state
        .audit_ok(&caller, "join_token.create", "platform", json!({ "expires_ms": grant.expires_ms, "single_use": grant.single_use }))
        .await;
    let agent_command = join::agent_command(&state, &token, None);
    Ok((StatusCode::CREATED, Json(JoinTokenView { token, agent_command, expires_ms: grant.expires_ms, single_use: grant.single_use })))
}

/// The live join tokens, without their secrets (admin only).
#[utoipa::path(get, path = "/api/v1/join-tokens", tag = "hosts", security(("bearer" = ["admin"])),
    responses((status = 200, body = Vec<JoinTokenInfo>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_join_tokens(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Vec<JoinTokenInfo>>> {
    let grants = join::list(&state).await?;
    Ok(Json(
        grants
            .into_iter()
            .map(|g| JoinTokenInfo {
                created_by: g.created_by,
                created_ms: g.created_ms,
                expires_ms: g.expires_ms,
                single_use: g.single_use,
                host: g.host,
            })
            .collect(),
    ))
}

/// Revokes every platform join token (admin only), to rotate them; the
/// tokens of declared hosts stay. Hosts that joined are not affected.
#[utoipa::path(delete, path = "/api/v1/join-tokens", tag = "hosts", security(("bearer" = ["admin"])),
    responses((status = 200, body = JoinTokensRevoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn revoke_join_tokens(State(state): State<AppState>, Admin(caller): Admin) -> ApiResult<Json<JoinTokensRevoked>> {
    let revoked = join::revoke_all(&state).await?;
    state.audit_ok(&caller, "join_token.revoke", "platform", json!({ "revoked": revoked })).await;
    Ok(Json(JoinTokensRevoked { revoked }))
}

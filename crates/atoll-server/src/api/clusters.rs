//! Database clusters: create, list, show, credentials.

use std::collections::BTreeMap;

use atoll_api::ErrorBody;
use atoll_api::v1::{
    AddServersRequest, ClusterCredentials, ClusterView, CreateClusterRequest, DeleteClusterQuery, RemoveServerQuery, ServerOpQuery,
    SetParamsRequest, TaskView,
};
use atoll_core::time::now_ms;
use atoll_core::{ClusterSpec, ClusterStatus, ServerSpec};
use atoll_store::{ClusterRecord, DbServerRecord};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Caller, Operator};
use crate::clusters::secrets::{ADMIN_USER, SealedSecrets};
use crate::clusters::servers::{self, Action};
use crate::clusters::{operate, protect, routing, standby, status, steps, validate, view};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(create_standby))
        .routes(routes!(get_cluster))
        .routes(routes!(credentials))
        .routes(routes!(stop_cluster))
        .routes(routes!(start_cluster))
        .routes(routes!(recover_cluster))
        .routes(routes!(restart_cluster))
        .routes(routes!(set_params))
        .routes(routes!(delete_cluster))
        .routes(routes!(stop_server))
        .routes(routes!(start_server))
        .routes(routes!(restart_server))
        .routes(routes!(add_servers))
        .routes(routes!(remove_server))
}

/// Writes the parameter catalog into the document: the `params` of a
/// cluster request and of `POST /api/v1/clusters/{name}/params` name only
/// catalog keys, each with the shape of its values (their ranges are in
/// the descriptions: a value is a string, as in `my.cnf`).
pub(super) fn document_params(spec: &mut utoipa::openapi::OpenApi) {
    use atoll_engine::params::Kind;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
    let mut params = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some("MariaDB parameters (`my.cnf` keys) from the catalog; values are strings as in `my.cnf`"));
    for def in atoll_engine::params::catalog() {
        let value = ObjectBuilder::new().schema_type(Type::String);
        let value = match def.kind {
            Kind::Int { min, max } => value.pattern(Some("^[0-9]+$")).description(Some(format!("a whole number, {min} to {max}"))),
            Kind::Size { min, max } => value
                .pattern(Some("^[0-9]+[KMGTkmgt]?$"))
                .description(Some(format!("bytes, or a number with K, M, G or T (powers of 1024); {min} to {max} bytes"))),
            Kind::Seconds { min, max } => {
                value.pattern(Some("^[0-9]+(\\.[0-9]{1,6})?$")).description(Some(format!("seconds, {min} to {max}")))
            }
            Kind::Bool => value.pattern(Some("^([Oo][Nn]|[Oo][Ff][Ff]|1|0)$")),
            Kind::Enum(choices) => value.enum_values(Some(choices.iter().copied())),
            Kind::Name => value.pattern(Some("^[A-Za-z0-9_]+$")),
            Kind::SqlModes => value.pattern(Some("^([A-Za-z_]+(,[A-Za-z_]+)*)?$")),
            Kind::LogBin => value.pattern(Some("^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")),
        };
        let value = if def.note.is_empty() { value } else { value.title(Some(def.note)) };
        params = params.property(def.name, value);
    }
    let params: Schema = params.build().into();
    let Some(components) = spec.components.as_mut() else { return };
    for (schema, min) in [("SetParamsRequest", Some(1)), ("CreateClusterRequest", None)] {
        if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(schema)
            && let Some(RefOr::T(Schema::Object(p))) = o.properties.get_mut("params")
        {
            let description = p.description.clone();
            let mut with = params.clone();
            if let Schema::Object(w) = &mut with {
                w.min_properties = min;
                w.description = description.or(w.description.take());
            }
            o.properties.insert("params".into(), RefOr::T(with));
        }
    }
}

pub(super) async fn load(state: &AppState, name: &str) -> ApiResult<(ClusterRecord, Vec<atoll_store::DbServerRecord>)> {
    let c = state
        .store
        .get_cluster(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no cluster {name:?}: `atoll cluster list` shows the clusters there are")))?;
    let servers = state.store.cluster_servers(name).await?;
    Ok((c, servers))
}

#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters", security(("bearer" = ["viewer"])), responses((status = 200, body = Vec<ClusterView>), (status = 401, body = ErrorBody)))]
async fn list_clusters(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<ClusterView>>> {
    let hosts = view::host_names(&state).await?;
    let mut out = Vec::new();
    for c in state.store.list_clusters().await? {
        out.push(view::view_of(&state, &c, &hosts).await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/clusters/{name}", tag = "clusters", security(("bearer" = ["viewer"])), params(("name" = String, Path)),
    responses((status = 200, body = ClusterView), (status = 404, body = ErrorBody)))]
async fn get_cluster(State(state): State<AppState>, _caller: Caller, Path(name): Path<String>) -> ApiResult<Json<ClusterView>> {
    let (c, _) = load(&state, &name).await?;
    Ok(Json(view::view_of(&state, &c, &view::host_names(&state).await?).await?))
}

/// Validates the whole request (topology, parameters, hosts, ports, a live
/// precheck) and reports every problem at once; then records the cluster
/// and starts the task that creates it.
#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", security(("bearer" = ["operator"])), request_body = CreateClusterRequest,
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_cluster(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(spec): JsonBody<ClusterSpec>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let name = spec.name.clone();
    let placement = match validate::validate(&state, spec).await {
        Ok(p) => p,
        Err(e) => {
            state.audit(&caller.user, caller.source, "cluster.create", &name, json!({}), &format!("refused: {e}")).await;
            return Err(e);
        }
    };
    // A binary log under its own GTID domain from the first start, so a
    // standby can follow it later (see `standby`).
    let mut spec = placement.spec.clone();
    spec.replication = Some(atoll_core::ReplicationSpec { domain: standby::next_domain(&state).await?, source: None, seeded_at: None });
    let servers: Vec<_> = placement.servers.iter().map(|(s, _)| s.clone()).collect();
    let task = steps::create_task(&name, &servers, &placement.proxies);
    let task = record_and_submit(&state, &caller.user, spec, &SealedSecrets::generate(&state), &servers, &placement.proxies, task).await?;
    state
        .audit_ok(
            &caller,
            "cluster.create",
            &name,
            json!({ "task": task.id, "durability": placement.spec.durability, "servers": servers.len() }),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Records a new cluster with its servers and proxies, and submits the task
/// that makes it; when the task cannot be submitted, nothing ran and the
/// name is free again.
async fn record_and_submit(
    state: &AppState,
    user: &str,
    spec: ClusterSpec,
    secrets: &SealedSecrets,
    servers: &[DbServerRecord],
    proxies: &[atoll_store::ProxyRecord],
    task: atoll_tasks::TaskSpec,
) -> ApiResult<atoll_store::TaskRecord> {
    let now = now_ms();
    let record = ClusterRecord {
        name: spec.name.clone(),
        engine: atoll_engine::NAME.into(),
        durability: spec.durability,
        status: ClusterStatus::Creating,
        spec,
        secrets: serde_json::to_value(secrets).map_err(|e| ApiError::Internal(e.to_string()))?,
        created_by: user.to_string(),
        created_at_ms: now,
        updated_at_ms: now,
    };
    state.store.create_cluster(&record, servers).await?;
    let submitted = match state.store.put_proxies(proxies).await {
        Ok(()) => state.executor.submit(task, user).await.map_err(ApiError::from),
        Err(e) => Err(e.into()),
    };
    if submitted.is_err() {
        let _ = state.store.delete_cluster(&record.name).await;
    }
    submitted
}

/// Validates a standby of `name` (the standby's own topology as for a
/// create, and what the pair needs: another region, the same engine major
/// version, a primary that keeps a binary log), then records it and starts
/// the task that copies a primary node into it and starts replication.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/standbys", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path, description = "the primary")),
    request_body = CreateClusterRequest,
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_standby(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(primary_name): Path<String>,
    JsonBody(request): JsonBody<ClusterSpec>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let name = request.name.clone();
    let refuse = |e: ApiError| async {
        state
            .audit(
                &caller.user,
                caller.source,
                "cluster.create_standby",
                &name,
                json!({ "primary": primary_name }),
                &format!("refused: {e}"),
            )
            .await;
        e
    };
    let (primary, servers_of_primary) = match load(&state, &primary_name).await {
        Ok(p) => p,
        Err(e) => return Err(refuse(e).await),
    };
    let mut problems = standby::pair_problems(&state, &primary, &servers_of_primary, &request).await?;
    if let Err(e) = ensure_idle(&state, &primary_name).await {
        problems.push(e.to_string());
    }
    let spec = standby::standby_spec(&primary, request, standby::next_domain(&state).await?);
    if let Some(s) = spec.servers.iter().find(|s| servers_of_primary.iter().any(|p| p.name == s.name)) {
        problems.push(format!("server name {} is taken by the primary {primary_name}: give the standby's servers other names", s.name));
    }
    let placement = match validate::validate(&state, spec).await {
        Ok(p) if problems.is_empty() => Some(p),
        Ok(_) => None,
        Err(ApiError::Invalid(more)) => {
            problems.extend(more);
            None
        }
        Err(e) => return Err(refuse(e).await),
    };
    let placement = match placement {
        Some(p) if problems.is_empty() => p,
        _ => return Err(refuse(ApiError::Invalid(problems)).await),
    };
    let secrets = SealedSecrets::of(&primary)?.for_standby(&state);
    let servers: Vec<_> = placement.servers.iter().map(|(s, _)| s.clone()).collect();
    let task = standby::create_task(&name, &primary.name, &servers, &placement.proxies);
    let task = record_and_submit(&state, &caller.user, placement.spec.clone(), &secrets, &servers, &placement.proxies, task).await?;
    state
        .audit_ok(&caller, "cluster.create_standby", &name, json!({ "task": task.id, "primary": primary_name, "servers": servers.len() }))
        .await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// The administrator account of a cluster (admin only; audited).
#[utoipa::path(get, path = "/api/v1/clusters/{name}/credentials", tag = "clusters", security(("bearer" = ["admin"])), params(("name" = String, Path)),
    responses((status = 200, body = ClusterCredentials), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the cluster has no servers")))]
async fn credentials(State(state): State<AppState>, Admin(caller): Admin, Path(name): Path<String>) -> ApiResult<Json<ClusterCredentials>> {
    let (c, servers) = load(&state, &name).await?;
    let password = SealedSecrets::of(&c)?.admin(&state)?;
    let first = servers.first().ok_or_else(|| ApiError::Conflict(format!("cluster {name} has no servers")))?;
    let (host, port) = match state.store.cluster_proxies(&name).await?.first() {
        Some(p) => (p.address.clone(), p.rw_port),
        None => (first.address.clone(), first.ports.sql),
    };
    state.audit_ok(&caller, "cluster.credentials", &name, json!({})).await;
    Ok(Json(ClusterCredentials {
        user: ADMIN_USER.into(),
        mysql_command: format!("mariadb -h {host} -P {port} -u {ADMIN_USER} -p'{password}'"),
        password,
        host,
        port,
        direct_host: first.address.clone(),
        direct_port: first.ports.sql,
    }))
}

/// One operation at a time per cluster: a second one would fight the first.
pub(super) async fn ensure_idle(state: &AppState, name: &str) -> ApiResult<()> {
    if let Some(t) = state.store.active_tasks().await?.into_iter().find(|t| t.target == name) {
        return Err(ApiError::Conflict(format!(
            "cluster {name} is busy with task {} ({}); wait for it (`atoll task watch {}`) or cancel it",
            t.id, t.title, t.id
        )));
    }
    Ok(())
}

async fn operate(state: &AppState, caller: &crate::auth::Caller, name: &str, action: &str) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let (c, servers) = load(state, name).await?;
    ensure_idle(state, name).await?;
    if action == "cluster.stop" {
        protect::refuse(state, name, "stopping it").await?;
    }
    let spec = match (action, c.status) {
        ("cluster.stop", ClusterStatus::Creating) => {
            return Err(ApiError::Conflict(format!("cluster {name} is still being created; cancel its task to stop it")));
        }
        ("cluster.stop", _) => operate::stop_task(name, &servers),
        ("cluster.start", ClusterStatus::Stopped) => operate::start_task(name, &servers, action),
        ("cluster.start", s) => {
            return Err(ApiError::Conflict(format!(
                "cluster {name} is {s}; only a stopped cluster starts (a cluster without quorum is recovered: `atoll cluster recover {name}`)"
            )));
        }
        ("cluster.recover", ClusterStatus::Unavailable | ClusterStatus::Stopped | ClusterStatus::Degraded) => {
            operate::start_task(name, &servers, action)
        }
        ("cluster.recover", s) => return Err(ApiError::Conflict(format!("cluster {name} is {s}; there is nothing to recover"))),
        _ => return Err(ApiError::Internal(format!("unknown cluster action {action}"))),
    };
    let task = state.executor.submit(spec, &caller.user).await?;
    state.audit_ok(caller, action, name, json!({ "task": task.id, "status_before": c.status })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Stops every server cleanly, one after another.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/stop", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path)),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stop_cluster(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    operate(&state, &caller, &name, "cluster.stop").await
}

/// Starts a stopped cluster from its most advanced node.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/start", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path)),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn start_cluster(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    operate(&state, &caller, &name, "cluster.start").await
}

/// Guided recovery of a cluster that lost quorum: stops what is left, reads
/// every node's position, bootstraps the most advanced, joins the others.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/recover", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path)),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn recover_cluster(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    operate(&state, &caller, &name, "cluster.recover").await
}

/// Restarts every server, one at a time; the others keep serving.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/restart", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path)),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn restart_cluster(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let (c, servers) = load(&state, &name).await?;
    ensure_idle(&state, &name).await?;
    if c.status != ClusterStatus::Healthy {
        return Err(ApiError::Conflict(format!("cluster {name} is {}; a rolling restart needs every server synced first", c.status)));
    }
    let writer = state.store.get_routing(&name).await?.and_then(|r| r.writer);
    let task = state.executor.submit(operate::restart_task(&name, &servers, writer.as_deref()), &caller.user).await?;
    state.audit_ok(&caller, "cluster.restart", &name, json!({ "task": task.id })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Changes parameters: checked against the catalog before anything moves,
/// applied online where MariaDB allows it, else by a rolling restart.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/params", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path)), request_body = SetParamsRequest,
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_params(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<SetParamsRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let (c, servers) = load(&state, &name).await?;
    let spec = &c.spec;
    let mut merged = spec.params.clone();
    merged.extend(req.params.clone());
    let problems: Vec<String> = atoll_engine::params::check(&merged, spec.durability).into_iter().map(|p| p.to_string()).collect();
    if !problems.is_empty() {
        state
            .audit(&caller.user, caller.source, "cluster.set_param", &name, json!({ "params": req.params }), "refused: invalid parameters")
            .await;
        return Err(ApiError::Invalid(problems));
    }
    let changed: BTreeMap<String, String> = req.params.into_iter().filter(|(k, v)| spec.params.get(k) != Some(v)).collect();
    if changed.is_empty() {
        return Err(ApiError::BadRequest("nothing changes: every parameter already has that value".into()));
    }
    ensure_idle(&state, &name).await?;
    if c.status != ClusterStatus::Healthy {
        return Err(ApiError::Conflict(format!("cluster {name} is {}; change parameters when every server is synced", c.status)));
    }
    let restart = changed.keys().any(|k| atoll_engine::params::needs_restart(k) == Some(true));
    let writer = state.store.get_routing(&name).await?.and_then(|r| r.writer);
    let spec_task = operate::set_params_task(&name, &servers, writer.as_deref(), &spec.params, &merged, &changed, restart);
    let task = state.executor.submit(spec_task, &caller.user).await?;
    state.audit_ok(&caller, "cluster.set_param", &name, json!({ "task": task.id, "changed": changed, "restart": restart })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Deletes a cluster: stops its servers and forgets it; data directories
/// stay unless `purge` is set.
#[utoipa::path(delete, path = "/api/v1/clusters/{name}", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path), DeleteClusterQuery),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_cluster(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    Query(q): Query<DeleteClusterQuery>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let (_, servers) = load(&state, &name).await?;
    protect::refuse(&state, &name, "deleting it").await?;
    ensure_idle(&state, &name).await?;
    let task = state
        .executor
        .submit(operate::delete_task(&name, &servers, &state.store.cluster_proxies(&name).await?, q.purge), &caller.user)
        .await?;
    state.audit_ok(&caller, "cluster.delete", &name, json!({ "task": task.id, "purge": q.purge })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

async fn server_op(
    state: &AppState,
    caller: &crate::auth::Caller,
    name: &str,
    server: &str,
    action: Action,
    force: bool,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    use Action;
    let (c, servers) = load(state, name).await?;
    let target = servers::find(name, &servers, server)?;
    ensure_idle(state, name).await?;
    if force && action == Action::Stop {
        protect::refuse(state, name, "stopping a server past the majority rule (--force)").await?;
    }
    if !status::is_live(c.status) {
        return Err(ApiError::Conflict(format!(
            "cluster {name} is {}; {} the whole cluster (`atoll cluster start {name}`) instead",
            c.status,
            if c.status == ClusterStatus::Stopped { "start" } else { "wait for it or act on" }
        )));
    }
    let move_to = match action {
        Action::Start => None,
        Action::Stop | Action::Restart => {
            servers::ensure_majority(state, name, &servers, server, servers.len(), force)?;
            servers::writer_after(state, name, &servers, server).await?
        }
    };
    let task = state.executor.submit(servers::server_task(name, target, action, move_to.as_deref()), &caller.user).await?;
    let what = format!("cluster.server.{}", action.as_str());
    state.audit_ok(caller, &what, name, json!({ "task": task.id, "server": server, "force": force, "writer_to": move_to })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Stops one server cleanly; the writer moves away first. Refused when the
/// rest would not be a majority, unless `force`.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/servers/{server}/stop", tag = "clusters", security(("bearer" = ["operator"])),
    params(("name" = String, Path), ("server" = String, Path), ServerOpQuery),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn stop_server(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path((name, server)): Path<(String, String)>,
    Query(q): Query<ServerOpQuery>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    server_op(&state, &caller, &name, &server, Action::Stop, q.force).await
}

/// Starts one stopped server: it rejoins (IST when the donor still has the
/// writes it missed) and the task waits until it is Synced.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/servers/{server}/start", tag = "clusters", security(("bearer" = ["operator"])),
    params(("name" = String, Path), ("server" = String, Path), ServerOpQuery),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn start_server(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path((name, server)): Path<(String, String)>,
    Query(q): Query<ServerOpQuery>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    server_op(&state, &caller, &name, &server, Action::Start, q.force).await
}

/// Restarts one server (stop, rejoin, wait for Synced); the writer moves
/// away first.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/servers/{server}/restart", tag = "clusters", security(("bearer" = ["operator"])),
    params(("name" = String, Path), ("server" = String, Path), ServerOpQuery),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn restart_server(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path((name, server)): Path<(String, String)>,
    Query(q): Query<ServerOpQuery>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    server_op(&state, &caller, &name, &server, Action::Restart, q.force).await
}

/// Adds servers, validated like a create request (hosts, engine build,
/// ports, topology, live precheck) and refused whole with every problem;
/// each joins with a full state transfer, and a new zone gets its proxy.
#[utoipa::path(post, path = "/api/v1/clusters/{name}/servers", tag = "clusters", security(("bearer" = ["operator"])), params(("name" = String, Path)), request_body = AddServersRequest,
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_servers(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<AddServersRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let (c, servers) = load(&state, &name).await?;
    ensure_idle(&state, &name).await?;
    if !matches!(c.status, ClusterStatus::Healthy | ClusterStatus::Degraded) {
        return Err(ApiError::Conflict(format!("cluster {name} is {}; a new server needs a running cluster to join", c.status)));
    }
    let growth = match validate::validate_add(&state, &c, &servers, &req.servers).await {
        Ok(g) => g,
        Err(e) => {
            state
                .audit(&caller.user, caller.source, "cluster.scale", &name, json!({ "add": req.servers.len() }), &format!("refused: {e}"))
                .await;
            return Err(e);
        }
    };
    let added: Vec<(DbServerRecord, ServerSpec)> = growth
        .servers
        .iter()
        .filter_map(|(r, _)| growth.spec.servers.iter().find(|s| s.name == r.name).map(|s| (r.clone(), s.clone())))
        .collect();
    // Recorded before the task runs, like a create: the ports are taken
    // from here on, and the task's steps find the servers by name.
    let undo = |n: usize| {
        let state = state.clone();
        let names: Vec<String> = added.iter().take(n).map(|(r, _)| r.name.clone()).collect();
        let name = name.clone();
        async move {
            for n in names {
                let _ = state.store.remove_db_server(&name, &n).await;
            }
        }
    };
    for (i, (r, _)) in added.iter().enumerate() {
        if let Err(e) = state.store.add_db_server(r).await {
            undo(i).await;
            return Err(e.into());
        }
    }
    let submitted = match state.store.put_proxies(&growth.proxies).await {
        Ok(()) => {
            state.executor.submit(servers::add_task(&name, &servers, &added, &growth.proxies), &caller.user).await.map_err(ApiError::from)
        }
        Err(e) => Err(e.into()),
    };
    let task = match submitted {
        Ok(t) => t,
        Err(e) => {
            // Nothing ran: the servers (and the proxies of zones they
            // alone would have had) go again.
            undo(added.len()).await;
            return Err(e);
        }
    };
    routing::changed(&state);
    let names: Vec<&str> = added.iter().map(|(r, _)| r.name.as_str()).collect();
    state.audit_ok(&caller, "cluster.scale", &name, json!({ "task": task.id, "add": names })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

/// Removes one server: the writer moves away first, the server stops and
/// leaves the cluster (data kept unless `purge`), a zone left empty loses
/// its proxy. Refused below three servers or three zones, or without a
/// majority left running, unless `force`.
#[utoipa::path(delete, path = "/api/v1/clusters/{name}/servers/{server}", tag = "clusters", security(("bearer" = ["operator"])),
    params(("name" = String, Path), ("server" = String, Path), RemoveServerQuery),
    responses((status = 202, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove_server(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path((name, server)): Path<(String, String)>,
    Query(q): Query<RemoveServerQuery>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    let (c, servers) = load(&state, &name).await?;
    let target = servers::find(&name, &servers, &server)?.clone();
    ensure_idle(&state, &name).await?;
    if !status::is_live(c.status) {
        return Err(ApiError::Conflict(format!("cluster {name} is {}; remove servers from a running cluster", c.status)));
    }
    let remaining: Vec<DbServerRecord> = servers.iter().filter(|s| s.name != server).cloned().collect();
    protect::refuse_below_three(&state, &name, remaining.len()).await?;
    servers::ensure_removable(&c, &server, &remaining, q.force)?;
    servers::ensure_majority(&state, &name, &servers, &server, remaining.len(), q.force)?;
    let move_to = servers::writer_after(&state, &name, &servers, &server).await?;
    let zone_proxy = if remaining.iter().any(|s| s.zone == target.zone) {
        None
    } else {
        state.store.cluster_proxies(&name).await?.into_iter().find(|p| p.zone == target.zone)
    };
    let spec = servers::remove_task(&name, &target, &remaining, zone_proxy.as_ref(), move_to.as_deref(), q.purge);
    let task = state.executor.submit(spec, &caller.user).await?;
    state
        .audit_ok(
            &caller,
            "cluster.scale",
            &name,
            json!({ "task": task.id, "remove": server, "purge": q.purge, "force": q.force, "writer_to": move_to }),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

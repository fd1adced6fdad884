//! Engine packages: registering a tarball, listing, removing, and pushing
//! one to hosts. Admins change (a package's programs run on every host it
//! reaches), viewers read; every change, and every refused upload, is
//! audited.

use atoll_api::ErrorBody;
use atoll_api::packages::{AddPackageQuery, PackageView, PushPackageRequest};
use atoll_api::v1::TaskView;
use atoll_core::HostStatus;
use atoll_core::time::now_ms;
use atoll_store::{HostRecord, PackageRecord};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::state::AppState;
use crate::{hostops, packages};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_packages, add_package))
        .routes(routes!(get_package, remove_package))
        .routes(routes!(push_package))
}

fn view(p: PackageRecord, hosts: &[HostRecord]) -> PackageView {
    let on: Vec<String> = hosts
        .iter()
        .filter(|h| h.host.facts.as_ref().and_then(|f| f.engine(&p.name)).is_some_and(|b| b.sha256.as_deref() == Some(&p.sha256)))
        .map(|h| h.host.name.clone())
        .collect();
    PackageView {
        name: p.name,
        version: p.version,
        sha256: p.sha256,
        size_bytes: p.size_bytes,
        mariadbd: p.mariadbd,
        install_db: p.install_db,
        galera: p.galera,
        created_by: p.created_by,
        created_at_ms: p.created_at_ms,
        hosts: on,
    }
}

async fn find(state: &AppState, name: &str) -> ApiResult<PackageRecord> {
    state
        .store
        .get_package(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no package {name:?}: `atoll package list` shows the packages there are")))
}

#[utoipa::path(get, path = "/api/v1/packages", tag = "packages", security(("bearer" = ["viewer"])), responses((status = 200, body = Vec<PackageView>), (status = 401, body = ErrorBody)))]
async fn list_packages(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<PackageView>>> {
    let hosts = state.store.list_hosts().await?;
    Ok(Json(state.store.list_packages().await?.into_iter().map(|p| view(p, &hosts)).collect()))
}

#[utoipa::path(get, path = "/api/v1/packages/{name}", tag = "packages", security(("bearer" = ["viewer"])), params(("name" = String, Path)),
    responses((status = 200, body = PackageView), (status = 404, body = ErrorBody)))]
async fn get_package(State(state): State<AppState>, _caller: Caller, Path(name): Path<String>) -> ApiResult<Json<PackageView>> {
    let p = find(&state, &name).await?;
    Ok(Json(view(p, &state.store.list_hosts().await?)))
}

/// Registers an engine build: the body is the `.tar.gz`. It is stored
/// under its SHA-256 and must contain `mariadbd`, an install-db script and
/// the Galera library; the same content or name twice is a conflict. Admins
/// only; the upload is streamed to disk within a size and a time limit
/// (413 and 408 beyond them).
#[utoipa::path(post, path = "/api/v1/packages", tag = "packages", security(("bearer" = ["admin"])), params(AddPackageQuery),
    request_body(content = Vec<u8>, content_type = "application/gzip", description = "the tarball"),
    responses((status = 201, body = PackageView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 408, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn add_package(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Query(q): Query<AddPackageQuery>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PackageView>), packages::UploadError> {
    let stem = q.filename.as_deref().map(|f| {
        let base = f.rsplit('/').next().unwrap_or(f);
        base.strip_suffix(".tar.gz").or_else(|| base.strip_suffix(".tgz")).unwrap_or(base).to_string()
    });
    let name = q.name.clone().or_else(|| stem.clone()).ok_or_else(|| ApiError::BadRequest("name the package (?name=…)".into()))?;
    if !atoll_core::valid_package_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "invalid package name {name:?}: use a lowercase letter, then letters, digits, dots, dashes or underscores (not \"system\"); pass --name"
        ))
        .into());
    }
    if let Some(p) = state.store.get_package(&name).await.map_err(ApiError::from)? {
        return Err(ApiError::Conflict(format!(
            "a package named {name} already exists (sha256 {}); choose another --name or remove it first",
            p.sha256
        ))
        .into());
    }
    let limits = packages::upload_limits(&state);
    let announced = headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let received = match packages::check_announced(announced, &limits) {
        Ok(()) => packages::receive(&state, body, limits).await,
        Err(e) => Err(e),
    };
    let (temp, sha256, size) = match received {
        Ok(r) => r,
        Err(e) => {
            let detail = json!({ "announced_bytes": announced, "max_bytes": limits.max_bytes, "timeout_s": limits.timeout.as_secs() });
            state.audit(&caller.user, caller.source, "package.add", &name, detail, &format!("refused: {e}")).await;
            return Err(e);
        }
    };
    let found = packages::inspect(&temp.0, sha256, size).await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            state.audit(&caller.user, caller.source, "package.add", &name, json!({ "size": size }), &format!("refused: {e}")).await;
            return Err(e.into());
        }
    };
    if let Some(p) = state.store.find_package_by_sha256(&found.sha256).await.map_err(ApiError::from)? {
        return Err(
            ApiError::Conflict(format!("this tarball (sha256 {}) is already registered as package {}", found.sha256, p.name)).into()
        );
    }
    let version = q.version.clone().or_else(|| packages::version_from_name(stem.as_deref().unwrap_or(&name))).unwrap_or("unknown".into());
    let record = PackageRecord {
        name: name.clone(),
        version,
        sha256: found.sha256.clone(),
        size_bytes: found.size,
        mariadbd: found.files.mariadbd,
        install_db: found.files.install_db,
        galera: found.files.galera,
        created_by: caller.user.clone(),
        created_at_ms: now_ms(),
    };
    let path = packages::file(&state, &record.sha256);
    std::fs::rename(&temp.0, &path).map_err(|e| ApiError::Internal(format!("cannot store {}: {e}", path.display())))?;
    if let Err(e) = state.store.insert_package(&record).await {
        // Another upload of the same content may have won: its record owns
        // the file then.
        if state.store.find_package_by_sha256(&record.sha256).await.ok().flatten().is_none() {
            let _ = std::fs::remove_file(&path);
        }
        return Err(ApiError::from(e).into());
    }
    state
        .audit_ok(&caller, "package.add", &name, json!({ "sha256": record.sha256, "size": record.size_bytes, "version": record.version }))
        .await;
    tracing::info!(package = %name, sha256 = %record.sha256, size = record.size_bytes, "package registered");
    Ok((StatusCode::CREATED, Json(view(record, &[]))))
}

/// Forgets a package and deletes its tarball. Builds already on hosts stay
/// there; a package a cluster runs cannot be removed.
#[utoipa::path(delete, path = "/api/v1/packages/{name}", tag = "packages", security(("bearer" = ["admin"])), params(("name" = String, Path)),
    responses((status = 200, body = PackageView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn remove_package(State(state): State<AppState>, Admin(caller): Admin, Path(name): Path<String>) -> ApiResult<Json<PackageView>> {
    let p = find(&state, &name).await?;
    let users: Vec<String> = state
        .store
        .list_clusters()
        .await?
        .into_iter()
        .filter(|c| c.spec.engine.as_deref() == Some(name.as_str()))
        .map(|c| c.name)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!("package {name} is the engine of cluster {}; delete those first", users.join(", "))));
    }
    state.store.delete_package(&name).await?;
    if let Err(e) = std::fs::remove_file(packages::file(&state, &p.sha256)) {
        tracing::warn!(package = %name, error = %e, "package forgotten, but its tarball could not be deleted");
    }
    state.audit_ok(&caller, "package.remove", &name, json!({ "sha256": p.sha256 })).await;
    Ok(Json(view(p, &[])))
}

/// Installs a package on hosts as a task (admins only): each host's agent
/// downloads it, verifies its SHA-256, and extracts it atomically;
/// repeating is a no-op.
#[utoipa::path(post, path = "/api/v1/packages/{name}/push", tag = "packages", security(("bearer" = ["admin"])), params(("name" = String, Path)),
    request_body = PushPackageRequest,
    responses((status = 202, body = TaskView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
async fn push_package(
    State(state): State<AppState>,
    Admin(caller): Admin,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<PushPackageRequest>,
) -> ApiResult<(StatusCode, Json<TaskView>)> {
    if req.hosts.is_empty() {
        return Err(ApiError::BadRequest("name at least one host to push to (--host)".into()));
    }
    let p = find(&state, &name).await?;
    let hosts = hostops::resolve_hosts(&state, &req.hosts).await?;
    let down: Vec<String> =
        hosts.iter().filter(|h| h.host.status != HostStatus::Online).map(|h| format!("{} is {}", h.host.name, h.host.status)).collect();
    if !down.is_empty() {
        return Err(ApiError::Conflict(format!("{}: start their agents first", down.join(", "))));
    }
    let task = state.executor.submit(packages::push_task(&p, &hosts), &caller.user).await?;
    let names: Vec<&str> = hosts.iter().map(|h| h.host.name.as_str()).collect();
    state.audit_ok(&caller, "package.push", &name, json!({ "task": task.id, "hosts": names })).await;
    Ok((StatusCode::ACCEPTED, Json(crate::api::tasks::task_view(task, Vec::new()))))
}

//! `/agent/v1` on the server: registration and heartbeats from agents.

use std::net::SocketAddr;

use atoll_api::agent::{
    DbCertificateRequest, DbCertificateResponse, HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse,
};
use atoll_core::time::now_ms;
use atoll_core::{DbId, HostStatus};
use atoll_store::{HeartbeatRecord, Registration};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::{bearer, random_token, sha256_hex};
use crate::error::{ApiError, ApiResult, JsonBody};
use crate::join;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/agent/v1/register", post(register))
        .route("/agent/v1/heartbeat", post(heartbeat))
        .route("/agent/v1/db-certificates", post(db_certificate))
        .route("/agent/v1/packages/{sha256}", axum::routing::get(download_package))
}

/// Tokens compared in constant time.
fn same(a: &str, b: &str) -> bool {
    atoll_core::secret::constant_time_eq(a.as_bytes(), b.as_bytes())
}

/// Registers a host, or re-registers a known one. A known host proves it is
/// the same agent with its own token, and only that: a join token admits
/// new hosts only, so holding one never takes over a registered host.
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> ApiResult<Json<RegisterResponse>> {
    if let Some(wait) = state.refusals.blocked(peer.ip()) {
        return Err(ApiError::TooManyRequests(format!(
            "too many refused registrations from {}; try again in {} s",
            peer.ip(),
            wait.as_secs().max(1)
        )));
    }
    if req.address.parse::<std::net::IpAddr>().is_err() {
        return Err(ApiError::BadRequest(format!("invalid address {:?}", req.address)));
    }
    for (what, v) in [("name", &req.name), ("zone", &req.zone), ("region", &req.region)] {
        if let Some(v) = v.as_ref().filter(|v| !atoll_core::valid_name(v)) {
            return Err(ApiError::BadRequest(format!("invalid {what} {v:?}: use a lowercase letter, then letters, digits or dashes")));
        }
    }
    let existing = state.store.get_host(req.host_id).await?;
    let refuse = |why: String| async {
        refused(&state, peer, &req, &why).await;
        Err(ApiError::Unauthorized(why))
    };
    let grant = match (&existing, &req.agent_token, &req.join_token) {
        (Some(h), Some(t), _) if h.agent_token_hash.as_deref().is_some_and(|hash| same(hash, &sha256_hex(t))) => None,
        (Some(h), _, _) => {
            return refuse(format!(
                "host {} ({}) is registered already and only its own agent may register it again, with the token in its \
                 identity file; a join token does not do. If that agent's data was lost, remove the host \
                 (`atoll host remove {}`) and join it again",
                h.host.name, h.host.id, h.host.name
            ))
            .await;
        }
        (None, _, Some(t)) => match join::redeem(&state, t).await? {
            Ok(g) => Some((t.clone(), g)),
            Err(why) => return refuse(format!("{why}: an admin mints one with `atoll host join-token`")).await,
        },
        (None, _, None) => {
            return refuse(
                "a new host needs a join token (ATOLL_JOIN_TOKEN or --join-token-file): `atoll host join-token` mints one".into(),
            )
            .await;
        }
    };
    let outcome = register_checked(&state, peer, &req, existing, grant.as_ref().map(|(_, g)| g)).await;
    if outcome.is_err()
        && let Some((token, g)) = &grant
    {
        join::give_back(&state, token, g).await;
    }
    outcome
}

/// Audits a refused registration (at most one row per source a minute, so a
/// flood of them does not write a flood of rows) and counts it.
async fn refused(state: &AppState, peer: SocketAddr, req: &RegisterRequest, why: &str) {
    metrics::counter!("atoll_agent_registrations_refused_total").increment(1);
    if state.refusals.refused(peer.ip()) {
        state
            .audit("agent", peer, "host.register", &req.host_id.to_string(), json!({ "address": req.address }), &format!("refused: {why}"))
            .await;
    }
}

async fn register_checked(
    state: &AppState,
    peer: SocketAddr,
    req: &RegisterRequest,
    existing: Option<atoll_store::HostRecord>,
    grant: Option<&join::Grant>,
) -> ApiResult<Json<RegisterResponse>> {
    if let Some(wanted) = grant.and_then(|g| g.host.as_deref()) {
        let pending = state.store.find_host(wanted).await?.filter(|h| h.host.status == HostStatus::Pending);
        match pending {
            Some(h) if h.host.address == req.address => {}
            Some(h) => {
                return Err(ApiError::Unauthorized(format!(
                    "this join token is for host {wanted} at {}, not {}: start the agent with --listen {}:PORT",
                    h.host.address, req.address, h.host.address
                )));
            }
            None => return Err(ApiError::Unauthorized(format!("this join token was for host {wanted}, which has joined or was removed"))),
        }
    }
    let name = match (&existing, &req.name) {
        (Some(h), _) => h.host.name.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => default_name(state, req).await?,
    };
    // Checked before anything is written: a bad key registers nothing.
    let certificate_pem = match &req.public_key {
        Some(key) => {
            let ip = req.address.parse().map_err(|_| ApiError::BadRequest(format!("invalid address {:?}", req.address)))?;
            Some(
                crate::tls::agent_cert(
                    &state.pki.issuer(state.store.as_ref(), &state.secrets, &state.config).await.issuer,
                    req.host_id,
                    ip,
                    key,
                )
                .map_err(|e| ApiError::BadRequest(format!("{e}; the agent's key file (agent.key) may be damaged")))?,
            )
        }
        None => None,
    };
    let agent_token = random_token();
    let server_token = random_token();
    let reg = Registration {
        id: req.host_id,
        name,
        address: req.address.clone(),
        agent_url: req.agent_url.clone(),
        zone: req.zone.clone(),
        region: req.region.clone(),
        facts: req.facts.clone(),
        agent_version: req.agent_version.clone(),
        agent_token_hash: sha256_hex(&agent_token),
        server_token: state.secrets.seal(&server_token),
        now: now_ms(),
    };
    let host = state.store.register_host(&reg).await?;
    state.beats.registered(host.host.id, &req.address, &req.agent_url, &reg.facts, reg.now);
    state.audit("agent", peer, "host.register", &host.host.name, json!({ "id": host.host.id, "address": host.host.address }), "ok").await;
    if existing.is_some_and(|h| h.host.status == HostStatus::Offline) {
        state.audit("agent", peer, "host.online", &host.host.name, json!({}), "ok").await;
    }
    tracing::info!(host = %host.host.name, id = %host.host.id, address = %host.host.address, "host registered");
    Ok(Json(RegisterResponse {
        host_id: host.host.id,
        name: host.host.name,
        agent_token,
        server_token,
        heartbeat_interval_ms: state.config.heartbeat_interval_ms,
        server_time_ms: now_ms(),
        servers: state.platform.peers(),
        certificate_pem,
    }))
}

/// `host-<address>`; agents on one machine share a hostname, so the
/// hostname alone would clash.
async fn default_name(state: &AppState, req: &RegisterRequest) -> ApiResult<String> {
    let by_addr = format!("host-{}", req.address.replace(['.', ':'], "-"));
    if state.store.find_host(&by_addr).await?.is_none() {
        return Ok(by_addr);
    }
    Ok(format!("host-{}", &req.host_id.to_string()[..8]))
}

/// The agent behind a heartbeat, authenticated by its token and, on a TLS
/// platform, by the certificate registration gave it (mutual TLS).
struct AgentCaller(String);

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.config.tls && !crate::tls::client_cert(parts) {
            // 401, not 403: the agent then registers again, which gives it
            // a certificate (an agent that joined before it had one).
            return Err(ApiError::Unauthorized(
                "agents call a TLS platform over mutual TLS: register again to get a certificate of the platform's CA".into(),
            ));
        }
        bearer(parts).map(AgentCaller).ok_or_else(|| ApiError::Unauthorized("missing agent token".into()))
    }
}

/// The answer to an agent whose host is gone (the agent stops on it).
fn removed(state: &AppState, id: atoll_core::HostId) -> ApiError {
    state.beats.forget(id);
    ApiError::NotFound(format!("host {id} was removed from the platform"))
}

/// The host's name when `token` is its agent's.
async fn authenticate(state: &AppState, host_id: atoll_core::HostId, token: &str) -> Result<String, ApiError> {
    let (token_hash, name) = match state.beats.cached_auth(host_id) {
        Some(auth) => auth,
        None => {
            let Some(host) = state.store.agent_auth(host_id).await? else {
                return Err(removed(state, host_id));
            };
            state.beats.remember_auth(host_id, host.token_hash.clone(), host.name.clone());
            (host.token_hash, host.name)
        }
    };
    if !token_hash.is_some_and(|h| same(&h, &sha256_hex(token))) {
        // Perhaps re-registered since we cached it: look again next time.
        state.beats.forget(host_id);
        return Err(ApiError::Unauthorized("wrong agent token for this host".into()));
    }
    Ok(name)
}

/// Renews a database server's certificate, for a server on the caller's
/// own host only.
async fn db_certificate(
    State(state): State<AppState>,
    AgentCaller(token): AgentCaller,
    JsonBody(req): JsonBody<DbCertificateRequest>,
) -> Result<Json<DbCertificateResponse>, ApiError> {
    let host = authenticate(&state, req.host_id, &token).await?;
    if !state.config.tls {
        return Err(ApiError::Conflict("this platform runs without TLS: its database servers have no certificates".into()));
    }
    let id = &req.database;
    let server = state
        .store
        .cluster_servers(&id.cluster)
        .await?
        .into_iter()
        .find(|s| s.name == id.name && s.host_id == req.host_id)
        .ok_or_else(|| ApiError::NotFound(format!("no database server {id} on host {host}")))?;
    let leaf = crate::tls::db_server_request(&server.cluster, &server.name, &server.address).map_err(ApiError::Conflict)?;
    let pki = state.pki.issuer(state.store.as_ref(), &state.secrets, &state.config).await;
    let certificate_pem = pki.issuer.issue_for(&leaf, &req.public_key).map_err(|e| ApiError::BadRequest(format!("public_key: {e}")))?;
    tracing::info!(database = %id, host = %host, "database server certificate renewed");
    Ok(Json(DbCertificateResponse { certificate_pem, ca_pem: pki.bundle.clone() }))
}

async fn heartbeat(
    State(state): State<AppState>,
    AgentCaller(token): AgentCaller,
    JsonBody(req): JsonBody<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    let name = authenticate(&state, req.host_id, &token).await?;
    let now = now_ms();
    let plan = state.beats.plan(&req, now);
    let before = if plan.host {
        let hb = HeartbeatRecord {
            id: req.host_id,
            now,
            address: req.address.clone(),
            agent_url: req.agent_url.clone(),
            facts: req.facts.clone(),
        };
        Some(state.store.record_heartbeat(&hb).await?.ok_or_else(|| removed(&state, req.host_id))?)
    } else {
        None
    };
    if !plan.db.is_empty() {
        let statuses: Vec<(DbId, serde_json::Value)> =
            plan.db.iter().filter_map(|s| serde_json::to_value(s).ok().map(|v| (s.id.clone(), v))).collect();
        state.store.record_server_statuses(req.host_id, &statuses, now).await?;
        let clusters: std::collections::BTreeSet<&str> = plan.db.iter().map(|s| s.id.cluster.as_str()).collect();
        for name in clusters {
            if let Some(c) = state.store.get_cluster(name).await?
                && let Err(e) = crate::clusters::routing::failover(&state, &c).await
            {
                tracing::warn!(cluster = name, error = %e, "writer failover check failed; the next report tries again");
            }
        }
        crate::clusters::routing::changed(&state);
    }
    if !plan.proxies.is_empty() {
        let statuses: Vec<(DbId, serde_json::Value)> =
            plan.proxies.iter().filter_map(|p| serde_json::to_value(p).ok().map(|v| (p.id.clone(), v))).collect();
        state.store.record_proxy_statuses(req.host_id, &statuses, now).await?;
    }
    state.beats.written(&req, &plan, now);
    metrics::counter!("atoll_heartbeats_total").increment(1);
    if before == Some(HostStatus::Offline) {
        tracing::info!(host = %name, "host back online");
        state.audit("agent", SocketAddr::from(([0, 0, 0, 0], 0)), "host.online", &name, json!({}), "ok").await;
    }
    Ok(Json(HeartbeatResponse {
        server_time_ms: now_ms(),
        heartbeat_interval_ms: state.config.heartbeat_interval_ms,
        servers: state.platform.peers(),
        want_facts: !state.beats.has_facts(req.host_id),
        tls: state.config.tls.then(|| {
            let pki = state.pki.now();
            let bundle_pem = (req.trusted_cas != pki.fingerprints).then(|| pki.bundle.clone());
            atoll_api::agent::TlsDirective { issuer: pki.issuer_fingerprint.clone(), bundle_pem }
        }),
    }))
}

/// A package tarball for an agent to install, streamed from disk. Only a
/// registered agent may download (its token names its host); the agent
/// checks the SHA-256 itself while it reads.
async fn download_package(
    State(state): State<AppState>,
    AgentCaller(token): AgentCaller,
    axum::extract::Path(sha256): axum::extract::Path<String>,
) -> Result<axum::response::Response, ApiError> {
    let hash = sha256_hex(&token);
    let hosts = state.store.list_hosts().await?;
    let Some(host) = hosts.iter().find(|h| h.agent_token_hash.as_deref().is_some_and(|t| same(t, &hash))) else {
        return Err(ApiError::Unauthorized("wrong agent token: only a registered agent may download packages".into()));
    };
    let Some(package) = state.store.find_package_by_sha256(&sha256).await? else {
        return Err(ApiError::NotFound(format!("no package with sha256 {sha256}: it was removed; add it again and push")));
    };
    let path = crate::packages::file(&state, &package.sha256);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("package {} is registered but its tarball cannot be read ({e})", package.name)))?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(package.size_bytes);
    tracing::info!(host = %host.host.name, package = %package.name, "package download");
    let chunks = futures::stream::try_unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>((n > 0).then_some((axum::body::Bytes::from(buf), f)))
    });
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/gzip")
        .header(axum::http::header::CONTENT_LENGTH, len)
        .body(axum::body::Body::from_stream(chunks))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

//! The agent's own API, called by the server with the token it issued at
//! registration. Nothing is served before the agent has registered.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use atoll_api::ErrorBody;
use atoll_api::agent::{AgentStatus, OpRequest};
use atoll_core::secret::constant_time_eq;
use atoll_core::time::now_ms;
use atoll_plan::ProbeRequest;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::db::Supervisor;
use crate::identity::{Identity, sha256_hex};
use crate::ops::{Journal, OpError};

#[derive(Clone)]
pub(crate) struct AgentState {
    inner: Arc<Inner>,
}

struct Inner {
    identity: RwLock<Identity>,
    journal: Journal,
    db: Supervisor,
    proxies: crate::proxies::Proxies,
    address: IpAddr,
    started_at_ms: i64,
    /// The last clock offset measured against the platform (agent minus
    /// server), `i64::MIN` before the first.
    clock_offset_ms: std::sync::atomic::AtomicI64,
}

impl AgentState {
    pub(crate) fn new(identity: Identity, journal: Journal, db: Supervisor, proxies: crate::proxies::Proxies, address: IpAddr) -> Self {
        Self {
            inner: Arc::new(Inner {
                identity: RwLock::new(identity),
                journal,
                db,
                proxies,
                address,
                started_at_ms: now_ms(),
                clock_offset_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            }),
        }
    }

    pub(crate) fn db(&self) -> &Supervisor {
        &self.inner.db
    }

    pub(crate) fn proxies(&self) -> &crate::proxies::Proxies {
        &self.inner.proxies
    }

    pub(crate) fn set_identity(&self, id: Identity) {
        if let Ok(mut g) = self.inner.identity.write() {
            *g = id;
        }
    }

    /// This host's facts, engine builds included, collected on the
    /// blocking pool (file reads, and `mariadbd --version` for a new build).
    pub(crate) async fn collect_facts(&self) -> Result<atoll_core::HostFacts, tokio::task::JoinError> {
        let packages = self.inner.journal.packages().cloned();
        tokio::task::spawn_blocking(move || packages.map_or_else(crate::facts::collect, |p| p.collect_facts())).await
    }

    pub(crate) fn set_clock_offset(&self, ms: i64) {
        self.inner.clock_offset_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn clock_offset(&self) -> Option<i64> {
        Some(self.inner.clock_offset_ms.load(std::sync::atomic::Ordering::Relaxed)).filter(|ms| *ms != i64::MIN)
    }

    /// Whether an engine build was installed since the last call.
    pub(crate) fn facts_changed(&self) -> bool {
        self.inner.journal.packages().is_some_and(|p| p.take_changed())
    }

    fn identity(&self) -> Option<Identity> {
        self.inner.identity.read().ok().map(|g| g.clone())
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: code.into(), message: message.into() })).into_response()
}

pub(crate) fn router(state: AgentState) -> Router {
    let authed = Router::new()
        .route("/agent/v1/status", get(status))
        .route("/agent/v1/facts", get(facts))
        .route("/agent/v1/probe", post(probe))
        .route("/agent/v1/ops", post(op).get(journal))
        .route("/agent/v1/db", get(db_statuses))
        .route("/agent/v1/db/exports", post(grant_export))
        .route("/agent/v1/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(state.clone(), require_server));
    Router::new().route("/healthz", get(|| async { "ok" })).route("/agent/v1/db/export", get(export)).merge(authed).with_state(state)
}

/// The host's metrics (Prometheus text format), read now.
async fn metrics(State(s): State<AgentState>) -> Response {
    let offset = s.clock_offset();
    let dbs = s.db().global_statuses().await;
    match tokio::task::spawn_blocking(move || crate::metrics::render(&crate::facts::collect_mounts(), offset, &dbs)).await {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("reading metrics: {e}")),
    }
}

/// Admits only the server that registered this agent: its token, and over
/// TLS its certificate of the platform's CA too. Metrics alone are open to
/// a token without a certificate, so a Prometheus can scrape them.
async fn require_server(State(s): State<AgentState>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<atoll_pki::TlsPeer>>().map(|c| c.0);
    if peer.is_some_and(|p| !p.client_cert) && req.uri().path() != "/agent/v1/metrics" {
        return error(
            StatusCode::FORBIDDEN,
            "client_certificate_required",
            "this agent takes commands only over mutual TLS: present a certificate of the platform's CA",
        );
    }
    let Some(expected) = s.identity().and_then(|i| i.server_token_hash) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not_registered", "this agent has not registered with a server yet");
    };
    let presented =
        req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => error(StatusCode::UNAUTHORIZED, "unauthorized", "missing bearer token: only the platform server may call this agent"),
        Some(t) if constant_time_eq(sha256_hex(t).as_bytes(), expected.as_bytes()) => next.run(req).await,
        Some(_) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong token: this agent is registered with another server or was re-registered",
        ),
    }
}

async fn status(State(s): State<AgentState>) -> Response {
    match s.identity() {
        Some(i) => {
            Json(AgentStatus { host_id: i.host_id, version: crate::VERSION.into(), started_at_ms: s.inner.started_at_ms }).into_response()
        }
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "identity unavailable"),
    }
}

async fn facts(State(s): State<AgentState>) -> Response {
    match s.collect_facts().await {
        Ok(f) => Json(f).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("collecting facts failed: {e}")),
    }
}

async fn probe(State(s): State<AgentState>, Json(req): Json<ProbeRequest>) -> Response {
    Json(crate::probe::run(s.inner.address, &req).await).into_response()
}

async fn op(State(s): State<AgentState>, Json(req): Json<OpRequest>) -> Response {
    // In a task of its own, so that it runs to its end even when the caller
    // goes away (a server that died mid-step): the step's retry then finds
    // the result in the journal, not a half-done operation (a
    // mariadb-install-db killed midway left its bootstrap mariadbd running
    // and every retry refused).
    let run = tokio::spawn(async move { s.inner.journal.execute(&req.key, &req.op).await });
    match run.await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(OpError::Refused(m))) => error(StatusCode::UNPROCESSABLE_ENTITY, "refused", m),
        Ok(Err(OpError::Io(m))) => error(StatusCode::INTERNAL_SERVER_ERROR, "io", m),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "io", format!("the operation ended abnormally: {e}")),
    }
}

async fn journal(State(s): State<AgentState>) -> Response {
    Json(s.inner.journal.entries()).into_response()
}

async fn grant_export(State(s): State<AgentState>, Json(g): Json<atoll_api::db::ExportGrant>) -> Response {
    match s.db().grant_export(&g) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => db_error(e),
    }
}

fn db_error(e: crate::db::DbError) -> Response {
    match e {
        crate::db::DbError::Refused(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "refused", m),
        crate::db::DbError::Io(m) => error(StatusCode::SERVICE_UNAVAILABLE, "io", m),
    }
}

/// A copy of a server's data for another agent, by a one-time grant the
/// platform made; over TLS only to a holder of a platform certificate.
async fn export(State(s): State<AgentState>, req: Request) -> Response {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<atoll_pki::TlsPeer>>().map(|c| c.0);
    if peer.is_some_and(|p| !p.client_cert) {
        return error(
            StatusCode::FORBIDDEN,
            "client_certificate_required",
            "copies go only over mutual TLS: present a certificate of the platform's CA",
        );
    }
    let token = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "missing bearer token: present the copy grant the platform made");
    };
    match s.db().export(token).await {
        Ok(copy) => Response::builder()
            .header(axum::http::header::CONTENT_TYPE, "application/octet-stream")
            .body(axum::body::Body::from_stream(copy.into_stream()))
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
        Err(crate::db::DbError::Refused(m)) => error(StatusCode::UNAUTHORIZED, "unauthorized", m),
        Err(e) => db_error(e),
    }
}

async fn db_statuses(State(s): State<AgentState>) -> Response {
    Json(s.db().statuses()).into_response()
}

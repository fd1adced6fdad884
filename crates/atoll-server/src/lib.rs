//! `atoll server`: the platform's REST API, web console, agent endpoints,
//! controllers and task executor. It keeps no state of its own: everything
//! lives in MetaDB, so any number of servers can share one.

mod agents;
pub(crate) mod alerting;
pub mod api;
pub mod auth;
mod beats;
mod ca_rotation;
mod clusters;
pub mod config;
mod console;
pub mod deadline;
pub mod error;
mod host_steps;
mod hostops;
mod join;
mod liveness;
pub mod logcount;
mod metrics_layer;
pub(crate) mod monitoring;
mod packages;
mod pki;
mod platform;
mod refusals;
mod registry;
mod replica;
pub mod secrets;
pub mod state;
mod step_kit;
mod sys;
mod tls;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use atoll_store::{MetaStore, SqlStore};
use atoll_tasks::{Executor, ExecutorConfig};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use clusters::protect::METADB_CLUSTER_SETTING;
pub use config::ServerConfig;
use state::{AppState, Inner};

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    /// What clients use: `https://…` with TLS on.
    pub url: String,
    /// The platform CA's fingerprint, for clients to pin.
    pub ca_fingerprint: String,
    /// The generated admin password, on the very first start only.
    pub admin_password: Option<String>,
    state: AppState,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// The join token, for tooling that starts agents next to an
    /// in-process server (`atoll playground`).
    pub async fn join_token(&self) -> anyhow::Result<String> {
        let (token, _) =
            join::mint(&self.state, join::DEFAULT_TTL_S, false, None, "local tooling").await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(token)
    }

    /// Issues an API token for a service account `user` with `role`,
    /// creating the account (with an unusable random password) if needed.
    /// For in-process tooling only (`atoll playground`); audited.
    pub async fn issue_token(&self, user: &str, role: atoll_core::Role, name: &str) -> anyhow::Result<String> {
        if self.state.store.get_user(user).await?.is_none() {
            let account = atoll_store::UserRecord {
                name: user.to_string(),
                password_hash: auth::hash_password(&auth::random_token()).await.map_err(|e| anyhow::anyhow!("{e}"))?,
                role,
                must_change_password: false,
                created_at_ms: atoll_core::time::now_ms(),
            };
            self.state.store.create_user(&account).await?;
            self.state.audit(user, self.addr, "user.create", user, serde_json::json!({ "role": role, "by": "playground" }), "ok").await;
        }
        let (token, record) = auth::new_api_token(user, name, auth::TOKEN_TTL_DAYS);
        self.state.store.create_api_token(&record).await?;
        self.state.audit(user, self.addr, "token.create", &record.id, serde_json::json!({ "name": name, "by": "playground" }), "ok").await;
        Ok(token)
    }

    /// Waits until the server has stopped (after its shutdown token fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.done.await?
    }
}

/// Opens MetaDB, starts the executor and controllers, and serves until
/// `shutdown`.
pub async fn start(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<Running> {
    atoll_pki::install_provider();
    config.validate()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", config.data_dir.display()))?;
    atoll_tasks::setup_failpoints();
    let store: Arc<dyn MetaStore> = Arc::new(match &config.metadb_url {
        Some(url) => SqlStore::connect(url).await?,
        None => SqlStore::open_sqlite(&config.data_dir.join("meta.db")).await?,
    });
    let replica: Option<Arc<dyn MetaStore>> = match &config.metadb_read_url {
        Some(url) => Some(Arc::new(SqlStore::connect_replica(url)?)),
        None => None,
    };
    let metrics = metrics_layer::install()?;

    let slot = Arc::new(OnceLock::new());
    let executor_config = ExecutorConfig { lease: Duration::from_millis(config.task_lease_ms), ..ExecutorConfig::default() };
    let mut executor = Executor::new(Arc::clone(&store), executor_config);
    registry::register(&mut executor, Arc::clone(&slot));
    let executor = Arc::new(executor);
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {}: {e}; is another server running there? choose another --listen", config.listen)
    })?;
    let addr = listener.local_addr()?;
    // Announced to agents and proxies: the configured public URL, else
    // the address we got (a `:0` listen gets its port only now).
    let scheme = if config.tls { "https" } else { "http" };
    let url = config.public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
    let secrets = secrets::platform_key(store.as_ref(), &config.secret_key_file()).await?;
    // Agents and other servers are reached over TLS with the platform's
    // CAs, and agents take orders only from a holder of one of their
    // certificates.
    let platform = platform::Platform::new(url);
    let pki = pki::Pki::start(store.as_ref(), &secrets, &config, addr, &platform.id).await?;
    let tls_config = match config.tls {
        true => {
            // Client certificates are asked for, checked when given, and
            // required only where the caller is one of ours (agents).
            let roots = atoll_client::platform_roots().ok_or_else(|| anyhow::anyhow!("the platform's CA is not trusted"))?;
            Some(Arc::new(atoll_pki::live_server_config(Arc::clone(&pki.api_cert), Some(&roots))?))
        }
        false => None,
    };
    let monitoring = monitoring::Monitoring::open(&config).await?;
    let smtp = alerting::mail::Smtp::from_config(&config)?;
    let state = AppState::new(
        store,
        Inner {
            executor: Arc::clone(&executor),
            config: config.clone(),
            metrics,
            secrets,
            routing: tokio::sync::watch::Sender::new(0),
            platform,
            beats: beats::Beats::default(),
            monitoring,
            deliveries: alerting::Deliveries::new(smtp),
            refusals: Default::default(),
            pki: Arc::new(pki),
        },
    );
    let _ = slot.set(state.clone());

    let admin_password = auth::bootstrap_admin(&state).await?;
    match secrets::seal_clear_server_tokens(state.store.as_ref(), &state.secrets).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(hosts = n, "sealed server tokens an older version kept in clear"),
        Err(e) => tracing::warn!(error = %e, "cannot seal the server tokens kept in clear; trying at the next start"),
    }
    tracing::info!(%addr, metadb = state.store.backend(), executor = executor.owner(), "server listening");

    tokio::spawn(tls::renew(state.clone(), addr, shutdown.clone()));
    tokio::spawn(pki::run(state.clone(), shutdown.clone()));
    tokio::spawn(Arc::clone(&executor).run(shutdown.clone()));
    tokio::spawn(platform::run(state.clone(), shutdown.clone()));
    tokio::spawn(beats::run(state.clone(), shutdown.clone()));
    tokio::spawn(liveness::run(state.clone(), shutdown.clone()));
    tokio::spawn(clusters::channels::run(state.clone(), shutdown.clone()));
    let monitoring = tokio::spawn(monitoring::run(state.clone(), shutdown.clone()));
    tokio::spawn(alerting::run(state.clone(), shutdown.clone()));
    let app = router(state.clone(), replica);
    let done = tokio::spawn(async move {
        let stop = shutdown.cancelled_owned();
        match tls_config {
            Some(config) => {
                // Handlers read the peer's address as a `SocketAddr`; TLS
                // connections carry whether the peer proved itself too.
                let app = app.layer(axum::middleware::from_fn(tls_peer_addr));
                let service = app.into_make_service_with_connect_info::<atoll_pki::TlsPeer>();
                axum::serve(atoll_pki::TlsListener::new(listener, config)?, service).with_graceful_shutdown(stop).await?
            }
            None => {
                let service = app.into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(listener, service).with_graceful_shutdown(stop).await?
            }
        }
        // MonitorDB's last flush: the samples since the previous one.
        if tokio::time::timeout(std::time::Duration::from_secs(10), monitoring).await.is_err() {
            tracing::warn!("MonitorDB's last flush did not finish within 10 s; recent samples are lost");
        }
        Ok(())
    });
    let ca_fingerprint = state.pki.now().issuer_fingerprint.clone();
    Ok(Running { addr, url: state.platform.url.clone(), ca_fingerprint, admin_password, state, done })
}

/// Writes a file anyone may read (the CA certificate), atomically.
pub(crate) fn write_public(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/ca.pem", get(ca_pem))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api::router())
        .merge(agents::router())
        .merge(console::router())
        .layer(axum::middleware::from_fn(deadline::bound))
        .with_state(state)
}

/// The CAs this server trusts, the issuing one first (its fingerprint is
/// what agents and CLIs pin).
async fn ca_pem(State(state): State<AppState>) -> String {
    state.pki.now().bundle.clone()
}

/// Adds the TLS peer's address as the `ConnectInfo<SocketAddr>` every
/// handler reads.
async fn tls_peer_addr(mut req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    if let Some(axum::extract::ConnectInfo(peer)) = req.extensions().get::<axum::extract::ConnectInfo<atoll_pki::TlsPeer>>().copied() {
        req.extensions_mut().insert(axum::extract::ConnectInfo(peer.addr));
    }
    next.run(req).await
}

/// Every route, and with a MetaDB replica, the same routes reading from
/// it for reads MetaDB refuses.
fn router(state: AppState, replica: Option<Arc<dyn MetaStore>>) -> Router {
    let mut app = routes(state.clone());
    if let Some(replica) = replica {
        app = app.layer(axum::middleware::from_fn_with_state(routes(state.reading_from(replica)), replica::fallback));
    }
    app.layer(axum::middleware::from_fn(metrics_layer::track))
}

#[derive(serde::Deserialize)]
struct ReadyQuery {
    /// `reads`: ready to answer reads, even while MetaDB takes no writes.
    #[serde(rename = "for")]
    purpose: Option<String>,
}

/// Ready when MetaDB answers, within the time a load balancer's health
/// check waits, and took this server's last write (a full disk or a
/// read-only MetaDB fails changes; `?for=reads` asks about reads only).
async fn readyz(State(state): State<AppState>, axum::extract::Query(q): axum::extract::Query<ReadyQuery>) -> impl IntoResponse {
    match tokio::time::timeout(READY_WITHIN, state.store.ping()).await {
        Ok(Ok(())) => match state.platform.write_error() {
            Some(e) if q.purpose.as_deref() != Some("reads") => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("metadata store takes no writes: {e}; reads are answered (GET /readyz?for=reads)"),
            ),
            _ => (StatusCode::OK, "ready".to_string()),
        },
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("metadata store unavailable: {e}")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, format!("metadata store unavailable: no answer within {READY_WITHIN:?}")),
    }
}

const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus text format; host gauges are computed at scrape time.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // As of now, not of the last renewal: a server past its own deadline
    // has stopped acting even while its renewal still waits on MetaDB.
    metrics::gauge!("atoll_leader").set(if state.platform.leading().is_some() { 1.0 } else { 0.0 });
    if let Ok(Ok(counts)) = tokio::time::timeout(READY_WITHIN, state.store.count_hosts_by_status()).await {
        for status in [atoll_core::HostStatus::Online, atoll_core::HostStatus::Offline, atoll_core::HostStatus::Pending] {
            let n = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            metrics::gauge!("atoll_hosts", "status" => status.as_str()).set(n as f64);
        }
    }
    state.monitoring.record_stats();
    let mut text = state.metrics.render();
    if let Ok(Ok(platform)) = tokio::time::timeout(READY_WITHIN, platform_gauges(&state)).await {
        text.push_str(&platform);
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Gauges of the platform's view that come and go with hosts and clusters
/// (written here, not kept in the metrics registry, so a deleted host's
/// series ends). Per-host ones from the leader only: the others would
/// repeat them.
async fn platform_gauges(state: &AppState) -> anyhow::Result<String> {
    use std::fmt::Write;
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::new();
    out.push_str("# HELP atoll_cluster_status 1 for the cluster's current status as the platform derives it, 0 for the others.\n");
    out.push_str("# TYPE atoll_cluster_status gauge\n");
    for c in state.store.list_clusters().await? {
        for s in atoll_core::ClusterStatus::ALL {
            let v = u8::from(*s == c.status);
            writeln!(out, "atoll_cluster_status{{cluster=\"{}\",status=\"{}\"}} {v}", esc(&c.name), s.as_str())?;
        }
    }
    if state.platform.leading().is_some() {
        out.push_str("# HELP atoll_host_online 1 while the host's agent sends heartbeats, 0 once the platform counts it offline.\n");
        out.push_str("# TYPE atoll_host_online gauge\n");
        for h in state.store.list_host_summaries(&atoll_store::HostFilter::default()).await? {
            if h.status == atoll_core::HostStatus::Pending {
                continue;
            }
            let v = u8::from(h.status == atoll_core::HostStatus::Online);
            writeln!(out, "atoll_host_online{{host=\"{}\",zone=\"{}\"}} {v}", esc(&h.name), esc(h.zone.as_deref().unwrap_or("")))?;
        }
    }
    Ok(out)
}

//! `GET /api/v1/platform/check`: the seed's post-deployment check of the
//! platform itself. This server gathers what it sees (every server asked
//! directly, MetaDB's cluster, the nodes' agents and clocks); the rules
//! are `atoll_plan::platform`.

use std::time::Duration;

use atoll_api::ErrorBody;
use atoll_api::proxy::ProxyState;
use atoll_api::v1::PlatformCheckView;
use atoll_core::HostStatus;
use atoll_core::time::now_ms;
use atoll_plan::platform::{HostSeen, MetaDbSeen, PlatformSeen, ServerSeen, check_platform};
use axum::Json;
use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::clusters::{protect, view};
use crate::error::{ApiError, ApiResult};
use crate::platform::{CONTROLLERS, is_live};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(platform_check))
}

/// Every item passes on a healthy platform; each failure names the node
/// and the fix.
#[utoipa::path(get, path = "/api/v1/platform/check", tag = "platform", security(("bearer" = ["viewer"])), responses((status = 200, body = PlatformCheckView), (status = 401, body = ErrorBody)))]
async fn platform_check(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<PlatformCheckView>> {
    let now = now_ms();
    let records = state.store.list_platform_servers().await?;
    let lease = state.store.get_lease(CONTROLLERS).await?.filter(|l| l.expires_ms > now);
    // Servers serve HTTPS with the platform's CA when the platform does.
    let http = atoll_client::platform_http(reqwest::Client::builder().timeout(Duration::from_secs(3))).map_err(ApiError::Internal)?;
    let asks = records.iter().filter(|r| is_live(&state, r, now)).map(|r| {
        let http = http.clone();
        let url = r.url.clone();
        async move {
            let ok = |path: &'static str| {
                let req = http.get(format!("{url}{path}"));
                async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
            };
            (url.clone(), ok("/readyz").await, ok("/login").await)
        }
    });
    let answers = futures::future::join_all(asks).await;
    let servers = records
        .iter()
        .map(|r| {
            let (ready, console) = answers.iter().find(|(u, _, _)| *u == r.url).map_or((false, false), |(_, a, b)| (*a, *b));
            ServerSeen {
                url: r.url.clone(),
                version: r.version.clone(),
                live: is_live(&state, r, now),
                ready,
                console,
                errors_logged: r.errors_logged,
            }
        })
        // A restarted server's dead predecessor at the same URL is history.
        .filter(|s| s.live || !records.iter().any(|o| o.url == s.url && is_live(&state, o, now)))
        .collect();
    let metadb = match state.store.get_setting(protect::METADB_CLUSTER_SETTING).await? {
        Some(name) => match state.store.get_cluster(&name).await? {
            Some(c) => {
                let v = view::view_of(&state, &c, &view::host_names(&state).await?).await?;
                MetaDbSeen::Cluster {
                    name: v.name.clone(),
                    status: v.status.to_string(),
                    servers: v
                        .zones
                        .iter()
                        .flat_map(|z| &z.servers)
                        .map(|s| (s.name.clone(), s.host.clone(), s.state.to_string()))
                        .collect(),
                    proxies: v.proxies.iter().map(|p| (p.name.clone(), p.host.clone(), proxy_state(p.state))).collect(),
                }
            }
            None => return Err(ApiError::Internal(format!("MetaDB's cluster {name} is named in the settings but not recorded"))),
        },
        None => MetaDbSeen::Unmanaged { backend: state.store.backend().into() },
    };
    // The platform's nodes: the hosts of MetaDB's servers (looked up one
    // by one, not by listing a fleet of thousands); on one server every
    // host the platform knows.
    let hosts: Vec<HostSeen> = match &metadb {
        MetaDbSeen::Cluster { servers, .. } => {
            let mut nodes = Vec::new();
            for (_, host, _) in servers {
                if let Some(r) = state.store.find_host(host).await? {
                    let clock_offset_ms = r.host.facts.as_ref().and_then(|f| f.clock_offset_ms);
                    nodes.push(HostSeen { name: r.host.name, online: r.host.status == HostStatus::Online, clock_offset_ms });
                }
            }
            nodes
        }
        MetaDbSeen::Unmanaged { .. } => state
            .store
            .list_host_summaries(&Default::default())
            .await?
            .into_iter()
            .map(|h| HostSeen { name: h.name, online: h.status == HostStatus::Online, clock_offset_ms: h.clock_offset_ms })
            .collect(),
    };
    let seen = PlatformSeen {
        version: env!("CARGO_PKG_VERSION").into(),
        servers,
        hosts,
        metadb,
        leader: lease.map(|l| records.iter().find(|r| r.id == l.holder).map_or(l.holder.clone(), |r| r.url.clone())),
    };
    let profile =
        state.config.profile.parse::<atoll_plan::profile::ProfileName>().map_err(|e| ApiError::Internal(e.to_string()))?.profile();
    let results = check_platform(&seen, &profile);
    Ok(Json(PlatformCheckView { worst: atoll_plan::check::worst(&results), results, answered_by: state.platform.url.clone() }))
}

fn proxy_state(s: Option<ProxyState>) -> String {
    match s {
        Some(ProxyState::Running) => "running".into(),
        Some(other) => format!("{other:?}").to_lowercase(),
        None => "unknown (its agent has not reported lately)".into(),
    }
}

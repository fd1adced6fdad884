//! The platform's own servers: who is up and who runs the controllers.

use atoll_api::ErrorBody;
use atoll_api::v1::{LeaseView, PlatformServerView, PlatformView};
use atoll_core::time::now_ms;
use axum::Json;
use axum::extract::State;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::platform::{CONTROLLERS, is_live};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(platform))
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

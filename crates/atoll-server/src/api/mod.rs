//! `/api/v1`: the REST API, with its OpenAPI document generated from the
//! handlers themselves (utoipa-axum registers a route and its spec at once).

mod alerts;
mod audit;
mod auth;
mod check;
mod clusters;
mod hosts;
mod metrics;
mod packages;
mod platform;
mod routing;
mod tasks;
mod users;

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Atoll API", description = "Plan, deploy and operate highly-available MariaDB Galera clusters on your own hosts."),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

pub fn router() -> axum::Router<AppState> {
    let (router, spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(users::router())
        .merge(hosts::router())
        .merge(packages::router())
        .merge(tasks::router())
        .merge(audit::router())
        .merge(clusters::router())
        .merge(routing::router())
        .merge(platform::router())
        .merge(check::router())
        .merge(metrics::router())
        .merge(alerts::router())
        .split_for_parts();
    let spec = std::sync::Arc::new(spec);
    router.route("/api/v1/openapi.json", axum::routing::get(move || async move { Json(spec.as_ref().clone()) }))
}

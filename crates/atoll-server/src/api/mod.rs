//! `/api/v1`: the REST API, with its OpenAPI document generated from the
//! handlers themselves (utoipa-axum registers a route and its spec at once).
//!
//! Who may call a route is stated once, on its handler, in two forms that
//! must agree (`tests/api.rs` checks them against each other on a running
//! server): the extractor that enforces it (`Caller`, `Operator`, `Admin`)
//! and the role its `#[utoipa::path]` names as the bearer scheme's scope,
//! `security(("bearer" = ["operator"]))`: OpenAPI 3.1 lets a non-OAuth
//! scheme list "role names which are required for the execution". Without
//! a scope a route takes any logged-in caller, even one who must still set
//! a new password (only `/api/v1/auth/*`); `security(())` is public.
//!
//! A handler documents the statuses its own logic answers; the ones the
//! shared machinery answers on every route (credentials and roles, a body
//! or query string that does not parse, MetaDB unavailable, the request
//! deadline) are added to every operation by [`document_shared_responses`],
//! next to that machinery.

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

use atoll_api::ErrorBody;
use atoll_core::Role;
use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
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
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token (`POST /api/v1/auth/login`) or an API token (`POST /api/v1/tokens`). An operation's \
                         scope names the least role it needs: viewer < operator < admin.",
                    ))
                    .build(),
            ),
        );
    }
}

pub fn router() -> axum::Router<AppState> {
    let (router, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
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
    clusters::document_params(&mut spec);
    open_flattened(&mut spec);
    document_shared_responses(&mut spec);
    let spec = std::sync::Arc::new(spec);
    router
        .route("/api/v1/openapi.json", axum::routing::get(move || async move { Json(spec.as_ref().clone()) }))
        .layer(axum::middleware::map_response(json_errors))
}

/// A type that refuses unknown fields (`additionalProperties: false`)
/// flattened into another (`#[serde(flatten)]`, an `allOf`) would refuse
/// the other's fields too: inside an `allOf` it is inlined without that
/// rule, and keeps it where it stands alone (a request body).
fn open_flattened(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = spec.components.as_mut() else { return };
    let closed: Vec<(String, Schema)> = components
        .schemas
        .iter()
        .filter_map(|(name, schema)| match schema {
            RefOr::T(Schema::Object(o)) if matches!(o.additional_properties.as_deref(), Some(AdditionalProperties::FreeForm(false))) => {
                let mut open = o.clone();
                open.additional_properties = None;
                Some((format!("#/components/schemas/{name}"), Schema::Object(open)))
            }
            _ => None,
        })
        .collect();
    for schema in components.schemas.values_mut() {
        if let RefOr::T(Schema::AllOf(all)) = schema {
            for item in &mut all.items {
                if let RefOr::Ref(r) = item
                    && let Some((_, open)) = closed.iter().find(|(location, _)| *location == r.ref_location)
                {
                    *item = RefOr::T(open.clone());
                }
            }
        }
    }
}

/// Who may call an operation, read from its `security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    /// Any logged-in caller, even one who must set a new password first.
    LoggedIn,
    Role(Role),
}

fn access(op: &Operation) -> Access {
    let Some(requirements) = &op.security else { return Access::LoggedIn };
    let requirements = serde_json::to_value(requirements).unwrap_or_default();
    let requirements = requirements.as_array().map(Vec::as_slice).unwrap_or_default();
    if requirements.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) {
        return Access::Public;
    }
    let role = requirements.iter().filter_map(|r| r["bearer"].as_array()).flatten().find_map(|s| s.as_str()?.parse::<Role>().ok());
    role.map_or(Access::LoggedIn, Access::Role)
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

/// Adds to every operation the statuses the shared machinery may answer,
/// where its handler did not document them itself.
fn document_shared_responses(spec: &mut utoipa::openapi::OpenApi) {
    for item in spec.paths.paths.values_mut() {
        for (_, op) in operations(item) {
            let has_query = op.parameters.iter().flatten().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
            let mut shared = Vec::new();
            if op.request_body.is_some() || has_query {
                shared.push(("400", "the body or query string does not parse, or breaks the schema"));
            }
            match access(op) {
                Access::Public => {}
                Access::LoggedIn => shared.push(("401", "no credentials, or a session that expired or a token that is unknown")),
                Access::Role(_) => {
                    shared.push(("401", "no credentials, or a session that expired or a token that is unknown"));
                    shared.push(("403", "the caller lacks the role this needs, or must set a new password first"));
                }
            }
            shared.push(("503", "the platform's metadata store is unavailable; nothing was changed, retry"));
            shared.push((
                "504",
                "the metadata store stopped answering within the request's deadline: a change may or may not have been made",
            ));
            for (status, description) in shared {
                op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(description)
                            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
                            .build(),
                    )
                });
            }
        }
    }
}

/// Every error of `/api/v1` is an [`ErrorBody`], also the rejections axum
/// makes itself in plain text (a path that does not decode, a wrong
/// method).
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let reason = status.canonical_reason().unwrap_or("error");
    let body = ErrorBody {
        error: reason.to_lowercase().replace([' ', '-'], "_"),
        message: if text.is_empty() { reason.to_lowercase() } else { text },
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut out = Json(body).into_response();
    *out.status_mut() = status;
    for (k, v) in parts.headers.iter() {
        out.headers_mut().insert(k.clone(), v.clone());
    }
    out
}

//! The admin port: `/metrics` (Prometheus text) and `/status` (JSON,
//! [`crate::ProxyStatus`]), read by people, Prometheus and the agent.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::router::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/status", get(status)).with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.render_metrics())
}

async fn status(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    axum::Json(s.status())
}

//! Reads while MetaDB has no quorum. Galera refuses every statement on a
//! node outside the primary component, so without this a platform that
//! lost two of three MetaDB nodes could not even show what it manages.
//! A read the platform's store refuses (503) is answered again from this
//! node's MetaDB replica with dirty reads: its state when quorum was lost,
//! marked stale in a header. Changes are never sent there.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower::ServiceExt;

use atoll_client::STALE_HEADER;

pub async fn fallback(State(replica): State<Router>, req: Request, next: Next) -> Response {
    // Readiness must keep saying "not ready" while changes are refused.
    let eligible = matches!(*req.method(), Method::GET | Method::HEAD) && !matches!(req.uri().path(), "/readyz" | "/healthz" | "/metrics");
    let copy = if eligible { copy_of(&req) } else { None };
    let response = next.run(req).await;
    let Some(copy) = copy.filter(|_| response.status() == StatusCode::SERVICE_UNAVAILABLE) else { return response };
    match replica.oneshot(copy).await {
        Ok(mut stale) if stale.status() != StatusCode::SERVICE_UNAVAILABLE => {
            tracing::debug!("answered from the MetaDB replica: no quorum");
            stale.headers_mut().insert(STALE_HEADER, HeaderValue::from_static("metadb-without-quorum"));
            stale
        }
        _ => response,
    }
}

/// A body-less request's copy, with what handlers read from it.
fn copy_of(req: &Request) -> Option<Request> {
    let mut builder = Request::builder().method(req.method().clone()).uri(req.uri().clone()).version(req.version());
    for (name, value) in req.headers() {
        builder = builder.header(name, value);
    }
    let mut copy = builder.body(Body::empty()).ok()?;
    if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        copy.extensions_mut().insert(*peer);
    }
    Some(copy)
}

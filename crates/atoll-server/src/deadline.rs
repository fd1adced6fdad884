//! Every request ends within a bound, also when MetaDB stops answering
//! without closing the connection (a network cut drops packets: a query
//! would wait for TCP to give up, minutes later). A read past the bound
//! is refused as retryable; a change past it may or may not have been
//! made, and says so.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// How long a request may take, long-polls and file transfers aside.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

pub const OUTCOME_UNKNOWN: &str =
    "the platform's metadata store stopped answering during this change: it may or may not have been made; look before repeating it";

/// The bound for one request: file transfers stream for as long as they
/// need; a routing long-poll waits its own time first.
fn limit(req: &Request) -> Option<Duration> {
    let route = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    match route {
        Some("/agent/v1/packages/{sha256}") => None,
        Some("/api/v1/packages") if req.method() == Method::POST => None,
        Some("/api/v1/clusters/{name}/routing") if req.uri().query().is_some_and(|q| q.contains("wait_ms")) => {
            Some(crate::clusters::routing::MAX_WAIT + REQUEST_DEADLINE)
        }
        _ => Some(REQUEST_DEADLINE),
    }
}

pub async fn bound(req: Request, next: Next) -> Response {
    let Some(limit) = limit(&req) else { return next.run(req).await };
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) if read => ApiError::Unavailable(format!(
            "no answer within {} s: the platform's metadata store is not answering this server; retry, or use another server",
            limit.as_secs()
        ))
        .into_response(),
        Err(_) => ApiError::OutcomeUnknown(format!("{OUTCOME_UNKNOWN} (no answer within {} s)", limit.as_secs())).into_response(),
    }
}

//! Wire types of Atoll's HTTP APIs: `/api/v1` (users: CLI, console,
//! scripts), `/agent/v1` on the server (calls from agents) and `/agent/v1`
//! on an agent (calls from the server). Shared by every side so they cannot
//! drift apart; every request type refuses unknown fields.

pub mod agent;
pub mod alerts;
pub mod db;
pub mod metrics;
pub mod packages;
pub mod proxy;
pub mod routing;
pub mod v1;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `not_found`, `conflict`.
    pub error: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// Header carrying the agent's or server's bearer token.
pub const AUTHORIZATION: &str = "authorization";
/// Cookie holding a console session.
pub const SESSION_COOKIE: &str = "atoll_session";

//! The API's error type: each variant owns its HTTP status and code, and
//! its message tells the caller what to do.

use atoll_api::ErrorBody;
use atoll_store::StoreError;
use atoll_tasks::TaskError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Several things are wrong with a request; all are reported at once.
    #[error("the request has {} problem(s):\n- {}", .0.len(), .0.join("\n- "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    PasswordChangeRequired(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// A host or agent that should have answered did not.
    #[error("{0}")]
    BadGateway(String),
    /// MetaDB is unreachable or without quorum; nothing was changed and
    /// the request may be repeated (here or on another server).
    #[error("{0}")]
    Unavailable(String),
    /// A change was under way when MetaDB stopped answering: it may or may
    /// not have been made, so it must not be repeated blindly (clients do
    /// not resend a write on this status).
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::PasswordChangeRequired(_) => (StatusCode::FORBIDDEN, "password_change_required"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, "host_unreachable"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "metadb_unavailable"),
            Self::OutcomeUnknown(_) => (StatusCode::GATEWAY_TIMEOUT, "metadb_outcome_unknown"),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if status.is_server_error() {
            tracing::error!(code, error = %self, "request failed");
        }
        (status, Json(ErrorBody { error: code.into(), message: self.to_string() })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::Conflict(m),
            e if e.is_unavailable() => Self::Unavailable(format!(
                "the platform's metadata store is unavailable ({e}); nothing was changed: retry, or use another server"
            )),
            e if e.is_write_refused() => Self::Unavailable(format!(
                "the platform's metadata store takes no writes ({e}): its disk is full or it is read only; nothing was \
                 changed, reads still work. Free space (or make it writable) and retry"
            )),
            e if e.is_connection_lost() => Self::OutcomeUnknown(format!("{} ({e})", crate::deadline::OUTCOME_UNKNOWN)),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        match e {
            TaskError::NotFound(_) | TaskError::NoSuchStep { .. } => Self::NotFound(e.to_string()),
            TaskError::State(_) => Self::Conflict(e.to_string()),
            TaskError::Invalid(_) => Self::BadRequest(e.to_string()),
            TaskError::Store(s) => s.into(),
        }
    }
}

/// JSON body extractor whose rejections are [`ApiError`]s with the serde
/// message (which names the unknown or missing field).
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rej) => Err(ApiError::BadRequest(format!("invalid request body: {}", rej.body_text()))),
        }
    }
}

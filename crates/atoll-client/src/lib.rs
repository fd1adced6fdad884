//! Typed HTTP client for the server's API (used by the CLI, the agent and
//! the tests) and for an agent's API (used by the server).

use std::time::Duration;

use atoll_api::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

pub use atoll_api as api;

#[derive(Debug, Error)]
pub enum ClientError {
    /// The peer answered with an error; `message` is its explanation.
    #[error("{message} (HTTP {status}, {code})")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("unexpected answer from {url}: {detail}")]
    Decode { url: String, detail: String },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One peer (a server or an agent) and the bearer token to present to it.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self::with_timeout(base, token, Duration::from_secs(30))
    }

    /// A client whose every request gives up after `timeout`.
    pub fn with_timeout(base: &str, token: Option<String>, timeout: Duration) -> Self {
        let http =
            reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(3).min(timeout)).build().unwrap_or_default();
        Self { http, base: base.trim_end_matches('/').to_string(), token }
    }

    /// The same peer and token, with another overall timeout (an upload
    /// of a large file needs more than an API call).
    pub fn with_request_timeout(&self, timeout: Duration) -> Self {
        Self::with_timeout(&self.base, self.token.clone(), timeout)
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None::<&()>).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::DELETE, path, None::<&()>).await
    }

    pub async fn send<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(url, req).await
    }

    /// Sends a file as the raw request body, streamed from disk (a package
    /// tarball may be larger than memory should hold).
    pub async fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: tokio::fs::File,
        len: u64,
        content_type: &str,
    ) -> Result<T, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::from(file));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.finish(url, req).await
    }

    /// Starts a GET whose body the caller reads chunk by chunk
    /// (`Response::chunk`); an error answer is decoded as for [`Self::send`].
    pub async fn get_streaming(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: describe(&e) })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: describe(&e) })?;
        Err(api_error(status, &bytes))
    }

    async fn finish<T: DeserializeOwned>(&self, url: String, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: describe(&e) })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: describe(&e) })?;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes).map_err(|e| ClientError::Decode { url, detail: e.to_string() })
    }
}

/// An error answer: the peer's [`ErrorBody`], or the start of whatever it
/// sent instead.
fn api_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) => ClientError::Api { status: status.as_u16(), code: b.error, message: b.message },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"),
            message: String::from_utf8_lossy(bytes).trim().chars().take(500).collect(),
        },
    }
}

/// The innermost cause, which is what a user can act on ("connection
/// refused"), rather than reqwest's outer wrapper.
fn describe(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if e.is_timeout() { format!("timed out ({source})") } else { source.to_string() }
}

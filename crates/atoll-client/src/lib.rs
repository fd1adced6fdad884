//! Typed HTTP client for the server's API (used by the CLI, the agent and
//! the tests) and for an agent's API (used by the server).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
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

/// The platform servers a client may talk to, and the one it uses now.
/// Shared by clones: when one request moves to another server, the next
/// ones start there.
#[derive(Debug, Clone)]
pub struct Servers(Arc<ServersInner>);

#[derive(Debug)]
struct ServersInner {
    urls: RwLock<Vec<String>>,
    current: AtomicUsize,
}

impl Servers {
    /// `urls` in order of preference; trailing slashes are dropped.
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Self {
        let urls = urls.iter().map(|u| u.as_ref().trim_end_matches('/').to_string()).collect();
        Self(Arc::new(ServersInner { urls: RwLock::new(urls), current: AtomicUsize::new(0) }))
    }

    /// Every URL, the current one first.
    pub fn all(&self) -> Vec<String> {
        let urls = self.urls();
        let n = urls.len().max(1);
        let start = self.0.current.load(Ordering::Relaxed) % n;
        urls.iter().cycle().skip(start).take(urls.len()).cloned().collect()
    }

    /// The server requests go to first.
    pub fn current(&self) -> String {
        self.all().into_iter().next().unwrap_or_default()
    }

    /// Takes a fresh list (from the platform), staying on the current
    /// server when it is still listed. An empty list changes nothing.
    pub fn replace<S: AsRef<str>>(&self, urls: &[S]) {
        let fresh: Vec<String> = urls.iter().map(|u| u.as_ref().trim_end_matches('/').to_string()).collect();
        if fresh.is_empty() {
            return;
        }
        let current = self.current();
        let at = fresh.iter().position(|u| *u == current).unwrap_or(0);
        if let Ok(mut urls) = self.0.urls.write() {
            *urls = fresh;
        }
        self.0.current.store(at, Ordering::Relaxed);
    }

    fn urls(&self) -> Vec<String> {
        self.0.urls.read().map(|u| u.clone()).unwrap_or_default()
    }

    fn moved_to(&self, url: &str) {
        if let Some(at) = self.urls().iter().position(|u| u == url) {
            self.0.current.store(at, Ordering::Relaxed);
        }
    }
}

/// A peer (a server or an agent) and the bearer token to present to it.
/// Over several servers, a request that could not have been applied (no
/// connection, or a 503 from a server that cannot reach MetaDB) is sent to
/// the next; the caller sees an error only when every server failed.
#[derive(Debug, Clone)]
pub struct Client {
    /// Why there is none, when the builder failed: every request then
    /// fails with it, rather than going out on a client without timeouts.
    http: Result<reqwest::Client, String>,
    servers: Servers,
    token: Option<String>,
    timeout: Duration,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self::with_timeout(base, token, Duration::from_secs(30))
    }

    /// A client whose every request gives up after `timeout`.
    pub fn with_timeout(base: &str, token: Option<String>, timeout: Duration) -> Self {
        Self::over(&Servers::new(&[base]), token, timeout)
    }

    /// A client over several servers that fails over between them.
    pub fn over(servers: &Servers, token: Option<String>, timeout: Duration) -> Self {
        atoll_pki::install_provider();
        let http = platform_http(reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(3).min(timeout)));
        Self { http, servers: servers.clone(), token, timeout }
    }

    /// The same peers and token, with another overall timeout (an upload
    /// of a large file needs more than an API call).
    pub fn with_request_timeout(&self, timeout: Duration) -> Self {
        Self::over(&self.servers, self.token.clone(), timeout)
    }

    /// The server requests go to first.
    pub fn base(&self) -> String {
        self.servers.current()
    }

    pub fn servers(&self) -> &Servers {
        &self.servers
    }

    /// The overall timeout of each request.
    pub fn timeout(&self) -> Duration {
        self.timeout
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

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::DELETE, path, None::<&()>).await
    }

    pub async fn send<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T, ClientError> {
        let bases = self.servers.all();
        let mut last = None;
        for (i, base) in bases.iter().enumerate() {
            let url = format!("{base}{path}");
            let mut req = self.http(&url)?.request(method.clone(), &url);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            // A write is repeated only when the server cannot have acted
            // on it; a read after any transport error or server-side
            // failure too (its MetaDB connection may have broken under it).
            let repeatable = |f: &Failure| match f {
                Failure::NotApplied(_) => true,
                Failure::Other(ClientError::Unreachable { .. }) => method == Method::GET,
                Failure::Other(ClientError::Api { status, .. }) => method == Method::GET && *status >= 500,
                Failure::Other(ClientError::Decode { .. }) => false,
            };
            match self.finish(url, req).await {
                Err(f) if i + 1 < bases.len() && repeatable(&f) => {
                    let e = f.into_error();
                    tracing::debug!(server = %base, error = %e, "server did not take the request; trying the next");
                    last = Some(e);
                }
                Err(f) => return Err(f.into_error()),
                Ok(v) => {
                    if i > 0 {
                        tracing::info!(server = %base, "moved to another platform server");
                        self.servers.moved_to(base);
                    }
                    return Ok(v);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Unreachable { url: path.to_string(), detail: "no server configured".into() }))
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
        let url = format!("{}{}", self.base(), path);
        let mut req = self
            .http(&url)?
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::from(file));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        self.finish(url, req).await.map_err(Failure::into_error)
    }

    /// Starts a GET whose body the caller reads chunk by chunk
    /// (`Response::chunk`); an error answer is decoded as for [`Self::send`].
    pub async fn get_streaming(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.base(), path);
        let mut req = self.http(&url)?.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable { url: url.clone(), detail: describe(&e) })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = read_limited(resp, &url).await?;
        Err(api_error(status, &bytes))
    }

    fn http(&self, url: &str) -> Result<&reqwest::Client, ClientError> {
        self.http.as_ref().map_err(|e| ClientError::Unreachable { url: url.to_string(), detail: e.clone() })
    }

    async fn finish<T: DeserializeOwned>(&self, url: String, req: reqwest::RequestBuilder) -> Result<T, Failure> {
        let resp = req.send().await.map_err(|e| {
            let error = ClientError::Unreachable { url: url.clone(), detail: describe(&e) };
            // Only a refused or failed connection proves the peer never
            // saw the request; a timeout after sending proves nothing.
            if e.is_connect() { Failure::NotApplied(error) } else { Failure::Other(error) }
        })?;
        if resp.headers().contains_key(STALE_HEADER) {
            STALE_SEEN.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let status = resp.status();
        let bytes = read_limited(resp, &url).await.map_err(Failure::Other)?;
        if !status.is_success() {
            let error = api_error(status, &bytes);
            // Our servers answer 503 only before changing anything (MetaDB
            // unreachable or without quorum).
            return Err(if status == StatusCode::SERVICE_UNAVAILABLE { Failure::NotApplied(error) } else { Failure::Other(error) });
        }
        let bytes = if status == StatusCode::NO_CONTENT || bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes).map_err(|e| Failure::Other(ClientError::Decode { url, detail: e.to_string() }))
    }
}

/// What this process's clients use for TLS: the platform CAs it trusts
/// and the certificate it presents, both live ([`atoll_pki::LiveClientTls`]),
/// so the configuration is built once and every client made from it
/// follows a renewal or a CA rotation.
#[derive(Default)]
struct TlsState {
    cas: Vec<String>,
    live: Option<atoll_pki::LiveClientTls>,
    /// Presented once a CA is trusted (servers issue their own first).
    identity: Option<atoll_pki::CertKey>,
}

static TLS: std::sync::LazyLock<std::sync::RwLock<TlsState>> = std::sync::LazyLock::new(Default::default);

fn tls_state() -> std::sync::RwLockWriteGuard<'static, TlsState> {
    TLS.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TlsState {
    fn apply(&mut self) -> Result<bool, atoll_pki::PkiError> {
        let bundle = self.cas.concat();
        match &self.live {
            Some(live) => live.trust(&bundle),
            None => {
                let live = atoll_pki::LiveClientTls::new(&bundle)?;
                if let Some(own) = &self.identity {
                    live.present(Some(own))?;
                }
                self.live = Some(live);
                Ok(true)
            }
        }
    }
}

/// Trusts `ca_pem` (the platform's CA certificate, or a bundle of them)
/// for this process's clients, besides what it trusted before, and no
/// other authority: a process talks to one platform. Called at start by
/// the CLI, agents and proxies.
pub fn trust_platform_ca(ca_pem: &str) -> Result<(), atoll_pki::PkiError> {
    atoll_pki::certs(ca_pem, "the platform's CA certificate")?;
    let mut tls = tls_state();
    if !tls.cas.iter().any(|c| c == ca_pem) {
        tls.cas.push(ca_pem.to_string());
        tls.apply()?;
    }
    Ok(())
}

/// Trusts exactly the CAs of `bundle_pem` from the next handshake on (a
/// CA rotation adds the new CA, then drops the old); whether anything
/// changed.
pub fn trust_only(bundle_pem: &str) -> Result<bool, atoll_pki::PkiError> {
    atoll_pki::certs(bundle_pem, "the platform's CA bundle")?;
    let mut tls = tls_state();
    tls.cas = vec![bundle_pem.to_string()];
    tls.apply()
}

/// The roots this process trusts, once it trusts any: a listener that
/// checks client certificates shares them, so a rotation reaches both.
pub fn platform_roots() -> Option<std::sync::Arc<atoll_pki::LiveRoots>> {
    TLS.read().unwrap_or_else(std::sync::PoisonError::into_inner).live.as_ref().map(|l| std::sync::Arc::clone(l.roots()))
}

/// The platform's CA for `https://` servers, from what the user gave:
/// `ca_file` (checked against `pinned` when both are given); else `saved`
/// (kept by an earlier start or login) when nothing is pinned or it is the
/// pinned one; else fetched from the servers and checked against `pinned`.
/// `None`: nothing given and nothing saved (the caller says how to give it).
pub async fn platform_ca(
    servers: &[String],
    ca_file: Option<&std::path::Path>,
    pinned: Option<&str>,
    saved: Option<String>,
) -> Result<Option<String>, String> {
    let pinned = pinned.map(normalise_fingerprint);
    if let Some(file) = ca_file {
        let from = format!("--ca-file {}", file.display());
        let pem = std::fs::read_to_string(file).map_err(|e| format!("cannot read {from}: {e}"))?;
        let got = atoll_pki::fingerprint(&pem).map_err(|e| format!("{from}: {e}"))?;
        if let Some(want) = pinned.filter(|w| *w != got) {
            return Err(format!(
                "{from} holds the CA {got}, not the pinned {want}: check --ca-fingerprint (the server prints its CA's at start)"
            ));
        }
        return Ok(Some(pem));
    }
    let is_pinned = |pem: &String| atoll_pki::fingerprint(pem).is_ok_and(|got| pinned.as_ref().is_none_or(|w| *w == got));
    if let Some(pem) = saved.filter(is_pinned) {
        return Ok(Some(pem));
    }
    match pinned {
        Some(want) => fetch_pinned_ca(servers, &want).await.map(Some),
        None => Ok(None),
    }
}

/// Asks the servers for the platform's CA (`/ca.pem`) over a connection
/// that cannot be verified yet, and returns it only when its fingerprint
/// is `pinned`: someone in between can hand out another CA, never this one.
/// The error names what each server offered.
pub async fn fetch_pinned_ca(servers: &[String], pinned: &str) -> Result<String, String> {
    atoll_pki::install_provider();
    let want = normalise_fingerprint(pinned);
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut failures = Vec::new();
    for url in servers {
        let got = async {
            let resp = http.get(format!("{}/ca.pem", url.trim_end_matches('/'))).send().await.map_err(|e| describe(&e))?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status()));
            }
            resp.text().await.map_err(|e| describe(&e))
        }
        .await;
        match got.and_then(|pem| atoll_pki::fingerprint(&pem).map(|f| (pem, f)).map_err(|e| e.to_string())) {
            Ok((pem, f)) if f == want => return Ok(pem),
            Ok((_, f)) => {
                failures.push(format!("{url} offered the CA {f}, not the pinned {want} (another platform, or someone in between)"))
            }
            Err(e) => failures.push(format!("{url}: {e}")),
        }
    }
    Err(format!("cannot get the platform's CA: {}", failures.join("; ")))
}

/// `sha256:` plus lowercase hex, however it was pasted (`AB:CD`, no prefix).
pub fn normalise_fingerprint(fingerprint: &str) -> String {
    let hex: String = fingerprint.trim().trim_start_matches("sha256:").chars().filter(|c| *c != ':').collect();
    format!("sha256:{}", hex.to_ascii_lowercase())
}

/// Presents `own` (a certificate of the platform's CA) on this process's
/// TLS connections from the next handshake on: how servers and agents
/// prove themselves to each other (mutual TLS). Replaces an earlier one.
pub fn present_certificate(own: &atoll_pki::CertKey) -> Result<(), atoll_pki::PkiError> {
    let mut tls = tls_state();
    if let Some(live) = &tls.live {
        live.present(Some(own))?;
    }
    tls.identity = Some(own.clone());
    Ok(())
}

/// Presents no certificate any more: a process that ran a server for a
/// while (`atoll deploy`'s bootstrap server) and goes on as a client.
pub fn present_no_certificate() {
    let mut tls = tls_state();
    if let Some(live) = &tls.live {
        let _ = live.present(None);
    }
    tls.identity = None;
}

/// The TLS configuration this process's clients use; `None` until a CA
/// is trusted (plain HTTP, or the system's roots for other HTTPS).
pub fn tls_config() -> Result<Option<rustls::ClientConfig>, atoll_pki::PkiError> {
    Ok(TLS.read().unwrap_or_else(std::sync::PoisonError::into_inner).live.as_ref().map(|l| l.config()))
}

/// `builder` finished with [`tls_config`]: a raw HTTP client for the
/// platform's own endpoints (metrics, readiness) that speaks to its
/// HTTPS servers as [`Client`] does.
pub fn platform_http(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    let builder = match tls_config().map_err(|e| format!("cannot use the platform's CA certificate: {e}"))? {
        Some(tls) => builder.tls_backend_preconfigured(tls),
        None => builder,
    };
    builder.build().map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// The largest answer read into memory (listings of thousands of hosts
/// stay far below); larger ones are refused instead of exhausting memory.
pub const MAX_BODY: usize = 64 << 20;

/// The body of `resp`, up to [`MAX_BODY`] bytes.
async fn read_limited(mut resp: reqwest::Response, url: &str) -> Result<Vec<u8>, ClientError> {
    let unreachable = |detail: String| ClientError::Unreachable { url: url.to_string(), detail };
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ClientError::Decode { url: url.to_string(), detail: format!("answer larger than {} MiB", MAX_BODY >> 20) });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(describe(&e)))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ClientError::Decode { url: url.to_string(), detail: format!("answer larger than {} MiB", MAX_BODY >> 20) });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A server sets it on a read answered from its MetaDB replica while
/// MetaDB has no quorum.
pub const STALE_HEADER: &str = "atoll-stale";

static STALE_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether any answer in this process came from a MetaDB replica without
/// quorum (possibly stale), so a command can say so once at its end.
pub fn stale_reads_seen() -> bool {
    STALE_SEEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why a request failed, and whether another server may safely take it.
enum Failure {
    NotApplied(ClientError),
    Other(ClientError),
}

impl Failure {
    fn into_error(self) -> ClientError {
        match self {
            Failure::NotApplied(e) | Failure::Other(e) => e,
        }
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
/// A failed request in words: the innermost cause (connection refused,
/// timed out), not reqwest's "error sending request".
pub fn describe(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    let text = if e.is_timeout() { format!("timed out ({source})") } else { source.to_string() };
    if text.contains("UnknownIssuer") {
        return format!(
            "{text}: the server's certificate is not from a CA this client trusts. If the platform's CA was rotated, log in again \
             with the new fingerprint (`atoll login --ca-fingerprint …`, shown by `atoll platform ca` and in a server's \
             DATA_DIR/ca.pem) or give the new CA file"
        );
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn fingerprints_are_compared_as_people_paste_them() {
        assert_eq!(normalise_fingerprint(" sha256:AB:CD "), "sha256:abcd");
        assert_eq!(normalise_fingerprint("abcd"), "sha256:abcd");
    }

    /// A peer that answers every request with `head` and then `body_len`
    /// bytes of `x`, streamed.
    async fn peer(head: String, body_len: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let head = head.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(head.as_bytes()).await;
                    let chunk = vec![b'x'; 1 << 20];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if s.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn oversized_answers_are_refused_not_buffered() {
        let declared =
            peer(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", MAX_BODY + 1), 0).await;
        let e = Client::new(&declared, None).get::<serde_json::Value>("/x").await.unwrap_err();
        assert!(e.to_string().contains("answer larger than 64 MiB"), "{e}");
        // No length given: read until the limit, then refused.
        let streamed = peer("HTTP/1.1 500 Internal Server Error\r\nconnection: close\r\n\r\n".into(), MAX_BODY + (1 << 20)).await;
        let e = Client::new(&streamed, None).get::<serde_json::Value>("/x").await.unwrap_err();
        assert!(e.to_string().contains("answer larger than 64 MiB"), "{e}");
    }
}

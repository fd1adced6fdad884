//! Engine packages on the server: tarballs kept in `DATA_DIR/packages/`
//! under their SHA-256, checked to hold a runnable build before they are
//! registered, and the task that pushes one to hosts (one step per host, in
//! parallel; the agent verifies the checksum while downloading).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use atoll_api::agent::HostOp;
use atoll_core::HostId;
use atoll_core::secret::Sha256Stream;
use atoll_store::{HostRecord, PackageRecord};
use atoll_tasks::{StepContext, StepError, StepHandler, StepSpec, TaskSpec};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::step_kit::{StateRef, agent_op, host_by_id, store_err};

pub const INSTALL: &str = "package.install";
/// How long a pushed build may take to show in its host's facts.
const FACTS_WAIT: Duration = Duration::from_secs(30);

/// `package.install`.
#[derive(Debug, Serialize, Deserialize)]
struct InstallParams {
    host: HostId,
    package: String,
    sha256: String,
    size: u64,
}

pub fn dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("packages")
}

/// Where the tarball with this checksum is kept.
pub fn file(state: &AppState, sha256: &str) -> PathBuf {
    dir(state).join(format!("{sha256}.tar.gz"))
}

/// What an uploaded tarball turned out to be.
pub struct Inspected {
    pub sha256: String,
    pub size: u64,
    pub files: atoll_engine::build::BuildFiles,
}

/// Removes a temporary upload unless it was kept.
#[derive(Debug)]
pub struct TempUpload(pub PathBuf);

impl Drop for TempUpload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How large an upload may be, and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// 2 GiB: MariaDB's binary tarballs are 80-400 MB.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 2 << 30;
/// An hour: 2 GiB at 5 Mbit/s.
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

impl Default for UploadLimits {
    fn default() -> Self {
        Self { max_bytes: DEFAULT_MAX_UPLOAD_BYTES, timeout: DEFAULT_UPLOAD_TIMEOUT }
    }
}

/// The limits this server applies to package uploads.
pub fn upload_limits(state: &AppState) -> UploadLimits {
    UploadLimits {
        max_bytes: state.config.package_max_mb << 20,
        timeout: std::time::Duration::from_secs(state.config.package_upload_timeout_s),
    }
}

/// Why an upload was not received.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Larger than the limit: 413.
    #[error("{0}")]
    TooLarge(String),
    /// Not received within the time limit: 408.
    #[error("{0}")]
    TimedOut(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl axum::response::IntoResponse for UploadError {
    fn into_response(self) -> axum::response::Response {
        use axum::http::StatusCode;
        let (status, code, message) = match self {
            UploadError::Api(e) => return e.into_response(),
            UploadError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
            UploadError::TimedOut(m) => (StatusCode::REQUEST_TIMEOUT, "request_timeout", m),
        };
        (status, axum::Json(atoll_api::ErrorBody { error: code.into(), message })).into_response()
    }
}

fn too_large(limits: &UploadLimits) -> UploadError {
    UploadError::TooLarge(format!(
        "the upload is larger than this server's limit of {} bytes ({} MiB, setting package_max_mb); nothing was stored",
        limits.max_bytes,
        limits.max_bytes >> 20
    ))
}

/// Refuses, before reading anything, a body whose announced length is
/// over the limit.
pub fn check_announced(length: Option<u64>, limits: &UploadLimits) -> Result<(), UploadError> {
    match length {
        Some(n) if n > limits.max_bytes => Err(too_large(limits)),
        _ => Ok(()),
    }
}

/// Streams a request body to a temporary file in the packages directory
/// (0700, apart from MetaDB's files), hashing it on the way; nothing is
/// held in memory. Stops, and keeps nothing, past `limits`.
pub async fn receive(state: &AppState, body: axum::body::Body, limits: UploadLimits) -> Result<(TempUpload, String, u64), UploadError> {
    receive_into(&dir(state), body.into_data_stream(), limits).await
}

async fn receive_into<S, E>(dir: &Path, mut stream: S, limits: UploadLimits) -> Result<(TempUpload, String, u64), UploadError>
where
    S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    tokio::fs::create_dir_all(dir).await.map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(|e| ApiError::Internal(format!("cannot restrict {}: {e}", dir.display())))?;
    }
    let temp = TempUpload(dir.join(format!(".upload-{}", uuid::Uuid::new_v4().simple())));
    let mut out = tokio::fs::File::create(&temp.0).await.map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
    let mut hasher = Sha256Stream::default();
    let mut size: u64 = 0;
    let deadline = tokio::time::Instant::now() + limits.timeout;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(chunk)) => chunk.map_err(|e| ApiError::BadRequest(format!("the upload broke off: {e}")))?,
            Ok(None) => break,
            Err(_) => {
                return Err(UploadError::TimedOut(format!(
                    "the upload did not finish within this server's limit of {} s ({size} bytes received); nothing was stored",
                    limits.timeout.as_secs()
                )));
            }
        };
        size += chunk.len() as u64;
        if size > limits.max_bytes {
            return Err(too_large(&limits));
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await.map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
    }
    out.sync_all().await.map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
    if size == 0 {
        return Err(ApiError::BadRequest("the upload is empty: send the tarball as the request body".into()).into());
    }
    Ok((temp, hasher.finish(), size))
}

/// Reads the archive's entry list (without extracting) and finds the build
/// in it; refuses, naming what is wrong, anything that is not a gzip tar
/// holding a build, or that has entries escaping the extraction directory.
pub async fn inspect(path: &Path, sha256: String, size: u64) -> ApiResult<Inspected> {
    let path = path.to_path_buf();
    let files = tokio::task::spawn_blocking(move || -> ApiResult<atoll_engine::build::BuildFiles> {
        let not_tar = |e: std::io::Error| ApiError::BadRequest(format!("the upload is not a gzip-compressed tar archive ({e})"));
        let f = std::fs::File::open(&path).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
        let mut names = Vec::new();
        for entry in archive.entries().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if atoll_engine::build::escapes(&name) {
                return Err(ApiError::BadRequest(format!("archive entry {name:?} would land outside the build directory")));
            }
            if entry.header().entry_type().is_file() || entry.header().entry_type().is_symlink() {
                names.push(name);
            }
        }
        atoll_engine::build::locate(names.iter().map(String::as_str))
            .map_err(|missing| ApiError::BadRequest(format!("the tarball is not an engine build: missing {}", missing.join("; "))))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("inspection aborted: {e}")))??;
    Ok(Inspected { sha256, size, files })
}

/// The version a file name carries: `mariadb-11.8.3-linux-x86_64` gives
/// `11.8.3`.
pub fn version_from_name(name: &str) -> Option<String> {
    name.split(['-', '_'])
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string())
}

/// The push task: one install step per host, all in parallel.
pub fn push_task(p: &PackageRecord, hosts: &[HostRecord]) -> TaskSpec {
    let steps = hosts
        .iter()
        .map(|h| {
            let params = InstallParams { host: h.host.id, package: p.name.clone(), sha256: p.sha256.clone(), size: p.size_bytes };
            let mut s =
                StepSpec::typed(format!("install@{}", h.host.name), INSTALL, format!("install {} on {}", p.name, h.host.name), &params);
            // A large build over a slow link.
            s.timeout = Duration::from_secs(1800);
            s
        })
        .collect();
    let names: Vec<&str> = hosts.iter().map(|h| h.host.name.as_str()).collect();
    TaskSpec {
        kind: "package.push".into(),
        title: format!("push {} to {}", p.name, names.join(", ")),
        target: p.name.clone(),
        params: json!({ "package": p.name, "sha256": p.sha256 }),
        steps,
    }
}

/// Has one host's agent install the build, then waits until its facts show
/// it, so a cluster can be created on it right after the task.
pub(crate) struct Install(pub(crate) StateRef);

#[async_trait]
impl StepHandler for Install {
    async fn run(&self, ctx: &StepContext) -> Result<Value, StepError> {
        let state = self.0.get()?;
        let InstallParams { host, package: name, sha256, size } = ctx.params()?;
        let host = host_by_id(state, host).await?;
        match state.store.get_package(&name).await.map_err(store_err)? {
            Some(p) if p.sha256 == sha256 => {}
            _ => return Err(StepError::fatal(format!("package {name} (sha256 {sha256}) is no longer registered; add it again and push"))),
        }
        let r = agent_op(ctx, state, &host, HostOp::PackageInstall { name: name.clone(), sha256: sha256.clone(), size }).await?;
        if r.detail["already_installed"].as_bool() == Some(true) {
            ctx.info(format!("{} already had {name}; nothing to do", host.host.name)).await;
        } else {
            ctx.info(format!("{} verified sha256 {sha256} and installed {name} in {}", host.host.name, r.detail["dir"])).await;
        }
        let deadline = tokio::time::Instant::now() + FACTS_WAIT;
        loop {
            let h = host_by_id(state, host.host.id).await?;
            let reported = h.host.facts.as_ref().and_then(|f| f.engine(&name)).is_some_and(|b| b.sha256.as_deref() == Some(&sha256));
            if reported {
                ctx.info(format!("{} reports {name} in its facts", host.host.name)).await;
                return Ok(r.detail);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(StepError::retryable(format!(
                    "{name} is installed on {}, but its facts do not show it after {} s; is its agent heartbeating?",
                    host.host.name,
                    FACTS_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chunks(n: usize, size: usize) -> impl futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Unpin {
        futures::stream::iter((0..n).map(move |_| Ok(axum::body::Bytes::from(vec![7u8; size]))))
    }

    #[tokio::test]
    async fn uploads_stop_at_the_size_and_time_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("packages");
        let limits = UploadLimits { max_bytes: 1000, timeout: Duration::from_secs(5) };
        let (temp, sha, size) = receive_into(&dir, chunks(10, 100), limits).await.unwrap();
        assert_eq!((size, sha.len()), (1000, 64));
        drop(temp);
        let err = receive_into(&dir, chunks(11, 100), limits).await.unwrap_err();
        assert!(matches!(err, UploadError::TooLarge(_)) && err.to_string().contains("limit of 1000 bytes"), "{err}");
        assert!(check_announced(Some(1001), &limits).is_err() && check_announced(None, &limits).is_ok());
        let slow = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
        let limits = UploadLimits { max_bytes: 1000, timeout: Duration::from_millis(100) };
        let err = receive_into(&dir, slow, limits).await.unwrap_err();
        assert!(matches!(err, UploadError::TimedOut(_)) && err.to_string().contains("did not finish within"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing kept");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn versions_from_file_names() {
        assert_eq!(super::version_from_name("mariadb-11.8.3-linux-systemd-x86_64").as_deref(), Some("11.8.3"));
        assert_eq!(super::version_from_name("mariadb-11.8").as_deref(), Some("11.8"));
        assert_eq!(super::version_from_name("custom-build"), None);
    }
}

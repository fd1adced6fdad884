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
pub struct TempUpload(pub PathBuf);

impl Drop for TempUpload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Streams a request body to a temporary file in the packages directory,
/// hashing it on the way; nothing is held in memory.
pub async fn receive(state: &AppState, body: axum::body::Body) -> ApiResult<(TempUpload, String, u64)> {
    let dir = dir(state);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let temp = TempUpload(dir.join(format!(".upload-{}", uuid::Uuid::new_v4().simple())));
    let mut out = tokio::fs::File::create(&temp.0).await.map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
    let mut hasher = Sha256Stream::default();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("the upload broke off: {e}")))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
    }
    out.sync_all().await.map_err(|e| ApiError::Internal(format!("cannot store the upload: {e}")))?;
    if size == 0 {
        return Err(ApiError::BadRequest("the upload is empty: send the tarball as the request body".into()));
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
mod tests {
    #[test]
    fn versions_from_file_names() {
        assert_eq!(super::version_from_name("mariadb-11.8.3-linux-systemd-x86_64").as_deref(), Some("11.8.3"));
        assert_eq!(super::version_from_name("mariadb-11.8").as_deref(), Some("11.8"));
        assert_eq!(super::version_from_name("custom-build"), None);
    }
}

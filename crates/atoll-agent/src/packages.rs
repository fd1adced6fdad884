//! Engine builds on this host: the system packages, and the package
//! tarballs the platform pushed, each extracted under
//! `DATA_DIR/engines/NAME/`.
//!
//! An install downloads the tarball from the server, checks its size and
//! SHA-256 while streaming it to a temporary file, extracts it into a
//! temporary directory and renames that into place: a build directory
//! exists only complete, with its `.atoll-build.json` record, and a
//! corrupted download leaves nothing behind. Installing a build that is
//! already there is a no-op; a different tarball under the same name is
//! refused rather than swapped under servers that may run it.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_client::Client;
use atoll_core::secret::Sha256Stream;
use atoll_core::{EngineBuild, HostFacts, SYSTEM_BUILD};
use atoll_engine::build::{self, BuildFiles};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::identity::Identity;
use crate::ops::OpError;

/// The record written into each installed build's directory.
const RECORD: &str = ".atoll-build.json";
/// A download may take this long in all.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// What an installed build's record says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    name: String,
    sha256: String,
    size: u64,
    /// The build's root inside the directory (`""` or `top/`).
    root: String,
    mariadbd: String,
    install_db: String,
    galera: String,
    messages_dir: Option<String>,
}

/// This agent's engine builds. Cheap to clone.
#[derive(Clone)]
pub struct Packages {
    data_dir: PathBuf,
    servers: atoll_client::Servers,
    /// Set by an install, taken by the heartbeat loop: the next beat
    /// carries facts, so the platform sees the new build at once.
    changed: Arc<AtomicBool>,
}

impl Packages {
    /// Builds live under `data_dir/engines`; tarballs come from `server`.
    pub fn new(data_dir: &Path, servers: atoll_client::Servers) -> Self {
        Self { data_dir: data_dir.to_path_buf(), servers, changed: Arc::new(AtomicBool::new(false)) }
    }

    fn engines_dir(&self) -> PathBuf {
        self.data_dir.join("engines")
    }

    /// Whether an install happened since the last call.
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }

    /// The host's facts with every engine build it can run. Blocking.
    pub fn collect_facts(&self) -> HostFacts {
        let mut f = crate::facts::collect();
        f.engines = system_build().into_iter().chain(installed(&self.engines_dir())).collect();
        f
    }

    /// Installs package `name` (tarball `sha256`, `size` bytes).
    pub async fn install(&self, name: &str, sha256: &str, size: u64) -> Result<Value, OpError> {
        if !atoll_core::valid_package_name(name) {
            return Err(OpError::Refused(format!("{name:?} is not a package name")));
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(OpError::Refused(format!("{sha256:?} is not a SHA-256 in lowercase hex")));
        }
        let engines = self.engines_dir();
        let target = engines.join(name);
        if let Some(existing) = read_record(&target) {
            if existing.sha256 == sha256 {
                tracing::info!(name, "engine build already installed");
                return Ok(json!({ "name": name, "dir": target.display().to_string(), "already_installed": true }));
            }
            return Err(OpError::Refused(format!(
                "engine build {name} on this host came from another tarball (sha256 {}); a build is never replaced under servers that may run it",
                existing.sha256
            )));
        }
        std::fs::create_dir_all(&engines).map_err(|e| OpError::Io(format!("cannot create {}: {e}", engines.display())))?;
        // Database servers run as `mysql` and load the build from here.
        let _ = std::fs::set_permissions(&engines, std::fs::Permissions::from_mode(0o755));
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let download = Cleanup(engines.join(format!(".download-{name}-{unique}.tar.gz")));
        self.download(sha256, size, &download.0).await?;
        let staging = Cleanup(engines.join(format!(".extract-{name}-{unique}")));
        let (archive, dir, record_name) = (download.0.clone(), staging.0.clone(), name.to_string());
        let sha = sha256.to_string();
        let record = tokio::task::spawn_blocking(move || extract(&archive, &dir, &record_name, &sha, size))
            .await
            .map_err(|e| OpError::Io(format!("extraction aborted: {e}")))??;
        std::fs::rename(&staging.0, &target).map_err(|e| OpError::Io(format!("cannot move the build to {}: {e}", target.display())))?;
        self.changed.store(true, Ordering::Release);
        let basedir = basedir(&target, &record.root);
        let version = version_of(&target.join(&record.mariadbd));
        tracing::info!(name, sha256, dir = %target.display(), version = version.as_deref().unwrap_or("unknown"), "engine build installed");
        Ok(json!({
            "name": name,
            "dir": target.display().to_string(),
            "basedir": basedir.display().to_string(),
            "version": version,
            "size": size,
            "already_installed": false,
        }))
    }

    /// Streams the tarball to `to`, checking size and checksum on the way.
    async fn download(&self, sha256: &str, size: u64, to: &Path) -> Result<(), OpError> {
        let identity = Identity::load_or_create(&self.data_dir).map_err(|e| OpError::Io(e.to_string()))?;
        let client = Client::over(&self.servers, identity.agent_token, DOWNLOAD_TIMEOUT);
        let mut resp = client.get_streaming(&format!("/agent/v1/packages/{sha256}")).await.map_err(|e| match e.status() {
            Some(s) if (400..500).contains(&s) => OpError::Refused(format!("the server refused the download: {e}")),
            _ => OpError::Io(format!("cannot download package {sha256}: {e}")),
        })?;
        let mut file = std::fs::File::create(to).map_err(|e| OpError::Io(format!("cannot create {}: {e}", to.display())))?;
        let mut hasher = Sha256Stream::default();
        let mut received: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(|e| OpError::Io(format!("download of {sha256} broke off: {e}")))? {
            received += chunk.len() as u64;
            if received > size {
                return Err(OpError::Refused(format!("package {sha256} is larger than the {size} bytes announced; download stopped")));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).map_err(|e| OpError::Io(format!("cannot write {}: {e}", to.display())))?;
        }
        file.sync_all().map_err(|e| OpError::Io(format!("cannot write {}: {e}", to.display())))?;
        let actual = hasher.finish();
        if received != size || actual != sha256 {
            return Err(OpError::Refused(format!(
                "checksum mismatch: expected sha256 {sha256} ({size} bytes), downloaded sha256 {actual} ({received} bytes); nothing was installed. \
                 The server's copy may be damaged: remove the package and add it again"
            )));
        }
        Ok(())
    }
}

/// Unpacks `archive` into `dir` (which must not exist) and writes the
/// build's record there. The tar crate refuses entries that would land
/// outside `dir`.
fn extract(archive: &Path, dir: &Path, name: &str, sha256: &str, size: u64) -> Result<Record, OpError> {
    let file = std::fs::File::open(archive).map_err(|e| OpError::Io(format!("cannot open {}: {e}", archive.display())))?;
    std::fs::create_dir(dir).map_err(|e| OpError::Io(format!("cannot create {}: {e}", dir.display())))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.unpack(dir).map_err(|e| OpError::Refused(format!("cannot extract package {name}: {e}")))?;
    let files = relative_files(dir);
    let found: BuildFiles = build::locate(files.iter().map(String::as_str))
        .map_err(|missing| OpError::Refused(format!("package {name} is not an engine build: missing {}", missing.join("; "))))?;
    let record = Record {
        name: name.to_string(),
        sha256: sha256.to_string(),
        size,
        root: found.root,
        mariadbd: found.mariadbd,
        install_db: found.install_db,
        galera: found.galera,
        messages_dir: found.messages_dir,
    };
    let bytes = serde_json::to_vec_pretty(&record).map_err(|e| OpError::Io(e.to_string()))?;
    // Never through a file or link of the tarball's own (one pointing at
    // /etc/passwd would have root overwrite it).
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(dir.join(RECORD))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => OpError::Refused(format!("package {name} holds a file named {RECORD}, which is Atoll's")),
            _ => OpError::Io(format!("cannot write the build record: {e}")),
        })?;
    f.write_all(&bytes).map_err(|e| OpError::Io(format!("cannot write the build record: {e}")))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| OpError::Io(e.to_string()))?;
    Ok(record)
}

/// Every file below `dir`, relative to it, with `/` separators.
fn relative_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(_) => {
                    if let Ok(rel) = path.strip_prefix(dir) {
                        out.push(rel.to_string_lossy().into_owned());
                    }
                }
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// The build's installation directory: its root inside `dir`.
fn basedir(dir: &Path, root: &str) -> PathBuf {
    match root.trim_end_matches('/') {
        "" => dir.to_path_buf(),
        sub => dir.join(sub),
    }
}

fn read_record(dir: &Path) -> Option<Record> {
    std::fs::read(dir.join(RECORD)).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// The installed builds whose files are all still there.
fn installed(engines: &Path) -> Vec<EngineBuild> {
    let Ok(entries) = std::fs::read_dir(engines) else { return Vec::new() };
    let mut builds: Vec<EngineBuild> = entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let r = read_record(&dir)?;
            let abs = |rel: &str| dir.join(rel);
            let complete = [&r.mariadbd, &r.install_db, &r.galera].iter().all(|f| abs(f).is_file());
            if !complete {
                tracing::warn!(dir = %dir.display(), "engine build is incomplete; not reported");
                return None;
            }
            let mariadbd = abs(&r.mariadbd);
            Some(EngineBuild {
                name: r.name,
                version: version_of(&mariadbd),
                basedir: Some(basedir(&dir, &r.root).display().to_string()),
                mariadbd: mariadbd.display().to_string(),
                install_db: abs(&r.install_db).display().to_string(),
                galera: abs(&r.galera).display().to_string(),
                messages_dir: r.messages_dir.map(|m| abs(&m).display().to_string()),
                sha256: Some(r.sha256),
            })
        })
        .collect();
    builds.sort_by(|a, b| a.name.cmp(&b.name));
    builds
}

/// The host's own MariaDB, when all three essential files are there: found
/// the way the precheck probes them, with the provider where the config
/// expects it.
fn system_build() -> Option<EngineBuild> {
    let mariadbd = crate::probe::find_binary("mariadbd")?;
    let install_db = crate::probe::find_binary("mariadb-install-db")?;
    let galera = crate::probe::find_binary(atoll_engine::PROVIDER)?;
    Some(EngineBuild {
        name: SYSTEM_BUILD.to_string(),
        version: version_of(&mariadbd),
        basedir: None,
        mariadbd: mariadbd.display().to_string(),
        install_db: install_db.display().to_string(),
        galera: galera.display().to_string(),
        messages_dir: None,
        sha256: None,
    })
}

/// `mariadbd --version`, remembered per binary (path, size and mtime), so
/// facts collected every few seconds do not start a process each time.
/// Run as the database user, never as root: the binary may come from an
/// uploaded package. Without that user, the version stays unknown.
fn version_of(mariadbd: &Path) -> Option<String> {
    /// (path, size, mtime) → version.
    type Versions = HashMap<(PathBuf, u64, i64), Option<String>>;
    static CACHE: Mutex<Option<Versions>> = Mutex::new(None);
    let meta = std::fs::metadata(mariadbd).ok()?;
    let key = (mariadbd.to_path_buf(), meta.len(), std::os::unix::fs::MetadataExt::mtime(&meta));
    if let Some(v) = CACHE.lock().ok()?.get_or_insert_with(HashMap::new).get(&key) {
        return v.clone();
    }
    let (uid, gid) = crate::ops::lookup_user("mysql")?;
    let version = std::process::Command::new(mariadbd)
        .uid(uid)
        .gid(gid)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| build::parse_version(&String::from_utf8_lossy(&o.stdout)));
    if let Ok(mut cache) = CACHE.lock() {
        cache.get_or_insert_with(HashMap::new).insert(key, version.clone());
    }
    version
}

/// Removes a temporary file or directory when dropped, whatever happened.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = if self.0.is_dir() { std::fs::remove_dir_all(&self.0) } else { std::fs::remove_file(&self.0) };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A tarball with the given files (path, contents).
    fn tarball(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("p.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn extracts_a_build_and_records_it() {
        let tmp = tempfile::tempdir().unwrap();
        let files: [(&str, &[u8]); 3] =
            [("sbin/mariadbd", b"#!/bin/sh\n"), ("bin/mariadb-install-db", b"#!/bin/sh\n"), ("lib/galera/libgalera_smm.so", b"x")];
        let archive = tarball(tmp.path(), &files);
        let engines = tmp.path().join("engines");
        std::fs::create_dir(&engines).unwrap();
        let dir = engines.join("b1");
        let r = extract(&archive, &dir, "b1", &"a".repeat(64), 10).unwrap();
        assert_eq!((r.mariadbd.as_str(), r.galera.as_str()), ("sbin/mariadbd", "lib/galera/libgalera_smm.so"));
        let builds = installed(&engines);
        assert_eq!(builds.len(), 1);
        assert_eq!(builds[0].basedir.as_deref(), Some(dir.to_str().unwrap()));
        assert_eq!(builds[0].sha256.as_deref(), Some("a".repeat(64).as_str()));
        // A build missing a file is not reported.
        std::fs::remove_file(dir.join("bin/mariadb-install-db")).unwrap();
        assert!(installed(&engines).is_empty());
    }

    #[test]
    fn a_tarball_without_mariadbd_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tarball(tmp.path(), &[("bin/mariadb-install-db", b"x"), ("libgalera_smm.so", b"x")]);
        let err = extract(&archive, &tmp.path().join("x"), "b1", &"a".repeat(64), 1).unwrap_err().to_string();
        assert!(err.contains("missing mariadbd"), "{err}");
    }
}

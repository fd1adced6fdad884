//! Host operations with exactly-once effect. Each request carries a key (the
//! task step's idempotency key); the first request with a key acts and
//! journals the result, every repeat gets the journaled result back. A task
//! step resumed after its server died therefore never acts twice.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use atoll_api::agent::{HostOp, OpJournalEntry, OpResult};
use atoll_core::time::now_ms;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::db::{DbError, Supervisor};
use crate::files::{Owner, write_atomic};
use crate::identity::sha256_hex;

pub struct Journal {
    dir: PathBuf,
    /// Serialises operations: they are few and short, and one lock makes
    /// "check the journal, act, record" atomic.
    lock: Mutex<()>,
    /// Runs the `Db*` operations; without it they are refused.
    db: Option<Supervisor>,
    /// Runs the `Proxy*` operations; without it they are refused.
    proxies: Option<crate::proxies::Proxies>,
    /// Installs engine builds (`PackageInstall`); without it they are refused.
    packages: Option<crate::packages::Packages>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

impl Journal {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("ops");
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        // Operations carry secrets (a proxy's token): the agent's alone.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| anyhow::anyhow!("cannot restrict {}: {e}", dir.display()))?;
        Ok(Self { dir, lock: Mutex::new(()), db: None, proxies: None, packages: None })
    }

    /// Lets the journal run database operations through `db`.
    pub fn with_db(mut self, db: Supervisor) -> Self {
        self.db = Some(db);
        self
    }

    /// Lets the journal run proxy operations through `proxies`.
    pub fn with_proxies(mut self, proxies: crate::proxies::Proxies) -> Self {
        self.proxies = Some(proxies);
        self
    }

    fn proxies(&self) -> Result<&crate::proxies::Proxies, OpError> {
        self.proxies.as_ref().ok_or_else(|| OpError::Refused("this agent does not run proxies".into()))
    }

    /// Lets the journal install engine builds through `packages`.
    pub fn with_packages(mut self, packages: crate::packages::Packages) -> Self {
        self.packages = Some(packages);
        self
    }

    /// The engine builds, when this journal installs them.
    pub(crate) fn packages(&self) -> Option<&crate::packages::Packages> {
        self.packages.as_ref()
    }

    fn db(&self) -> Result<&Supervisor, OpError> {
        self.db.as_ref().ok_or_else(|| OpError::Refused("this agent does not run database servers".into()))
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.json", sha256_hex(key)))
    }

    fn read(&self, key: &str) -> Option<OpJournalEntry> {
        std::fs::read(self.entry_path(key)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn write(&self, e: &OpJournalEntry) -> Result<(), OpError> {
        let bytes = serde_json::to_vec_pretty(e).map_err(|err| OpError::Io(err.to_string()))?;
        write_atomic(&self.entry_path(&e.key), &bytes, 0o600, Owner::default())
            .map_err(|err| OpError::Io(format!("cannot journal operation: {err}")))
    }

    pub async fn execute(&self, key: &str, op: &HostOp) -> Result<OpResult, OpError> {
        let _guard = self.lock.lock().await;
        if let Some(mut e) = self.read(key) {
            if &e.op != op {
                return Err(OpError::Refused(format!("key {key:?} was already used for a different operation")));
            }
            e.replays += 1;
            self.write(&e)?;
            tracing::info!(key, "operation already done; replaying its result");
            return Ok(OpResult { key: key.into(), replayed: true, detail: e.detail });
        }
        let detail = match op {
            HostOp::MakeDirs { paths, owner, mode } => self.make_dirs(paths, owner.as_deref(), *mode)?,
            HostOp::RemoveDirs { paths } => self.remove_dirs(paths)?,
            HostOp::DbDefine { server } => detail(self.db()?.define(server.clone()).await)?,
            HostOp::DbInit { id } => json!({ "initialised": self.db()?.init(id).await? }),
            HostOp::DbStart { id, mode } => detail(self.db()?.start(id, *mode).await)?,
            HostOp::DbStop { id } => detail(self.db()?.stop(id).await)?,
            HostOp::DbSql { id, statements } => json!({ "rows_affected": self.db()?.sql(id, statements).await? }),
            HostOp::DbRecover { id } => detail(self.db()?.recover(id).await)?,
            HostOp::DbRemove { id, purge } => detail(self.db()?.remove(id, *purge).await)?,
            HostOp::ProxyStart { proxy } => self.proxies()?.start(proxy.clone()).map_err(proxy_error)?,
            HostOp::ProxyRemove { id } => self.proxies()?.remove(id).map_err(proxy_error)?,
            HostOp::PackageInstall { name, sha256, size } => {
                self.packages()
                    .ok_or_else(|| OpError::Refused("this agent does not install packages".into()))?
                    .install(name, sha256, *size)
                    .await?
            }
        };
        let entry = OpJournalEntry { key: key.into(), op: op.clone(), executions: 1, replays: 0, at_ms: now_ms(), detail: detail.clone() };
        self.write(&entry)?;
        tracing::info!(key, "operation done");
        Ok(OpResult { key: key.into(), replayed: false, detail })
    }

    pub fn entries(&self) -> Vec<OpJournalEntry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut v: Vec<OpJournalEntry> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        v.sort_by_key(|e| e.at_ms);
        v
    }

    /// Directories that some earlier `MakeDirs` created (not ones that
    /// existed already), the only ones `RemoveDirs` may delete.
    fn created_dirs(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| matches!(e.op, HostOp::MakeDirs { .. }))
            .flat_map(|e| {
                e.detail["created"].as_array().cloned().unwrap_or_default().into_iter().filter_map(|v| v.as_str().map(String::from))
            })
            .collect()
    }

    fn make_dirs(&self, paths: &[String], owner: Option<&str>, mode: u32) -> Result<Value, OpError> {
        // Databases run as `mysql`; default to it where it exists.
        let owner = owner.or_else(|| user_exists("mysql").then_some("mysql"));
        let ids = match owner {
            Some(name) => Some(
                lookup_user(name)
                    .ok_or_else(|| OpError::Refused(format!("no user {name:?} on this host; create it or choose another owner")))?,
            ),
            None => None,
        };
        let mut created = Vec::new();
        for p in paths {
            let path = Path::new(p);
            if !path.is_absolute() {
                return Err(OpError::Refused(format!("{p:?} is not an absolute path")));
            }
            // Record every missing ancestor too, so a purge removes them all.
            let mut missing: Vec<&Path> = path.ancestors().take_while(|a| !a.exists()).collect();
            std::fs::create_dir_all(path).map_err(|e| OpError::Io(format!("cannot create {p}: {e}")))?;
            missing.reverse();
            created.extend(missing.iter().map(|m| m.display().to_string()));
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| OpError::Io(format!("cannot set mode of {p}: {e}")))?;
            if let Some((uid, gid)) = ids {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(|e| OpError::Io(format!("cannot give {p} to {}: {e}", owner.unwrap_or_default())))?;
            }
        }
        Ok(json!({ "paths": paths, "created": created, "owner": owner, "mode": format!("{mode:o}") }))
    }

    /// Removes the given directories that atoll created; any other path is
    /// kept and reported, so a purge never deletes what a person made.
    fn remove_dirs(&self, paths: &[String]) -> Result<Value, OpError> {
        let ours = self.created_dirs();
        let (mine, kept): (Vec<&String>, Vec<&String>) = paths.iter().partition(|p| ours.contains(p));
        let mut removed = Vec::new();
        for p in mine {
            match std::fs::remove_dir_all(p) {
                Ok(()) => removed.push(p.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(OpError::Io(format!("cannot remove {p}: {e}"))),
            }
        }
        Ok(json!({ "removed": removed, "kept": kept }))
    }
}

impl From<DbError> for OpError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Refused(m) => Self::Refused(m),
            DbError::Io(m) => Self::Io(m),
        }
    }
}

/// An operation's outcome as the journal's detail.
fn detail<T: serde::Serialize>(r: Result<T, DbError>) -> Result<Value, OpError> {
    serde_json::to_value(r?).map_err(|e| OpError::Io(e.to_string()))
}

/// uid and gid of a local user, from /etc/passwd.
pub(crate) fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?))).flatten()
    })
}

/// Whether a local user exists (to pick a default owner).
pub fn user_exists(name: &str) -> bool {
    lookup_user(name).is_some()
}

fn proxy_error(e: crate::proxies::ProxyError) -> OpError {
    match e {
        crate::proxies::ProxyError::Invalid(m) => OpError::Refused(m),
        crate::proxies::ProxyError::Io(m) => OpError::Io(m),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn repeated_key_acts_once() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(&tmp.path().join("agent")).unwrap();
        let target = tmp.path().join("a/b").display().to_string();
        let op = HostOp::MakeDirs { paths: vec![target.clone()], owner: None, mode: 0o750 };
        let first = j.execute("t/s/forward", &op).await.unwrap();
        assert!(!first.replayed);
        assert_eq!(first.detail["created"].as_array().unwrap().len(), 2);
        let again = j.execute("t/s/forward", &op).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.detail, first.detail);
        let e = &j.entries()[0];
        assert_eq!((e.executions, e.replays), (1, 1));
        // Only the agent may read what operations carried.
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&j.dir), 0o700);
        assert_eq!(mode(&j.entry_path("t/s/forward")), 0o600);
        // A different op under the same key is refused.
        let other = HostOp::RemoveDirs { paths: vec![target.clone()] };
        assert!(j.execute("t/s/forward", &other).await.is_err());
    }

    #[tokio::test]
    async fn removes_only_what_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::open(&tmp.path().join("agent")).unwrap();
        let existing = tmp.path().display().to_string();
        let kept = j.execute("k1", &HostOp::RemoveDirs { paths: vec![existing.clone()] }).await.unwrap();
        assert_eq!(kept.detail["kept"][0], existing.as_str());
        assert!(Path::new(&existing).exists());
        let made = tmp.path().join("x").display().to_string();
        j.execute("k2", &HostOp::MakeDirs { paths: vec![made.clone()], owner: None, mode: 0o755 }).await.unwrap();
        j.execute("k3", &HostOp::RemoveDirs { paths: vec![made.clone()] }).await.unwrap();
        assert!(!Path::new(&made).exists());
    }

    #[test]
    fn unknown_owner_is_refused() {
        assert!(lookup_user("root").is_some());
        assert!(lookup_user("no-such-user-here").is_none());
    }
}

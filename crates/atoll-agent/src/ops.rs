//! Host operations with exactly-once effect. Each request carries a key (the
//! task step's idempotency key); the first request with a key acts and
//! journals the result, every repeat gets the journaled result back. A task
//! step resumed after its server died therefore never acts twice.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use atoll_api::agent::{HostOp, OpJournalEntry, OpResult};
use atoll_core::secret::constant_time_eq;
use atoll_core::time::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::confine::{ConfineError, DataRoot};
use crate::db::{DbError, Supervisor};
use crate::files::{Owner, write_atomic};
use crate::identity::sha256_hex;
use crate::redact::redact;

/// Entries are kept this long (a step retried later than this acts
/// again), except those that record directories made, which `RemoveDirs`
/// needs for as long as the directories may exist.
const KEEP_MS: i64 = 30 * 86_400_000;
/// How often old entries are looked for.
const PRUNE_EVERY_MS: i64 = 3_600_000;
/// The key of the request digests, in the journal's directory.
const DIGEST_KEY: &str = ".digest-key";

pub struct Journal {
    dir: PathBuf,
    /// Keys the digest that tells a repeat from another operation under
    /// the same key: a plain hash of a request would let a reader of the
    /// journal try passwords against it.
    digest_key: String,
    /// Where `MakeDirs` and `RemoveDirs` may act.
    root: DataRoot,
    /// Serialises operations: they are few and short, and one lock makes
    /// "check the journal, act, record" atomic. Holds when old entries
    /// were last pruned.
    lock: Mutex<i64>,
    /// Runs the `Db*` operations; without it they are refused.
    db: Option<Supervisor>,
    /// Runs the `Proxy*` operations; without it they are refused.
    proxies: Option<crate::proxies::Proxies>,
    /// Installs engine builds (`PackageInstall`); without it they are refused.
    packages: Option<crate::packages::Packages>,
}

/// One journal file: the entry with its request's secrets taken out, and
/// the keyed digest of the whole request (beside the entry's fields, so the
/// file still reads as an [`OpJournalEntry`]).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    entry: OpJournalEntry,
    op_digest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
}

impl Journal {
    /// The journal in `data_dir/ops`; directories are made and removed
    /// only below `root`. Entries written before secrets were taken out
    /// are rewritten without them, and old ones pruned.
    pub fn open(data_dir: &Path, root: DataRoot) -> anyhow::Result<Self> {
        let dir = data_dir.join("ops");
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        // The journal is the agent's alone.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| anyhow::anyhow!("cannot restrict {}: {e}", dir.display()))?;
        let key_file = dir.join(DIGEST_KEY);
        let digest_key = match std::fs::read_to_string(&key_file) {
            Ok(k) if k.trim().len() == 64 => k.trim().to_string(),
            _ => {
                let k = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
                write_atomic(&key_file, k.as_bytes(), 0o600, Owner::default()).map_err(|e| anyhow::anyhow!(e))?;
                k
            }
        };
        let j = Self { dir, digest_key, root, lock: Mutex::new(0), db: None, proxies: None, packages: None };
        j.migrate();
        j.prune(now_ms());
        Ok(j)
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

    /// The keyed digest of the whole request, secrets included.
    fn digest(&self, op: &HostOp) -> String {
        sha256_hex(&format!("{}\n{}", self.digest_key, serde_json::to_string(op).unwrap_or_default()))
    }

    fn read(&self, key: &str) -> Option<Stored> {
        std::fs::read(self.entry_path(key)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    fn write(&self, s: &Stored) -> Result<(), OpError> {
        let bytes = serde_json::to_vec_pretty(s).map_err(|err| OpError::Io(err.to_string()))?;
        write_atomic(&self.entry_path(&s.entry.key), &bytes, 0o600, Owner::default())
            .map_err(|err| OpError::Io(format!("cannot journal operation: {err}")))
    }

    /// Every journal file, with what it holds (`None`: unreadable).
    fn files(&self) -> Vec<(PathBuf, Option<Stored>)> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        dir.filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let stored = std::fs::read(&p).ok().and_then(|b| serde_json::from_slice(&b).ok());
                (p, stored)
            })
            .collect()
    }

    /// Rewrites entries of an older agent, which kept requests whole
    /// (passwords and tokens in clear), as entries without secrets.
    fn migrate(&self) {
        for (path, stored) in self.files() {
            if stored.is_some() {
                continue;
            }
            let Some(old) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<OpJournalEntry>(&b).ok()) else { continue };
            let op_digest = self.digest(&old.op);
            let entry = OpJournalEntry { op: redact(&old.op), ..old };
            match self.write(&Stored { entry, op_digest }) {
                Ok(()) => tracing::info!(file = %path.display(), "journal entry rewritten without its secrets"),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot rewrite a journal entry without its secrets"),
            }
        }
    }

    /// Forgets entries older than [`KEEP_MS`], but not the records of
    /// directories made.
    fn prune(&self, now: i64) {
        let mut pruned = 0;
        for (path, stored) in self.files() {
            let Some(s) = stored else { continue };
            let made_dirs =
                matches!(s.entry.op, HostOp::MakeDirs { .. }) && s.entry.detail["created"].as_array().is_some_and(|c| !c.is_empty());
            if s.entry.at_ms < now - KEEP_MS && !made_dirs && std::fs::remove_file(&path).is_ok() {
                pruned += 1;
            }
        }
        if pruned > 0 {
            tracing::info!(pruned, keep_days = KEEP_MS / 86_400_000, "old journal entries forgotten");
        }
    }

    pub async fn execute(&self, key: &str, op: &HostOp) -> Result<OpResult, OpError> {
        let mut pruned_at = self.lock.lock().await;
        let now = now_ms();
        if now - *pruned_at > PRUNE_EVERY_MS {
            self.prune(now);
            *pruned_at = now;
        }
        let digest = self.digest(op);
        if let Some(mut s) = self.read(key) {
            if !constant_time_eq(s.op_digest.as_bytes(), digest.as_bytes()) {
                return Err(OpError::Refused(format!("key {key:?} was already used for a different operation")));
            }
            s.entry.replays += 1;
            self.write(&s)?;
            tracing::info!(key, "operation already done; replaying its result");
            return Ok(OpResult { key: key.into(), replayed: true, detail: s.entry.detail });
        }
        let detail = match op {
            HostOp::MakeDirs { paths, owner, mode } => self.make_dirs(paths, owner.as_deref(), *mode)?,
            HostOp::RemoveDirs { paths } => self.remove_dirs(paths)?,
            HostOp::DbDefine { server } => detail(self.db()?.define(server.clone()).await)?,
            HostOp::DbInit { id } => json!({ "initialised": self.db()?.init(id).await? }),
            HostOp::DbStart { id, mode } => detail(self.db()?.start(id, *mode).await)?,
            HostOp::DbStop { id } => detail(self.db()?.stop(id).await)?,
            HostOp::DbSql { id, statements } => json!({ "rows_affected": self.db()?.sql(id, statements).await? }),
            HostOp::DbSeed { id, source } => detail(self.db()?.seed(id, source).await)?,
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
        let entry = OpJournalEntry { key: key.into(), op: redact(op), executions: 1, replays: 0, at_ms: now_ms(), detail: detail.clone() };
        self.write(&Stored { entry, op_digest: digest })?;
        tracing::info!(key, "operation done");
        Ok(OpResult { key: key.into(), replayed: false, detail })
    }

    /// The journal, oldest first, without secrets.
    pub fn entries(&self) -> Vec<OpJournalEntry> {
        let mut v: Vec<OpJournalEntry> = self.files().into_iter().filter_map(|(_, s)| s.map(|s| s.entry)).collect();
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

    /// Makes directories below the data root, walking to each without
    /// following links, and sets mode and owner on the directory opened.
    /// The owner is the database user (the default where it exists) or
    /// root: handing a directory to any other account is refused, as is a
    /// mode that lets others write or sets special bits.
    fn make_dirs(&self, paths: &[String], owner: Option<&str>, mode: u32) -> Result<Value, OpError> {
        if mode & !0o775 != 0 {
            return Err(OpError::Refused(format!(
                "mode {mode:o} refused: directories get at most 775 (no writing by others, no setuid, setgid or sticky bit)"
            )));
        }
        let owner = match owner {
            None => user_exists("mysql").then_some("mysql"),
            Some(o @ ("mysql" | "root")) => Some(o),
            Some(o) => {
                return Err(OpError::Refused(format!(
                    "owner {o:?} refused: data directories belong to the database user mysql or to root, nothing else"
                )));
            }
        };
        let ids = match owner {
            Some(name) => Some(
                lookup_user(name)
                    .ok_or_else(|| OpError::Refused(format!("no user {name:?} on this host; create it or choose another owner")))?,
            ),
            None => None,
        };
        // Every path is checked before any is made.
        let checked = paths.iter().map(|p| self.root.check(p)).collect::<Result<Vec<PathBuf>, ConfineError>>()?;
        let mut created = Vec::new();
        for (p, path) in paths.iter().zip(&checked) {
            let (dir, made) = self.root.make_dirs(path)?;
            // Record every missing ancestor too, so a purge removes them all.
            created.extend(made.iter().map(|m| m.display().to_string()));
            dir.set_mode_owner(mode, Owner { uid: ids.map(|i| i.0), gid: ids.map(|i| i.1) })
                .map_err(|e| OpError::Io(format!("cannot set the mode and owner of {p}: {e}")))?;
        }
        Ok(json!({ "paths": paths, "created": created, "owner": owner, "mode": format!("{mode:o}") }))
    }

    /// Removes the given directories that atoll created; any other path is
    /// kept and reported, so a purge never deletes what a person made.
    /// Only below the data root, and never through a link.
    fn remove_dirs(&self, paths: &[String]) -> Result<Value, OpError> {
        for p in paths {
            self.root.check(p)?;
        }
        let ours = self.created_dirs();
        let (mine, kept): (Vec<&String>, Vec<&String>) = paths.iter().partition(|p| ours.contains(p));
        let mut removed = Vec::new();
        for p in mine {
            if self.root.remove_all(Path::new(p))? {
                removed.push(p.clone());
            }
        }
        Ok(json!({ "removed": removed, "kept": kept }))
    }
}

impl From<ConfineError> for OpError {
    fn from(e: ConfineError) -> Self {
        match e {
            ConfineError::Refused(m) => Self::Refused(m),
            ConfineError::NotFound(m) | ConfineError::Io(m) => Self::Io(m),
        }
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

    /// A journal whose data root is `tmp`, its own files in `tmp/agent`.
    fn journal(tmp: &Path) -> Journal {
        let agent = tmp.join("agent");
        Journal::open(&agent, DataRoot::new(tmp, &agent).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn repeated_key_acts_once() {
        let tmp = tempfile::tempdir().unwrap();
        let j = journal(tmp.path());
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
        assert_eq!(mode(&j.dir.join(DIGEST_KEY)), 0o600);
        // A different op under the same key is refused.
        let other = HostOp::RemoveDirs { paths: vec![target.clone()] };
        assert!(j.execute("t/s/forward", &other).await.is_err());
    }

    #[tokio::test]
    async fn removes_only_what_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        let j = journal(tmp.path());
        let existing = tmp.path().join("made-by-a-person");
        std::fs::create_dir(&existing).unwrap();
        let existing = existing.display().to_string();
        let kept = j.execute("k1", &HostOp::RemoveDirs { paths: vec![existing.clone()] }).await.unwrap();
        assert_eq!(kept.detail["kept"][0], existing.as_str());
        assert!(Path::new(&existing).exists());
        let made = tmp.path().join("x").display().to_string();
        j.execute("k2", &HostOp::MakeDirs { paths: vec![made.clone()], owner: None, mode: 0o755 }).await.unwrap();
        j.execute("k3", &HostOp::RemoveDirs { paths: vec![made.clone()] }).await.unwrap();
        assert!(!Path::new(&made).exists());
    }

    #[tokio::test]
    async fn directories_stay_below_the_root_with_a_database_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let j = journal(tmp.path());
        let refused = |r: Result<OpResult, OpError>| match r {
            Err(OpError::Refused(m)) => m,
            other => panic!("not refused: {other:?}"),
        };
        let make =
            |p: &str, owner: Option<&str>, mode: u32| HostOp::MakeDirs { paths: vec![p.into()], owner: owner.map(String::from), mode };
        let m = refused(j.execute("1", &make("/etc/atoll", None, 0o750)).await);
        assert!(m.contains("/etc/atoll is outside this agent's data root") && m.contains("--data-root"), "{m}");
        let inside = tmp.path().join("db").display().to_string();
        let m = refused(j.execute("2", &make(&inside, Some("nobody"), 0o750)).await);
        assert!(m.contains("owner \"nobody\" refused"), "{m}");
        let m = refused(j.execute("3", &make(&inside, None, 0o4755)).await);
        assert!(m.contains("mode 4755 refused"), "{m}");
        let m = refused(j.execute("4", &make(&format!("{inside}/../../etc"), None, 0o750)).await);
        assert!(m.contains("\"..\""), "{m}");
        let m = refused(j.execute("5", &make(&tmp.path().join("agent/ops").display().to_string(), None, 0o750)).await);
        assert!(m.contains("own data directory"), "{m}");
        let m = refused(j.execute("6", &HostOp::RemoveDirs { paths: vec!["/etc".into()] }).await);
        assert!(m.contains("outside this agent's data root"), "{m}");
        assert!(!Path::new(&inside).exists(), "nothing made");
        // A link planted where a directory goes is refused, not followed.
        std::os::unix::fs::symlink("/etc", tmp.path().join("db")).unwrap();
        let m = refused(j.execute("7", &make(&format!("{inside}/c1"), Some("root"), 0o750)).await);
        assert!(m.contains("is a symbolic link"), "{m}");
        assert!(j.entries().is_empty(), "refusals are not journaled");
    }

    #[tokio::test]
    async fn secrets_are_never_kept_and_old_entries_go() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = tmp.path().join("agent");
        let ops = agent.join("ops");
        std::fs::create_dir_all(&ops).unwrap();
        let id = atoll_core::DbId::new("c", "s1");
        let sql = |pw: &str| HostOp::DbSql { id: id.clone(), statements: vec![format!("CREATE USER 'app'@'%' IDENTIFIED BY '{pw}'")] };
        // Entries as an older agent wrote them: requests whole.
        let old = |key: &str, op: HostOp, at_ms: i64| {
            let e = OpJournalEntry { key: key.into(), op, executions: 1, replays: 0, at_ms, detail: json!({ "rows_affected": [0] }) };
            std::fs::write(ops.join(format!("{}.json", sha256_hex(key))), serde_json::to_vec(&e).unwrap()).unwrap();
        };
        old("recent", sql("Secret-Pw-1"), now_ms());
        old("ancient", sql("Secret-Pw-2"), now_ms() - KEEP_MS - 1);
        let made = HostOp::MakeDirs { paths: vec!["/x".into()], owner: None, mode: 0o750 };
        let e = OpJournalEntry { key: "dirs".into(), op: made, executions: 1, replays: 0, at_ms: 1, detail: json!({ "created": ["/x"] }) };
        std::fs::write(ops.join(format!("{}.json", sha256_hex("dirs"))), serde_json::to_vec(&e).unwrap()).unwrap();

        let j = Journal::open(&agent, DataRoot::new(tmp.path(), &agent).unwrap()).unwrap();
        let keys: Vec<String> = j.entries().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["dirs", "recent"], "the old entry is gone, the record of directories made stays");
        for f in std::fs::read_dir(&ops).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            assert!(!text.contains("Secret-Pw"), "{text}");
        }
        let HostOp::DbSql { statements, .. } = &j.entries()[1].op else { panic!() };
        assert_eq!(statements[0], "CREATE USER 'app'@'%' IDENTIFIED BY '<redacted>'");
        // Replay still tells the same request from another one.
        let again = j.execute("recent", &sql("Secret-Pw-1")).await.unwrap();
        assert!(again.replayed);
        assert!(j.execute("recent", &sql("Other-Pw")).await.unwrap_err().to_string().contains("different operation"));
    }

    #[test]
    fn unknown_owner_is_refused() {
        assert!(lookup_user("root").is_some());
        assert!(lookup_user("no-such-user-here").is_none());
    }
}

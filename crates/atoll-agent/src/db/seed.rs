//! Copies between hosts for standby clusters: a primary node's agent
//! streams a hot, consistent copy (`mariadb-backup --stream`, so the
//! primary keeps taking writes) to the agent of a new standby's first
//! node, which unpacks and prepares it. The server grants each copy once,
//! for a short time; the copying agent presents the grant over mutual TLS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use atoll_api::db::{ExportGrant, SeedSource, Seeded};
use atoll_core::{DbId, GtidPos};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::files::{as_database_user, make_owned_dir, mysql_ids};
use super::layout::Layout;
use super::{DbError, Supervisor};
use crate::files::Owner;
use crate::identity::sha256_hex;

/// The longest a grant may wait to be used.
const MAX_GRANT: Duration = Duration::from_secs(600);
/// A copy that sends nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(120);
/// Unpacking a prepared copy's redo log can take a while on big data.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Left in the server's directory while its data directory holds a copy
/// in the making: a retry may clear it; anything else there is refused.
const PARTIAL: &str = "seed.partial";
/// What a finished seed recorded: a repeat (its answer lost on the way)
/// gets it again instead of a refusal.
const DONE: &str = "seed.done";
/// The copy's login, beside the server's config, while a copy runs.
const EXPORT_CNF: &str = "export.cnf";
/// What `mariadb-backup` said, for the operator.
const EXPORT_LOG: &str = "export.log";

/// Grants not used yet, by the hash of their token.
#[derive(Default)]
pub(crate) struct Exports(Mutex<HashMap<String, (DbId, Instant)>>);

impl Exports {
    fn add(&self, g: &ExportGrant) {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        m.retain(|_, (_, until)| *until > now);
        m.insert(g.token_sha256.clone(), (g.id.clone(), now + Duration::from_secs(g.ttl_s.into()).min(MAX_GRANT)));
    }

    /// The server a token was granted for, once.
    fn take(&self, token: &str) -> Option<DbId> {
        let mut m = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (id, until) = m.remove(&sha256_hex(token))?;
        (until > Instant::now()).then_some(id)
    }
}

/// Removes the copy's login file when the copy ends, however it ends.
struct CnfGuard(PathBuf);

impl Drop for CnfGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The running copy: its output, then its exit status.
pub(crate) struct Export {
    child: Child,
    stdout: tokio::process::ChildStdout,
    _cnf: CnfGuard,
    id: DbId,
}

impl Export {
    /// The copy as a stream of chunks that ends in an error (so the
    /// receiver sees a broken transfer, not a short one) when
    /// `mariadb-backup` fails.
    pub(crate) fn into_stream(self) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send {
        futures::stream::try_unfold(Some(self), |state| async move {
            let Some(mut e) = state else { return Ok(None) };
            let mut buf = vec![0u8; 256 * 1024];
            let n = e.stdout.read(&mut buf).await?;
            if n > 0 {
                buf.truncate(n);
                return Ok(Some((buf, Some(e))));
            }
            let status = e.child.wait().await?;
            if status.success() {
                tracing::info!(server = %e.id, "copy streamed");
                return Ok(None);
            }
            tracing::warn!(server = %e.id, status = %super::process::describe_exit(status), "the copy failed; see {EXPORT_LOG} in the server's directory");
            Err(std::io::Error::other(format!("mariadb-backup {}", super::process::describe_exit(status))))
        })
    }
}

impl Supervisor {
    /// Records a grant for a copy of a defined server.
    pub fn grant_export(&self, g: &ExportGrant) -> Result<(), DbError> {
        self.server(&g.id)?;
        if g.token_sha256.len() != 64 || !g.token_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DbError::Refused("token_sha256 must be 64 hex digits".into()));
        }
        self.inner.exports.add(g);
        Ok(())
    }

    /// Starts the copy a token was granted for (the grant is used up).
    pub(crate) async fn export(&self, token: &str) -> Result<Export, DbError> {
        let id = self
            .inner
            .exports
            .take(token)
            .ok_or_else(|| DbError::Refused("no such copy grant, or it expired or was used: ask the platform again".into()))?;
        let s = self.server(&id)?;
        let (layout, admin, pid) = {
            let rt = s.rt();
            (rt.layout.clone(), rt.def.admin.clone(), rt.pid)
        };
        if pid.is_none() {
            return Err(DbError::Io(format!("{id} is not running: copy another node")));
        }
        let ids = mysql_ids()?;
        let dir = self.inner.root.open_dir(&layout.dir)?;
        let cnf = format!(
            "!include {}\n[client]\nuser={}\npassword={}\nsocket={}\n",
            layout.cnf.display(),
            admin.user,
            admin.password,
            layout.socket.display()
        );
        dir.write_atomic(EXPORT_CNF, cnf.as_bytes(), 0o600, Owner { uid: Some(ids.0), gid: Some(ids.1) }).map_err(DbError::Io)?;
        let guard = CnfGuard(layout.dir.join(EXPORT_CNF));
        let log = dir.open_append(EXPORT_LOG, 0o640, ids.0).map_err(|e| DbError::Io(format!("cannot open {EXPORT_LOG}: {e}")))?;
        let bin = layout.program("mariadb-backup");
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--defaults-file={}", guard.0.display()))
            .args(["--backup", "--stream=xbstream", "--galera-info"])
            .arg(format!("--target-dir={}", layout.tmp.join("export").display()))
            .current_dir(&layout.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        as_database_user(&mut cmd)?;
        let mut child = cmd.spawn().map_err(|e| DbError::Io(format!("cannot run {}: {e}", bin.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| DbError::Io("mariadb-backup has no output".into()))?;
        tracing::info!(server = %id, "streaming a copy to another agent");
        Ok(Export { child, stdout, _cnf: guard, id })
    }

    /// Fills the stopped server's data directory with a copy streamed from
    /// `source` and prepares it; the source's position at the copy is in
    /// the answer. A copy cut off midway is cleared by the next attempt.
    pub async fn seed(&self, id: &DbId, source: &SeedSource) -> Result<Seeded, DbError> {
        let s = self.server(id)?;
        let _op = s.op.lock().await;
        let layout = s.layout();
        super::control::refuse_if_running(&s, &layout, "seed")?;
        let started = Instant::now();
        let ids = mysql_ids()?;
        let root = &self.inner.root;
        let partial = layout.dir.join(PARTIAL);
        if let Some(done) = std::fs::read(layout.dir.join(DONE)).ok().and_then(|b| serde_json::from_slice::<Seeded>(&b).ok()) {
            tracing::info!(server = %id, "already seeded; answering with its record");
            return Ok(done);
        }
        let holds_data = std::fs::read_dir(&layout.data).map(|mut d| d.next().is_some()).unwrap_or(false);
        if holds_data && !partial.exists() {
            return Err(DbError::Refused(format!(
                "{} already holds data: a copy would overwrite it; remove the server and define it again to seed it",
                layout.data.display()
            )));
        }
        let dir = root.open_dir(&layout.dir)?;
        dir.write_atomic(PARTIAL, b"a copy is being unpacked into data/\n", 0o640, Owner { uid: None, gid: None }).map_err(DbError::Io)?;
        if holds_data {
            root.remove_all(&layout.data)?;
        }
        make_owned_dir(root, &layout.data, 0o750, ids)?;

        let bytes = receive(&layout, source).await?;
        prepare(&layout).await?;
        let info = std::fs::read_to_string(layout.data.join("xtrabackup_binlog_info"))
            .map_err(|e| DbError::Refused(format!("the copy has no binary log position ({e}): does the source keep a binary log?")))?;
        let gtid = info.split('\t').nth(2).unwrap_or_default().trim().to_string();
        let parsed: GtidPos = gtid.parse().map_err(|e| DbError::Io(format!("the copy's position is unreadable: {e}")))?;
        let took_ms = started.elapsed().as_millis() as u64;
        let seeded = Seeded { bytes, gtid: parsed.to_string(), took_ms };
        let record = serde_json::to_vec(&seeded).map_err(|e| DbError::Io(e.to_string()))?;
        dir.write_atomic(DONE, &record, 0o640, Owner { uid: None, gid: None }).map_err(DbError::Io)?;
        dir.remove_file(PARTIAL).map_err(|e| DbError::Io(format!("cannot remove {PARTIAL}: {e}")))?;
        tracing::info!(server = %id, from = %source.id, bytes, gtid = %parsed, took_ms, "seeded from a copy");
        Ok(seeded)
    }
}

/// Streams the copy into `mbstream -x`, run as the database user in the
/// data directory; the bytes received.
async fn receive(layout: &Layout, source: &SeedSource) -> Result<u64, DbError> {
    let client = atoll_client::Client::with_timeout(&source.url, Some(source.token.clone()), PREPARE_TIMEOUT);
    let mut resp = client.get_streaming("/agent/v1/db/export").await.map_err(|e| match e.status() {
        Some(s) if (400..500).contains(&s) => DbError::Refused(format!("{} refused the copy of {}: {e}", source.url, source.id)),
        _ => DbError::Io(format!("cannot copy {} from {}: {e}", source.id, source.url)),
    })?;
    let bin = layout.program("mbstream");
    let mut cmd = Command::new(&bin);
    cmd.arg("-x")
        .arg("-C")
        .arg(&layout.data)
        .current_dir(&layout.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    as_database_user(&mut cmd)?;
    let mut child = cmd.spawn().map_err(|e| DbError::Io(format!("cannot run {}: {e}", bin.display())))?;
    let mut stdin = child.stdin.take().ok_or_else(|| DbError::Io("mbstream has no input".into()))?;
    let mut bytes = 0u64;
    loop {
        let chunk = tokio::time::timeout(STALL, resp.chunk())
            .await
            .map_err(|_| DbError::Io(format!("the copy of {} sent nothing for {} s", source.id, STALL.as_secs())))?
            .map_err(|e| DbError::Io(format!("the copy of {} broke off after {bytes} bytes: {e}", source.id)))?;
        let Some(chunk) = chunk else { break };
        bytes += chunk.len() as u64;
        stdin.write_all(&chunk).await.map_err(|e| DbError::Io(format!("mbstream stopped taking the copy: {e}")))?;
    }
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| DbError::Io(format!("mbstream: {e}")))?;
    if !out.status.success() {
        return Err(DbError::Io(format!(
            "mbstream {}: {}",
            super::process::describe_exit(out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if !layout.data.join("xtrabackup_checkpoints").is_file() {
        return Err(DbError::Io(format!("the copy of {} ended early ({bytes} bytes, no checkpoint file)", source.id)));
    }
    Ok(bytes)
}

/// Applies the copy's redo log so the data directory starts as is.
async fn prepare(layout: &Layout) -> Result<(), DbError> {
    let bin = layout.program("mariadb-backup");
    let mut cmd = Command::new(&bin);
    cmd.arg("--prepare")
        .arg(format!("--target-dir={}", layout.data.display()))
        .current_dir(&layout.dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    as_database_user(&mut cmd)?;
    let out = match tokio::time::timeout(PREPARE_TIMEOUT, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(DbError::Io(format!("cannot run {}: {e}", bin.display()))),
        Err(_) => return Err(DbError::Io(format!("preparing the copy took over {} s", PREPARE_TIMEOUT.as_secs()))),
    };
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = text.lines().rev().take(4).collect();
        return Err(DbError::Io(format!(
            "mariadb-backup --prepare {}: {}",
            super::process::describe_exit(out.status),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    Ok(())
}

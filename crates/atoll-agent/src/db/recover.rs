//! Where a stopped server's data stands: `mariadbd --wsrep-recover` reads
//! the last committed position from InnoDB, `grastate.dat` says whether
//! the node may bootstrap. A crashed node restarted at its recovered
//! position rejoins by IST instead of copying everything again (SST).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use atoll_api::db::RecoveredPosition;
use atoll_core::DbId;
use tokio::process::Command;

use super::DbError;
use super::files::{as_database_user, mysql_ids};
use super::layout::{Layout, RECOVER_LOG};
use crate::confine::{ConfineError, DataRoot};
use crate::files::Owner;

const GRASTATE: &str = "grastate.dat";

/// `--wsrep-recover` normally takes a fraction of a second; InnoDB crash
/// recovery of a large redo log can take longer.
const RECOVER_TIMEOUT: Duration = Duration::from_secs(300);

/// `text` with `safe_to_bootstrap: 1` (added when missing).
fn with_safe_to_bootstrap(text: &str) -> String {
    let mut out = String::new();
    let mut seen = false;
    for line in text.lines() {
        if line.split_once(':').is_some_and(|(k, _)| k.trim() == "safe_to_bootstrap") {
            out.push_str("safe_to_bootstrap: 1\n");
            seen = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !seen {
        out.push_str("safe_to_bootstrap: 1\n");
    }
    out
}

/// `grastate.dat` is small; a larger file is not one.
const GRASTATE_MAX: u64 = 64 * 1024;
/// How much of the `--wsrep-recover` log is read (its end).
const RECOVER_LOG_MAX: u64 = 1 << 20;

/// A file of a directory the database user owns, read through the data
/// root without following links; `Ok(None)` when missing.
fn read_db_file(root: &DataRoot, dir: &Path, name: &str, max: u64) -> Result<Option<String>, DbError> {
    let (uid, _) = mysql_ids()?;
    let d = match root.open_dir(dir) {
        Ok(d) => d,
        Err(ConfineError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    d.read_tail(name, max, uid).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => DbError::Refused(e.to_string()),
        _ => DbError::Io(format!("cannot read {}: {e}", dir.join(name).display())),
    })
}

fn grastate(root: &DataRoot, layout: &Layout) -> Result<Option<String>, DbError> {
    read_db_file(root, &layout.data, GRASTATE, GRASTATE_MAX)
}

/// Marks the node as safe to bootstrap, as an operator would by hand after
/// choosing the most advanced node; no-op without a `grastate.dat` (a new
/// data directory bootstraps anyway). The data directory is the database
/// user's: the file is read and replaced through its descriptor, never
/// through a link, and given back to that user.
pub(crate) fn set_safe_to_bootstrap(root: &DataRoot, layout: &Layout) -> Result<bool, DbError> {
    let Some(text) = grastate(root, layout)? else { return Ok(false) };
    if atoll_engine::parse_grastate(&text).is_some_and(|g| g.safe_to_bootstrap) {
        return Ok(false);
    }
    let (uid, gid) = mysql_ids()?;
    root.open_dir(&layout.data)?
        .write_atomic(GRASTATE, with_safe_to_bootstrap(&text).as_bytes(), 0o660, Owner { uid: Some(uid), gid: Some(gid) })
        .map_err(DbError::Io)?;
    Ok(true)
}

/// Runs `mariadbd --wsrep-recover` on the stopped server, as the database
/// user, and reads its position; falls back to `grastate.dat` when the log
/// names none.
pub(crate) async fn recover(root: &DataRoot, layout: &Layout) -> Result<RecoveredPosition, DbError> {
    let log = &layout.recover_log;
    // A stale log from an earlier run must not answer for this one.
    let _ = root.open_dir(&layout.dir)?.remove_file(RECOVER_LOG);
    let bin = layout.program("mariadbd");
    let mut cmd = Command::new(&bin);
    cmd.arg(layout.defaults_arg())
        .arg(atoll_engine::recovery::RECOVER_ARG)
        .arg(format!("--log-error={}", log.display()))
        .current_dir(&layout.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    as_database_user(&mut cmd)?;
    let status = match tokio::time::timeout(RECOVER_TIMEOUT, cmd.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(DbError::Io(format!("cannot run {}: {e}", bin.display()))),
        Err(_) => {
            return Err(DbError::Io(format!("--wsrep-recover did not finish in {} s; see {}", RECOVER_TIMEOUT.as_secs(), log.display())));
        }
    };
    // The log is written by the database user: read without following a
    // link, so nothing else root can read comes back in an error message.
    let text = match read_db_file(root, &layout.dir, RECOVER_LOG, RECOVER_LOG_MAX) {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(log = %log.display(), error = %e, "cannot read the recovery log");
            String::new()
        }
    };
    let grastate = grastate(root, layout).ok().flatten().and_then(|t| atoll_engine::parse_grastate(&t));
    let safe_to_bootstrap = grastate.as_ref().is_some_and(|g| g.safe_to_bootstrap);
    if let Some((uuid, seqno)) = atoll_engine::parse_recovered(&text) {
        return Ok(RecoveredPosition { uuid, seqno, safe_to_bootstrap });
    }
    match grastate {
        Some(g) if !g.uuid.is_empty() => {
            tracing::warn!(log = %log.display(), "--wsrep-recover named no position; using grastate.dat");
            Ok(RecoveredPosition { uuid: g.uuid, seqno: g.seqno, safe_to_bootstrap })
        }
        _ => {
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            Err(DbError::Io(format!(
                "--wsrep-recover found no position ({}); last lines of {}: {}",
                super::process::describe_exit(status),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )))
        }
    }
}

/// The `--wsrep-start-position=UUID:SEQNO` a start needs, if any. After a
/// crash `grastate.dat` says seqno -1 and the provider, loaded before
/// InnoDB, would ask for a full copy (SST); the recovered position lets it
/// ask for the missing writesets only (IST). What `mysqld_safe` does, for
/// a `mariadbd` started directly. `None` for a clean shutdown (the file
/// holds the position) or a data directory never started.
pub(crate) async fn start_position_arg(root: &DataRoot, layout: &Layout, server_id: &DbId) -> Option<String> {
    let grastate = grastate(root, layout).ok().flatten().and_then(|t| atoll_engine::parse_grastate(&t))?;
    if grastate.seqno >= 0 || !layout.data.join("mysql").is_dir() {
        return None;
    }
    let started = std::time::Instant::now();
    match recover(root, layout).await {
        Ok(p) if p.seqno >= 0 => {
            tracing::info!(server = %server_id, position = %format!("{}:{}", p.uuid, p.seqno), ms = started.elapsed().as_millis() as u64, "recovered the position");
            Some(atoll_engine::recovery::start_position_arg(&p))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(server = %server_id, error = %e, "cannot recover the position; starting without it (may need a full state transfer)");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grastate() {
        let t = "# GALERA saved state\nversion: 2.1\nuuid:    6b4f2d7e-0a1b-11ef-8c5e-2b0c6a1d9e01\nseqno:   -1\nsafe_to_bootstrap: 0\n";
        let safe = |text: &str| atoll_engine::parse_grastate(text).is_some_and(|g| g.safe_to_bootstrap);
        assert!(!safe(t));
        let set = with_safe_to_bootstrap(t);
        assert!(safe(&set));
        assert!(set.starts_with("# GALERA saved state\nversion: 2.1\n"));
        assert!(with_safe_to_bootstrap("version: 2.1\n").contains("safe_to_bootstrap: 1"));
    }
}

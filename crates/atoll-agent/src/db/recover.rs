//! Where a stopped server's data stands: `mariadbd --wsrep-recover` reads
//! the last committed position from InnoDB, `grastate.dat` says whether
//! the node may bootstrap. A crashed node restarted at its recovered
//! position rejoins by IST instead of copying everything again (SST).

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::Duration;

use atoll_api::db::RecoveredPosition;
use atoll_core::DbId;
use tokio::process::Command;

use super::DbError;
use super::layout::Layout;
use crate::files::{Owner, write_atomic};

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

/// Marks the node as safe to bootstrap, as an operator would by hand after
/// choosing the most advanced node; no-op without a `grastate.dat` (a new
/// data directory bootstraps anyway). Keeps the file's owner and mode.
pub(crate) fn set_safe_to_bootstrap(layout: &Layout) -> Result<bool, DbError> {
    let path = layout.grastate();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(DbError::Io(format!("cannot read {}: {e}", path.display()))),
    };
    if atoll_engine::parse_grastate(&text).is_some_and(|g| g.safe_to_bootstrap) {
        return Ok(false);
    }
    let meta = std::fs::metadata(&path).map_err(|e| DbError::Io(format!("cannot read {}: {e}", path.display())))?;
    write_atomic(
        &path,
        with_safe_to_bootstrap(&text).as_bytes(),
        meta.mode() & 0o7777,
        Owner { uid: Some(meta.uid()), gid: Some(meta.gid()) },
    )
    .map_err(DbError::Io)?;
    Ok(true)
}

/// Runs `mariadbd --wsrep-recover` on the stopped server and reads its
/// position; falls back to `grastate.dat` when the log names none.
pub(crate) async fn recover(layout: &Layout) -> Result<RecoveredPosition, DbError> {
    let log = &layout.recover_log;
    // A stale log from an earlier run must not answer for this one.
    let _ = std::fs::remove_file(log);
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
    let status = match tokio::time::timeout(RECOVER_TIMEOUT, cmd.status()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(DbError::Io(format!("cannot run {}: {e}", bin.display()))),
        Err(_) => {
            return Err(DbError::Io(format!("--wsrep-recover did not finish in {} s; see {}", RECOVER_TIMEOUT.as_secs(), log.display())));
        }
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let grastate = std::fs::read_to_string(layout.grastate()).ok().and_then(|t| atoll_engine::parse_grastate(&t));
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
pub(crate) async fn start_position_arg(layout: &Layout, server_id: &DbId) -> Option<String> {
    let grastate = std::fs::read_to_string(layout.grastate()).ok().and_then(|t| atoll_engine::parse_grastate(&t))?;
    if grastate.seqno >= 0 || !layout.data.join("mysql").is_dir() {
        return None;
    }
    let started = std::time::Instant::now();
    match recover(layout).await {
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

//! `mariadbd` processes: starting them, recognising them after an agent
//! restart, describing how they ended. Liveness and signals are
//! [`crate::process`]'s.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, Command};

use super::DbError;
use super::files::{as_database_user, mysql_ids};
use super::layout::{Layout, OUT_FILE};
use crate::confine::DataRoot;
use crate::process::alive;

/// Where a binary is: the agent may run with a `PATH` that lacks the
/// `sbin` directories `mariadbd` lives in.
pub(crate) fn find_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/mysql/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts `mariadbd` for the server, as the database user from the start
/// (not root relying on `user=` in a config that user may edit), in its
/// own process group, so a signal meant for the agent (Ctrl-C, a service
/// manager stopping it) never reaches the database. Not killed on drop: a
/// restarted agent adopts it.
///
/// Its output file is in the server's directory, which the database user
/// owns: it is opened through that directory's descriptor without following
/// a link, and refused unless it is a plain file of root or that user.
pub(crate) fn spawn_mariadbd(root: &DataRoot, layout: &Layout, extra: &[String]) -> Result<Child, DbError> {
    let (uid, _) = mysql_ids()?;
    let dir = root.open_dir(&layout.dir)?;
    let out = dir.open_append(OUT_FILE, 0o640, uid).map_err(|e| DbError::Io(format!("cannot open {}: {e}", layout.out.display())))?;
    let err = out.try_clone().map_err(|e| DbError::Io(format!("cannot open {}: {e}", layout.out.display())))?;
    let bin = layout.program("mariadbd");
    let mut cmd = Command::new(&bin);
    cmd.arg(layout.defaults_arg())
        .args(extra)
        .current_dir(&layout.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    as_database_user(&mut cmd)?;
    cmd.spawn().map_err(|e| DbError::Io(format!("cannot start {}: {e}", bin.display())))
}

/// Whether `pid` is a live `mariadbd` started with exactly this server's
/// `--defaults-file` (a reused pid, or another instance, does not count).
pub(crate) fn is_server_process(pid: u32, defaults_arg: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
    let is_mariadbd = args.next().is_some_and(|a0| matches!(Path::new(a0.as_ref()).file_name(), Some(n) if n == "mariadbd"));
    is_mariadbd && args.any(|a| a == defaults_arg) && alive(pid)
}

/// The live `mariadbd` of this server, if any: the pid file's pid first,
/// then a scan of /proc (the pid file is written only after start-up, a
/// joiner in state transfer may not have one yet).
pub(crate) fn find_running(layout: &Layout) -> Option<u32> {
    let arg = layout.defaults_arg();
    let from_file = std::fs::read_to_string(&layout.pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok());
    if let Some(pid) = from_file.filter(|p| is_server_process(*p, &arg)) {
        return Some(pid);
    }
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| is_server_process(*pid, &arg))
}

/// How a process ended, as an operator would say it.
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}{}", if status.core_dumped() { " (core dumped)" } else { "" }),
        _ => format!("ended ({status})"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::process::{Signal, signal};

    #[test]
    fn own_process_is_not_a_server() {
        assert!(!is_server_process(std::process::id(), "--defaults-file=/nope/my.cnf"));
    }

    #[tokio::test]
    async fn exits_are_described() {
        let st = Command::new("sh").args(["-c", "exit 3"]).status().await.unwrap();
        assert_eq!(describe_exit(st), "exited with code 3");
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        signal(child.id().unwrap(), Signal::Kill).unwrap();
        assert_eq!(describe_exit(child.wait().await.unwrap()), "killed by signal 9");
    }
}

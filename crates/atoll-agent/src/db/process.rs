//! `mariadbd` processes: starting them, recognising them after an agent
//! restart, signalling them and telling whether they still live.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, Command};

use super::DbError;
use super::layout::Layout;

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

/// Starts `mariadbd` for the server in its own process group, so a signal
/// meant for the agent (Ctrl-C, a service manager stopping it) never
/// reaches the database. Not killed on drop: a restarted agent adopts it.
pub(crate) fn spawn_mariadbd(layout: &Layout, extra: &[String]) -> Result<Child, DbError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&layout.out)
        .map_err(|e| DbError::Io(format!("cannot open {}: {e}", layout.out.display())))?;
    let err = out.try_clone().map_err(|e| DbError::Io(format!("cannot open {}: {e}", layout.out.display())))?;
    let bin = layout.program("mariadbd");
    Command::new(&bin)
        .arg(layout.defaults_arg())
        .args(extra)
        .current_dir(&layout.dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| DbError::Io(format!("cannot start {}: {e}", bin.display())))
}

/// Whether `pid` is a live process (a zombie has exited: it only waits to
/// be reaped).
pub(crate) fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X') | Some('x'))
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

/// Sends `sig` to one process (never a group: the agent only signals what
/// it identified).
#[allow(unsafe_code)]
pub(crate) fn signal(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    if pid <= 0 {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
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

    #[test]
    fn own_process_is_alive_but_not_a_server() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(!is_server_process(me, "--defaults-file=/nope/my.cnf"));
        assert!(!alive(u32::MAX - 1));
    }

    #[tokio::test]
    async fn exits_are_described() {
        let st = Command::new("sh").args(["-c", "exit 3"]).status().await.unwrap();
        assert_eq!(describe_exit(st), "exited with code 3");
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        signal(child.id().unwrap(), libc::SIGKILL).unwrap();
        assert_eq!(describe_exit(child.wait().await.unwrap()), "killed by signal 9");
    }
}

//! Process-level helpers the database and proxy supervisors share: whether
//! a pid lives, signalling one, and the back-off before a restart. The
//! agent's only call to kill(2) is here.

use std::time::Duration;

/// The signals the agent (and tooling built on it) sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Asks the process to shut down cleanly.
    Term,
    /// Ends it at once: no chance to clean up.
    Kill,
    /// Asks a supervisor to restart what it runs with its current spec.
    Hup,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Hup => libc::SIGHUP,
        }
    }
}

/// Sends `sig` to one process (never a group: only what the caller
/// identified is signalled).
#[allow(unsafe_code)]
pub fn signal(pid: u32, sig: Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::ESRCH))?;
    // 0 and negative pids address process groups.
    if pid <= 0 {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, sig.number()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Whether `pid` is a live process (a zombie has exited: it only waits to
/// be reaped).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X') | Some('x'))
}

/// The wait before restarting after the `n`th crash in a row (from 1):
/// `first`, doubling each time, never above `cap`, so a crashing process
/// is retried quickly yet does not spin.
pub fn backoff(first: Duration, cap: Duration, n: usize) -> Duration {
    let doublings = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
    first.saturating_mul(2u32.saturating_pow(doublings)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        assert!(alive(std::process::id()));
        assert!(!alive(u32::MAX - 1));
    }

    #[test]
    fn group_pids_are_refused() {
        assert!(signal(0, Signal::Term).is_err());
        assert!(signal(u32::MAX, Signal::Term).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s: Vec<u64> = (1..=7).map(|n| backoff(Duration::from_secs(1), Duration::from_secs(30), n).as_secs()).collect();
        assert_eq!(s, vec![1, 2, 4, 8, 16, 30, 30]);
        let ms: Vec<u128> = (1..=7).map(|n| backoff(Duration::from_millis(500), Duration::from_secs(10), n).as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff(Duration::from_secs(1), Duration::from_secs(30), usize::MAX), Duration::from_secs(30));
    }
}

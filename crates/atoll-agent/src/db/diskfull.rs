//! A node whose data directory is full. With a binary log (every cluster
//! that can have a standby keeps one), MariaDB waits for space on a full
//! disk, retrying once a minute, and the node's place in Galera's commit
//! order stalls every commit of the cluster meanwhile (the fault campaign
//! measured 60 s). The agent takes such a node out (SIGKILL: it is stuck
//! in a write) so the others go on, and starts it again once there is
//! room, without counting the exit towards a crash loop.

use std::path::Path;
use std::time::Duration;

/// Below this much space for the database user, the node is stuck.
pub(crate) const FULL_BELOW: u64 = 1 << 20;
/// How often a stopped node's directory is looked at for room.
pub(crate) const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Bytes the database user may still write under `path`; `None` when it
/// cannot be told. (libc's statvfs: std has no call for it.)
#[allow(unsafe_code)]
pub(crate) fn available(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by
    // statvfs before it is read (only when it returns 0).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether the directory is full (unknown counts as not).
pub(crate) fn full(path: &Path) -> Option<u64> {
    available(path).filter(|a| *a < FULL_BELOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_with_room_is_not_full() {
        let dir = std::env::temp_dir();
        assert!(available(&dir).is_some());
        assert_eq!(available(Path::new("/no/such/dir")), None);
        assert_eq!(full(Path::new("/no/such/dir")), None);
    }
}

//! Atomic file writes with the right owner and mode, because a
//! half-written `my.cnf`, registry, journal entry or token would outlive a
//! crash, and a secret must never be readable by others, even briefly.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who should own a file; `None` keeps what creating it gave (the agent's
/// own uid, its primary group).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// (renamed into place), so readers see the old or the new file, never a
/// torn one. The mode is set at creation: a secret is never readable, even
/// briefly.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32, owner: Owner) -> Result<(), String> {
    let tmp = path.with_extension("atoll-tmp");
    let io = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(|e| io("write", e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io("write", e))?;
    drop(f);
    // The umask may have narrowed the mode given at creation.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(|e| io("set the mode of", e))?;
    if owner.uid.is_some() || owner.gid.is_some() {
        std::os::unix::fs::chown(&tmp, owner.uid, owner.gid).map_err(|e| io("set the owner of", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("replace", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn atomic_write_sets_the_mode_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("secret.json");
        write_atomic(&p, b"one", 0o600, Owner::default()).unwrap();
        write_atomic(&p, b"two", 0o600, Owner::default()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "no temporary file left behind");
    }
}

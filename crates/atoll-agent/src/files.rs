//! Atomic file writes with the right owner and mode, because a
//! half-written `my.cnf`, registry, journal entry or token would outlive a
//! crash, and a secret must never be readable by others, even briefly.

use std::path::Path;

use crate::confine::Dir;

/// Who should own a file; `None` keeps what creating it gave (the agent's
/// own uid, its primary group).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Writes `bytes` to `path`, in a directory of the agent's own (its data
/// directory: nobody else can change it), through a temporary file renamed
/// into place, so readers see the old or the new file, never a torn one.
/// The mode is set at creation, so a secret is never readable by others,
/// and the file and its directory reach the disk before this returns. In a
/// directory the database user owns, use [`Dir::write_atomic`] on a
/// directory opened through the data root instead.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32, owner: Owner) -> Result<(), String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(format!("cannot write {}: not a file path", path.display()));
    };
    let dir = Dir::open_trusted(dir).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    dir.write_atomic(&name.to_string_lossy(), bytes, mode, owner)
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

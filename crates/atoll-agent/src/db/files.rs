//! Directories and accounts for database servers.

use std::path::Path;

use super::DbError;
use crate::confine::{ConfineError, DataRoot, Dir};
use crate::files::Owner;

impl From<ConfineError> for DbError {
    fn from(e: ConfineError) -> Self {
        match e {
            ConfineError::Refused(m) => DbError::Refused(m),
            ConfineError::NotFound(m) | ConfineError::Io(m) => DbError::Io(m),
        }
    }
}

/// Makes `path` (and parents) below the data root and gives it to `owner`
/// with `mode`, through its descriptor.
pub(crate) fn make_owned_dir(root: &DataRoot, path: &Path, mode: u32, owner: (u32, u32)) -> Result<Dir, DbError> {
    let (dir, _) = root.make_dirs(path)?;
    dir.set_mode_owner(mode, Owner { uid: Some(owner.0), gid: Some(owner.1) })
        .map_err(|e| DbError::Io(format!("cannot set the mode and owner of {}: {e}", path.display())))?;
    Ok(dir)
}

/// uid and gid of the `mysql` account, which every `mariadbd` runs as.
pub(crate) fn mysql_ids() -> Result<(u32, u32), DbError> {
    crate::ops::lookup_user("mysql")
        .ok_or_else(|| DbError::Refused("no user \"mysql\" on this host: install mariadb-server (it creates the account)".into()))
}

/// Runs a database program as the database user (`mysql`), never as root:
/// a program from an uploaded package, or one a config the database user
/// can edit points at, gets that user's rights only. `std` drops the
/// supplementary groups too.
pub(crate) fn as_database_user(cmd: &mut tokio::process::Command) -> Result<(), DbError> {
    let (uid, gid) = mysql_ids()?;
    cmd.uid(uid).gid(gid);
    Ok(())
}

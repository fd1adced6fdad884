//! Directories and accounts for database servers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::DbError;

/// Creates `path` (and parents) and gives it to `owner` with `mode`.
pub(crate) fn make_owned_dir(path: &Path, mode: u32, owner: (u32, u32)) -> Result<(), DbError> {
    let io = |what: &str, e: std::io::Error| DbError::Io(format!("cannot {what} {}: {e}", path.display()));
    std::fs::create_dir_all(path).map_err(|e| io("create", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| io("set the mode of", e))?;
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1)).map_err(|e| io("set the owner of", e))
}

/// uid and gid of the `mysql` account, which every `mariadbd` runs as.
pub(crate) fn mysql_ids() -> Result<(u32, u32), DbError> {
    crate::ops::lookup_user("mysql")
        .ok_or_else(|| DbError::Refused("no user \"mysql\" on this host: install mariadb-server (it creates the account)".into()))
}

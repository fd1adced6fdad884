//! Where the agent acts for the platform, and how it acts there as root
//! without being redirected.
//!
//! Whoever may call the platform's API names directories on this host (a
//! prepared data directory, a database server's directory); the agent acts
//! only below its data root (`--data-root`, default `/var/lib/atoll`),
//! which the host's administrator chose: never on a system path, never on
//! the agent's own files.
//!
//! Below the root, directories belong to the database user, who could put
//! a symbolic link where root is about to write (the pattern of
//! CVE-2016-6664). So a path below the root is walked one component at a
//! time from a descriptor of the root, refusing every symbolic link
//! (`O_NOFOLLOW`), and files are then created, read, chowned and chmoded
//! through descriptors, never by path again: what the database user
//! renames meanwhile cannot send root elsewhere.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::files::Owner;

/// The data root when none is given.
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/atoll";
/// What a refusal tells the host's administrator to do.
const CHANGE_ROOT: &str = "start the agent with --data-root DIR (or ATOLL_AGENT_DATA_ROOT) to choose another";

/// Trees of the system a data root may neither be nor lie in.
const SYSTEM_TREES: [&str; 14] =
    ["/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run", "/sbin", "/sys", "/usr"];
/// Shared directories a data root may lie in but not be.
const SHARED_DIRS: [&str; 14] = [
    "/",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/srv",
    "/tmp",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/lib/mysql",
    "/var/log",
    "/var/spool",
    "/var/tmp",
];

/// Why a confined operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Not allowed here: repeating it will not help.
    #[error("{0}")]
    Refused(String),
    /// A directory on the way does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Io(String),
}

/// The directory below which the agent makes, chowns and removes
/// directories and writes database servers' files.
#[derive(Debug, Clone)]
pub struct DataRoot {
    root: PathBuf,
    /// The agent's own data directory: never handed to anyone.
    agent_dir: PathBuf,
}

/// `p` without `.` components; `None` when it is relative or climbs (`..`).
fn normal(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    Some(p.components().collect())
}

impl DataRoot {
    /// Checks the root the administrator chose; `agent_dir` is the agent's
    /// own data directory, which no operation may touch.
    pub fn new(root: &Path, agent_dir: &Path) -> Result<Self, String> {
        let shown = root.display();
        let root = normal(root).ok_or_else(|| format!("data root {shown}: use an absolute path without \"..\""))?;
        if SYSTEM_TREES.iter().any(|s| root.starts_with(s)) || SHARED_DIRS.iter().any(|s| root == Path::new(s)) {
            return Err(format!(
                "data root {shown} is a system directory: databases need a directory of their own, such as {DEFAULT_DATA_ROOT}"
            ));
        }
        let agent_dir = std::path::absolute(agent_dir).map_err(|e| format!("data directory {}: {e}", agent_dir.display()))?;
        // Its real path: the agent makes it before any operation comes.
        std::fs::create_dir_all(&agent_dir).map_err(|e| format!("cannot create data directory {}: {e}", agent_dir.display()))?;
        let agent_dir = agent_dir.canonicalize().map_err(|e| format!("data directory {}: {e}", agent_dir.display()))?;
        Ok(Self { root, agent_dir })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `p` if the agent may act on it: an absolute path without `..` at or
    /// below the root, apart from the agent's own data directory.
    pub fn check(&self, p: &str) -> Result<PathBuf, ConfineError> {
        let refuse = |m: String| Err(ConfineError::Refused(m));
        let path = self.inside(p)?;
        // The agent's directory may be reached through links in the root's
        // own path (the administrator's): compare the real paths too.
        let real = self.root.canonicalize().ok().zip(path.strip_prefix(&self.root).ok()).map(|(r, rest)| r.join(rest));
        let overlaps = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
        if overlaps(&path, &self.agent_dir) || real.is_some_and(|r| overlaps(&r, &self.agent_dir)) {
            return refuse(format!(
                "{p} holds or lies in the agent's own data directory {}; choose a directory beside it",
                self.agent_dir.display()
            ));
        }
        Ok(path)
    }

    /// `p`, normalised, if it is an absolute path without `..` at or below
    /// the root.
    fn inside(&self, p: &str) -> Result<PathBuf, ConfineError> {
        let refuse = |m: String| Err(ConfineError::Refused(m));
        let Some(path) = normal(Path::new(p)) else {
            return refuse(format!("{p:?} must be an absolute path without \"..\""));
        };
        if !path.starts_with(&self.root) {
            return refuse(format!(
                "{p} is outside this agent's data root {}: the agent acts only below it; choose a directory there, or {CHANGE_ROOT}",
                self.root.display()
            ));
        }
        Ok(path)
    }

    /// The root, opened, and whether it was made (only with `create`).
    /// Every directory above it must be one only root (or this agent's
    /// user) can change, so nobody else can swap the root for a link.
    fn open_root(&self, create: bool) -> Result<(Dir, bool), ConfineError> {
        let io = |e: std::io::Error| io_error(&self.root, e);
        let made = create && !self.root.exists();
        if made {
            std::fs::create_dir_all(&self.root).map_err(io)?;
        }
        let real = self.root.canonicalize().map_err(io)?;
        let me = current_uid();
        for a in real.ancestors().skip(1) {
            let m = std::fs::metadata(a).map_err(io)?;
            let sticky = m.mode() & 0o1000 != 0;
            if (m.uid() != 0 && m.uid() != me) || (m.mode() & 0o022 != 0 && !sticky) {
                return Err(ConfineError::Refused(format!(
                    "data root {}: {} may be changed by users other than root (owner uid {}, mode {:o}); \
                     fix its owner and mode, or {CHANGE_ROOT}",
                    self.root.display(),
                    a.display(),
                    m.uid(),
                    m.mode() & 0o7777
                )));
            }
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&real)
            .map_err(|e| ConfineError::Io(format!("cannot open the data root {}: {e}", real.display())))?;
        Ok((Dir { file, path: self.root.clone() }, made))
    }

    /// Walks from the root to `path` (checked), making missing directories
    /// (0755, owned by root) when `create`; the directory and those made.
    fn walk(&self, path: &Path, create: bool) -> Result<(Dir, Vec<PathBuf>), ConfineError> {
        let path = self.inside(&path.to_string_lossy())?;
        let (mut dir, made_root) = self.open_root(create)?;
        let mut made = if made_root { vec![self.root.clone()] } else { Vec::new() };
        let Ok(rest) = path.strip_prefix(&self.root) else { return Ok((dir, made)) };
        for c in rest.components() {
            let Component::Normal(name) = c else { continue };
            if create && dir.make_dir(name, 0o755).map_err(|e| io_error(&dir.path.join(name), e))? {
                made.push(dir.path.join(name));
            }
            dir = dir.child(name).map_err(|e| self.walk_error(&dir.path.join(name), e))?;
        }
        Ok((dir, made))
    }

    fn walk_error(&self, at: &Path, e: std::io::Error) -> ConfineError {
        match e.raw_os_error() {
            Some(libc::ELOOP) => ConfineError::Refused(format!(
                "{} is a symbolic link: below the data root {} the agent follows none; replace it with a directory",
                at.display(),
                self.root.display()
            )),
            // `O_DIRECTORY | O_NOFOLLOW` on a link fails with ENOTDIR; the
            // message (only) looks again to say which.
            Some(libc::ENOTDIR) if std::fs::symlink_metadata(at).is_ok_and(|m| m.file_type().is_symlink()) => {
                self.walk_error(at, std::io::Error::from_raw_os_error(libc::ELOOP))
            }
            Some(libc::ENOTDIR) => ConfineError::Refused(format!("{} is not a directory", at.display())),
            _ => io_error(at, e),
        }
    }

    /// Makes `path` and its missing parents below the root: the directory,
    /// and the ones that were made (outermost first).
    pub fn make_dirs(&self, path: &Path) -> Result<(Dir, Vec<PathBuf>), ConfineError> {
        self.check(&path.to_string_lossy())?;
        self.walk(path, true).map_err(|e| match e {
            ConfineError::Refused(m) => ConfineError::Refused(format!("cannot create {}: {m}", path.display())),
            ConfineError::NotFound(m) => ConfineError::NotFound(format!("cannot create {}: {m}", path.display())),
            ConfineError::Io(m) => ConfineError::Io(format!("cannot create {}: {m}", path.display())),
        })
    }

    /// Opens the existing directory `path` at or below the root (to act on
    /// files in it; a directory to give away or remove is [`Self::check`]ed).
    pub fn open_dir(&self, path: &Path) -> Result<Dir, ConfineError> {
        self.walk(path, false).map(|(d, _)| d)
    }

    /// Removes `path` with its content; `false` when it did not exist.
    /// Links inside are removed, never followed.
    pub fn remove_all(&self, path: &Path) -> Result<bool, ConfineError> {
        let path = self.check(&path.to_string_lossy())?;
        let refuse = || ConfineError::Refused(format!("{} cannot be removed", path.display()));
        let (dir, name) = if path == self.root {
            // The root itself: removed from its real parent, which is above
            // the root and trusted like the root's own path.
            let real = match self.root.canonicalize() {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_error(&self.root, e)),
            };
            self.open_root(false)?;
            let (Some(parent), Some(name)) = (real.parent(), real.file_name()) else { return Err(refuse()) };
            (Dir::open_trusted(parent).map_err(|e| io_error(parent, e))?, name.to_os_string())
        } else {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return Err(refuse()) };
            match self.open_dir(parent) {
                Ok(d) => (d, name.to_os_string()),
                Err(ConfineError::NotFound(_)) => return Ok(false),
                Err(e) => return Err(e),
            }
        };
        match dir.remove_all(&name) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path, e)),
        }
    }
}

fn io_error(at: &Path, e: std::io::Error) -> ConfineError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ConfineError::NotFound(format!("{} does not exist", at.display()))
    } else {
        ConfineError::Io(format!("{}: {e}", at.display()))
    }
}

fn current_uid() -> u32 {
    sys::euid()
}

/// An open directory: everything is done relative to its descriptor.
#[derive(Debug)]
pub struct Dir {
    file: File,
    /// For messages only; never opened again.
    path: PathBuf,
}

/// `name` if it is one plain path component.
fn component(name: &OsStr) -> std::io::Result<&OsStr> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.as_bytes().contains(&b'/');
    if plain { Ok(name) } else { Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{name:?} is not a file name"))) }
}

impl Dir {
    /// Opens a directory the agent owns outright (its data directory): its
    /// path is trusted, links included.
    pub(crate) fn open_trusted(path: &Path) -> std::io::Result<Dir> {
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(path)?;
        Ok(Dir { file, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The subdirectory `name`; a link there is refused (`ELOOP`).
    pub fn child(&self, name: &OsStr) -> std::io::Result<Dir> {
        let fd = sys::openat(self.file.as_fd(), component(name)?, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)?;
        Ok(Dir { file: File::from(fd), path: self.path.join(name) })
    }

    /// Makes the subdirectory `name`; `false` when something is there.
    fn make_dir(&self, name: &OsStr, mode: u32) -> std::io::Result<bool> {
        match sys::mkdirat(self.file.as_fd(), component(name)?, mode) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets this directory's mode and owner through its descriptor.
    pub(crate) fn set_mode_owner(&self, mode: u32, owner: Owner) -> std::io::Result<()> {
        self.file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if owner.uid.is_some() || owner.gid.is_some() {
            std::os::unix::fs::fchown(&self.file, owner.uid, owner.gid)?;
        }
        Ok(())
    }

    /// Opens `name` in this directory to append, making it (with `mode`)
    /// when missing. Refuses a link, anything but a plain file, a file with
    /// other names (a hard link to someone else's file) and a file owned by
    /// anyone but root or `owner_uid`.
    pub fn open_append(&self, name: &str, mode: u32, owner_uid: u32) -> std::io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let fd = sys::openat(self.file.as_fd(), component(OsStr::new(name))?, flags, mode).map_err(|e| self.link_refused(name, e))?;
        let file = File::from(fd);
        self.plain_file(name, &file, owner_uid)?;
        Ok(file)
    }

    /// Reads the plain file `name` (its last `max` bytes at most); `None`
    /// when it does not exist. A link or a hard-linked file is refused, so
    /// nothing root may read elsewhere comes back through it.
    pub fn read_tail(&self, name: &str, max: u64, owner_uid: u32) -> std::io::Result<Option<String>> {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        let mut file = match sys::openat(self.file.as_fd(), component(OsStr::new(name))?, flags, 0) {
            Ok(fd) => File::from(fd),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.link_refused(name, e)),
        };
        let meta = self.plain_file(name, &file, owner_uid)?;
        if meta.len() > max {
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(meta.len() - max))?;
        }
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// `ELOOP` from an `O_NOFOLLOW` open, said plainly.
    fn link_refused(&self, name: &str, e: std::io::Error) -> std::io::Error {
        match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} is a symbolic link: refused (the agent follows none below its data root)", self.path.join(name).display()),
            ),
            _ => e,
        }
    }

    fn plain_file(&self, name: &str, file: &File, owner_uid: u32) -> std::io::Result<std::fs::Metadata> {
        let meta = file.metadata()?;
        let refuse = |why: &str| {
            Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("{} {why}: refused", self.path.join(name).display())))
        };
        if !meta.file_type().is_file() {
            return refuse("is not a plain file");
        }
        if meta.nlink() != 1 {
            return refuse("has other names (hard links)");
        }
        if meta.uid() != 0 && meta.uid() != owner_uid {
            return refuse(&format!("belongs to uid {}", meta.uid()));
        }
        Ok(meta)
    }

    /// Writes `name` through a temporary file in this directory, renamed
    /// into place, with mode and owner set on the descriptor; the file and
    /// the directory are flushed to disk. Readers see the old or the new
    /// file, never a torn one, and a secret is never readable by others.
    pub(crate) fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32, owner: Owner) -> Result<(), String> {
        let shown = self.path.join(name);
        let io = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", shown.display());
        let name = component(OsStr::new(name)).map_err(|e| io("write", e))?;
        let tmp = format!(".{}.atoll-tmp", name.to_string_lossy());
        let tmp = OsStr::new(&tmp);
        // A leftover of a crash; a link there is removed, not followed.
        let _ = sys::unlinkat(self.file.as_fd(), tmp, 0);
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        let mut f = File::from(sys::openat(self.file.as_fd(), tmp, flags, mode).map_err(|e| io("write", e))?);
        let written = (|| {
            f.write_all(bytes).map_err(|e| io("write", e))?;
            // The umask may have narrowed the mode given at creation.
            f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| io("set the mode of", e))?;
            if owner.uid.is_some() || owner.gid.is_some() {
                std::os::unix::fs::fchown(&f, owner.uid, owner.gid).map_err(|e| io("set the owner of", e))?;
            }
            f.sync_all().map_err(|e| io("write", e))?;
            sys::renameat(self.file.as_fd(), tmp, name).map_err(|e| io("replace", e))?;
            self.file.sync_all().map_err(|e| io("flush the directory of", e))
        })();
        if written.is_err() {
            let _ = sys::unlinkat(self.file.as_fd(), tmp, 0);
        }
        written
    }

    /// Removes the file or link `name` (a link itself, never its target).
    pub fn remove_file(&self, name: &str) -> std::io::Result<()> {
        sys::unlinkat(self.file.as_fd(), component(OsStr::new(name))?, 0)
    }

    /// Removes `name` with its content. std's `remove_dir_all` opens every
    /// level with `O_NOFOLLOW` and removes links without following them;
    /// it is given `name` through this descriptor's `/proc/self/fd` entry,
    /// which the kernel resolves to this very directory, not by its path.
    fn remove_all(&self, name: &OsStr) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let at = Path::new("/proc/self/fd").join(self.file.as_raw_fd().to_string()).join(component(name)?);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&at),
            Ok(_) => std::fs::remove_file(&at),
            Err(e) => Err(e),
        }
    }
}

/// The few `*at` calls std lacks, relative to a directory descriptor.
#[allow(unsafe_code)]
mod sys {
    use std::ffi::{CString, OsStr};
    use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    fn c(name: &OsStr) -> std::io::Result<CString> {
        CString::new(name.as_bytes()).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a file name holds a NUL byte"))
    }

    fn check(rc: libc::c_int) -> std::io::Result<()> {
        if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }

    pub(super) fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int, mode: u32) -> std::io::Result<OwnedFd> {
        let name = c(name)?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call;
        // `dir` is an open descriptor borrowed for its duration.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: openat returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    pub(super) fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> std::io::Result<()> {
        let name = c(name)?;
        // SAFETY: as for openat; mkdirat keeps no pointer.
        check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })
    }

    pub(super) fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> std::io::Result<()> {
        let name = c(name)?;
        // SAFETY: as for openat; unlinkat keeps no pointer.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
    }

    pub(super) fn euid() -> u32 {
        // SAFETY: geteuid(2) takes nothing and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// Renames `from` to `to`, both in `dir`.
    pub(super) fn renameat(dir: BorrowedFd<'_>, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
        let (from, to) = (c(from)?, c(to)?);
        // SAFETY: both names are NUL-terminated strings that outlive the call.
        check(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn root(tmp: &Path) -> DataRoot {
        DataRoot::new(&tmp.join("root"), &tmp.join("root/agent")).unwrap()
    }

    #[test]
    fn system_directories_are_no_root() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = tmp.path().join("agent");
        for bad in ["/", "/etc", "/etc/atoll", "/usr/local/atoll", "/var", "/var/lib", "/tmp", "relative", "/srv/../etc"] {
            assert!(DataRoot::new(Path::new(bad), &agent).is_err(), "{bad}");
        }
        assert!(DataRoot::new(Path::new("/var/lib/atoll"), &agent).is_ok());
        assert!(DataRoot::new(&tmp.path().join("x/"), &agent).is_ok());
    }

    #[test]
    fn paths_are_checked_against_the_root_and_the_agent() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().display().to_string();
        let r = DataRoot::new(&tmp.path().join("atoll"), &tmp.path().join("atoll/agent")).unwrap();
        assert_eq!(r.check(&format!("{t}/atoll/db/./c")).unwrap(), tmp.path().join("atoll/db/c"));
        assert!(r.check(&format!("{t}/atoll/db")).is_ok());
        let err = r.check("/etc/atoll").unwrap_err().to_string();
        assert!(err.contains(&format!("outside this agent's data root {t}/atoll")) && err.contains("--data-root"), "{err}");
        assert!(r.check(&format!("{t}/atollx")).is_err());
        assert!(r.check(&format!("{t}/atoll/db/../../../etc")).unwrap_err().to_string().contains("\"..\""));
        assert!(r.check("db/c").is_err());
        assert!(r.check(&format!("{t}/atoll/agent/ops")).unwrap_err().to_string().contains("own data directory"));
        assert!(r.check(&format!("{t}/atoll")).unwrap_err().to_string().contains("own data directory"), "it holds the agent's");
        // The agent's directory reached through a link in the root's path.
        std::os::unix::fs::symlink(tmp.path().join("atoll"), tmp.path().join("alias")).unwrap();
        let r = DataRoot::new(&tmp.path().join("alias"), &tmp.path().join("atoll/agent")).unwrap();
        assert!(r.check(&format!("{t}/alias/agent")).unwrap_err().to_string().contains("own data directory"));
        assert!(r.check(&format!("{t}/alias/db")).is_ok());
    }

    #[test]
    fn the_root_itself_is_made_and_removed_like_any_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("db");
        let r = DataRoot::new(&db, &tmp.path().join("agent")).unwrap();
        assert!(!r.remove_all(&db).unwrap(), "nothing there yet");
        assert!(matches!(r.open_dir(&db), Err(ConfineError::NotFound(_))));
        assert!(!db.exists(), "neither a removal nor an open makes it");
        let (_, made) = r.make_dirs(&db.join("c")).unwrap();
        assert_eq!(made, vec![db.clone(), db.join("c")]);
        assert!(r.remove_all(&db).unwrap());
        assert!(!db.exists());
    }

    #[test]
    fn walks_refuse_links_and_writes_never_follow_one() {
        let tmp = tempfile::tempdir().unwrap();
        let r = root(tmp.path());
        let (dir, made) = r.make_dirs(&tmp.path().join("root/db/c")).unwrap();
        assert_eq!(made, vec![tmp.path().join("root/db"), tmp.path().join("root/db/c")]);
        dir.set_mode_owner(0o750, Owner::default()).unwrap();
        assert_eq!(std::fs::metadata(tmp.path().join("root/db/c")).unwrap().mode() & 0o777, 0o750);

        // A link on the way, to a directory outside: refused, nothing made there.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("root/db/evil")).unwrap();
        let err = r.make_dirs(&tmp.path().join("root/db/evil/s1")).unwrap_err().to_string();
        assert!(err.contains("db/evil is a symbolic link"), "{err}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        assert!(r.remove_all(&tmp.path().join("root/db/evil/s1")).is_err());

        // A link where the file goes, and one at its temporary name.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("root/db/c/my.cnf")).unwrap();
        std::os::unix::fs::symlink(&victim, tmp.path().join("root/db/c/.my.cnf.atoll-tmp")).unwrap();
        dir.write_atomic("my.cnf", b"[mysqld]\n", 0o640, Owner::default()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let cnf = std::fs::symlink_metadata(tmp.path().join("root/db/c/my.cnf")).unwrap();
        assert!(cnf.is_file() && cnf.mode() & 0o777 == 0o640);
        assert_eq!(std::fs::read_dir(tmp.path().join("root/db/c")).unwrap().count(), 1, "no temporary file left");

        std::os::unix::fs::symlink(&victim, tmp.path().join("root/db/c/out")).unwrap();
        assert!(dir.open_append("out", 0o640, 0).is_err());
        assert!(dir.read_tail("out", 100, 0).is_err());
        std::fs::hard_link(&victim, tmp.path().join("root/db/c/hard")).unwrap();
        assert!(dir.read_tail("hard", 100, 0).unwrap_err().to_string().contains("hard links"));
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(dir.read_tail("my.cnf", 4, 0).unwrap().unwrap(), "ld]\n");
        assert!(dir.read_tail("none", 4, 0).unwrap().is_none());

        // Removal removes links, never what they point at.
        assert!(r.remove_all(&tmp.path().join("root/db")).unwrap());
        assert!(!tmp.path().join("root/db").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(outside.is_dir());
        assert!(!r.remove_all(&tmp.path().join("root/db")).unwrap(), "already gone");
    }
}

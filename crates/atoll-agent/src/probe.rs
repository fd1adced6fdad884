//! Answers a [`ProbeRequest`]: can the planned deployment use this host's
//! data directory, ports and binaries? Measures by *doing* (creating a file,
//! binding a port), because permission bits and `access(2)` lie for root and
//! say nothing about read-only filesystems.
//!
//! The report carries measurements only; atoll-plan turns them into verdicts.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use atoll_plan::{BinaryProbe, PortProbe, ProbeReport, ProbeRequest};

/// Searched after `PATH`: the agent may run under systemd with a minimal
/// `PATH`, while `mariadbd` and friends live in sbin directories.
const EXTRA_BIN_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"];

/// Probes the host for `req`, binding ports on `address` (the address the
/// cluster will use). The work is blocking file and socket I/O, so it runs on
/// the blocking pool: a hung network filesystem must not stall the runtime.
pub async fn run(address: IpAddr, req: &ProbeRequest) -> ProbeReport {
    let owned = req.clone();
    match tokio::task::spawn_blocking(move || run_blocking(address, &owned)).await {
        Ok(report) => report,
        Err(e) => aborted(req, &format!("probe aborted: {e}")),
    }
}

/// The synchronous probe behind [`run`].
fn run_blocking(address: IpAddr, req: &ProbeRequest) -> ProbeReport {
    ProbeReport {
        data_dir: req.data_dir.clone(),
        data_dir_error: check_data_dir(&req.data_dir).err(),
        ports: req.ports.iter().map(|&port| probe_port(address, port)).collect(),
        binaries: req
            .binaries
            .iter()
            .map(|name| BinaryProbe { name: name.clone(), path: find_binary(name).map(|p| p.to_string_lossy().into_owned()) })
            .collect(),
    }
}

/// A report that fails everything it was asked, so a probe that did not run
/// can never read as "all clear".
fn aborted(req: &ProbeRequest, why: &str) -> ProbeReport {
    ProbeReport {
        data_dir: req.data_dir.clone(),
        data_dir_error: Some(why.to_owned()),
        ports: req.ports.iter().map(|&port| PortProbe { port, free: false, detail: Some(why.to_owned()) }).collect(),
        binaries: req.binaries.iter().map(|n| BinaryProbe { name: n.clone(), path: None }).collect(),
    }
}

// ---------------------------------------------------------------- data dir

/// Checks that `dir` is an existing directory in which a file can be created,
/// written and removed. Does not create the directory: where data lives is
/// the operator's decision, and a typo should fail here, not sprout a tree.
///
/// Creating a file is the only honest test: root passes every permission
/// check `access(2)` makes, yet still fails on a read-only filesystem,
/// on sysfs, or when the disk is full.
fn check_data_dir(dir: &str) -> Result<(), String> {
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(format!("{dir:?}: not an absolute path"));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{dir}: not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{dir}: does not exist"));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(format!("{dir}: does not exist (a parent is not a directory)"));
        }
        Err(e) => return Err(format!("{dir}: {}", describe(&e))),
    }
    write_and_remove(&path.join(format!(".atoll-probe-{}", uuid::Uuid::new_v4().simple())))
}

/// Creates `file` (never an existing one), writes a few bytes so a full disk
/// shows, and removes it. A file that cannot be removed is reported too: it
/// would be left behind in the data directory.
fn write_and_remove(file: &Path) -> Result<(), String> {
    let shown = file.display();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
        .map_err(|e| format!("{shown}: cannot create a file: {}", describe(&e)))?;
    let written = f.write_all(b"atoll probe\n");
    drop(f);
    let removed = std::fs::remove_file(file);
    written.map_err(|e| format!("{shown}: cannot write: {}", describe(&e)))?;
    removed.map_err(|e| format!("{shown}: created but cannot remove: {}", describe(&e)))
}

/// The OS error text in lower case ("read-only file system (os error 30)"),
/// to read naturally after the path.
fn describe(e: &std::io::Error) -> String {
    e.to_string().to_lowercase()
}

// ---------------------------------------------------------------- ports

/// Whether `port` can be listened on at `address`: Atoll's database
/// servers bind their host's own address (`bind-address`, Galera's
/// `gmcast.listen_addr`), never the wildcard. On Linux a bind to one address
/// fails when the port is held there or on the wildcard, and not when it is
/// held on another address, which is exactly the conflict that matters
/// (measured in the tests). Several hosts may share one machine on distinct
/// loopback addresses, so probing the wildcard would report false clashes.
///
/// std sets SO_REUSEADDR, as mariadbd does: a port whose old connections
/// linger in TIME_WAIT is reported free, which is the truth for mariadbd too,
/// while any listener still makes the bind fail.
fn probe_port(address: IpAddr, port: u16) -> PortProbe {
    let detail = if port == 0 { Some("port 0 is not a fixed port".to_owned()) } else { try_bind(SocketAddr::new(address, port)).err() };
    PortProbe { port, free: detail.is_none(), detail }
}

/// Binds and immediately releases a listener; the error names the address
/// because a failure on the wildcard reads differently from one on the host
/// address (which may also mean the address is not on this host).
fn try_bind(addr: SocketAddr) -> Result<(), String> {
    TcpListener::bind(addr).map(drop).map_err(|e| format!("cannot bind {addr}: {}", describe(&e)))
}

// ---------------------------------------------------------------- binaries

/// Where `name` is: absolute paths are checked as given; bare names are
/// searched on `PATH` and [`EXTRA_BIN_DIRS`]. Relative paths with a slash
/// are not resolved, since they would depend on the agent's working
/// directory.
pub(crate) fn find_binary(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return is_usable(path).then(|| path.to_path_buf());
    }
    if name.is_empty() || name.contains('/') {
        return None;
    }
    search_dirs().into_iter().map(|dir| dir.join(name)).find(|p| is_usable(p))
}

/// `PATH` entries (absolute ones only: `.` would depend on the working
/// directory), then the usual sbin/bin directories, without repeats.
fn search_dirs() -> Vec<PathBuf> {
    let from_env = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in from_env.into_iter().chain(EXTRA_BIN_DIRS.iter().map(PathBuf::from)) {
        if dir.is_absolute() && !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// A regular file (symlinks followed), executable by someone unless it is a
/// shared library such as `libgalera_smm.so`, which is loaded, not run.
fn is_usable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    meta.is_file() && (is_shared_object(path) || meta.permissions().mode() & 0o111 != 0)
}

/// `x.so` or a versioned `x.so.1.2`.
fn is_shared_object(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".so") || n.contains(".so."))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps a bad value should panic
mod tests {
    use super::*;

    fn req(data_dir: &str, ports: Vec<u16>, binaries: &[&str]) -> ProbeRequest {
        ProbeRequest { data_dir: data_dir.to_owned(), ports, binaries: binaries.iter().map(|s| (*s).to_owned()).collect() }
    }

    const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A port the OS just handed out and released: free unless raced.
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn tempdir_passes_and_is_left_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let report = run(LOCALHOST, &req(path, vec![], &[])).await;
        assert_eq!(report.data_dir, path);
        assert_eq!(report.data_dir_error, None);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probe file left behind");
    }

    #[tokio::test]
    async fn missing_or_file_data_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let under_file = file.join("sub");
        let cases = [
            (missing.to_str().unwrap(), "does not exist"),
            (file.to_str().unwrap(), "not a directory"),
            (under_file.to_str().unwrap(), "not a directory"),
            ("relative/dir", "not an absolute path"),
            ("", "not an absolute path"),
        ];
        for (path, expected) in cases {
            let report = run(LOCALHOST, &req(path, vec![], &[])).await;
            let err = report.data_dir_error.unwrap_or_default();
            assert!(err.contains(path) && err.contains(expected), "{path}: {err}");
        }
        assert!(!missing.exists(), "the probe must not create the data dir");
    }

    /// sysfs refuses new files even to root (or is mounted read-only in a
    /// container): a permission-bit check would have passed it.
    #[test]
    fn sysfs_is_not_writable_even_for_root() {
        let err = check_data_dir("/sys").unwrap_err();
        assert!(err.contains("/sys/.atoll-probe-") && err.contains("cannot create"), "{err}");
    }

    #[test]
    fn errors_read_in_lower_case() {
        let e = std::io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(describe(&e), "read-only file system (os error 30)");
        let e = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(describe(&e).starts_with("permission denied"));
    }

    #[tokio::test]
    async fn free_port_is_free() {
        let port = free_port();
        let report = run(LOCALHOST, &req("/", vec![port], &[])).await;
        assert_eq!(report.ports, vec![PortProbe { port, free: true, detail: None }]);
    }

    #[tokio::test]
    async fn held_port_is_taken() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let report = run(LOCALHOST, &req("/", vec![port], &[])).await;
        let p = &report.ports[0];
        assert!(!p.free);
        let detail = p.detail.as_deref().unwrap_or_default();
        assert!(detail.contains(&format!("127.0.0.1:{port}")) && detail.contains("in use"), "{detail}");
    }

    /// Linux semantics the probe relies on, measured: a wildcard holder
    /// blocks a specific bind, and a holder on one address blocks the
    /// wildcard but not another specific address.
    #[test]
    fn linux_bind_semantics() {
        let wild = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = wild.local_addr().unwrap().port();
        let e = TcpListener::bind(("127.0.0.11", port)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        drop(wild);

        let one = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = one.local_addr().unwrap().port();
        let e = TcpListener::bind(("0.0.0.0", port)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        assert!(TcpListener::bind(("127.0.0.2", port)).is_ok());
    }

    #[test]
    fn wildcard_holders_count_and_other_addresses_do_not() {
        let wild = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = wild.local_addr().unwrap().port();
        assert!(!probe_port("127.0.0.11".parse().unwrap(), port).free);
        drop(wild);

        // Another host on the same machine (another loopback address)
        // holding the port is no clash.
        let one = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = one.local_addr().unwrap().port();
        assert!(probe_port("127.0.0.2".parse().unwrap(), port).free);
        assert!(!probe_port("127.0.0.1".parse().unwrap(), port).free);
    }

    #[test]
    fn port_zero_is_not_free() {
        assert!(!probe_port(LOCALHOST, 0).free);
    }

    #[tokio::test]
    async fn binaries_are_found_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("data.txt");
        let lib = dir.path().join("libgalera_smm.so");
        std::fs::write(&plain, b"x").unwrap();
        std::fs::write(&lib, b"x").unwrap();
        let (plain, lib) = (plain.to_str().unwrap(), lib.to_str().unwrap());
        let names = ["sh", "definitely-not-a-binary", "/bin/sh", plain, lib, "bin/sh", "/"];
        let report = run(LOCALHOST, &req("/", vec![], &names)).await;
        let found: Vec<(&str, bool)> = report.binaries.iter().map(|b| (b.name.as_str(), b.path.is_some())).collect();
        assert_eq!(
            found,
            vec![
                ("sh", true),
                ("definitely-not-a-binary", false),
                ("/bin/sh", true),
                (plain, false),
                (lib, true),
                ("bin/sh", false),
                ("/", false),
            ]
        );
        let sh = report.binaries[0].path.as_deref().unwrap_or_default();
        assert!(sh.ends_with("/sh") && Path::new(sh).is_absolute(), "{sh}");
    }
}

//! Where one server's files are. The platform renders `my.cnf`; the agent
//! reads the few paths it needs back from it, so the two cannot disagree,
//! and falls back to the conventional names inside the server's directory.

use std::path::{Path, PathBuf};

use atoll_api::db::DbServerDef;

/// `mariadbd`'s output and the `--wsrep-recover` log, in the server's
/// directory.
pub(crate) const OUT_FILE: &str = "mariadbd.out";
pub(crate) const RECOVER_LOG: &str = "recover.log";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub dir: PathBuf,
    pub cnf: PathBuf,
    pub data: PathBuf,
    pub tmp: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub error_log: PathBuf,
    /// `mariadbd`'s own stdout and stderr (little goes there: it logs to
    /// `log-error`).
    pub out: PathBuf,
    pub recover_log: PathBuf,
    /// The engine build's installation directory; `None`: system packages.
    pub basedir: Option<PathBuf>,
}

impl Layout {
    pub(crate) fn new(def: &DbServerDef) -> Self {
        let dir = PathBuf::from(&def.dir);
        let opt = |key: &str| mysqld_option(&def.config, key).filter(|v| !v.is_empty());
        let data = opt("datadir").map(|v| absolute(&dir, &v)).unwrap_or_else(|| dir.join("data"));
        // mariadbd resolves these relative to its data directory.
        let in_data = |key: &str, default: PathBuf| opt(key).map(|v| absolute(&data, &v)).unwrap_or(default);
        let mut error_log = in_data("log_error", dir.join("error.log"));
        if error_log.extension().is_none() {
            error_log.set_extension("err");
        }
        Self {
            cnf: dir.join("my.cnf"),
            tmp: opt("tmpdir").map(|v| absolute(&dir, &v)).unwrap_or_else(|| dir.join("tmp")),
            socket: in_data("socket", dir.join("mariadbd.sock")),
            pid_file: in_data("pid_file", dir.join("mariadbd.pid")),
            error_log,
            out: dir.join(OUT_FILE),
            recover_log: dir.join(RECOVER_LOG),
            basedir: def.basedir.as_ref().map(PathBuf::from),
            data,
            dir,
        }
    }

    /// The first argument of every `mariadbd` this agent starts; also how
    /// it recognises its processes after a restart.
    pub(crate) fn defaults_arg(&self) -> String {
        format!("--defaults-file={}", self.cnf.display())
    }
}

impl Layout {
    /// Where the program `name` of this server's engine build is: inside
    /// the build's directory (in `bin`, `sbin`, `libexec` or `scripts`,
    /// where MariaDB tarballs put them) or, for the system build, on
    /// `PATH` and in the sbin directories.
    pub(crate) fn program(&self, name: &str) -> PathBuf {
        match &self.basedir {
            Some(base) => ["bin", "sbin", "libexec", "scripts"]
                .iter()
                .map(|d| base.join(d).join(name))
                .find(|p| p.is_file())
                .unwrap_or_else(|| base.join("bin").join(name)),
            None => super::process::find_binary(name),
        }
    }

    /// Arguments a program of a package build needs to find its own files
    /// (the install-db script looks for `mariadbd` and its SQL there).
    pub(crate) fn basedir_args(&self) -> Vec<String> {
        self.basedir.iter().map(|b| format!("--basedir={}", b.display())).collect()
    }
}

fn absolute(base: &Path, v: &str) -> PathBuf {
    let p = Path::new(v);
    if p.is_absolute() { p.to_path_buf() } else { base.join(p) }
}

/// The groups `mariadbd` reads (with or without a `-10.11` style suffix).
fn server_group(name: &str) -> bool {
    let base = name.split_once('-').filter(|(_, v)| v.starts_with(|c: char| c.is_ascii_digit())).map_or(name, |(b, _)| b);
    matches!(base, "mysqld" | "server" | "mariadb" | "mariadbd" | "galera")
}

/// The last value of `key` (dashes and underscores alike) in a server
/// group of an option file.
pub(crate) fn mysqld_option(config: &str, key: &str) -> Option<String> {
    let want = key.replace('-', "_");
    let mut in_server = false;
    let mut found = None;
    for line in config.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_server = server_group(group.trim());
            continue;
        }
        if !in_server {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        if k.trim().replace('-', "_") == want {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
            found = Some(v.to_string());
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use atoll_api::db::DbCredentials;

    use super::*;

    fn def(config: &str) -> DbServerDef {
        DbServerDef {
            id: atoll_core::DbId::new("c", "s1"),
            dir: "/srv/db/s1".into(),
            config: config.into(),
            sql_addr: "127.0.0.1:3306".into(),
            peers: vec![],
            admin: DbCredentials { user: "a".into(), password: "b".into() },
            basedir: None,
            tls: None,
        }
    }

    #[test]
    fn programs_come_from_the_build() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("sbin")).unwrap();
        std::fs::write(tmp.path().join("sbin/mariadbd"), b"").unwrap();
        let mut d = def("[mysqld]\n");
        d.basedir = Some(tmp.path().display().to_string());
        let l = Layout::new(&d);
        assert_eq!(l.program("mariadbd"), tmp.path().join("sbin/mariadbd"));
        assert_eq!(l.program("mariadb-install-db"), tmp.path().join("bin/mariadb-install-db"));
        assert_eq!(l.basedir_args(), vec![format!("--basedir={}", tmp.path().display())]);
        assert!(Layout::new(&def("")).basedir_args().is_empty());
    }

    #[test]
    fn paths_come_from_the_config() {
        let l = Layout::new(&def(
            "[client]\nsocket=/wrong\n[mysqld]\ndatadir = /srv/db/s1/d\nsocket=/srv/db/s1/s.sock\npid-file=p.pid\nlog_error=/srv/db/s1/err\n[mysqld_safe]\nsocket=/wrong\n",
        ));
        assert_eq!(l.data, Path::new("/srv/db/s1/d"));
        assert_eq!(l.socket, Path::new("/srv/db/s1/s.sock"));
        assert_eq!(l.pid_file, Path::new("/srv/db/s1/d/p.pid"));
        assert_eq!(l.error_log, Path::new("/srv/db/s1/err.err"));
        assert_eq!(l.defaults_arg(), "--defaults-file=/srv/db/s1/my.cnf");
    }

    #[test]
    fn conventional_names_by_default() {
        let l = Layout::new(&def("[mariadb-10.11]\nport=3306\n"));
        assert_eq!(l.data, Path::new("/srv/db/s1/data"));
        assert_eq!(l.socket, Path::new("/srv/db/s1/mariadbd.sock"));
        assert_eq!(l.error_log, Path::new("/srv/db/s1/error.log"));
        assert_eq!(mysqld_option("[mariadb-10.11]\nport=3306\n", "port").as_deref(), Some("3306"));
        assert_eq!(mysqld_option("[mysqld]\nwsrep_provider_options=\"a=1;b=2\"\n", "wsrep-provider-options").as_deref(), Some("a=1;b=2"));
    }
}

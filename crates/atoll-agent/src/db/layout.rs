//! Where one server's files are. The platform renders `my.cnf`; the agent
//! reads the few paths it needs back from it, so the two cannot disagree,
//! and falls back to the conventional names inside the server's directory.

use std::path::{Path, PathBuf};

use atoll_api::db::DbServerDef;

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
            out: dir.join("mariadbd.out"),
            recover_log: dir.join("recover.log"),
            data,
            dir,
        }
    }

    pub(crate) fn grastate(&self) -> PathBuf {
        self.data.join("grastate.dat")
    }

    /// The first argument of every `mariadbd` this agent starts; also how
    /// it recognises its processes after a restart.
    pub(crate) fn defaults_arg(&self) -> String {
        format!("--defaults-file={}", self.cnf.display())
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
            id: "c/s1".into(),
            dir: "/srv/db/s1".into(),
            config: config.into(),
            sql_addr: "127.0.0.1:3306".into(),
            peers: vec![],
            admin: DbCredentials { user: "a".into(), password: "b".into() },
        }
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

//! What makes a directory tree an engine build: the files a server cannot
//! run without, found by their conventional places. Used on the server to
//! refuse a package tarball that could never run (from the archive's entry
//! list) and on the agent to report an installed one (from the extracted
//! tree), so the two cannot disagree about what a build is.

/// The essential files of a build, relative to its root (the archive's root
/// or its single top-level directory, as MariaDB's own tarballs have one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildFiles {
    /// The directory everything else is relative to: `""` or `"top/"`.
    pub root: String,
    pub mariadbd: String,
    pub install_db: String,
    pub galera: String,
    /// The directory holding `english/errmsg.sys` (`lc_messages_dir`),
    /// when the build carries its own messages.
    pub messages_dir: Option<String>,
}

/// Where `mariadbd` may be, relative to a build's root.
const SERVER: &[&str] = &["bin/mariadbd", "sbin/mariadbd", "libexec/mariadbd"];
/// Where the data-directory initialiser may be.
const INSTALL_DB: &[&str] = &["bin/mariadb-install-db", "scripts/mariadb-install-db", "bin/mysql_install_db", "scripts/mysql_install_db"];
/// The Galera provider's file name; it may be anywhere inside the build.
pub const GALERA_LIB: &str = "libgalera_smm.so";

/// Finds the build in a list of relative paths (archive entries or files
/// below a directory; a leading `./` is ignored). On failure, names
/// everything that is missing, so the operator can fix the tarball at once.
pub fn locate<'a>(paths: impl IntoIterator<Item = &'a str>) -> Result<BuildFiles, Vec<String>> {
    let paths: Vec<&str> = paths.into_iter().map(|p| p.trim_start_matches("./")).collect();
    // The root is wherever mariadbd sits: at the top, or one level down.
    let server = paths.iter().find_map(|p| {
        SERVER.iter().find_map(|s| {
            let root = p.strip_suffix(s)?;
            (root.is_empty() || (root.ends_with('/') && !root[..root.len() - 1].contains('/'))).then(|| (root.to_string(), p.to_string()))
        })
    });
    let root = server.as_ref().map_or("", |(r, _)| r.as_str()).to_string();
    let under_root = |rel: &str| paths.iter().find(|p| p.strip_prefix(root.as_str()) == Some(rel)).map(|p| p.to_string());
    let install_db = INSTALL_DB.iter().find_map(|rel| under_root(rel));
    let galera =
        paths.iter().filter(|p| p.starts_with(root.as_str())).find(|p| p.rsplit('/').next() == Some(GALERA_LIB)).map(|p| p.to_string());
    let messages_dir =
        paths.iter().filter(|p| p.starts_with(root.as_str())).find_map(|p| p.strip_suffix("/english/errmsg.sys")).map(str::to_string);
    let mut missing = Vec::new();
    if server.is_none() {
        missing.push(format!("mariadbd (looked for {})", SERVER.join(", ")));
    }
    if install_db.is_none() {
        missing.push(format!("an install-db script (looked for {})", INSTALL_DB.join(", ")));
    }
    if galera.is_none() {
        missing.push(format!("the Galera library {GALERA_LIB} (anywhere inside)"));
    }
    match (server, install_db, galera) {
        (Some((_, mariadbd)), Some(install_db), Some(galera)) if missing.is_empty() => {
            Ok(BuildFiles { root, mariadbd, install_db, galera, messages_dir })
        }
        _ => Err(missing),
    }
}

/// An archive entry path that would land outside the directory it is
/// extracted into (absolute, or climbing with `..`).
pub fn escapes(path: &str) -> bool {
    path.starts_with('/') || path.split('/').any(|c| c == "..")
}

/// The version in `mariadbd --version` output: `mariadbd  Ver
/// 11.8.3-MariaDB for linux-systemd on x86_64 (MariaDB Server)` gives
/// `11.8.3-MariaDB`.
pub fn parse_version(output: &str) -> Option<String> {
    let mut words = output.split_whitespace();
    words.find(|w| *w == "Ver").and_then(|_| words.next()).map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_flat_build() {
        let b = locate([
            "./",
            "./sbin/mariadbd",
            "./bin/mariadb-install-db",
            "./lib/galera/libgalera_smm.so",
            "./share/mysql/english/errmsg.sys",
        ])
        .unwrap();
        assert_eq!(b.root, "");
        assert_eq!(b.mariadbd, "sbin/mariadbd");
        assert_eq!(b.install_db, "bin/mariadb-install-db");
        assert_eq!(b.galera, "lib/galera/libgalera_smm.so");
        assert_eq!(b.messages_dir.as_deref(), Some("share/mysql"));
    }

    #[test]
    fn finds_a_build_below_one_top_directory() {
        let b = locate(["mariadb-11.8.3/bin/mariadbd", "mariadb-11.8.3/scripts/mariadb-install-db", "mariadb-11.8.3/lib/libgalera_smm.so"])
            .unwrap();
        assert_eq!(b.root, "mariadb-11.8.3/");
        assert_eq!(b.install_db, "mariadb-11.8.3/scripts/mariadb-install-db");
        assert_eq!(b.messages_dir, None);
        // Two levels down is not a build root.
        assert!(locate(["a/b/bin/mariadbd", "a/b/bin/mariadb-install-db", "a/b/libgalera_smm.so"]).is_err());
    }

    #[test]
    fn names_everything_missing() {
        let missing = locate(["bin/mariadb-install-db", "README"]).unwrap_err();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].starts_with("mariadbd (looked for bin/mariadbd"), "{missing:?}");
        assert!(missing[1].contains("libgalera_smm.so"), "{missing:?}");
        assert_eq!(locate([]).unwrap_err().len(), 3);
    }

    #[test]
    fn escaping_paths_and_versions() {
        assert!(escapes("/etc/passwd"));
        assert!(escapes("a/../../b"));
        assert!(!escapes("a/..b/c"));
        assert_eq!(
            parse_version("mariadbd  Ver 11.8.3-MariaDB for linux-systemd on x86_64 (MariaDB Server)\n").as_deref(),
            Some("11.8.3-MariaDB")
        );
        assert_eq!(parse_version("garbage"), None);
    }
}

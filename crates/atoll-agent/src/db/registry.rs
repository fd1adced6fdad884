//! The persisted list of servers this agent runs, so a restarted agent
//! knows what to resume. It holds the admin credentials: mode 0600.

use std::path::Path;

use atoll_api::db::DbServerDef;
use serde::{Deserialize, Serialize};

use super::DbError;
use crate::files::{Owner, write_atomic};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub def: DbServerDef,
    /// What the platform last asked for: a restarted agent starts (or
    /// adopts) exactly the servers with this set.
    pub desired_running: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    servers: Vec<Record>,
}

/// The records in `path`; none when the file does not exist yet.
pub(crate) fn load(path: &Path) -> Result<Vec<Record>, DbError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<RegistryFile>(&bytes)
            .map(|f| f.servers)
            .map_err(|e| DbError::Io(format!("{} is damaged ({e}); restore it or remove it and define the servers again", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(DbError::Io(format!("cannot read {}: {e}", path.display()))),
    }
}

pub(crate) fn save(path: &Path, servers: Vec<Record>) -> Result<(), DbError> {
    let bytes = serde_json::to_vec_pretty(&RegistryFile { servers }).map_err(|e| DbError::Io(e.to_string()))?;
    write_atomic(path, &bytes, 0o600, Owner::default()).map_err(DbError::Io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use atoll_api::db::DbCredentials;

    use super::*;

    #[test]
    fn round_trip_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("db-servers.json");
        assert!(load(&p).unwrap().is_empty());
        let r = Record {
            def: DbServerDef {
                id: atoll_core::DbId::new("c", "s1"),
                dir: "/srv/s1".into(),
                config: "[mysqld]\n".into(),
                sql_addr: "127.0.0.1:3306".into(),
                peers: vec!["127.0.0.2:3306".into()],
                admin: DbCredentials { user: "atoll".into(), password: "secret".into() },
                basedir: None,
                tls: None,
            },
            desired_running: true,
        };
        save(&p, vec![r.clone()]).unwrap();
        assert_eq!(load(&p).unwrap(), vec![r]);
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        std::fs::write(&p, b"{").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("damaged"));
    }
}

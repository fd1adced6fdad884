//! The agent's identity and credentials, kept in its data directory so a
//! restarted agent, or one whose address changed, is the same host.

use std::path::{Path, PathBuf};

use atoll_core::HostId;
use serde::{Deserialize, Serialize};

pub use atoll_core::secret::sha256_hex;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub host_id: HostId,
    /// Presented to the server; set once registered.
    pub agent_token: Option<String>,
    /// SHA-256 (hex) of the token the server presents to us.
    pub server_token_hash: Option<String>,
}

impl Identity {
    fn path(dir: &Path) -> PathBuf {
        dir.join("identity.json")
    }

    /// Loads the identity, or makes a new one on the first start.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Identity> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is damaged ({e}); move it away to make this host join as a new one", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity { host_id: HostId::new(), agent_token: None, server_token_hash: None };
                id.save(dir)?;
                Ok(id)
            }
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes atomically (a temporary file renamed into place), readable by
    /// root only from its creation, and flushed to disk with its directory:
    /// the token in it is this host's credential, and a crash must leave
    /// the old file or the new one, never none.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
        let bytes = serde_json::to_vec_pretty(self)?;
        crate::files::write_atomic(&Self::path(dir), &bytes, 0o600, crate::files::Owner::default()).map_err(|e| anyhow::anyhow!(e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn identity_is_private_and_survives_a_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent");
        let mut id = Identity::load_or_create(&dir).unwrap();
        id.agent_token = Some("tok".into());
        id.save(&dir).unwrap();
        let again = Identity::load_or_create(&dir).unwrap();
        assert_eq!((again.host_id, again.agent_token.as_deref()), (id.host_id, Some("tok")));
        assert_eq!(std::fs::metadata(dir.join("identity.json")).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
    }
}

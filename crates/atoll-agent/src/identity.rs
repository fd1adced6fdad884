//! The agent's identity and credentials, kept in its data directory so a
//! restarted agent, or one whose address changed, is the same host.

use std::path::{Path, PathBuf};

use atoll_core::HostId;
use serde::{Deserialize, Serialize};

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

    /// Writes atomically (temp file, then rename), readable by root only.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))?;
        let path = Self::path(dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

pub use atoll_core::secret::sha256_hex;

//! The agent's TLS, when the platform serves HTTPS: the platform's CA,
//! pinned at join by its fingerprint and kept in the data directory; the
//! agent's own key, which never leaves the host; and the certificate the
//! platform issues for that key at each registration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use atoll_client::Servers;
use atoll_pki::{CertKey, LiveCert};

use crate::AgentConfig;
use crate::files::{Owner, write_atomic};

pub struct AgentTls {
    pub ca_pem: String,
    /// What the agent's API presents; empty until the first registration.
    pub live: Arc<LiveCert>,
    key_pem: String,
    dir: PathBuf,
}

impl AgentTls {
    /// `None` when every server is plain HTTP. Trusts the CA for every
    /// client of this process, and presents the saved certificate if any.
    pub async fn setup(config: &AgentConfig, servers: &Servers) -> anyhow::Result<Option<AgentTls>> {
        if !servers.all().iter().any(|u| u.starts_with("https://")) {
            return Ok(None);
        }
        let dir = config.data_dir.clone();
        let ca_pem = platform_ca(config, servers).await?;
        atoll_client::trust_platform_ca(&ca_pem)?;
        let key_path = cert_and_key_paths(&dir).1;
        let key_pem = match std::fs::read_to_string(&key_path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = atoll_pki::new_key_pem()?;
                write_atomic(&key_path, k.as_bytes(), 0o600, Owner::default()).map_err(|e| anyhow::anyhow!(e))?;
                k
            }
            Err(e) => anyhow::bail!("cannot read the agent's key {}: {e}", key_path.display()),
        };
        let tls = AgentTls { ca_pem, live: Arc::new(LiveCert::default()), key_pem, dir };
        // Serve with the last certificate until registration renews it.
        if let Ok(cert_pem) = std::fs::read_to_string(tls.cert_path())
            && let Err(e) = tls.use_cert(cert_pem)
        {
            tracing::warn!(error = %e, "the saved certificate is unusable; waiting for a new one at registration");
        }
        Ok(Some(tls))
    }

    pub fn public_key_hex(&self) -> anyhow::Result<String> {
        Ok(atoll_pki::public_key_hex(&self.key_pem)?)
    }

    /// Takes the certificate registration returned: served from the next
    /// handshake on, presented on calls to the platform, kept for restarts.
    pub fn accept(&self, cert_pem: String) -> anyhow::Result<()> {
        write_atomic(&self.cert_path(), cert_pem.as_bytes(), 0o644, Owner::default()).map_err(|e| anyhow::anyhow!(e))?;
        self.use_cert(cert_pem)
    }

    /// Whether the certificate is half-way through its life (or missing):
    /// then the agent registers again, which issues a new one.
    pub fn due_for_renewal(&self) -> bool {
        std::fs::metadata(self.cert_path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age >= atoll_pki::RENEW_AFTER)
    }

    fn use_cert(&self, cert_pem: String) -> anyhow::Result<()> {
        let own = CertKey { cert_pem, key_pem: self.key_pem.clone() };
        self.live.set(&own)?;
        atoll_client::present_certificate(own);
        Ok(())
    }

    fn cert_path(&self) -> PathBuf {
        cert_and_key_paths(&self.dir).0
    }
}

/// The host's certificate and key in the agent's data directory (its
/// proxies present them too).
pub(crate) fn cert_and_key_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    (data_dir.join("agent.crt"), data_dir.join("agent.key"))
}

/// The CA from --ca-file, the data directory, or the servers (see
/// [`atoll_client::platform_ca`]), kept in the data directory.
async fn platform_ca(config: &AgentConfig, servers: &Servers) -> anyhow::Result<String> {
    let path = config.data_dir.join("ca.pem");
    let saved = std::fs::read_to_string(&path).ok();
    let given = atoll_client::platform_ca(&servers.all(), config.ca_file.as_deref(), config.ca_fingerprint.as_deref(), saved.clone())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let Some(pem) = given else {
        anyhow::bail!(
            "the platform serves HTTPS: give its CA with --ca-fingerprint (in the command `atoll host add` prints, and printed by \
             the server at start) or --ca-file"
        );
    };
    if saved.as_ref() != Some(&pem) {
        save_ca(&path, &pem)?;
    }
    Ok(pem)
}

fn save_ca(path: &Path, pem: &str) -> anyhow::Result<()> {
    write_atomic(path, pem.as_bytes(), 0o644, Owner::default()).map_err(|e| anyhow::anyhow!(e))
}

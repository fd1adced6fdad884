//! The agent's TLS, when the platform serves HTTPS: the platform's CA,
//! pinned at join by its fingerprint and kept in the data directory; the
//! agent's own key, which never leaves the host; and the certificate the
//! platform issues for that key at each registration.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use atoll_client::Servers;
use atoll_pki::{CertKey, LiveCert};

use crate::AgentConfig;
use crate::files::{Owner, write_atomic};

/// A CA bundle and its fingerprints, read once (every heartbeat reports
/// them).
#[derive(Clone)]
pub struct Trusted {
    pub pem: String,
    pub fingerprints: Vec<String>,
}

impl Trusted {
    fn new(pem: String) -> anyhow::Result<Trusted> {
        Ok(Trusted { fingerprints: atoll_pki::fingerprints(&pem)?, pem })
    }
}

pub struct AgentTls {
    /// The CAs trusted now (`ca.pem`), the issuing one first.
    bundle: RwLock<Trusted>,
    /// The CA the platform issues with now, as its last heartbeat said.
    issuer: RwLock<Option<String>>,
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
        let bundle = RwLock::new(Trusted::new(ca_pem)?);
        let tls = AgentTls { bundle, issuer: RwLock::new(None), live: Arc::new(LiveCert::default()), key_pem, dir };
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

    /// Whether the certificate is half-way through its life, missing, or
    /// issued by a CA other than the one that issues now (a rotation):
    /// then the agent registers again, which issues a new one.
    pub fn due_for_renewal(&self) -> bool {
        let aged = std::fs::metadata(self.cert_path())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age >= atoll_pki::RENEW_AFTER);
        aged || self.stale(&self.cert_path())
    }

    /// Whether the certificate in `path` was issued by a CA this agent
    /// trusts but the platform no longer issues with.
    pub fn stale(&self, path: &Path) -> bool {
        let Some(issuer) = self.issuer() else { return false };
        let trusted = self.trusted();
        if !trusted.fingerprints.contains(&issuer) {
            return false;
        }
        let Ok(cert) = std::fs::read_to_string(path) else { return false };
        atoll_pki::issuer_of(&cert, &trusted.pem).is_ok_and(|by| by.as_ref() != Some(&issuer))
    }

    pub fn trusted(&self) -> Trusted {
        self.bundle.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn issuer(&self) -> Option<String> {
        self.issuer.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn set_issuer(&self, fingerprint: &str) {
        let mut slot = self.issuer.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_deref() != Some(fingerprint) {
            *slot = Some(fingerprint.to_string());
        }
    }

    /// Trusts exactly the CAs of `bundle_pem` (from the platform, over its
    /// verified TLS) from now on, here and at the next start; whether
    /// anything changed.
    pub fn trust(&self, bundle_pem: &str) -> anyhow::Result<bool> {
        let wanted = Trusted::new(bundle_pem.to_string())?;
        if self.trusted().fingerprints == wanted.fingerprints {
            return Ok(false);
        }
        save_ca(&self.dir.join("ca.pem"), bundle_pem)?;
        atoll_client::trust_only(bundle_pem)?;
        tracing::info!(trusted = ?wanted.fingerprints, "platform CA bundle changed");
        *self.bundle.write().unwrap_or_else(std::sync::PoisonError::into_inner) = wanted;
        Ok(true)
    }

    /// What this host trusts and who issued its certificates: the agent's,
    /// and those of `db` (database servers by id and certificate file).
    pub fn facts(&self, db: Vec<(String, PathBuf)>) -> atoll_core::TlsFacts {
        let trusted = self.trusted();
        let issuer = |path: &Path| std::fs::read_to_string(path).ok().and_then(|c| atoll_pki::issuer_of(&c, &trusted.pem).ok().flatten());
        let mut certificates = vec![atoll_core::IssuedCert { holder: "agent".into(), issuer: issuer(&self.cert_path()) }];
        certificates.extend(db.into_iter().map(|(holder, path)| atoll_core::IssuedCert { issuer: issuer(&path), holder }));
        atoll_core::TlsFacts { trusts: trusted.fingerprints, certificates }
    }

    fn use_cert(&self, cert_pem: String) -> anyhow::Result<()> {
        let own = CertKey { cert_pem, key_pem: self.key_pem.clone() };
        self.live.set(&own)?;
        atoll_client::present_certificate(&own)?;
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

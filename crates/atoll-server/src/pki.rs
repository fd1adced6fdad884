//! The platform's CA as MetaDB keeps it, and as this server uses it: the
//! CA that issues, and the bundle everyone trusts. A rotation
//! ([`crate::ca_rotation`]) moves the document through three states, which
//! every server follows within [`FOLLOW_EVERY`]:
//!
//! - steady: one CA issues and is trusted;
//! - `next` staged: the new CA is trusted everywhere but issues nothing;
//! - `retiring`: the new CA issues; the old ones are still trusted until
//!   every certificate they issued is replaced.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use atoll_pki::{Ca, CertKey};
use atoll_store::{DocKind, DocRecord, MetaStore};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ServerConfig;
use crate::secrets::SecretBox;

/// How often a server looks for a changed CA document.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);
const DOC: &str = "ca";

/// A CA with its key (sealed with the platform key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyedCa {
    pub name: String,
    pub cert_pem: String,
    pub key: String,
}

/// The CA document. Its first three fields are the CA that issues (the
/// shape before rotations existed, which it still reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCa {
    #[serde(flatten)]
    pub active: KeyedCa,
    /// The CA a rotation rolls in: trusted, not yet issuing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<KeyedCa>,
    /// CAs a rotation rolled out: trusted until their certificates are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<String>,
}

impl StoredCa {
    /// The issuing CA first, then the next, then the retiring ones.
    pub fn bundle(&self) -> String {
        let mut pems: Vec<&str> = vec![&self.active.cert_pem];
        pems.extend(self.next.as_ref().map(|n| n.cert_pem.as_str()));
        pems.extend(self.retiring.iter().map(String::as_str));
        let mut bundle = String::new();
        for (i, pem) in pems.iter().enumerate() {
            if !pems[..i].contains(pem) {
                bundle.push_str(pem.trim_end());
                bundle.push('\n');
            }
        }
        bundle
    }
}

pub fn new_ca(secrets: &SecretBox) -> anyhow::Result<KeyedCa> {
    let name = format!("Atoll platform CA {}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let ca = Ca::generate(&name)?;
    Ok(KeyedCa { name, cert_pem: ca.cert_key.cert_pem.clone(), key: secrets.seal(&ca.cert_key.key_pem) })
}

pub async fn read(store: &dyn MetaStore) -> anyhow::Result<Option<(StoredCa, String)>> {
    let Some(doc) = store.get_doc(DocKind::Pki, DOC).await? else { return Ok(None) };
    let stored = serde_json::from_str(&doc.body).map_err(|e| anyhow::anyhow!("the platform CA in MetaDB is unreadable: {e}"))?;
    Ok(Some((stored, doc.body)))
}

pub async fn write(store: &dyn MetaStore, stored: &StoredCa) -> anyhow::Result<()> {
    let doc =
        DocRecord { kind: DocKind::Pki, name: DOC.into(), body: serde_json::to_string(stored)?, updated_ms: atoll_core::time::now_ms() };
    Ok(store.put_doc(&doc).await?)
}

/// The CA document, made on the first start of the first server; every
/// later start, and every other server, reads the same one.
async fn load_or_create(store: &dyn MetaStore, secrets: &SecretBox) -> anyhow::Result<(StoredCa, String)> {
    if let Some(found) = read(store).await? {
        return Ok(found);
    }
    let stored = StoredCa { active: new_ca(secrets)?, next: None, retiring: Vec::new() };
    let body = serde_json::to_string(&stored)?;
    let doc = DocRecord { kind: DocKind::Pki, name: DOC.into(), body, updated_ms: atoll_core::time::now_ms() };
    // Two servers starting at once: the first insert wins, the other reads it.
    match store.insert_doc(&doc).await {
        Ok(()) | Err(atoll_store::StoreError::Conflict(_)) => {
            read(store).await?.ok_or_else(|| anyhow::anyhow!("the platform CA vanished from MetaDB while it was made"))
        }
        Err(e) => Err(e.into()),
    }
}

/// What this server uses now.
pub struct Loaded {
    body: String,
    pub issuer: Arc<Ca>,
    pub issuer_fingerprint: String,
    /// Every trusted CA, the issuing one first.
    pub bundle: String,
    pub fingerprints: Vec<String>,
}

impl Loaded {
    fn new(stored: &StoredCa, body: String, secrets: &SecretBox) -> anyhow::Result<Loaded> {
        let key_pem = secrets.open(&stored.active.key)?;
        let issuer = Ca::from_pem(&stored.active.name, CertKey { cert_pem: stored.active.cert_pem.clone(), key_pem })?;
        let bundle = stored.bundle();
        Ok(Loaded {
            issuer_fingerprint: atoll_pki::fingerprint(issuer.cert_pem())?,
            fingerprints: atoll_pki::fingerprints(&bundle)?,
            issuer: Arc::new(issuer),
            bundle,
            body,
        })
    }
}

/// The platform's CA in this server: issues certificates, and is what its
/// clients and listener trust.
pub struct Pki {
    now: RwLock<Arc<Loaded>>,
    /// The API's certificate (issued by the CA unless the operator gave one).
    pub api_cert: Arc<atoll_pki::LiveCert>,
    addr: SocketAddr,
    /// This server's id among the platform's servers: what it has loaded
    /// is recorded under it ([`ServerPki`]).
    server_id: String,
    /// What was last recorded, so a pass writes only a change (or retries
    /// a write that failed).
    recorded: std::sync::Mutex<Option<ServerPki>>,
}

/// What one server trusts and which CA issued its own certificates, as it
/// records them in MetaDB (`pki/server/ID`) after each change: what a CA
/// rotation waits on (asking the server over HTTPS would need to verify
/// an API certificate the operator may have given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerPki {
    pub trusted: Vec<String>,
    pub issuer: String,
}

/// The document name of a server's [`ServerPki`].
pub fn server_doc(server_id: &str) -> String {
    format!("server/{server_id}")
}

impl Pki {
    /// Reads (or makes) the CA, trusts it, issues this server's own
    /// certificates and writes `ca.pem` in the data directory.
    pub async fn start(
        store: &dyn MetaStore,
        secrets: &SecretBox,
        config: &ServerConfig,
        addr: SocketAddr,
        server_id: &str,
    ) -> anyhow::Result<Pki> {
        let (stored, body) = load_or_create(store, secrets).await?;
        let loaded = Loaded::new(&stored, body, secrets)?;
        atoll_client::trust_platform_ca(&loaded.bundle)?;
        let pki = Pki {
            now: RwLock::new(Arc::new(loaded)),
            api_cert: Arc::default(),
            addr,
            server_id: server_id.to_string(),
            recorded: Default::default(),
        };
        pki.apply(config, None)?;
        pki.record(store).await?;
        Ok(pki)
    }

    /// Records what this server uses now (see [`ServerPki`]).
    async fn record(&self, store: &dyn MetaStore) -> anyhow::Result<()> {
        let now = self.now();
        let seen = ServerPki { trusted: now.fingerprints.clone(), issuer: now.issuer_fingerprint.clone() };
        if self.recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() == Some(&seen) {
            return Ok(());
        }
        let doc = DocRecord {
            kind: DocKind::Pki,
            name: server_doc(&self.server_id),
            body: serde_json::to_string(&seen)?,
            updated_ms: atoll_core::time::now_ms(),
        };
        store.put_doc(&doc).await?;
        *self.recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(seen);
        Ok(())
    }

    pub fn now(&self) -> Arc<Loaded> {
        Arc::clone(&self.now.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The CA that issues; read from MetaDB first, so a certificate issued
    /// right after a rotation's switch comes from the new CA.
    pub async fn issuer(&self, store: &dyn MetaStore, secrets: &SecretBox, config: &ServerConfig) -> Arc<Loaded> {
        if let Err(e) = self.follow(store, secrets, config).await {
            tracing::warn!(error = %e, "cannot read the platform CA from MetaDB; issuing with the one loaded");
        }
        self.now()
    }

    /// Takes a changed CA document: trust, own certificates, `ca.pem`.
    pub async fn follow(&self, store: &dyn MetaStore, secrets: &SecretBox, config: &ServerConfig) -> anyhow::Result<()> {
        let Some((stored, body)) = read(store).await? else { return Ok(()) };
        let before = self.now();
        if body == before.body {
            // Still rewritten when something else put an older bundle
            // there (a deployment run again with the CA it started with).
            write_bundle(config, &before.bundle)?;
            return self.record(store).await;
        }
        let loaded = Loaded::new(&stored, body, secrets)?;
        if loaded.fingerprints != before.fingerprints {
            atoll_client::trust_only(&loaded.bundle)?;
            tracing::info!(trusted = ?loaded.fingerprints, "platform CA bundle changed");
        }
        let reissue = loaded.issuer_fingerprint != before.issuer_fingerprint;
        *self.now.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        self.apply(config, Some(reissue))?;
        self.record(store).await
    }

    /// Writes the bundle beside the configuration and, at start or when
    /// the issuer changed (`reissue`), issues this server's certificates.
    fn apply(&self, config: &ServerConfig, reissue: Option<bool>) -> anyhow::Result<()> {
        let now = self.now();
        write_bundle(config, &now.bundle)?;
        if reissue != Some(false) {
            crate::tls::use_own_certs(&now.issuer, config, self.addr, &self.api_cert)?;
            if reissue.is_some() {
                tracing::info!(issuer = %now.issuer_fingerprint, "this server's certificates reissued by the new CA");
            }
        }
        Ok(())
    }
}

/// Writes the bundle where it is read: `ca.pem`, what clients pin and
/// trust (`atoll login --ca-file`), and `metadb-ca.pem`, what this
/// server's MetaDB connections verify (deploy wrote the first; they read
/// the file at each new connection). Unchanged files are not touched.
fn write_bundle(config: &ServerConfig, bundle: &str) -> anyhow::Result<()> {
    crate::write_public(&config.data_dir.join("ca.pem"), bundle)?;
    let metadb_ca = config.data_dir.join("metadb-ca.pem");
    if metadb_ca.exists() {
        crate::write_public(&metadb_ca, bundle)?;
    }
    Ok(())
}

/// Follows the CA document until `stop`.
pub async fn run(state: crate::state::AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        if let Err(e) = state.pki.follow(state.store.as_ref(), &state.secrets, &state.config).await {
            tracing::warn!(error = %e, "cannot follow the platform CA; trying again");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ca(name: &str) -> KeyedCa {
        let ca = Ca::generate(name).unwrap();
        KeyedCa { name: name.into(), cert_pem: ca.cert_key.cert_pem, key: "sealed".into() }
    }

    #[test]
    fn documents_before_rotations_still_read_and_bundles_put_the_issuer_first() {
        let old = ca("old");
        let legacy = serde_json::json!({ "name": "old", "cert_pem": old.cert_pem, "key": "sealed" }).to_string();
        let stored: StoredCa = serde_json::from_str(&legacy).unwrap();
        assert!(stored.next.is_none() && stored.retiring.is_empty());
        assert_eq!(atoll_pki::fingerprints(&stored.bundle()).unwrap().len(), 1);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&serde_json::to_string(&stored).unwrap()).unwrap().as_object().unwrap().len(),
            3
        );

        let new = ca("new");
        let trusting = StoredCa { next: Some(new.clone()), ..stored.clone() };
        let f = |pem: &str| atoll_pki::fingerprint(pem).unwrap();
        assert_eq!(atoll_pki::fingerprints(&trusting.bundle()).unwrap(), vec![f(&old.cert_pem), f(&new.cert_pem)]);
        let switched = StoredCa { active: new.clone(), next: None, retiring: vec![old.cert_pem.clone(), new.cert_pem.clone()] };
        assert_eq!(atoll_pki::fingerprints(&switched.bundle()).unwrap(), vec![f(&new.cert_pem), f(&old.cert_pem)], "no duplicates");
    }
}

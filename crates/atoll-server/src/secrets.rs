//! Secrets at rest: database passwords are sealed with XChaCha20-Poly1305
//! under a platform key before they reach MetaDB, so a copy of MetaDB alone
//! reveals none of them. The key lives in a file (mode 0600) that every
//! server of one platform shares.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

const PREFIX: &str = "xc20p1:";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the platform key {path}: {detail}")]
    Key { path: String, detail: String },
    #[error("a sealed secret is damaged or was sealed with another platform key")]
    Unseal,
}

pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// Loads the 32-byte key at `path`; `None` when there is no such file.
    pub fn load(path: &Path) -> Result<Option<Self>, SecretError> {
        let err = |detail: String| SecretError::Key { path: path.display().to_string(), detail };
        let key = match std::fs::read(path) {
            Ok(k) if k.len() == 32 => k,
            Ok(k) => return Err(err(format!("it holds {} bytes, not 32", k.len()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|e| err(e.to_string()))?;
        Ok(Some(Self { cipher }))
    }

    /// Makes a new key at `path`: created 0600 (never readable by others,
    /// not even for a moment), synced, then renamed into place, so a crash
    /// leaves either no key or the whole one.
    pub fn create(path: &Path) -> Result<Self, SecretError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let err = |detail: String| SecretError::Key { path: path.display().to_string(), detail };
        let mut k = vec![0u8; 32];
        rand::rng().fill_bytes(&mut k);
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| err(e.to_string()))?;
        f.write_all(&k).and_then(|()| f.sync_all()).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| err(e.to_string()))?;
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&k).map_err(|e| err(e.to_string()))?;
        Ok(Self { cipher })
    }

    /// `xc20p1:` + base64(nonce ‖ ciphertext): a fresh random nonce each time.
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory data.
        let ct = self.cipher.encrypt(&XNonce::from(nonce), plaintext.as_bytes()).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Opens a value that older versions stored in clear (host tokens
    /// before they were sealed): an unsealed value is returned as it is.
    pub fn open_stored(&self, stored: &str) -> Result<String, SecretError> {
        if stored.starts_with(PREFIX) { self.open(stored) } else { Ok(stored.to_string()) }
    }

    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let raw = sealed.strip_prefix(PREFIX).and_then(|b| STANDARD.decode(b).ok()).ok_or(SecretError::Unseal)?;
        if raw.len() < 24 {
            return Err(SecretError::Unseal);
        }
        let (nonce, ct) = raw.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| SecretError::Unseal)?;
        let pt = self.cipher.decrypt(&XNonce::from(nonce), ct).map_err(|_| SecretError::Unseal)?;
        String::from_utf8(pt).map_err(|_| SecretError::Unseal)
    }
}

/// MetaDB's setting holding a value sealed with the platform key: it tells
/// a server whether the key it has is the one MetaDB's secrets need.
const KEY_CHECK: &str = "platform_key_check";
const KEY_CHECK_TEXT: &str = "atoll platform key";

/// Opens the platform key for `store`, making one only for a MetaDB that
/// holds no sealed secret yet. A missing or different key is refused with
/// the fix: a new key would make every stored password unreadable.
pub async fn platform_key(store: &dyn atoll_store::MetaStore, path: &Path) -> anyhow::Result<SecretBox> {
    let check = store.get_setting(KEY_CHECK).await?;
    let key = match SecretBox::load(path)? {
        Some(k) => k,
        None => {
            let sealed_before = check.is_some() || !store.list_clusters().await?.is_empty();
            if sealed_before {
                anyhow::bail!(
                    "the platform key {} is missing, but MetaDB holds secrets sealed with it; copy platform.key from another \
                     server of this platform (or restore it from a backup) to that path, or pass its location with \
                     --secret-key-file. A new key would leave every stored password unreadable, so none is made",
                    path.display()
                );
            }
            SecretBox::create(path)?
        }
    };
    match check {
        Some(sealed) if key.open(&sealed).is_err() => anyhow::bail!(
            "the platform key {} is not the key this MetaDB's secrets were sealed with; use the platform.key of the other \
             servers of this platform (or the one from a backup of this server)",
            path.display()
        ),
        Some(_) => {}
        None => store.put_setting(KEY_CHECK, &key.seal(KEY_CHECK_TEXT)).await?,
    }
    Ok(key)
}

/// Seals the server tokens older versions kept in clear, so a copy of
/// MetaDB alone no longer commands those hosts. Runs at every start; a
/// row changed meanwhile (the agent registered again, sealed) is left.
pub async fn seal_clear_server_tokens(store: &dyn atoll_store::MetaStore, secrets: &SecretBox) -> Result<usize, atoll_store::StoreError> {
    let mut sealed = 0;
    for h in store.list_hosts().await? {
        if let Some(clear) = h.server_token.as_deref().filter(|t| !SecretBox::is_sealed(t))
            && store.replace_server_token(h.host.id, clear, &secrets.seal(clear)).await?
        {
            sealed += 1;
        }
    }
    Ok(sealed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        assert!(SecretBox::load(&path).unwrap().is_none());
        let b = SecretBox::create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let s = b.seal("hunter2-long-password");
        assert!(!s.contains("hunter2"));
        assert_ne!(s, b.seal("hunter2-long-password"), "fresh nonce each time");
        assert_eq!(b.open(&s).unwrap(), "hunter2-long-password");
        // Same key file, new process: still opens.
        assert_eq!(SecretBox::load(&path).unwrap().unwrap().open(&s).unwrap(), "hunter2-long-password");
        let mut bad = s.clone();
        bad.pop();
        bad.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(b.open(&bad).is_err());
        let other = SecretBox::create(&dir.path().join("other.key")).unwrap();
        assert!(other.open(&s).is_err());
    }
}

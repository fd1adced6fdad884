//! Secrets at rest: database passwords are sealed with XChaCha20-Poly1305
//! under a platform key before they reach MetaDB, so a copy of MetaDB alone
//! reveals none of them. The key lives in a file (mode 0600) that every
//! server of one platform shares.

use std::os::unix::fs::PermissionsExt;
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
    /// Loads the 32-byte key at `path`, creating it on the first start.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let err = |detail: String| SecretError::Key { path: path.display().to_string(), detail };
        let key = match std::fs::read(path) {
            Ok(k) if k.len() == 32 => k,
            Ok(k) => return Err(err(format!("it holds {} bytes, not 32", k.len()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                rand::rng().fill_bytes(&mut k);
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, &k).map_err(|e| err(e.to_string()))?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(|e| err(e.to_string()))?;
                std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
                k
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|e| err(e.to_string()))?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let s = b.seal("hunter2-long-password");
        assert!(!s.contains("hunter2"));
        assert_ne!(s, b.seal("hunter2-long-password"), "fresh nonce each time");
        assert_eq!(b.open(&s).unwrap(), "hunter2-long-password");
        // Same key file, new process: still opens.
        assert_eq!(SecretBox::load_or_create(&path).unwrap().open(&s).unwrap(), "hunter2-long-password");
        let mut bad = s.clone();
        bad.pop();
        bad.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(b.open(&bad).is_err());
        let other = SecretBox::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open(&s).is_err());
    }
}

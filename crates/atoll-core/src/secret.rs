//! Comparing and fingerprinting secrets: tokens are stored as SHA-256 hex
//! and compared in constant time, on the server and the agent alike.

use sha2::Digest;

pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// SHA-256 over a stream of chunks (a package tarball as it is uploaded
/// or downloaded), so large files are never held in memory.
#[derive(Default, Clone)]
pub struct Sha256Stream(sha2::Sha256);

impl Sha256Stream {
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    /// The digest in lowercase hex, as [`sha256_hex`] gives it.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_and_compares() {
        assert_eq!(super::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(super::constant_time_eq(b"same", b"same"));
        assert!(!super::constant_time_eq(b"same", b"sane"));
        assert!(!super::constant_time_eq(b"short", b"longer"));
        let mut s = super::Sha256Stream::default();
        s.update(b"a");
        s.update(b"bc");
        assert_eq!(s.finish(), super::sha256_hex("abc"));
    }
}

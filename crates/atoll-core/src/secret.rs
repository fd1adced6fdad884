//! Comparing and fingerprinting secrets: tokens are stored as SHA-256 hex
//! and compared in constant time, on the server and the agent alike.

use sha2::Digest;

pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
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
    }
}

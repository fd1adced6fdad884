//! Finding secrets where they must not be: a test collects every password,
//! token and key a run made or was given, then scans logs, files, API
//! answers and process arguments for each of them, raw and in the
//! encodings a careless writer would use (base64, URL-encoding, hex).
//!
//! A leak is reported by the secret's kind, the encoding and the place
//! (file and line, or whatever name the caller gives a text), with only a
//! short prefix of the secret: a test's failure message must not become a
//! leak of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Values shorter than this would match by chance; no secret of ours is.
const MIN_LEN: usize = 8;

/// One secret the scanner looks for.
#[derive(Clone)]
struct Secret {
    kind: String,
    value: Vec<u8>,
}

/// One byte string to look for: a secret in one encoding.
struct Needle {
    secret: usize,
    encoding: &'static str,
    bytes: Vec<u8>,
}

/// A secret found where it was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// What the secret is ("API token", "cluster admin password", …).
    pub kind: String,
    /// How it was written: `raw`, `base64`, `base64url`, `url-encoded`, `hex`.
    pub encoding: &'static str,
    /// Where: the name the caller gave the text (a file path, a route).
    pub place: String,
    /// The first line it is on (1-based).
    pub line: usize,
    /// How many times it occurs in this place, in this encoding.
    pub count: usize,
    /// The secret's first characters and its length, never all of it.
    pub hint: String,
}

impl fmt::Display for Leak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) leaks in {}:{} ({} time{}; secret {})",
            self.kind,
            self.encoding,
            self.place,
            self.line,
            self.count,
            if self.count == 1 { "" } else { "s" },
            self.hint
        )
    }
}

/// The secrets of a run and the encodings they are looked for in.
pub struct Scanner {
    secrets: Vec<Secret>,
    needles: Vec<Needle>,
    /// Needles by their first two bytes: the scan looks at each position
    /// of a text once (test builds are unoptimised, and a run leaves
    /// megabytes of logs and MetaDB to read).
    by_prefix: Vec<Vec<usize>>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner { secrets: Vec::new(), needles: Vec::new(), by_prefix: vec![Vec::new(); 1 << 16] }
    }
}

impl Scanner {
    pub fn new() -> Scanner {
        Scanner::default()
    }

    /// Looks for `value` from now on, as a secret of `kind`. A value seen
    /// before keeps its first kind; a value too short to be told from
    /// chance is refused, so a test notices it collected nothing useful.
    pub fn add(&mut self, kind: &str, value: impl AsRef<[u8]>) -> Result<(), String> {
        let value = value.as_ref().to_vec();
        if value.len() < MIN_LEN {
            return Err(format!("{kind}: a value of {} bytes is too short to look for", value.len()));
        }
        if self.secrets.iter().any(|s| s.value == value) {
            return Ok(());
        }
        let secret = self.secrets.len();
        let mut add = |encoding: &'static str, bytes: Vec<u8>| {
            if bytes.len() >= MIN_LEN && !self.needles.iter().any(|n| n.secret == secret && n.bytes == bytes) {
                self.by_prefix[prefix(&bytes)].push(self.needles.len());
                self.needles.push(Needle { secret, encoding, bytes });
            }
        };
        add("raw", value.clone());
        add("url-encoded", url_encode(&value).into_bytes());
        add("hex", hex(&value).into_bytes());
        add("hex", hex(&value).to_ascii_uppercase().into_bytes());
        for part in base64_parts(&value, STANDARD) {
            add("base64", part.into_bytes());
        }
        for part in base64_parts(&value, URL_SAFE) {
            add("base64url", part.into_bytes());
        }
        self.secrets.push(Secret { kind: kind.to_string(), value });
        Ok(())
    }

    /// The kinds of secret looked for, each with how many values.
    pub fn kinds(&self) -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for s in &self.secrets {
            *kinds.entry(s.kind.clone()).or_default() += 1;
        }
        kinds
    }

    /// The kind of `value` when it is one of the secrets looked for.
    pub fn kind_of(&self, value: &[u8]) -> Option<&str> {
        self.secrets.iter().find(|s| s.value == value).map(|s| s.kind.as_str())
    }

    /// Every secret in `text`, one leak per secret and encoding, named
    /// `place` and the line of its first occurrence.
    pub fn scan(&self, place: &str, text: &[u8]) -> Vec<Leak> {
        // Per needle: (first offset, count).
        let mut found: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        // A needle's occurrences do not overlap themselves.
        let mut next_free: BTreeMap<usize, usize> = BTreeMap::new();
        for at in 0..text.len().saturating_sub(1) {
            let candidates = &self.by_prefix[prefix(&text[at..at + 2])];
            for &n in candidates {
                let bytes = &self.needles[n].bytes;
                if text.len() - at >= bytes.len()
                    && &text[at..at + bytes.len()] == bytes.as_slice()
                    && next_free.get(&n).is_none_or(|free| at >= *free)
                {
                    next_free.insert(n, at + bytes.len());
                    found.entry(n).and_modify(|(_, count)| *count += 1).or_insert((at, 1));
                }
            }
        }
        found
            .into_iter()
            .map(|(n, (first, count))| {
                let needle = &self.needles[n];
                let s = &self.secrets[needle.secret];
                let line = 1 + text[..first].iter().filter(|b| **b == b'\n').count();
                Leak { kind: s.kind.clone(), encoding: needle.encoding, place: place.to_string(), line, count, hint: hint(&s.value) }
            })
            .collect()
    }

    /// [`Scanner::scan`] of a file's bytes; the place is its path.
    pub fn scan_file(&self, path: &Path) -> std::io::Result<Vec<Leak>> {
        let bytes = std::fs::read(path)?;
        Ok(self.scan(&path.display().to_string(), &bytes))
    }

    /// Every regular file at or below `root` (links are not followed)
    /// for which `include` holds, scanned. Files that vanish while the
    /// walk runs (a database's temporary files) are skipped; other read
    /// errors are returned.
    pub fn scan_tree(&self, root: &Path, include: &dyn Fn(&Path) -> bool) -> std::io::Result<(Vec<PathBuf>, Vec<Leak>)> {
        let mut scanned = Vec::new();
        let mut leaks = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                let Ok(kind) = entry.file_type() else { continue };
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() && include(&path) {
                    match self.scan_file(&path) {
                        Ok(found) => leaks.extend(found),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
                    }
                    scanned.push(path);
                }
            }
        }
        scanned.sort();
        Ok((scanned, leaks))
    }
}

/// The first four characters of a secret and its length: enough to tell
/// which one leaked, not enough to use it.
fn hint(value: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&value[..value.len().min(4)]).chars().filter(|c| !c.is_control()).collect();
    format!("{shown}… ({} bytes)", value.len())
}

/// The index of a needle's (or a text position's) first two bytes.
fn prefix(bytes: &[u8]) -> usize {
    (bytes[0] as usize) << 8 | bytes[1] as usize
}

fn url_encode(value: &[u8]) -> String {
    value
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (*b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hex(value: &[u8]) -> String {
    value.iter().map(|b| format!("{b:02x}")).collect()
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// What base64 of any text holding `value` must contain: `value` may
/// start at any of three offsets within a 3-byte group, so for each the
/// characters made only of `value`'s own bits.
fn base64_parts(value: &[u8], alphabet: &[u8; 64]) -> Vec<String> {
    (0..3)
        .map(|pad| {
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(value);
            let bits = bytes.len() * 8;
            let chars: Vec<u8> = (0..bits.div_ceil(6))
                .map(|i| {
                    let mut v = 0usize;
                    for bit in 6 * i..6 * i + 6 {
                        v <<= 1;
                        if bit < bits && bytes[bit / 8] & (0x80 >> (bit % 8)) != 0 {
                            v |= 1;
                        }
                    }
                    alphabet[v]
                })
                .collect();
            // Characters holding a bit of the padding in front, or of
            // whatever follows, depend on the surrounding text.
            let first = (8 * pad).div_ceil(6);
            let end = bits / 6;
            String::from_utf8_lossy(&chars[first.min(end)..end]).into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard base64 with padding, for checking the parts against.
    fn b64(bytes: &[u8]) -> String {
        let parts: Vec<u8> = bytes
            .chunks(3)
            .flat_map(|c| {
                let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
                let out: Vec<u8> = (0..4).map(|i| STANDARD[(n >> (18 - 6 * i)) as usize & 63]).collect();
                let keep = c.len() + 1;
                out.into_iter().enumerate().map(move |(i, ch)| if i < keep { ch } else { b'=' })
            })
            .collect();
        String::from_utf8(parts).unwrap()
    }

    #[test]
    fn finds_a_secret_raw_and_encoded_at_any_offset_and_names_the_line() {
        let mut s = Scanner::new();
        s.add("test password", "Pa55w0rd/with+odd=chars").unwrap();
        for prefix in ["", "x", "xy", "xyz"] {
            let encoded = b64(format!("{prefix}Pa55w0rd/with+odd=chars;tail").as_bytes());
            let text = format!("line one\nheader: {encoded}\n");
            let leaks = s.scan("sample", text.as_bytes());
            assert!(leaks.iter().any(|l| l.encoding == "base64" && l.line == 2), "prefix {prefix:?}: {leaks:?}");
        }
        let leaks = s.scan("f", b"a\nb\nc=Pa55w0rd%2Fwith%2Bodd%3Dchars\nPa55w0rd/with+odd=chars");
        assert!(leaks.iter().any(|l| l.encoding == "url-encoded" && l.line == 3), "{leaks:?}");
        assert!(leaks.iter().any(|l| l.encoding == "raw" && l.line == 4 && l.count == 1), "{leaks:?}");
        let shown = leaks[0].to_string();
        assert!(shown.contains("test password") && shown.contains("f:") && !shown.contains("Pa55w0rd/with"), "{shown}");
        assert!(s.scan("clean", b"nothing to see, Pa55w0rd/with odd").is_empty());
        assert!(s.add("short", "abc").is_err());
    }

    #[test]
    fn finds_a_binary_key_in_hex_and_base64() {
        let key: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
        let mut s = Scanner::new();
        s.add("key", &key).unwrap();
        assert!(s.scan("h", hex(&key).as_bytes()).iter().any(|l| l.encoding == "hex"));
        assert!(s.scan("b", b64(&key).as_bytes()).iter().any(|l| l.encoding == "base64"));
        assert!(s.scan("r", &key).iter().any(|l| l.encoding == "raw"));
    }
}

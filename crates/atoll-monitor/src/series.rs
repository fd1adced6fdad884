//! Series identity: a metric name and its labels, and the matchers that
//! select series in a query.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// A series: metric name plus sorted labels. Its id is derived from its
/// text, so every server computes the same id without asking MonitorDB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    pub fn new(metric: impl Into<String>, labels: impl IntoIterator<Item = (String, String)>) -> Self {
        SeriesKey { metric: metric.into(), labels: labels.into_iter().collect() }
    }

    /// The first 63 bits of the SHA-256 of the canonical text: stable across
    /// builds and servers (unlike std's hasher), positive in a BIGINT.
    pub fn id(&self) -> i64 {
        let digest = Sha256::digest(self.to_string().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) >> 1) as i64
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Prometheus' text form, `name{a="1",b="2"}`, with labels sorted.
impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metric)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

/// One label condition of a query: `name=value`, `name!=value`,
/// `name=~regex`, `name!~regex` (regexes match the whole value, as in
/// PromQL). A missing label reads as the empty string.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Ne(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

/// Why a matcher could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MatcherError {
    #[error("label matcher `{0}` has no operator; write name=value, name!=value, name=~regex or name!~regex")]
    NoOperator(String),
    #[error("label matcher `{0}` has an invalid label name; names are letters, digits and _, not starting with a digit")]
    BadName(String),
    #[error("label matcher `{text}` has an invalid regular expression: {reason}")]
    BadRegex { text: String, reason: String },
}

impl Matcher {
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        // The first operator character ends the name; `!=`/`!~` before `=`.
        let at = text.find(['=', '!']).ok_or_else(|| MatcherError::NoOperator(text.to_string()))?;
        let (label, rest) = text.split_at(at);
        let label = label.trim();
        if !valid_name(label) {
            return Err(MatcherError::BadName(text.to_string()));
        }
        let regex = |pattern: &str| {
            regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| MatcherError::BadRegex { text: text.to_string(), reason: e.to_string() })
        };
        let op = if let Some(v) = rest.strip_prefix("=~") {
            Op::Re(regex(v)?)
        } else if let Some(v) = rest.strip_prefix("!~") {
            Op::NotRe(regex(v)?)
        } else if let Some(v) = rest.strip_prefix("!=") {
            Op::Ne(v.to_string())
        } else if let Some(v) = rest.strip_prefix('=') {
            Op::Eq(v.to_string())
        } else {
            return Err(MatcherError::NoOperator(text.to_string()));
        };
        Ok(Matcher { label: label.to_string(), op })
    }

    pub fn matches(&self, key: &SeriesKey) -> bool {
        let value = key.label(&self.label).unwrap_or("");
        match &self.op {
            Op::Eq(v) => value == v,
            Op::Ne(v) => value != v,
            Op::Re(r) => r.is_match(value),
            Op::NotRe(r) => !r.is_match(value),
        }
    }
}

/// Prometheus' rule for metric and label names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new("m", labels.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn ids_follow_the_text_not_the_label_order() {
        let a = key(&[("a", "1"), ("b", "2")]);
        let b = SeriesKey::new("m", [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())]);
        assert_eq!(a.id(), b.id());
        assert_ne!(a.id(), key(&[("a", "1")]).id());
        assert!(a.id() >= 0);
        assert_eq!(key(&[("a", "q\"x")]).to_string(), r#"m{a="q\"x"}"#);
    }

    #[test]
    fn matchers() {
        let k = key(&[("host", "db-1"), ("mode", "user")]);
        assert!(Matcher::parse("host=db-1").expect("parses").matches(&k));
        assert!(!Matcher::parse("host!=db-1").expect("parses").matches(&k));
        assert!(Matcher::parse("host=~db-.*").expect("parses").matches(&k));
        assert!(!Matcher::parse("host=~db").expect("parses").matches(&k), "regexes are anchored");
        assert!(Matcher::parse("mode!~idle|iowait").expect("parses").matches(&k));
        assert!(Matcher::parse("zone=").expect("parses").matches(&k), "a missing label is empty");
        assert_eq!(Matcher::parse("host").unwrap_err(), MatcherError::NoOperator("host".into()));
        assert_eq!(Matcher::parse("1x=a").unwrap_err(), MatcherError::BadName("1x=a".into()));
        assert!(matches!(Matcher::parse("a=~(").unwrap_err(), MatcherError::BadRegex { .. }));
    }
}

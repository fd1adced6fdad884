//! Small formatters for pages: epoch milliseconds as UTC and as "how long
//! ago", without a calendar dependency.

use atoll_core::UnixMs;

pub use atoll_core::time::{ago, utc};

/// An optional time, or a dash.
pub fn utc_opt(ms: Option<UnixMs>) -> String {
    ms.map_or_else(|| "—".to_string(), utc)
}

pub fn bytes(n: u64) -> String {
    atoll_plan::human_bytes(n)
}

/// The first 8 characters of an id, for dense tables.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(999), "1970-01-01 00:00:00");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        // 2000-02-29 (leap day of a century divisible by 400).
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_709_210_096_000), "2024-02-29 12:34:56");
        assert_eq!(utc(1_798_761_599_000), "2026-12-31 23:59:59");
        assert_eq!(utc(4_107_542_400_000), "2100-03-01 00:00:00");
        assert_eq!(utc_opt(None), "—");
    }

    #[test]
    fn relative_times() {
        let now = 1_000_000_000;
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now, now + 5000), "just now");
        assert_eq!(ago(now, now - 3_400), "3 s ago");
        assert_eq!(ago(now, now - 59_999), "59 s ago");
        assert_eq!(ago(now, now - 60_000), "1 min ago");
        assert_eq!(ago(now, now - 7_200_000), "2 h ago");
        assert_eq!(ago(now, now - 4 * 86_400_000), "4 d ago");
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("abc"), "abc");
    }
}

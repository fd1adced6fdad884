//! Small formatters for pages: epoch milliseconds as UTC and as "how long
//! ago", without a calendar dependency.

use atoll_core::UnixMs;

/// `YYYY-MM-DD HH:MM:SS`, UTC.
pub fn utc(ms: UnixMs) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// An optional time, or a dash.
pub fn utc_opt(ms: Option<UnixMs>) -> String {
    ms.map_or_else(|| "—".to_string(), utc)
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian;
/// Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// "3 s ago", "5 min ago", "2 h ago", "4 d ago"; a time slightly in the
/// future (clock skew) reads "just now".
pub fn ago(now: UnixMs, then: UnixMs) -> String {
    let s = (now - then) / 1000;
    match s {
        ..=0 => "just now".to_string(),
        1..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// Bytes as MiB/GiB, as the prechecks print them.
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

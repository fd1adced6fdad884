//! Time: the clock reading every crate stores, and epoch milliseconds for
//! people (UTC and "how long ago") without a calendar dependency.

use crate::UnixMs;

/// Milliseconds since the epoch: the platform's one clock reading. 0 when
/// the clock is before 1970 (a broken RTC), which the server flags through
/// the host's clock offset anyway.
pub fn now_ms() -> UnixMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| UnixMs::try_from(d.as_millis()).unwrap_or(UnixMs::MAX))
        .unwrap_or(0)
}

/// `YYYY-MM-DD HH:MM:SS`, UTC.
pub fn utc(ms: UnixMs) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60)
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

/// Milliseconds of a duration written as a number and a unit: `500ms`,
/// `10s`, `15m`, `6h`, `7d`, `2w`; what the metrics API and CLI take.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| format!("`{text}` is not a duration; write a number and a unit, e.g. 90s, 15m, 6h, 7d"))?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(format!("`{text}` has no known unit; use ms, s, m, h, d or w")),
    };
    n.checked_mul(unit_ms).ok_or_else(|| format!("`{text}` is too long"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(super::parse_duration_ms("250ms"), Ok(250));
        assert_eq!(super::parse_duration_ms("7d"), Ok(604_800_000));
        assert!(super::parse_duration_ms("7").unwrap_err().contains("unit"));
        assert!(super::parse_duration_ms("h").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn formats() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_644_614_000), "2026-11-25 22:10:14");
        assert_eq!(super::ago(65_000, 0), "1 min ago");
    }
}

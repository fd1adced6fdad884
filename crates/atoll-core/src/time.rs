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

/// Epoch milliseconds of a UTC time written `YYYY-MM-DD HH:MM[:SS]` (a
/// `T` between date and time too, as a browser's `datetime-local` sends).
pub fn parse_utc(text: &str) -> Result<UnixMs, String> {
    let bad = || format!("`{text}` is not a UTC time; write YYYY-MM-DD HH:MM, e.g. 2026-12-04 09:30");
    let (date, time) = text.trim().split_once(['T', ' ']).ok_or_else(bad)?;
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<i64> = date.split('-').map(num).collect::<Result<_, _>>()?;
    let t: Vec<i64> = time.split(':').map(num).collect::<Result<_, _>>()?;
    let (&[y, m, day], 2..=3) = (d.as_slice(), t.len()) else { return Err(bad()) };
    let (h, min, sec) = (t[0], t[1], t.get(2).copied().unwrap_or(0));
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || !(0..24).contains(&h) || !(0..60).contains(&min) || !(0..60).contains(&sec) {
        return Err(bad());
    }
    // Howard Hinnant's `days_from_civil`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400) + h * 3600 + min * 60 + sec) * 1000;
    if utc(ms)[..10] != *date { Err(bad()) } else { Ok(ms) }
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
    use super::*;

    #[test]
    fn utc_times_parse_back() {
        for ms in [0, 951_782_400_000, 1_709_210_096_000, 1_798_761_599_000] {
            assert_eq!(parse_utc(&utc(ms)), Ok(ms));
        }
        assert_eq!(parse_utc("2026-12-04T09:30"), Ok(1_796_376_600_000));
        assert_eq!(utc(1_796_376_600_000), "2026-12-04 09:30:00");
        for bad in ["", "2026-12-04", "2026-02-30 10:00", "2026-12-04 25:00", "yesterday 10:00", "2026-12-04 10"] {
            assert!(parse_utc(bad).is_err(), "{bad}");
        }
    }

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

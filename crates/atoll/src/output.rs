//! How results and errors reach the terminal, and the exit codes scripts
//! can rely on.

use std::process::ExitCode;

use atoll_client::ClientError;
use comfy_table::{ContentArrangement, Table, presets};

/// Exit codes: documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The request was refused or failed.
    Error = 1,
    // 2 is clap's usage error.
    /// The command worked, and its finding is a failure (a precheck
    /// failed, a task ended failed, cancelled or rolled back).
    Failed = 3,
    /// The server could not be reached.
    Unreachable = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// An error at the CLI's edge with the exit code it maps to.
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        let e: anyhow::Error = e.into();
        let exit = match e.downcast_ref::<ClientError>() {
            Some(ClientError::Unreachable { .. }) => Exit::Unreachable,
            _ => Exit::Error,
        };
        CliError { exit, message: format!("{e:#}") }
    }
}

pub fn fail(exit: Exit, message: impl Into<String>) -> CliError {
    CliError { exit, message: message.into() }
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    // Plain columns with upper-case headings, like kubectl: easy on the
    // eye and easy to cut.
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    t.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Dynamic).set_header(header);
    t
}

pub fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `2026-11-25 22:10:14` in UTC, or `-`.
pub fn time(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn ago(ms: Option<i64>, now: i64) -> String {
    match ms {
        None => "never".into(),
        Some(t) => {
            let s = (now - t).max(0) / 1000;
            match s {
                0..=59 => format!("{s} s ago"),
                60..=3599 => format!("{} min ago", s / 60),
                _ => format!("{} h ago", s / 3600),
            }
        }
    }
}

pub fn gib(bytes: u64) -> String {
    atoll_plan::human_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times() {
        assert_eq!(super::time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(super::time(Some(1_795_644_614_000)), "2026-11-25 22:10:14");
        assert_eq!(super::time(None), "-");
        assert_eq!(super::ago(Some(0), 65_000), "1 min ago");
    }
}

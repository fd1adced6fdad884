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
    ms.map_or_else(|| "-".into(), atoll_core::time::utc)
}

pub fn ago(ms: Option<i64>, now: i64) -> String {
    ms.map_or_else(|| "never".into(), |t| atoll_core::time::ago(now, t))
}

/// Percent-encodes a query or path value (names are plain; file names
/// may not be).
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn gib(bytes: u64) -> String {
    atoll_plan::human_bytes(bytes)
}

/// `println!` that never panics: the daemons and the playground must go on
/// (and shut down cleanly) when whoever read their output is gone, as when
/// Ctrl-C ends the `tee` of `atoll playground | tee log` first.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see [`say!`]).
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub(crate) use {say, say_err};

#[cfg(test)]
mod tests {
    #[test]
    fn formats_times() {
        assert_eq!(super::time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(super::time(Some(1_795_644_614_000)), "2026-11-25 22:10:14");
        assert_eq!(super::time(None), "-");
        assert_eq!(super::ago(Some(0), 65_000), "1 min ago");
        assert_eq!(super::ago(None, 65_000), "never");
    }
}

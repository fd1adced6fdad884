//! The side-by-side table, printed and written into RESULTS.md between
//! this benchmark's own markers (the file holds other benchmarks' sections).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

const START: &str = "<!-- monitordb-bench:start -->";
const END: &str = "<!-- monitordb-bench:end -->";

/// One measure for both systems. `ratio` is MonitorDB ÷ Prometheus, shown
/// when both sides have a number of the same unit.
pub struct Row {
    pub measure: String,
    pub monitordb: String,
    pub prometheus: String,
    pub ratio: Option<f64>,
    pub target: String,
}

impl Row {
    pub fn new(measure: impl Into<String>, monitordb: impl Into<String>) -> Row {
        Row { measure: measure.into(), monitordb: monitordb.into(), prometheus: "—".into(), ratio: None, target: String::new() }
    }

    /// Both sides as numbers of the same unit, formatted by `fmt`.
    pub fn pair(measure: impl Into<String>, m: f64, p: Option<f64>, fmt: impl Fn(f64) -> String) -> Row {
        let mut row = Row::new(measure, fmt(m));
        if let Some(p) = p {
            row.prometheus = fmt(p);
            row.ratio = (p > 0.0 && m.is_finite()).then(|| m / p);
        }
        row
    }

    pub fn prometheus(mut self, text: impl Into<String>) -> Row {
        self.prometheus = text.into();
        self
    }

    pub fn target(mut self, text: impl Into<String>) -> Row {
        self.target = text.into();
        self
    }
}

/// A heading row that groups the measures under it.
pub fn heading(title: &str) -> Row {
    Row::new(format!("**{title}**"), "")
}

pub struct Report {
    pub date: String,
    pub command: String,
    pub machine: String,
    pub setup: Vec<String>,
    pub rows: Vec<Row>,
    pub verdicts: Vec<String>,
    pub reading: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| measure | MonitorDB | Prometheus | ratio M/P | target |");
        let _ = writeln!(out, "|---|--:|--:|--:|---|");
        for r in &self.rows {
            let ratio = r.ratio.map_or_else(String::new, |x| if x >= 10.0 { format!("{x:.0}×") } else { format!("{x:.2}×") });
            let _ = writeln!(out, "| {} | {} | {} | {} | {} |", r.measure, r.monitordb, r.prometheus, ratio, r.target);
        }
        out
    }

    pub fn section(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{START}");
        let _ = writeln!(s, "## MonitorDB vs Prometheus (`monitordb-bench`)\n");
        let _ = writeln!(s, "- date: {}", self.date);
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(s, "- machine: {}", self.machine);
        for line in &self.setup {
            let _ = writeln!(s, "- {line}");
        }
        let _ = writeln!(s, "\n{}", self.table());
        let lists = [("Targets", &self.verdicts), ("Reading", &self.reading), ("Notes", &self.notes)];
        for (title, items) in lists {
            if items.is_empty() {
                continue;
            }
            let _ = writeln!(s, "{title}:\n");
            for item in items {
                let _ = writeln!(s, "- {item}");
            }
            let _ = writeln!(s);
        }
        let _ = write!(s, "{END}");
        s
    }
}

/// Replaces this benchmark's section of `path`, or appends it.
pub fn write_section(path: &Path, section: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Atoll benchmark results\n".to_string(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    std::fs::write(path, splice(&existing, section)).with_context(|| format!("writing {}", path.display()))
}

fn splice(existing: &str, section: &str) -> String {
    match (existing.find(START), existing.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &existing[..a], &existing[b + END.len()..]),
        _ => format!("{}\n\n{section}\n", existing.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_our_section() {
        let old = format!("# T\n\n<!-- other:start -->\nx\n<!-- other:end -->\n\n{START}\nold\n{END}\n\ntail\n");
        let new = splice(&old, &format!("{START}\nnew\n{END}"));
        assert_eq!(new, format!("# T\n\n<!-- other:start -->\nx\n<!-- other:end -->\n\n{START}\nnew\n{END}\n\ntail\n"));
        assert_eq!(splice("# T\n", &format!("{START}\nx\n{END}")), format!("# T\n\n{START}\nx\n{END}\n"));
    }

    #[test]
    fn ratios_are_monitordb_over_prometheus() {
        let r = Row::pair("m", 2.0, Some(4.0), |v| format!("{v}"));
        assert_eq!(r.ratio, Some(0.5));
        assert_eq!(Row::pair("m", 2.0, None, |v| format!("{v}")).prometheus, "—");
    }
}

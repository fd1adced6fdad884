//! Alert rules: a MonitorDB query, a condition on each answer series'
//! latest value, how long it must hold, and how bad it is.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use atoll_monitor::Agg;
use atoll_monitor::series::{Matcher, valid_name};
use serde::{Deserialize, Serialize};

/// How bad an alarm is; channels can ask for a minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(RuleError::BadSeverity(other.to_string())),
        }
    }
}

/// A comparison of a value with a threshold, written as text: `> 0.85`,
/// `== 0`, `abs > 1` (the value's magnitude, for offsets that may be
/// negative).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Condition {
    pub abs: bool,
    pub op: CmpOp,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl CmpOp {
    const ALL: [(&'static str, CmpOp); 6] =
        [(">=", CmpOp::Ge), ("<=", CmpOp::Le), ("==", CmpOp::Eq), ("!=", CmpOp::Ne), (">", CmpOp::Gt), ("<", CmpOp::Lt)];

    fn as_str(self) -> &'static str {
        Self::ALL.iter().find(|(_, op)| *op == self).map_or("?", |(s, _)| s)
    }
}

impl Condition {
    /// Whether `value` meets the condition; NaN never does.
    pub fn holds(&self, value: f64) -> bool {
        let v = if self.abs { value.abs() } else { value };
        let t = self.threshold;
        match self.op {
            CmpOp::Gt => v > t,
            CmpOp::Ge => v >= t,
            CmpOp::Lt => v < t,
            CmpOp::Le => v <= t,
            CmpOp::Eq => v == t,
            CmpOp::Ne => !v.is_nan() && v != t,
        }
    }
}

impl FromStr for Condition {
    type Err = RuleError;
    fn from_str(text: &str) -> Result<Self, RuleError> {
        let bad = || RuleError::BadCondition(text.to_string());
        let mut rest = text.trim();
        let abs = match rest.strip_prefix("abs") {
            Some(r) => {
                rest = r.trim_start();
                true
            }
            None => false,
        };
        let (sym, op) = CmpOp::ALL.iter().find(|(sym, _)| rest.starts_with(sym)).ok_or_else(bad)?;
        let threshold: f64 = rest[sym.len()..].trim().parse().map_err(|_| bad())?;
        if !threshold.is_finite() {
            return Err(bad());
        }
        Ok(Condition { abs, op: *op, threshold })
    }
}

impl TryFrom<String> for Condition {
    type Error = RuleError;
    fn try_from(s: String) -> Result<Self, RuleError> {
        s.parse()
    }
}

impl From<Condition> for String {
    fn from(c: Condition) -> String {
        c.to_string()
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.abs {
            f.write_str("abs ")?;
        }
        write!(f, "{} {}", self.op.as_str(), self.threshold)
    }
}

/// An alert rule. For each series the query answers, the rule holds when
/// the series' latest value meets `condition`; an alarm per series is
/// pending until the rule has held for `for_s` seconds, then firing, and
/// resolved once it no longer holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Lowercase letters, digits, `_` and `-`; unique.
    pub name: String,
    /// What an alarm says, with `{label}` and `{value}` filled in.
    #[serde(default)]
    pub summary: String,
    pub metric: String,
    /// Label matchers as in the query API: `name=value`, `name!=value`,
    /// `name=~regex`, `name!~regex`.
    #[serde(default, rename = "match")]
    pub matchers: Vec<String>,
    /// Per-second rate of a counter.
    #[serde(default)]
    pub rate: bool,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "max"))]
    pub agg: Option<Agg>,
    /// Labels the aggregation keeps apart; an alarm per combination.
    #[serde(default)]
    pub by: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "> 0.85"))]
    pub condition: Condition,
    /// How long the condition must hold before the alarm fires.
    #[serde(default)]
    pub for_s: u64,
    pub severity: Severity,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Shipped with Atoll: may be changed or disabled, not deleted.
    #[serde(default)]
    pub builtin: bool,
}

fn yes() -> bool {
    true
}

/// What is wrong with a rule, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule name {0:?} is not valid: use 1 to 64 lowercase letters, digits, `_` or `-`, starting with a letter")]
    BadName(String),
    #[error("metric {0:?} is not a metric name (letters, digits, `_` and `:`, not starting with a digit)")]
    BadMetric(String),
    #[error("{0}")]
    BadMatcher(String),
    #[error("`{0}` is not a label name")]
    BadLabel(String),
    #[error("`by` needs an aggregation (agg: sum, avg, max or min)")]
    ByWithoutAgg,
    #[error("condition {0:?} is not valid: write an operator (>, >=, <, <=, ==, !=) and a number, e.g. `> 0.85` or `abs > 1`")]
    BadCondition(String),
    #[error("severity {0:?} is not valid: use info, warning or critical")]
    BadSeverity(String),
    #[error("for_s {0} is too long: at most {max} seconds (a day)", max = MAX_FOR_S)]
    ForTooLong(u64),
    #[error("the summary is {0} characters long; at most 500")]
    SummaryTooLong(usize),
}

pub const MAX_FOR_S: u64 = 86_400;

impl Rule {
    /// Checks everything that does not need MonitorDB.
    pub fn validate(&self) -> Result<(), RuleError> {
        if !valid_rule_name(&self.name) {
            return Err(RuleError::BadName(self.name.clone()));
        }
        if !valid_name(&self.metric) {
            return Err(RuleError::BadMetric(self.metric.clone()));
        }
        self.parsed_matchers()?;
        if let Some(label) = self.by.iter().find(|l| !valid_name(l)) {
            return Err(RuleError::BadLabel(label.clone()));
        }
        if !self.by.is_empty() && self.agg.is_none() {
            return Err(RuleError::ByWithoutAgg);
        }
        if self.for_s > MAX_FOR_S {
            return Err(RuleError::ForTooLong(self.for_s));
        }
        if self.summary.chars().count() > 500 {
            return Err(RuleError::SummaryTooLong(self.summary.chars().count()));
        }
        Ok(())
    }

    pub fn parsed_matchers(&self) -> Result<Vec<Matcher>, RuleError> {
        self.matchers.iter().map(|m| Matcher::parse(m).map_err(|e| RuleError::BadMatcher(e.to_string()))).collect()
    }

    /// The query roughly as PromQL writes it, for listings:
    /// `max by (cluster) (atoll_cluster_status{status=degraded})`.
    pub fn describe(&self) -> String {
        let mut q = self.metric.clone();
        if !self.matchers.is_empty() {
            q = format!("{q}{{{}}}", self.matchers.join(","));
        }
        if self.rate {
            q = format!("rate({q})");
        }
        if let Some(agg) = self.agg {
            let name = agg.as_str();
            q = if self.by.is_empty() { format!("{name}({q})") } else { format!("{name} by ({}) ({q})", self.by.join(",")) };
        }
        q
    }

    /// The rule's summary for one alarm: `{label}` and `{value}` filled in
    /// (unknown placeholders stay as written); the rule's name when empty.
    pub fn summary_for(&self, labels: &BTreeMap<String, String>, value: f64) -> String {
        if self.summary.is_empty() {
            return self.name.clone();
        }
        let mut out = String::with_capacity(self.summary.len());
        let mut rest = self.summary.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let tail = &rest[open + 1..];
            match tail.find('}') {
                Some(close) => {
                    let key = &tail[..close];
                    match (key, labels.get(key)) {
                        ("value", _) => out.push_str(&format_value(value)),
                        (_, Some(v)) => out.push_str(v),
                        (_, None) => {
                            out.push('{');
                            out.push_str(key);
                            out.push('}');
                        }
                    }
                    rest = &tail[close + 1..];
                }
                None => {
                    out.push_str(&rest[open..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// A value as people read it: whole numbers without decimals, others to
/// three significant decimals.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.3}") }
}

pub(crate) fn valid_rule_name(name: &str) -> bool {
    let mut chars = name.chars();
    (1..=64).contains(&name.len())
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The rules every platform starts with. Each works on metrics Atoll's own
/// agents, proxies and servers export.
pub fn builtin() -> Vec<Rule> {
    let rule = |name: &str, summary: &str, metric: &str, matchers: &[&str], agg: Agg, by: &[&str], condition, for_s, sev| Rule {
        name: name.into(),
        summary: summary.into(),
        metric: metric.into(),
        matchers: matchers.iter().map(|m| m.to_string()).collect(),
        rate: false,
        agg: Some(agg),
        by: by.iter().map(|l| l.to_string()).collect(),
        condition,
        for_s,
        severity: sev,
        enabled: true,
        builtin: true,
    };
    use Severity::{Critical, Warning};
    let when = |op, threshold| Condition { abs: false, op, threshold };
    let mut rules = vec![
        rule(
            "host-offline",
            "host {host} is offline: its agent stopped sending heartbeats",
            "atoll_host_online",
            &[],
            Agg::Max,
            &["host"],
            when(CmpOp::Eq, 0.0),
            0,
            Critical,
        ),
        rule(
            "agent-not-reporting",
            "the agent on {host} does not answer metric scrapes",
            "up",
            &["job=agent"],
            Agg::Min,
            &["host"],
            when(CmpOp::Eq, 0.0),
            30,
            Warning,
        ),
        rule(
            "server-not-synced",
            "database server {server} of cluster {cluster} (on {host}) is not Synced",
            "atoll_db_synced",
            &[],
            Agg::Min,
            &["cluster", "server", "host"],
            when(CmpOp::Eq, 0.0),
            0,
            Warning,
        ),
        rule(
            "cluster-degraded",
            "cluster {cluster} is degraded: not every server is Synced",
            "atoll_cluster_status",
            &["status=degraded"],
            Agg::Max,
            &["cluster"],
            when(CmpOp::Gt, 0.0),
            0,
            Warning,
        ),
        rule(
            "cluster-unavailable",
            "cluster {cluster} is unavailable: no server takes writes",
            "atoll_cluster_status",
            &["status=unavailable"],
            Agg::Max,
            &["cluster"],
            when(CmpOp::Gt, 0.0),
            0,
            Critical,
        ),
        rule(
            "disk-above-85",
            "{mount} on {host} is {value} full",
            "atoll_host_filesystem_used_ratio",
            &[],
            Agg::Max,
            &["host", "mount"],
            when(CmpOp::Gt, 0.85),
            60,
            Warning,
        ),
        rule(
            "disk-above-95",
            "{mount} on {host} is {value} full",
            "atoll_host_filesystem_used_ratio",
            &[],
            Agg::Max,
            &["host", "mount"],
            when(CmpOp::Gt, 0.95),
            60,
            Critical,
        ),
        rule(
            "replication-lag",
            "{server} of cluster {cluster} is {value} s behind its source",
            "atoll_db_replication_lag_seconds",
            &[],
            Agg::Max,
            &["cluster", "server", "channel"],
            when(CmpOp::Gt, 30.0),
            60,
            Warning,
        ),
        rule(
            "proxy-without-writer",
            "proxy {proxy} of cluster {cluster} has no healthy writer",
            "atoll_proxy_writer_healthy",
            &[],
            Agg::Min,
            &["cluster", "proxy"],
            when(CmpOp::Eq, 0.0),
            15,
            Critical,
        ),
        rule(
            "clock-skew",
            "the clock of {host} is {value} s off the platform's",
            "atoll_host_clock_offset_seconds",
            &[],
            Agg::Max,
            &["host"],
            Condition { abs: true, op: CmpOp::Gt, threshold: 1.0 },
            60,
            Warning,
        ),
        rule(
            "scrape-target-down",
            "{job} target {instance} cannot be scraped",
            "up",
            &["job!=agent"],
            Agg::Min,
            &["job", "instance"],
            when(CmpOp::Eq, 0.0),
            30,
            Warning,
        ),
        rule(
            "monitordb-dropping-data",
            "MonitorDB on {instance} is out of space and drops the oldest raw data",
            "atoll_monitordb_chunks_dropped_for_space_total",
            &[],
            Agg::Max,
            &["instance"],
            when(CmpOp::Gt, 0.0),
            0,
            Warning,
        ),
    ];
    if let Some(r) = rules.iter_mut().find(|r| r.name == "monitordb-dropping-data") {
        r.rate = true;
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_print_and_hold() {
        let c: Condition = "> 0.85".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.holds(0.9) && !c.holds(0.85) && !c.holds(f64::NAN));
        assert_eq!(c.to_string(), "> 0.85");
        let c: Condition = "abs>1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.holds(-1.5) && c.holds(2.0) && !c.holds(0.5));
        assert_eq!(c.to_string(), "abs > 1");
        let c: Condition = "== 0".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(c.holds(0.0) && !c.holds(1.0));
        assert!(!"!= 0".parse::<Condition>().is_ok_and(|c| c.holds(f64::NAN)));
        for bad in ["", "0.85", "=> 1", "> x", "> inf", "abs"] {
            assert_eq!(bad.parse::<Condition>(), Err(RuleError::BadCondition(bad.into())), "{bad}");
        }
    }

    #[test]
    fn builtins_are_valid() {
        let all = builtin();
        assert_eq!(all.len(), 12);
        for r in &all {
            r.validate().unwrap_or_else(|e| panic!("{}: {e}", r.name));
        }
    }

    #[test]
    fn bad_rules_name_the_problem() {
        let Some(good) = builtin().into_iter().next() else { panic!("no builtins") };
        let with = |f: &dyn Fn(&mut Rule)| {
            let mut r = good.clone();
            f(&mut r);
            r.validate().map_err(|e| e.to_string())
        };
        assert!(with(&|r| r.name = "Disk Full".into()).unwrap_err().contains("\"Disk Full\" is not valid"));
        assert!(with(&|r| r.metric = "9x".into()).unwrap_err().contains("metric \"9x\""));
        assert!(with(&|r| r.matchers = vec!["zone".into()]).unwrap_err().contains("`zone` has no operator"));
        assert!(with(&|r| r.by = vec!["a-b".into()]).unwrap_err().contains("`a-b` is not a label name"));
        assert!(with(&|r| r.agg = None).unwrap_err().contains("`by` needs an aggregation"));
        assert!(with(&|r| r.for_s = 100_000).unwrap_err().contains("too long"));
        // And from JSON: a bad condition or severity is named.
        let json = serde_json::json!({ "name": "x", "metric": "up", "condition": "above 3", "severity": "warning" });
        let err = serde_json::from_value::<Rule>(json).unwrap_err().to_string();
        assert!(err.contains("\"above 3\" is not valid"), "{err}");
    }

    #[test]
    fn summaries_fill_labels_and_value() {
        let Some(r) = builtin().into_iter().find(|r| r.name == "disk-above-85") else { panic!("missing") };
        let labels = [("host".to_string(), "db1".to_string()), ("mount".to_string(), "/data".to_string())].into();
        assert_eq!(r.summary_for(&labels, 0.9123), "/data on db1 is 0.912 full");
        let r = Rule { summary: "{nope} and {value} and {".into(), ..r };
        assert_eq!(r.summary_for(&labels, 3.0), "{nope} and 3 and {");
    }
}

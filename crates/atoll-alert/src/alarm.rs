//! Alarms and the state machine that moves them: one evaluation of a rule
//! takes the rule's alarms in progress and what the query answered now,
//! and says which alarms to write and which to forget.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::rule::{Rule, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AlarmState {
    /// The condition holds, not yet for the rule's `for_s`.
    Pending,
    Firing,
    /// Over; kept as history.
    Resolved,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Pending => "pending",
            AlarmState::Firing => "firing",
            AlarmState::Resolved => "resolved",
        }
    }

    pub fn is_active(self) -> bool {
        self != AlarmState::Resolved
    }
}

/// A value seen while the alarm was active.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Seen {
    pub at_ms: i64,
    pub value: f64,
}

/// How many values an alarm keeps: the first, then the latest ones.
pub const KEPT_VALUES: usize = 60;

/// One series of one rule that met its condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alarm {
    pub id: String,
    pub rule: String,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub state: AlarmState,
    /// When the condition was first seen to hold.
    pub started_ms: i64,
    pub fired_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub value: f64,
    pub min: f64,
    pub max: f64,
    /// The first value, then the latest [`KEPT_VALUES`].
    pub values: Vec<Seen>,
    /// The state last notified, and when: what decides the next
    /// notification (see [`crate::notify::due`]).
    #[serde(default)]
    pub notified: Option<AlarmState>,
    #[serde(default)]
    pub notified_ms: Option<i64>,
}

impl Alarm {
    fn start(rule: &Rule, labels: BTreeMap<String, String>, value: f64, now_ms: i64) -> Alarm {
        let firing = rule.for_s == 0;
        Alarm {
            id: alarm_id(&rule.name, &labels, now_ms),
            rule: rule.name.clone(),
            severity: rule.severity,
            summary: rule.summary_for(&labels, value),
            labels,
            state: if firing { AlarmState::Firing } else { AlarmState::Pending },
            started_ms: now_ms,
            fired_ms: firing.then_some(now_ms),
            ended_ms: None,
            value,
            min: value,
            max: value,
            values: vec![Seen { at_ms: now_ms, value }],
            notified: None,
            notified_ms: None,
        }
    }

    fn saw(&mut self, rule: &Rule, value: f64, now_ms: i64) {
        self.value = value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.severity = rule.severity;
        self.summary = rule.summary_for(&self.labels, value);
        if self.values.last().is_none_or(|s| s.value != value) {
            self.values.push(Seen { at_ms: now_ms, value });
            if self.values.len() > KEPT_VALUES + 1 {
                self.values.remove(1);
            }
        }
        if self.state == AlarmState::Pending && now_ms - self.started_ms >= (rule.for_s as i64) * 1000 {
            self.state = AlarmState::Firing;
            self.fired_ms = Some(now_ms);
        }
    }

    /// Ends the alarm (the condition stopped holding, or its rule went).
    pub fn resolve(&mut self, now_ms: i64) {
        self.state = AlarmState::Resolved;
        self.ended_ms = Some(now_ms);
    }

    /// The labels silences match on: the series' labels, plus `rule` and
    /// `severity` unless the series has labels of those names.
    pub fn match_labels(&self) -> BTreeMap<String, String> {
        let mut all = self.labels.clone();
        all.entry("rule".into()).or_insert_with(|| self.rule.clone());
        all.entry("severity".into()).or_insert_with(|| self.severity.as_str().into());
        all
    }
}

/// Stable per rule, series and start, so the same alarm written twice (a
/// retried write, a new leader) stays one alarm.
fn alarm_id(rule: &str, labels: &BTreeMap<String, String>, started_ms: i64) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    for (k, v) in labels {
        h.update([0]);
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
    }
    h.update(started_ms.to_be_bytes());
    hex::encode(&h.finalize()[..8])
}

/// What an evaluation changes.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// New or changed alarms, to write.
    pub write: Vec<Alarm>,
    /// Pending alarms whose condition went away before they fired: never
    /// notified, not worth keeping.
    pub forget: Vec<String>,
}

/// One evaluation of `rule`: `active` are its pending and firing alarms,
/// `now` the latest value of each series the query answered.
pub fn evaluate(rule: &Rule, active: Vec<Alarm>, now: &[(BTreeMap<String, String>, f64)], now_ms: i64) -> Outcome {
    let mut by_labels: BTreeMap<BTreeMap<String, String>, Alarm> = active.into_iter().map(|a| (a.labels.clone(), a)).collect();
    let mut out = Outcome::default();
    for (labels, value) in now {
        if !rule.condition.holds(*value) {
            continue;
        }
        match by_labels.remove(labels) {
            Some(mut a) => {
                a.saw(rule, *value, now_ms);
                out.write.push(a);
            }
            None => out.write.push(Alarm::start(rule, labels.clone(), *value, now_ms)),
        }
    }
    // Whatever is left no longer holds (or its series is gone).
    for (_, mut a) in by_labels {
        match a.state {
            AlarmState::Pending => out.forget.push(a.id),
            AlarmState::Firing => {
                a.resolve(now_ms);
                out.write.push(a);
            }
            AlarmState::Resolved => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::builtin;

    fn rule(name: &str, for_s: u64) -> Rule {
        let Some(r) = builtin().into_iter().find(|r| r.name == name) else { panic!("no rule {name}") };
        Rule { for_s, ..r }
    }

    fn at(server: &str, v: f64) -> (BTreeMap<String, String>, f64) {
        ([("cluster".to_string(), "orders".to_string()), ("server".to_string(), server.to_string())].into(), v)
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let r = rule("server-not-synced", 20);
        let o = evaluate(&r, vec![], &[at("a", 0.0), at("b", 1.0)], 1_000);
        assert_eq!(o.write.len(), 1);
        let a = &o.write[0];
        assert_eq!((a.state, a.labels["server"].as_str(), a.fired_ms), (AlarmState::Pending, "a", None));
        assert_eq!(a.summary, "database server a of cluster orders (on {host}) is not Synced");
        // Still pending at 20 s, firing from 21 s.
        let o = evaluate(&r, o.write, &[at("a", 0.0)], 20_000);
        assert_eq!(o.write[0].state, AlarmState::Pending);
        let o = evaluate(&r, o.write, &[at("a", 0.0)], 21_000);
        let id = o.write[0].id.clone();
        assert_eq!((o.write[0].state, o.write[0].fired_ms), (AlarmState::Firing, Some(21_000)));
        // Synced again: resolved, same alarm.
        let o = evaluate(&r, o.write, &[at("a", 1.0)], 30_000);
        assert_eq!((o.write[0].id.as_str(), o.write[0].state, o.write[0].ended_ms), (id.as_str(), AlarmState::Resolved, Some(30_000)));
        assert!(o.forget.is_empty());
    }

    #[test]
    fn pending_that_clears_is_forgotten_and_zero_for_fires_at_once() {
        let r = rule("server-not-synced", 60);
        let o = evaluate(&r, vec![], &[at("a", 0.0)], 0);
        let id = o.write[0].id.clone();
        let o = evaluate(&r, o.write, &[], 10_000);
        assert_eq!(o, Outcome { write: vec![], forget: vec![id] });
        let o = evaluate(&rule("server-not-synced", 0), vec![], &[at("a", 0.0)], 5);
        assert_eq!((o.write[0].state, o.write[0].fired_ms), (AlarmState::Firing, Some(5)));
    }

    #[test]
    fn values_seen_are_kept_with_min_and_max() {
        let r = rule("disk-above-85", 0);
        let v = |x| vec![([("host".to_string(), "h".to_string())].into(), x)];
        let mut active = evaluate(&r, vec![], &v(0.90), 0).write;
        for i in 1..=100 {
            active = evaluate(&r, active, &v(0.86 + (i % 10) as f64 / 100.0), i * 1000).write;
        }
        let a = &active[0];
        assert_eq!((a.min, a.max, a.values.len()), (0.86, 0.95, KEPT_VALUES + 1));
        assert_eq!(a.values[0], Seen { at_ms: 0, value: 0.90 });
        assert_eq!(a.values.last().map(|s| s.at_ms), Some(100_000));
    }
}

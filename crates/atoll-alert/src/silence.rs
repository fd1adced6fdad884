//! Silences: label matchers with an end time and a reason. A silenced
//! alarm still moves through its states; it is only not notified.

use atoll_monitor::series::{Matcher, SeriesKey};
use serde::{Deserialize, Serialize};

use crate::alarm::Alarm;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub id: String,
    /// Label matchers, all of which an alarm's labels (with `rule` and
    /// `severity`) must meet.
    #[serde(rename = "match")]
    pub matchers: Vec<String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub comment: String,
    pub created_by: String,
}

/// Longest a silence may last: long enough for a hardware replacement,
/// short enough that a forgotten one ends.
pub const MAX_SILENCE_MS: i64 = 90 * 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence needs at least one label matcher (e.g. rule=disk-above-85 or host=db1)")]
    NoMatchers,
    #[error("{0}")]
    BadMatcher(String),
    #[error("a silence needs a comment saying why (who will read it: the next person on call)")]
    NoComment,
    #[error("the silence would end before it starts; give an end in the future")]
    EndsBeforeStart,
    #[error("a silence may last at most 90 days")]
    TooLong,
}

impl Silence {
    pub fn validate(&self) -> Result<(), SilenceError> {
        if self.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        self.parsed()?;
        if self.comment.trim().is_empty() {
            return Err(SilenceError::NoComment);
        }
        if self.ends_ms <= self.starts_ms {
            return Err(SilenceError::EndsBeforeStart);
        }
        if self.ends_ms - self.starts_ms > MAX_SILENCE_MS {
            return Err(SilenceError::TooLong);
        }
        Ok(())
    }

    fn parsed(&self) -> Result<Vec<Matcher>, SilenceError> {
        self.matchers.iter().map(|m| Matcher::parse(m).map_err(|e| SilenceError::BadMatcher(e.to_string()))).collect()
    }

    pub fn is_active(&self, now_ms: i64) -> bool {
        self.starts_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether the silence covers `alarm` now.
    pub fn covers(&self, alarm: &Alarm, now_ms: i64) -> bool {
        if !self.is_active(now_ms) {
            return false;
        }
        let key = SeriesKey::new("alarm", alarm.match_labels());
        // Stored silences were validated; one that no longer parses covers nothing.
        self.parsed().is_ok_and(|ms| ms.iter().all(|m| m.matches(&key)))
    }
}

/// The first silence covering `alarm` now.
pub fn silenced_by<'a>(silences: &'a [Silence], alarm: &Alarm, now_ms: i64) -> Option<&'a Silence> {
    silences.iter().find(|s| s.covers(alarm, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::evaluate;
    use crate::rule::{Rule, builtin};

    fn silence(matchers: &[&str], starts: i64, ends: i64) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            starts_ms: starts,
            ends_ms: ends,
            comment: "disk swap on db1".into(),
            created_by: "admin".into(),
        }
    }

    #[test]
    fn covers_by_labels_rule_and_time() {
        let Some(r) = builtin().into_iter().find(|r| r.name == "disk-above-85") else { panic!("missing") };
        let r = Rule { for_s: 0, ..r };
        let labels = [("host".to_string(), "db1".to_string()), ("mount".to_string(), "/data".to_string())].into();
        let a = evaluate(&r, vec![], &[(labels, 0.9)], 100).write.remove(0);
        assert!(silence(&["host=db1"], 0, 200).covers(&a, 100));
        assert!(silence(&["rule=disk-above-85", "severity=warning", "mount=~/d.*"], 0, 200).covers(&a, 100));
        assert!(!silence(&["host=db1", "rule=host-offline"], 0, 200).covers(&a, 100), "every matcher must hold");
        assert!(!silence(&["host=db1"], 0, 100).covers(&a, 100), "ended");
        assert!(!silence(&["host=db1"], 150, 200).covers(&a, 100), "not started");
    }

    #[test]
    fn bad_silences_name_the_problem() {
        assert_eq!(silence(&[], 0, 1).validate(), Err(SilenceError::NoMatchers));
        assert!(matches!(silence(&["host"], 0, 1).validate(), Err(SilenceError::BadMatcher(m)) if m.contains("`host` has no operator")));
        assert_eq!(Silence { comment: " ".into(), ..silence(&["a=b"], 0, 1) }.validate(), Err(SilenceError::NoComment));
        assert_eq!(silence(&["a=b"], 5, 5).validate(), Err(SilenceError::EndsBeforeStart));
        assert_eq!(silence(&["a=b"], 0, MAX_SILENCE_MS + 1).validate(), Err(SilenceError::TooLong));
    }
}

//! Channels and notifications: which alarms are due a notification, how
//! they are grouped, and how often a failed delivery is tried again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alarm::{Alarm, AlarmState};
use crate::rule::Severity;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Channel {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    /// Where a webhook posts to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Who an email channel writes to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Alarms below this severity are not sent here.
    #[serde(default = "info")]
    pub min_severity: Severity,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn info() -> Severity {
    Severity::Info
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// An HTTP POST of the notification as JSON to `url`.
    Webhook,
    /// A line in the server's log (warn for firing, info for resolved).
    Log,
    /// Mail to `to` through the SMTP server the platform is configured
    /// with (`smtp_server`, `smtp_from`).
    Email,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Log => "log",
            ChannelKind::Email => "email",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name {0:?} is not valid: use 1 to 64 lowercase letters, digits, `_` or `-`, starting with a letter")]
    BadName(String),
    #[error("webhook URL {0:?} is not valid: give an http:// or https:// URL with a host")]
    BadUrl(String),
    #[error("a webhook channel needs a url")]
    NoUrl,
    #[error("only a webhook channel takes a url")]
    UrlNotWanted,
    #[error("an email channel needs at least one address to write to (`to`)")]
    NoRecipient,
    #[error("{0:?} is not an email address")]
    BadAddress(String),
    #[error("only an email channel takes `to` addresses")]
    ToNotWanted,
}

impl Channel {
    pub fn validate(&self) -> Result<(), ChannelError> {
        if !crate::rule::valid_rule_name(&self.name) {
            return Err(ChannelError::BadName(self.name.clone()));
        }
        match (self.kind, &self.url) {
            (ChannelKind::Webhook, None) => return Err(ChannelError::NoUrl),
            (ChannelKind::Log | ChannelKind::Email, Some(_)) => return Err(ChannelError::UrlNotWanted),
            (ChannelKind::Webhook, Some(url)) => {
                let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
                let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
                if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
                    return Err(ChannelError::BadUrl(url.clone()));
                }
            }
            (ChannelKind::Log | ChannelKind::Email, None) => {}
        }
        match self.kind {
            ChannelKind::Email if self.to.is_empty() => return Err(ChannelError::NoRecipient),
            ChannelKind::Email => {
                if let Some(bad) = self.to.iter().find(|a| !looks_like_address(a)) {
                    return Err(ChannelError::BadAddress(bad.clone()));
                }
            }
            _ if !self.to.is_empty() => return Err(ChannelError::ToNotWanted),
            _ => {}
        }
        Ok(())
    }

    /// Where it sends, for listings: the URL, the addresses, or the log.
    pub fn destination(&self) -> String {
        match self.kind {
            ChannelKind::Webhook => self.url.clone().unwrap_or_default(),
            ChannelKind::Email => self.to.join(", "),
            ChannelKind::Log => "server log".into(),
        }
    }

    pub fn wants(&self, n: &Notification) -> bool {
        self.enabled && n.severity >= self.min_severity
    }
}

/// `local@domain`, one `@`, no spaces or angle brackets: what a typo breaks.
fn looks_like_address(a: &str) -> bool {
    let bad = |c: char| c.is_whitespace() || matches!(c, '<' | '>' | ',' | ';');
    matches!(a.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.contains('@') && !a.contains(bad))
}

/// A channel's recent deliveries, shown beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelStatus {
    pub delivered: u64,
    /// Notifications given up on after every retry.
    pub failed: u64,
    pub last_ok_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// Pauses before the retries of a failed delivery: about half a minute of
/// trying in all, then the notification is given up and counted failed.
pub const RETRY_DELAYS_MS: [u64; 5] = [1_000, 2_000, 4_000, 8_000, 16_000];

/// The notification `alarm` is due now, if any: a firing alarm not yet
/// notified as firing (or last notified `repeat_ms` ago) and not silenced;
/// a resolved alarm whose firing was notified.
pub fn due(alarm: &Alarm, silenced: bool, now_ms: i64, repeat_ms: i64) -> Option<AlarmState> {
    match alarm.state {
        AlarmState::Firing if !silenced => {
            let repeat = alarm.notified_ms.is_some_and(|at| now_ms - at >= repeat_ms);
            (alarm.notified != Some(AlarmState::Firing) || repeat).then_some(AlarmState::Firing)
        }
        AlarmState::Resolved => (alarm.notified == Some(AlarmState::Firing)).then_some(AlarmState::Resolved),
        _ => None,
    }
}

/// One message to a channel: the alarms of one rule that changed (or are
/// repeated) in one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    pub rule: String,
    pub severity: Severity,
    /// `firing` when any of its alarms fires, else `resolved`.
    pub status: AlarmState,
    /// One line for a pager or a chat: "[FIRING 2] cluster-degraded: …".
    pub title: String,
    pub alarms: Vec<NotifiedAlarm>,
    pub sent_at_ms: i64,
}

/// An alarm as a notification carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifiedAlarm {
    pub id: String,
    pub state: AlarmState,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub started_ms: i64,
    pub fired_ms: Option<i64>,
    pub ended_ms: Option<i64>,
}

impl From<&Alarm> for NotifiedAlarm {
    fn from(a: &Alarm) -> Self {
        NotifiedAlarm {
            id: a.id.clone(),
            state: a.state,
            summary: a.summary.clone(),
            labels: a.labels.clone(),
            value: a.value,
            started_ms: a.started_ms,
            fired_ms: a.fired_ms,
            ended_ms: a.ended_ms,
        }
    }
}

/// Groups due alarms by rule, firing ones first within a group.
pub fn group(alarms: &[Alarm], now_ms: i64) -> Vec<Notification> {
    let mut by_rule: BTreeMap<&str, Vec<&Alarm>> = BTreeMap::new();
    for a in alarms {
        by_rule.entry(&a.rule).or_default().push(a);
    }
    by_rule
        .into_iter()
        .map(|(rule, mut list)| {
            list.sort_by_key(|a| (a.state != AlarmState::Firing, a.started_ms));
            let firing = list.iter().filter(|a| a.state == AlarmState::Firing).count();
            let status = if firing > 0 { AlarmState::Firing } else { AlarmState::Resolved };
            let severity = list.iter().map(|a| a.severity).max().unwrap_or(Severity::Info);
            let count = if firing > 0 { firing } else { list.len() };
            let first = list.first().map_or(String::new(), |a| a.summary.clone());
            let more = if count > 1 { format!(" (and {} more)", count - 1) } else { String::new() };
            Notification {
                rule: rule.to_string(),
                severity,
                status,
                title: format!("[{} {count}] {rule}: {first}{more}", status.as_str().to_uppercase()),
                alarms: list.into_iter().map(NotifiedAlarm::from).collect(),
                sent_at_ms: now_ms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::evaluate;
    use crate::rule::builtin;

    fn firing(rule: &str, host: &str, now: i64) -> Alarm {
        let Some(r) = builtin().into_iter().find(|r| r.name == rule) else { panic!("no rule {rule}") };
        let r = crate::rule::Rule { for_s: 0, ..r };
        let mut o = evaluate(&r, vec![], &[([("host".to_string(), host.to_string())].into(), 0.0)], now);
        o.write.remove(0)
    }

    #[test]
    fn firing_once_then_repeated_then_resolved_once() {
        let mut a = firing("host-offline", "db1", 0);
        assert_eq!(due(&a, false, 0, 60_000), Some(AlarmState::Firing));
        assert_eq!(due(&a, true, 0, 60_000), None, "silenced");
        a.notified = Some(AlarmState::Firing);
        a.notified_ms = Some(0);
        assert_eq!(due(&a, false, 59_999, 60_000), None);
        assert_eq!(due(&a, false, 60_000, 60_000), Some(AlarmState::Firing), "repeat interval");
        a.resolve(70_000);
        assert_eq!(due(&a, true, 70_000, 60_000), Some(AlarmState::Resolved));
        a.notified = Some(AlarmState::Resolved);
        assert_eq!(due(&a, false, 80_000, 60_000), None);
        // Resolved without having been notified as firing: nothing to say.
        let mut b = firing("host-offline", "db2", 0);
        b.resolve(1);
        assert_eq!(due(&b, false, 1, 60_000), None);
    }

    #[test]
    fn grouped_by_rule_with_a_title() {
        let mut resolved = firing("host-offline", "db3", 0);
        resolved.resolve(9);
        let all = [firing("host-offline", "db1", 5), resolved, firing("host-offline", "db2", 7), firing("agent-not-reporting", "db1", 5)];
        let ns = group(&all, 10);
        assert_eq!(ns.len(), 2);
        assert_eq!((ns[0].rule.as_str(), ns[0].status, ns[0].alarms.len()), ("agent-not-reporting", AlarmState::Firing, 1));
        let h = &ns[1];
        assert_eq!(h.title, "[FIRING 2] host-offline: host db1 is offline: its agent stopped sending heartbeats (and 1 more)");
        assert_eq!(h.alarms.iter().map(|a| a.state).collect::<Vec<_>>(), [AlarmState::Firing, AlarmState::Firing, AlarmState::Resolved]);
        assert_eq!(h.severity, Severity::Critical);
    }

    #[test]
    fn channels_validate_and_filter() {
        let ch = |kind, url: Option<&str>| Channel {
            name: "ops".into(),
            kind,
            url: url.map(String::from),
            to: Vec::new(),
            min_severity: Severity::Critical,
            enabled: true,
        };
        assert!(ch(ChannelKind::Webhook, Some("http://127.0.0.1:9/hook")).validate().is_ok());
        for bad in ["ftp://x", "http://", "127.0.0.1:9", "http:// x/"] {
            assert_eq!(ch(ChannelKind::Webhook, Some(bad)).validate(), Err(ChannelError::BadUrl(bad.into())));
        }
        assert_eq!(ch(ChannelKind::Webhook, None).validate(), Err(ChannelError::NoUrl));
        assert_eq!(ch(ChannelKind::Log, Some("http://x")).validate(), Err(ChannelError::UrlNotWanted));
        assert_eq!(ch(ChannelKind::Email, None).validate(), Err(ChannelError::NoRecipient));
        let mail = |to: &str| Channel { to: vec![to.into()], ..ch(ChannelKind::Email, None) };
        assert!(mail("ops@example.com").validate().is_ok());
        for bad in ["ops", "ops@localhost", "a b@example.com", "<ops@example.com>", "@example.com"] {
            assert_eq!(mail(bad).validate(), Err(ChannelError::BadAddress(bad.into())), "{bad}");
        }
        assert_eq!(Channel { to: vec!["a@b.c".into()], ..ch(ChannelKind::Log, None) }.validate(), Err(ChannelError::ToNotWanted));
        let n = group(&[firing("agent-not-reporting", "db1", 0)], 0).remove(0);
        assert!(!ch(ChannelKind::Log, None).wants(&n), "a warning is below critical");
        let json = serde_json::json!({ "name": "hook", "type": "webhook", "url": "http://h/x" });
        let c: Channel = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.min_severity, c.enabled), (Severity::Info, true));
        assert!(serde_json::from_value::<Channel>(serde_json::json!({ "name": "x", "type": "pager" })).is_err());
        let typo = serde_json::from_value::<Channel>(serde_json::json!({ "name": "x", "type": "log", "min_severty": "info" }));
        assert!(typo.is_err_and(|e| e.to_string().contains("unknown field `min_severty`")));
    }
}

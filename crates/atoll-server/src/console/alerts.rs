//! `/alerts`: alarms (active, then history), rules, silences and channels;
//! changes go through the API from `console.js`. Cluster and host pages
//! show their own active alarms with [`active_for`].

use askama::Template;
use atoll_alert::{Alarm, Silence, silence};
use atoll_core::time::now_ms;
use atoll_store::AlarmFilter;
use axum::extract::State;
use axum::response::Response;

use super::{Chrome, Session, error_page, fmt, page};
use crate::alerting::docs;
use crate::error::ApiError;
use crate::state::AppState;

/// An alarm as a row.
pub(crate) struct AlarmLine {
    pub id: String,
    pub state: &'static str,
    pub severity: &'static str,
    pub rule: String,
    pub summary: String,
    pub since: String,
    pub started_at: String,
    pub ended_at: String,
    pub value: String,
    pub range: String,
    pub silenced_by: Option<String>,
}

impl AlarmLine {
    fn new(a: &Alarm, silences: &[Silence], now: i64) -> AlarmLine {
        let v = atoll_alert::rule::format_value;
        AlarmLine {
            id: a.id.clone(),
            state: a.state.as_str(),
            severity: a.severity.as_str(),
            rule: a.rule.clone(),
            summary: a.summary.clone(),
            since: fmt::ago(now, a.started_ms),
            started_at: fmt::utc(a.started_ms),
            ended_at: fmt::utc_opt(a.ended_ms),
            value: v(a.value),
            range: if a.min == a.max { v(a.min) } else { format!("{} – {}", v(a.min), v(a.max)) },
            silenced_by: silence::silenced_by(silences, a, now).map(|s| fmt::short_id(&s.id).to_string()),
        }
    }
}

/// Active alarms whose `label` is `value` (e.g. cluster=orders), for the
/// badge and list on that page; none when MetaDB cannot say.
pub(crate) async fn active_for(state: &AppState, label: &str, value: &str, now: i64) -> Vec<AlarmLine> {
    let Ok(records) = state.store.list_alarms(&AlarmFilter { active: true, limit: 1000, ..Default::default() }).await else {
        return Vec::new();
    };
    let silences = docs::silences(state).await.unwrap_or_default();
    records
        .iter()
        .filter_map(docs::alarm)
        .filter(|a| a.labels.get(label).map(String::as_str) == Some(value))
        .map(|a| AlarmLine::new(&a, &silences, now))
        .collect()
}

struct RuleLine {
    name: String,
    builtin: bool,
    enabled: bool,
    severity: &'static str,
    query: String,
    condition: String,
    for_s: u64,
    summary: String,
}

struct SilenceLine {
    id: String,
    short_id: String,
    matchers: String,
    active: bool,
    ends_at: String,
    created_by: String,
    comment: String,
}

struct ChannelLine {
    name: String,
    kind: &'static str,
    to: String,
    min_severity: &'static str,
    delivered: u64,
    failed: u64,
    last_ok: String,
    last_error: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    active: Vec<AlarmLine>,
    history: Vec<AlarmLine>,
    rules: Vec<RuleLine>,
    silences: Vec<SilenceLine>,
    channels: Vec<ChannelLine>,
}

pub async fn page_handler(State(state): State<AppState>, Session(caller): Session) -> Response {
    match load(&state).await {
        Ok((active, history, rules, silences, channels)) => {
            page(&AlertsPage { chrome: Chrome::for_caller(&caller, "alerts"), active, history, rules, silences, channels })
        }
        Err(e) => error_page(Some(&caller), e),
    }
}

type Loaded = (Vec<AlarmLine>, Vec<AlarmLine>, Vec<RuleLine>, Vec<SilenceLine>, Vec<ChannelLine>);

async fn load(state: &AppState) -> Result<Loaded, ApiError> {
    let internal = |e: anyhow::Error| ApiError::Internal(e.to_string());
    let now = now_ms();
    let silences = docs::silences(state).await.map_err(internal)?;
    let records = state.store.list_alarms(&AlarmFilter { limit: 200, ..Default::default() }).await?;
    let (active, history): (Vec<Alarm>, Vec<Alarm>) = records.iter().filter_map(docs::alarm).partition(|a| a.state.is_active());
    let line = |a: &Alarm| AlarmLine::new(a, &silences, now);
    let rules = docs::rules(state)
        .await
        .map_err(internal)?
        .iter()
        .map(|r| RuleLine {
            name: r.name.clone(),
            builtin: r.builtin,
            enabled: r.enabled,
            severity: r.severity.as_str(),
            query: r.describe(),
            condition: r.condition.to_string(),
            for_s: r.for_s,
            summary: r.summary.clone(),
        })
        .collect();
    let mut channels = Vec::new();
    for c in docs::channels(state).await.map_err(internal)? {
        let st = docs::channel_status(state, &c.name).await.map_err(internal)?;
        channels.push(ChannelLine {
            kind: c.kind.as_str(),
            to: c.destination(),
            min_severity: c.min_severity.as_str(),
            delivered: st.delivered,
            failed: st.failed,
            last_ok: st.last_ok_ms.map_or_else(|| "never".into(), |t| fmt::ago(now, t)),
            last_error: match (st.last_error, st.last_error_ms) {
                (Some(e), Some(t)) => format!("{}: {e}", fmt::ago(now, t)),
                _ => String::new(),
            },
            name: c.name,
        });
    }
    let mut sl: Vec<&Silence> = silences.iter().collect();
    sl.sort_by_key(|s| (!s.is_active(now), std::cmp::Reverse(s.ends_ms)));
    let silences = sl
        .into_iter()
        .map(|s| SilenceLine {
            id: s.id.clone(),
            short_id: fmt::short_id(&s.id).to_string(),
            matchers: s.matchers.join(", "),
            active: s.is_active(now),
            ends_at: fmt::utc(s.ends_ms),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
        })
        .collect();
    Ok((active.iter().map(line).collect(), history.iter().map(line).collect(), rules, silences, channels))
}

//! Alert rules, silences, channels and alarms as MetaDB keeps them (JSON
//! documents and alarm rows), read and written in one place.

use atoll_alert::{Alarm, Channel, ChannelKind, ChannelStatus, Rule, Silence};
use atoll_core::time::now_ms;
use atoll_store::{AlarmRecord, DocKind, DocRecord, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::AppState;

/// Adds the built-in rules that are missing, and a `log` channel on a
/// platform that has no channel at all. Changes operators made to
/// built-ins stay.
pub async fn seed(state: &AppState) -> anyhow::Result<()> {
    let have: std::collections::HashSet<String> = state.store.list_docs(DocKind::AlertRule).await?.into_iter().map(|d| d.name).collect();
    for rule in atoll_alert::rule::builtin().into_iter().filter(|r| !have.contains(&r.name)) {
        insert_if_missing(state, DocKind::AlertRule, &rule.name, &rule).await?;
    }
    if state.store.list_docs(DocKind::Channel).await?.is_empty() {
        let log = Channel {
            name: "log".into(),
            kind: ChannelKind::Log,
            url: None,
            to: Vec::new(),
            min_severity: atoll_alert::Severity::Info,
            enabled: true,
        };
        insert_if_missing(state, DocKind::Channel, &log.name, &log).await?;
    }
    Ok(())
}

/// Another server seeding at the same moment is not an error.
async fn insert_if_missing<T: Serialize>(state: &AppState, kind: DocKind, name: &str, value: &T) -> anyhow::Result<()> {
    match state.store.insert_doc(&record(kind, name, value)?).await {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn record<T: Serialize>(kind: DocKind, name: &str, value: &T) -> anyhow::Result<DocRecord> {
    Ok(DocRecord { kind, name: name.to_string(), body: serde_json::to_string(value)?, updated_ms: now_ms() })
}

/// Every document of a kind; one that no longer reads (a hand edit, an
/// older version) is skipped with a warning rather than stopping alerting.
async fn all<T: DeserializeOwned>(state: &AppState, kind: DocKind) -> anyhow::Result<Vec<T>> {
    let docs = state.store.list_docs(kind).await?;
    Ok(docs.iter().filter_map(|d| parse(d)).collect())
}

pub fn parse<T: DeserializeOwned>(d: &DocRecord) -> Option<T> {
    serde_json::from_str(&d.body)
        .inspect_err(|e| tracing::warn!(kind = d.kind.as_str(), name = %d.name, error = %e, "unreadable document in MetaDB; skipped"))
        .ok()
}

pub async fn rules(state: &AppState) -> anyhow::Result<Vec<Rule>> {
    all(state, DocKind::AlertRule).await
}

pub async fn silences(state: &AppState) -> anyhow::Result<Vec<Silence>> {
    all(state, DocKind::Silence).await
}

pub async fn channels(state: &AppState) -> anyhow::Result<Vec<Channel>> {
    all(state, DocKind::Channel).await
}

pub async fn channel_status(state: &AppState, name: &str) -> anyhow::Result<ChannelStatus> {
    let doc = state.store.get_doc(DocKind::ChannelStatus, name).await?;
    Ok(doc.and_then(|d| parse(&d)).unwrap_or_default())
}

pub fn alarm(r: &AlarmRecord) -> Option<Alarm> {
    serde_json::from_str(&r.body).inspect_err(|e| tracing::warn!(alarm = %r.id, error = %e, "unreadable alarm in MetaDB; skipped")).ok()
}

pub fn alarm_record(a: &Alarm) -> anyhow::Result<AlarmRecord> {
    Ok(AlarmRecord {
        id: a.id.clone(),
        rule: a.rule.clone(),
        state: a.state.as_str().to_string(),
        started_ms: a.started_ms,
        ended_ms: a.ended_ms,
        body: serde_json::to_string(a)?,
    })
}

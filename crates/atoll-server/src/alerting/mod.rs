//! Alerting on the platform: the controllers' leader evaluates every rule
//! against MonitorDB once per scrape interval, keeps alarms in MetaDB (so
//! a new leader carries on where the old one stopped) and hands due
//! notifications to the channels.

mod deliver;
pub mod docs;
pub mod mail;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use atoll_alert::{Alarm, AlarmState, Rule, notify, silence};
use atoll_core::time::now_ms;
use atoll_monitor::{MonitorError, Query, QueryError};
use atoll_store::AlarmFilter;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;
pub use deliver::Deliveries;

/// Resolved alarms are kept this long as history.
const HISTORY_MS: i64 = 90 * 86_400_000;
/// Ended silences stay listed this long.
const SILENCE_HISTORY_MS: i64 = 7 * 86_400_000;

/// Evaluates rules while this server leads, until `shutdown`: twice per
/// scrape interval, so that an alarm fires within about one and a half
/// intervals of the scrape that shows its cause.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    if let Err(e) = docs::seed(&state).await {
        tracing::warn!(error = %e, "cannot add the built-in alert rules yet; will try again");
    }
    let interval = Duration::from_millis(state.config.scrape_interval_ms);
    let every = interval / 2;
    // A new leader's MonitorDB has no recent samples until it has scraped:
    // evaluating before then would resolve every alarm for want of data.
    let warmup = 2 * interval;
    let mut led_since: Option<(i64, Instant)> = None;
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(fence) = state.platform.leading() else {
            led_since = None;
            continue;
        };
        let since = match led_since {
            Some((generation, at)) if generation == fence.generation => at,
            _ => {
                led_since = Some((fence.generation, Instant::now()));
                let _ = docs::seed(&state).await;
                continue;
            }
        };
        if since.elapsed() < warmup {
            continue;
        }
        let started = Instant::now();
        match round(&state, now_ms()).await {
            Ok(()) => metrics::histogram!("atoll_alert_evaluation_seconds").record(started.elapsed().as_secs_f64()),
            Err(e) => {
                metrics::counter!("atoll_alert_evaluations_failed_total").increment(1);
                tracing::warn!(error = %e, "alert evaluation failed; alarms stay as they were");
            }
        }
        rounds += 1;
        if rounds.is_multiple_of(720)
            && let Err(e) = prune(&state, now_ms()).await
        {
            tracing::warn!(error = %e, "cannot prune old alarms and silences");
        }
    }
}

/// Drops resolved alarms past their history and silences that ended a
/// week ago.
async fn prune(state: &AppState, now: i64) -> anyhow::Result<()> {
    state.store.prune_alarms(now - HISTORY_MS).await?;
    for s in docs::silences(state).await? {
        if s.ends_ms < now - SILENCE_HISTORY_MS {
            state.store.delete_doc(atoll_store::DocKind::Silence, &s.id).await?;
        }
    }
    Ok(())
}

/// One evaluation of every rule, then the notifications it makes due.
async fn round(state: &AppState, now: i64) -> anyhow::Result<()> {
    let rules = docs::rules(state).await?;
    let silences = docs::silences(state).await?;
    let before = state.store.list_alarms(&AlarmFilter { active: true, limit: 100_000, ..Default::default() }).await?;
    let before: Vec<Alarm> = before.iter().filter_map(docs::alarm).collect();
    let unchanged: HashMap<String, Alarm> = before.iter().map(|a| (a.id.clone(), a.clone())).collect();
    let mut by_rule: BTreeMap<String, Vec<Alarm>> = BTreeMap::new();
    for a in before {
        by_rule.entry(a.rule.clone()).or_default().push(a);
    }
    let mut write = Vec::new();
    let mut forget = Vec::new();
    for rule in rules.iter().filter(|r| r.enabled) {
        let active = by_rule.remove(&rule.name).unwrap_or_default();
        match latest(state, rule, now).await {
            Ok(values) => {
                let o = atoll_alert::evaluate(rule, active, &values, now);
                write.extend(o.write);
                forget.extend(o.forget);
            }
            // Keep its alarms as they are: no data is not good news.
            Err(e) => tracing::warn!(rule = %rule.name, error = %e, "cannot evaluate alert rule"),
        }
    }
    // Rules disabled or deleted: their alarms end.
    for (_, alarms) in by_rule {
        for mut a in alarms {
            match a.state {
                AlarmState::Pending => forget.push(a.id),
                _ => {
                    a.resolve(now);
                    write.push(a);
                }
            }
        }
    }
    let repeat_ms = i64::try_from(state.config.alert_repeat_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut due = Vec::new();
    for a in &mut write {
        let silenced = silence::silenced_by(&silences, a, now).is_some();
        if let Some(st) = notify::due(a, silenced, now, repeat_ms) {
            a.notified = Some(st);
            a.notified_ms = Some(now);
            due.push(a.clone());
        }
    }
    write.retain(|a| unchanged.get(&a.id) != Some(a));
    let records = write.iter().map(docs::alarm_record).collect::<anyhow::Result<Vec<_>>>()?;
    state.store.put_alarms(&records).await?;
    state.store.delete_alarms(&forget).await?;
    for a in &write {
        if unchanged.get(&a.id).is_none_or(|old| old.state != a.state) {
            tracing::info!(rule = %a.rule, alarm = %a.id, state = a.state.as_str(), summary = %a.summary, "alarm");
        }
    }
    if !due.is_empty() {
        let channels = docs::channels(state).await?;
        for n in notify::group(&due, now) {
            for ch in channels.iter().filter(|c| c.wants(&n)) {
                state.deliveries.send(state, ch.clone(), n.clone());
            }
        }
    }
    Ok(())
}

/// The latest value of each series `rule`'s query answers, seen over the
/// last three scrape intervals. The steps are a quarter interval, so a step
/// holds at most one sample of a series (a mean of two would blur a 0/1
/// gauge), and the last one ends after `now`, so the newest sample counts.
async fn latest(state: &AppState, rule: &Rule, now: i64) -> anyhow::Result<Vec<(BTreeMap<String, String>, f64)>> {
    let interval = i64::try_from(state.config.scrape_interval_ms)?;
    let step = (interval / 4).max(250);
    let end = (now / step + 1) * step;
    let q = Query {
        metric: rule.metric.clone(),
        matchers: rule.parsed_matchers()?,
        start_ms: end - 3 * interval,
        end_ms: end,
        step_ms: Some(step),
        rate: rule.rate,
        agg: rule.agg,
        by: rule.by.clone(),
    };
    let answer = match state.monitoring.db.query(&q, now).await {
        Ok(a) => a,
        // Nothing exports it (yet): nothing holds.
        Err(MonitorError::Query(QueryError::UnknownMetric(_))) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(answer.series.into_iter().filter_map(|s| s.values.iter().rev().find_map(|v| *v).map(|v| (s.labels, v))).collect())
}

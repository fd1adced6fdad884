//! Delivering notifications: each to each channel in its own task, retried
//! with back-off, the outcome recorded beside the channel.

use std::time::Duration;

use atoll_alert::notify::RETRY_DELAYS_MS;
use atoll_alert::{AlarmState, Channel, ChannelKind, Notification};
use atoll_core::time::now_ms;
use atoll_store::DocKind;

use super::docs;
use crate::state::AppState;

/// Per request: a receiver slower than this counts as failed (and is tried
/// again).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP client deliveries share.
pub struct Deliveries {
    http: Option<reqwest::Client>,
    smtp: Option<super::mail::Smtp>,
    /// Serialises this server's read-modify-writes of channel statuses.
    recording: tokio::sync::Mutex<()>,
}

impl Deliveries {
    pub fn new(smtp: Option<super::mail::Smtp>) -> Deliveries {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("atoll/", env!("CARGO_PKG_VERSION")))
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "cannot build the webhook HTTP client; webhooks will fail"))
            .ok();
        Deliveries { http, smtp, recording: tokio::sync::Mutex::new(()) }
    }

    /// Starts delivering `n` to `channel`; returns at once.
    pub fn send(&self, state: &AppState, channel: Channel, n: Notification) {
        let state = state.clone();
        tokio::spawn(async move {
            let outcome = deliver(&state, &channel, &n).await;
            record(&state, &channel.name, outcome.into()).await;
        });
    }

    /// Delivers once, now, without retries: `atoll alert channels test`.
    pub async fn test(&self, state: &AppState, channel: &Channel, n: &Notification) -> Result<(), String> {
        let outcome = self.attempt(channel, n).await;
        record(state, &channel.name, outcome.clone().into()).await;
        outcome
    }
}

/// Tries until it works or the retries run out; each failed attempt is
/// recorded at once (the channel shows its last error while retrying).
async fn deliver(state: &AppState, channel: &Channel, n: &Notification) -> Result<(), String> {
    let mut delays = RETRY_DELAYS_MS.iter();
    loop {
        let outcome = state.deliveries.attempt(channel, n).await;
        let Err(e) = outcome else { return Ok(()) };
        let Some(ms) = delays.next() else { return Err(e) };
        tracing::info!(channel = %channel.name, error = %e, retry_in_ms = ms, "notification not delivered; will retry");
        metrics::counter!("atoll_alert_delivery_retries_total").increment(1);
        record(state, &channel.name, Outcome::Retrying(e)).await;
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
}

/// What [`record`] adds to a channel's status.
enum Outcome {
    Delivered,
    /// An attempt failed; there will be another.
    Retrying(String),
    /// The last attempt failed.
    GaveUp(String),
}

impl From<Result<(), String>> for Outcome {
    fn from(r: Result<(), String>) -> Self {
        match r {
            Ok(()) => Outcome::Delivered,
            Err(e) => Outcome::GaveUp(e),
        }
    }
}

impl Deliveries {
    async fn attempt(&self, channel: &Channel, n: &Notification) -> Result<(), String> {
        match &channel.kind {
            ChannelKind::Log => {
                match n.status {
                    AlarmState::Firing => tracing::warn!(target: "atoll::alert", channel = %channel.name, rule = %n.rule, "{}", n.title),
                    _ => tracing::info!(target: "atoll::alert", channel = %channel.name, rule = %n.rule, "{}", n.title),
                }
                Ok(())
            }
            ChannelKind::Webhook => {
                let url = channel.url.as_deref().ok_or("the channel has no url")?;
                let http = self.http.as_ref().ok_or("no HTTP client (see the server log at start)")?;
                let resp = http.post(url).json(n).send().await.map_err(|e| format!("POST {url}: {}", atoll_client::describe(&e)))?;
                let status = resp.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let body = resp.text().await.unwrap_or_default();
                    let body: String = body.chars().take(200).collect();
                    Err(format!("{url} answered {status}: {}", body.trim()))
                }
            }
            ChannelKind::Email => match &self.smtp {
                Some(smtp) => smtp.send(&channel.to, n).await,
                None => Err("no SMTP server is configured: set smtp_server (and smtp_from) in the server's config".into()),
            },
        }
    }
}

/// Adds the outcome to the channel's status; a lost write only loses the
/// count (the log has the delivery).
async fn record(state: &AppState, channel: &str, outcome: Outcome) {
    let now = now_ms();
    let result = async {
        let _one_at_a_time = state.deliveries.recording.lock().await;
        let mut status = docs::channel_status(state, channel).await?;
        match &outcome {
            Outcome::Delivered => {
                status.delivered += 1;
                status.last_ok_ms = Some(now);
            }
            Outcome::Retrying(e) | Outcome::GaveUp(e) => {
                status.failed += u64::from(matches!(outcome, Outcome::GaveUp(_)));
                status.last_error = Some(e.clone());
                status.last_error_ms = Some(now);
            }
        }
        state.store.put_doc(&docs::record(DocKind::ChannelStatus, channel, &status)?).await?;
        anyhow::Ok(())
    }
    .await;
    match &outcome {
        Outcome::Delivered => metrics::counter!("atoll_alert_notifications_total", "outcome" => "delivered").increment(1),
        Outcome::GaveUp(e) => {
            metrics::counter!("atoll_alert_notifications_total", "outcome" => "failed").increment(1);
            tracing::warn!(channel, error = %e, "notification given up after every retry");
        }
        Outcome::Retrying(_) => {}
    }
    if let Err(e) = result {
        tracing::warn!(channel, error = %e, "cannot record a channel's delivery");
    }
}

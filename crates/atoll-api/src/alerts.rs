//! `/api/v1/alerts`: rules, alarms, silences and notification channels.
//! Rules and channels travel as atoll-alert's own types.

use atoll_alert::{Alarm, Channel, ChannelStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use atoll_alert::{Rule, Silence};

/// An alarm and the silence that keeps it quiet, if any.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlarmView {
    #[serde(flatten)]
    pub alarm: Alarm,
    pub silenced_by: Option<String>,
}

/// A channel with its recent deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelView {
    #[serde(flatten)]
    pub channel: Channel,
    pub status: ChannelStatus,
}

/// A new silence: label matchers, an end (`duration` from now, e.g. `2h`,
/// or `ends_ms`) and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSilence {
    #[serde(rename = "match")]
    pub matchers: Vec<String>,
    pub duration: Option<String>,
    pub ends_ms: Option<i64>,
    pub comment: String,
}

/// The outcome of `POST /api/v1/alerts/channels/{name}/test`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelTest {
    pub delivered: bool,
    pub error: Option<String>,
}

//! Hosts: machines an agent runs on, known by an identity of their own.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{HostFacts, UnixMs};

/// A host's identity. The agent makes it once and keeps it in its data
/// directory, so a host that changes address is the same host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct HostId(pub Uuid);

impl HostId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for HostId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for HostId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Added by an operator; its agent has not registered yet.
    Pending,
    Online,
    /// Missed its heartbeats; it turns online again when they return.
    Offline,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

impl FromStr for HostStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "online" => Ok(Self::Online),
            "offline" => Ok(Self::Offline),
            other => Err(format!("unknown host status {other:?}")),
        }
    }
}

impl fmt::Display for HostStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The region of hosts that were given none.
pub const DEFAULT_REGION: &str = "default";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Host {
    pub id: HostId,
    pub name: String,
    /// The IP address the agent listens on; unique among hosts.
    pub address: String,
    /// Base URL of the agent's API, e.g. `http://127.0.0.11:7070`.
    pub agent_url: Option<String>,
    pub zone: Option<String>,
    /// The region (an IDC or a site: a group of zones); `None` is the
    /// default region ([`DEFAULT_REGION`]). A cluster lives in one region.
    #[serde(default)]
    pub region: Option<String>,
    pub status: HostStatus,
    pub facts: Option<HostFacts>,
    pub agent_version: Option<String>,
    pub created_at_ms: UnixMs,
    pub last_heartbeat_ms: Option<UnixMs>,
}

impl Host {
    /// The host's region, [`DEFAULT_REGION`] when it was given none.
    pub fn region_name(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_REGION)
    }
}

//! One database server as the platform names it and as its agent reads it:
//! the `CLUSTER/NAME` identity every crate passes around, the replication
//! status a running node reports, and the position a stopped node's data
//! has reached.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::valid_name;

/// A cluster member on a host (a database server or a proxy):
/// `CLUSTER/NAME`, unique on every host and across the platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DbId {
    pub cluster: String,
    pub name: String,
}

impl DbId {
    pub fn new(cluster: impl Into<String>, name: impl Into<String>) -> Self {
        Self { cluster: cluster.into(), name: name.into() }
    }
}

/// On the wire a plain `CLUSTER/NAME` string.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for DbId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("CLUSTER/NAME"))
            .examples(["demo/demo-1"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for DbId {}

impl fmt::Display for DbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.name)
    }
}

impl FromStr for DbId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((cluster, name)) if valid_name(cluster) && valid_name(name) => Ok(Self::new(cluster, name)),
            _ => Err(format!("{s:?} is not a member id: expected CLUSTER/NAME, both lowercase names (e.g. demo/demo-1)")),
        }
    }
}

impl TryFrom<String> for DbId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DbId> for String {
    fn from(id: DbId) -> String {
        id.to_string()
    }
}

/// The `wsrep_%` status variables that tell a node's health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WsrepStatus {
    pub ready: bool,
    /// `Primary`, `non-Primary` or `Disconnected`.
    pub cluster_status: String,
    /// 1 joining, 2 donor, 3 joined, 4 synced (the engine maps these).
    pub local_state: u32,
    pub local_state_comment: String,
    pub cluster_size: u32,
    pub flow_control_paused: f64,
    pub gcomm_uuid: String,
    pub cluster_state_uuid: String,
    pub last_committed: i64,
}

/// The position a stopped server's data has reached (`--wsrep-recover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveredPosition {
    pub uuid: String,
    pub seqno: i64,
    /// From `grastate.dat`: set only on the last node that left cleanly.
    pub safe_to_bootstrap: bool,
}

#[cfg(test)]
mod tests {
    use super::DbId;

    #[test]
    fn ids_round_trip_and_bad_ones_say_the_form() {
        let id: DbId = "demo/demo-1".parse().expect("valid");
        assert_eq!((id.cluster.as_str(), id.name.as_str()), ("demo", "demo-1"));
        assert_eq!(id.to_string(), "demo/demo-1");
        assert_eq!(serde_json::to_string(&id).expect("serialises"), "\"demo/demo-1\"");
        assert_eq!(serde_json::from_str::<DbId>("\"demo/demo-proxy-z1\"").expect("valid").name, "demo-proxy-z1");
        for bad in ["demo", "demo/", "/demo-1", "demo/a/b", "Demo/x"] {
            let err = bad.parse::<DbId>().expect_err(bad);
            assert!(err.contains("CLUSTER/NAME"), "{err}");
        }
    }
}

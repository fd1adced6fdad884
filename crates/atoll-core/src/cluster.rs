//! Database clusters: what a user asks for (the topology) and the states
//! the platform reports. One `mariadbd` per server, servers grouped in zones
//! (Galera segments), at least three zones for an HA cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::valid_name;

/// Ports one database server uses on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub sql: u16,
    /// Galera group communication.
    pub gcomm: u16,
    /// Incremental state transfer.
    pub ist: u16,
    /// Snapshot state transfer (rsync).
    pub sst: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self { sql: 3306, gcomm: 4567, ist: 4568, sst: 4444 }
    }
}

impl Ports {
    pub fn all(&self) -> [u16; 4] {
        [self.sql, self.gcomm, self.ist, self.sst]
    }
}

/// How commits reach disk. `Durable` flushes before acknowledging (the
/// default: Jepsen 2026 lost acknowledged writes on Galera without it);
/// `Fast` trades that for throughput, only when asked for by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    #[default]
    Durable,
    Fast,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Durable => "durable",
            Self::Fast => "fast",
        }
    }
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "durable" => Ok(Self::Durable),
            "fast" => Ok(Self::Fast),
            other => Err(format!("unknown durability profile {other:?}: use durable (default) or fast")),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One database server of a cluster, as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    pub name: String,
    pub zone: String,
    /// The host it runs on: id, name or address.
    pub host: String,
    #[serde(default)]
    pub ports: Ports,
}

/// A cluster as requested: from a TOML topology file or from flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    #[serde(default)]
    pub durability: Durability,
    pub servers: Vec<ServerSpec>,
    /// MariaDB parameters (`my.cnf` keys), checked against the catalog.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Fewer than three zones only with this set (no zone may fail then).
    #[serde(default)]
    pub allow_single_zone: bool,
    /// The engine build every server runs: the name of a package pushed to
    /// its host (`atoll package push`); `None` runs the host's system
    /// packages. Absent from specs stored before packages existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// The proxies applications connect through.
    #[serde(default)]
    pub proxy: ProxySpec,
    /// The region the cluster lives in: every server's host is in it.
    /// `None` in a request takes its hosts' region; `None` stored is the
    /// default region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Binary log, GTID domain, and the primary a standby follows: set by
    /// the platform (every cluster made since standbys exist has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::ReplicationSpec>,
}

/// Atoll runs one `atoll proxy` per zone, on the host of the zone's first
/// server, so losing a zone never takes the other zones' proxies with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct ProxySpec {
    pub enabled: bool,
    /// Read-write connections: to the writer.
    pub rw_port: u16,
    /// Read-only connections: balanced over synced servers, own zone first.
    pub ro_port: u16,
    /// Metrics and status.
    pub admin_port: u16,
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self { enabled: true, rw_port: 6033, ro_port: 6034, admin_port: 6035 }
    }
}

impl ProxySpec {
    pub fn ports(&self) -> [u16; 3] {
        [self.rw_port, self.ro_port, self.admin_port]
    }
}

impl ClusterSpec {
    /// Zones in first-seen order; a zone's index is its Galera segment.
    pub fn zones(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.servers.iter().map(|s| s.zone.as_str()).filter(|z| seen.insert(*z)).collect()
    }

    /// The shape problems of this request, all at once; empty when sound.
    /// (Hosts, ports and names in use are checked by the server, which
    /// knows them.)
    pub fn shape_problems(&self) -> Vec<String> {
        let mut p = self.layout_problems();
        if self.servers.len().is_multiple_of(2) && !self.servers.is_empty() {
            p.push(format!("{} servers: use an odd number so a partition always leaves one side with a majority", self.servers.len()));
        }
        p
    }

    /// The shape problems except the odd-count rule: a cluster scaled one
    /// server at a time passes through even sizes on its way.
    pub fn layout_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !valid_name(&self.name) {
            p.push(format!("cluster name {:?} is invalid: use a lowercase letter, then letters, digits or dashes", self.name));
        }
        if self.servers.is_empty() {
            p.push("a cluster needs at least one server".into());
        }
        if let Some(r) = self.region.as_deref().filter(|r| !valid_name(r)) {
            p.push(format!("region {r:?} is invalid: use a lowercase letter, then letters, digits or dashes"));
        }
        if let Some(e) = self.engine.as_deref().filter(|e| *e != crate::SYSTEM_BUILD && !crate::valid_package_name(e)) {
            p.push(format!("engine {e:?} is not a package name (`atoll package list` shows them; omit it for the system build)"));
        }
        let mut names = BTreeSet::new();
        for s in &self.servers {
            if !valid_name(&s.name) {
                p.push(format!("server name {:?} is invalid: use a lowercase letter, then letters, digits or dashes", s.name));
            }
            if !valid_name(&s.zone) {
                p.push(format!("zone {:?} of server {} is invalid", s.zone, s.name));
            }
            if !names.insert(s.name.as_str()) {
                p.push(format!("server name {} is used twice", s.name));
            }
            let ports = s.ports.all();
            if ports.iter().collect::<BTreeSet<_>>().len() != ports.len() || ports.contains(&0) {
                p.push(format!("server {} needs four distinct non-zero ports (sql, gcomm, ist, sst)", s.name));
            }
        }
        let zones = self.zones().len();
        if zones < 3 && !self.allow_single_zone {
            p.push(format!(
                "{zones} zone(s) given: an HA cluster needs at least 3 zones so that losing one keeps a majority; pass --allow-single-zone to accept a cluster that cannot survive a zone loss"
            ));
        }
        if zones > 255 {
            p.push("at most 255 zones (Galera segments)".into());
        }
        p
    }
}

macro_rules! status_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            pub const ALL: &[Self] = &[$(Self::$v),+];
            pub fn as_str(self) -> &'static str { match self { $(Self::$v => $s),+ } }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($s => Ok(Self::$v),)+ other => Err(format!("unknown {} {other:?}", stringify!($name))) }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

status_enum! {
    /// A cluster's health as the platform derives it from its servers.
    ClusterStatus {
        /// Its create task has not finished.
        Creating = "creating",
        /// Every server is Synced in one primary component.
        Healthy = "healthy",
        /// A primary component accepts writes, but some server is not Synced.
        Degraded = "degraded",
        /// No primary component: writes are refused everywhere.
        Unavailable = "unavailable",
        /// Stopped on purpose.
        Stopped = "stopped",
    }
}

status_enum! {
    /// What a database server is doing, as its agent sees it.
    ServerState {
        /// Not running, and not meant to be.
        Stopped = "stopped",
        Starting = "starting",
        /// Receiving a state transfer or catching up.
        Joining = "joining",
        Donor = "donor",
        Synced = "synced",
        /// Running but outside the primary component.
        NonPrimary = "non_primary",
        /// Exited unexpectedly; the agent restarts it with back-off.
        Crashed = "crashed",
        /// Crashed too often in a short time; the agent gave up.
        CrashLoop = "crash_loop",
        /// The agent that runs it does not answer.
        Unknown = "unknown",
    }
}

impl ServerState {
    /// In the primary component and committing: Synced, or a donor serving
    /// a state transfer. A writer in this state keeps its role, and such a
    /// server counts towards the majority.
    pub fn in_primary(self) -> bool {
        matches!(self, Self::Synced | Self::Donor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(zones: &[&str]) -> ClusterSpec {
        ClusterSpec {
            name: "orders".into(),
            durability: Durability::Durable,
            servers: zones
                .iter()
                .enumerate()
                .map(|(i, z)| ServerSpec {
                    name: format!("orders-{}", i + 1),
                    zone: z.to_string(),
                    host: format!("h{i}"),
                    ports: Ports::default(),
                })
                .collect(),
            params: BTreeMap::new(),
            allow_single_zone: false,
            engine: None,
            proxy: ProxySpec::default(),
            region: None,
            replication: None,
        }
    }

    #[test]
    fn three_zones_are_sound() {
        assert!(spec(&["z1", "z2", "z3"]).shape_problems().is_empty());
        assert_eq!(spec(&["z1", "z2", "z3"]).zones(), vec!["z1", "z2", "z3"]);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let mut s = spec(&["z1", "z1"]);
        s.name = "Bad Name".into();
        let p = s.shape_problems();
        assert!(p.iter().any(|m| m.contains("cluster name")));
        assert!(p.iter().any(|m| m.contains("at least 3 zones")));
        assert!(p.iter().any(|m| m.contains("odd number")));
        assert_eq!(p.len(), 3, "{p:?}");
        let mut s = spec(&["z1"]);
        s.allow_single_zone = true;
        assert!(s.shape_problems().is_empty());
    }

    #[test]
    fn durability_names() {
        assert_eq!("fast".parse::<Durability>(), Ok(Durability::Fast));
        assert!("quick".parse::<Durability>().unwrap_err().contains("durable"));
        assert_eq!(Durability::default(), Durability::Durable);
    }
}

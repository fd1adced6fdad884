//! Replication between clusters: a primary and the standbys that follow it
//! by asynchronous GTID replication. Every node of a cluster logs what it
//! commits under the cluster's GTID domain, so positions compare across
//! nodes and a channel continues from any node of the other side.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The largest cluster domain; node-local domains lie above it.
pub const MAX_DOMAIN: u32 = 999_999;

/// A cluster's part in replication between clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplicationSpec {
    /// The cluster's number: its `server_id` and GTID domain on every node,
    /// distinct from every other cluster's.
    pub domain: u32,
    /// The primary this cluster follows; `None` for a primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The primary's position when the seed copy was taken: no applier of
    /// this standby ever starts before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_at: Option<String>,
}

/// One GTID, `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// A GTID position: the last GTID of each domain (`@@gtid_binlog_pos`,
/// `@@gtid_slave_pos`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidPos(BTreeMap<u32, Gtid>);

impl FromStr for Gtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a GTID (DOMAIN-SERVER-SEQUENCE)");
        let mut parts = s.trim().splitn(3, '-');
        let mut next = || parts.next().ok_or_else(bad);
        let (d, sv, sq) = (next()?, next()?, next()?);
        Ok(Gtid { domain: d.parse().map_err(|_| bad())?, server: sv.parse().map_err(|_| bad())?, seq: sq.parse().map_err(|_| bad())? })
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.seq)
    }
}

impl FromStr for GtidPos {
    type Err = String;
    /// Comma-separated GTIDs (spaces and newlines, as MariaDB prints long
    /// positions, are ignored); empty is the empty position.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut pos = GtidPos::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let g: Gtid = part.parse()?;
            if pos.0.insert(g.domain, g).is_some() {
                return Err(format!("{s:?} names domain {} twice", g.domain));
            }
        }
        Ok(pos)
    }
}

impl fmt::Display for GtidPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.values().map(Gtid::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl GtidPos {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sequence number reached in `domain` (0: nothing of it).
    pub fn seq(&self, domain: u32) -> u64 {
        self.0.get(&domain).map_or(0, |g| g.seq)
    }

    pub fn domains(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.keys().copied()
    }

    /// Per domain, the further of the two.
    pub fn max(mut self, other: &GtidPos) -> GtidPos {
        for g in other.0.values() {
            if self.seq(g.domain) < g.seq || !self.0.contains_key(&g.domain) {
                self.0.insert(g.domain, *g);
            }
        }
        self
    }

    /// Only the given domains.
    pub fn only(&self, domains: impl IntoIterator<Item = u32>) -> GtidPos {
        let keep: std::collections::BTreeSet<u32> = domains.into_iter().collect();
        GtidPos(self.0.iter().filter(|(d, _)| keep.contains(d)).map(|(d, g)| (*d, *g)).collect())
    }

    /// Only the cluster domains (not node-local ones) other than `own`:
    /// what a node of the cluster with domain `own` has applied of others.
    pub fn replicated_from_others(&self, own: u32) -> GtidPos {
        GtidPos(self.0.iter().filter(|(d, _)| **d <= MAX_DOMAIN && **d != own).map(|(d, g)| (*d, *g)).collect())
    }

    /// How many transactions of `source`'s cluster domains this position
    /// lacks (0 when it has them all or is ahead).
    pub fn behind(&self, source: &GtidPos) -> u64 {
        source.0.values().filter(|g| g.domain <= MAX_DOMAIN).map(|g| g.seq.saturating_sub(self.seq(g.domain))).sum()
    }
}

/// What a node reports about replication between clusters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicationStatus {
    /// `@@gtid_binlog_pos`: what this node has logged, every domain.
    pub gtid_binlog_pos: String,
    /// The channel this node applies, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<ReplicaChannel>,
}

/// One replica channel as `SHOW SLAVE STATUS` tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaChannel {
    /// `HOST:PORT` of the source node.
    pub source: String,
    /// `Yes`, `Connecting` or `No`.
    pub io_running: String,
    pub sql_running: bool,
    pub seconds_behind: Option<u64>,
    /// What the applier has received from the source (`Gtid_IO_Pos`).
    pub received: String,
    /// The last I/O or SQL error, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl ReplicaChannel {
    /// Both threads run (the receiver may be reconnecting).
    pub fn running(&self) -> bool {
        self.sql_running && matches!(self.io_running.as_str(), "Yes" | "Connecting")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str) -> GtidPos {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn positions_parse_print_and_compare_per_domain() {
        let p = pos("7-7-120, 1000123-7-3,\n8-8-5");
        assert_eq!(p.to_string(), "7-7-120,8-8-5,1000123-7-3");
        assert_eq!((p.seq(7), p.seq(9)), (120, 0));
        assert!(pos("").is_empty());
        assert!("7-7".parse::<GtidPos>().is_err());
        assert!("7-7-1,7-7-2".parse::<GtidPos>().unwrap_err().contains("twice"));
        // A standby with domain 8 follows primary domain 7.
        assert_eq!(p.replicated_from_others(8).to_string(), "7-7-120");
        assert_eq!(pos("7-7-100").behind(&pos("7-7-120,1000123-7-9")), 20);
        assert_eq!(pos("7-7-130").behind(&pos("7-7-120")), 0);
        assert_eq!(pos("7-7-100").max(&pos("7-7-90,8-8-1")).to_string(), "7-7-100,8-8-1");
        assert_eq!(pos("7-7-125,8-8-1").only([7, 9]).to_string(), "7-7-125");
    }
}

//! Resource planning (`atoll plan`): how many servers of which size each
//! deployment mode needs. The numbers are seed 004's minimum configurations
//! and the deployer's platform-sizing table (shared/reference/sizing.md), so
//! that Atoll's plan can be read side by side with the system it models.
//!
//! Units: the seed writes "GB" and "TB". Memory is sold in binary units, so
//! "32 GB" is read as 32 GiB. For storage we read 1 TB as 1024 GiB and round
//! up (1.5 TB = 1536 GiB, 1.2 TB = 1228.8 → 1229 GiB, 2 TB = 2048 GiB) and
//! "200 GB" / "500 GB" as 200 / 500 GiB. That is the stricter of the two
//! readings (decimal 1.2 TB is only 1117.6 GiB), so a host that meets these
//! numbers meets the seed whichever way its authors meant them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the platform itself is laid out (the seed's four deployment modes).
///
/// Serialised as the same kebab-case names the CLI accepts, so that
/// `atoll plan --mode multi-node --json` echoes `"multi-node"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One platform server with embedded stores; no platform HA.
    SingleNode,
    /// Three platform nodes behind a load balancer; any one may fail.
    MultiNode,
    /// Leader and follower platforms in two regions, primary and standby
    /// database clusters.
    MultiCluster,
    /// One platform node per zone, at least three zones.
    MultiZone,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::SingleNode, Mode::MultiNode, Mode::MultiCluster, Mode::MultiZone];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SingleNode => "single-node",
            Self::MultiNode => "multi-node",
            Self::MultiCluster => "multi-cluster",
            Self::MultiZone => "multi-zone",
        }
    }
}

/// A mode name that is none of [`Mode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}: use one of single-node, multi-node, multi-cluster, multi-zone")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of server in seed 004's table, named by Atoll's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ServerType {
    Platform,
    Database,
    Proxy,
    Installer,
    Migration,
    DeveloperCenter,
}

impl ServerType {
    pub const ALL: [ServerType; 6] = [
        ServerType::Platform,
        ServerType::Database,
        ServerType::Proxy,
        ServerType::Installer,
        ServerType::Migration,
        ServerType::DeveloperCenter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Platform => "platform",
            Self::Database => "database",
            Self::Proxy => "proxy",
            Self::Installer => "installer",
            Self::Migration => "migration",
            Self::DeveloperCenter => "developer-center",
        }
    }

    /// What the row means, with the seed's name for it.
    pub fn title(self) -> &'static str {
        match self {
            Self::Platform => "platform server (OCP-Server role: atoll server)",
            Self::Database => "database server (OBServer role: mariadbd with Galera)",
            Self::Proxy => "proxy server (ODP role: atoll proxy)",
            Self::Installer => "installer (OAT role: atoll plan, host add/check, deploy)",
            Self::Migration => "migration service (OMS role; optional, not part of Atoll yet)",
            Self::DeveloperCenter => "developer center (ODC role; optional, not part of Atoll yet)",
        }
    }

    /// Seed 004's "minimum functional configuration" for this server type.
    pub const fn functional(self) -> Spec {
        match self {
            Self::Platform => Spec::new(8, 32, Some(1536)),
            Self::Database => Spec::new(4, 16, Some(1229)),
            Self::Proxy => Spec::new(4, 8, Some(200)),
            Self::Installer => Spec::new(2, 4, None),
            Self::Migration => Spec::new(12, 24, Some(500)),
            Self::DeveloperCenter => Spec::new(2, 8, None),
        }
    }

    /// Seed 004's "minimum performance configuration"; `None` where the seed
    /// says N/A.
    pub const fn performance(self) -> Option<Spec> {
        match self {
            Self::Platform => Some(Spec::new(32, 128, Some(1536)).ssd_nic(10)),
            Self::Database => Some(Spec::new(32, 256, Some(2048)).ssd_nic(10)),
            Self::Proxy | Self::Installer => None,
            Self::Migration => Some(Spec::new(32, 128, Some(2048))),
            Self::DeveloperCenter => Some(Spec::new(4, 8, None)),
        }
    }
}

impl fmt::Display for ServerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server size. Memory and storage in GiB (see the module doc for how the
/// seed's GB/TB were converted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Spec {
    pub cores: u32,
    pub memory_gib: u32,
    /// `None` where the seed gives no storage figure.
    pub storage_gib: Option<u32>,
    /// Whether the storage must be SSD.
    pub ssd: bool,
    /// NIC speed in Gbit/s, where the seed names one.
    pub nic_gbps: Option<u32>,
}

impl Spec {
    pub const fn new(cores: u32, memory_gib: u32, storage_gib: Option<u32>) -> Spec {
        Spec { cores, memory_gib, storage_gib, ssd: false, nic_gbps: None }
    }

    const fn ssd_nic(mut self, nic_gbps: u32) -> Spec {
        self.ssd = true;
        self.nic_gbps = Some(nic_gbps);
        self
    }
}

/// "8 cores, 32 GiB, 1536 GiB" or "32 cores, 256 GiB, 2048 GiB SSD, 10 Gbit/s NIC".
impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.cores == 1 { "" } else { "s" };
        write!(f, "{} core{s}, {} GiB", self.cores, self.memory_gib)?;
        if let Some(storage) = self.storage_gib {
            write!(f, ", {storage} GiB")?;
        }
        if self.ssd {
            f.write_str(if self.storage_gib.is_some() { " SSD" } else { ", SSD" })?;
        }
        if let Some(nic) = self.nic_gbps {
            write!(f, ", {nic} Gbit/s NIC")?;
        }
        Ok(())
    }
}

/// One line of a plan: how many servers of one type, and how big.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanRow {
    pub server_type: ServerType,
    pub quantity: u32,
    /// Not needed to run Atoll (the seed's optional OMS and ODC).
    pub optional: bool,
    /// Which other servers this role may be co-located on, e.g.
    /// "may share the database servers".
    pub shares_with: Option<String>,
    pub functional: Spec,
    pub performance: Option<Spec>,
    /// What these servers run in this mode.
    pub purpose: String,
}

/// What `atoll plan` prints for one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    pub mode: Mode,
    pub summary: String,
    pub rows: Vec<PlanRow>,
    /// Platform and store sizing, when the number of managed hosts is given.
    pub platform: Option<PlatformSizing>,
    pub notes: Vec<String>,
}

/// The deployer's "platform and metadata sizing by managed hosts" row that
/// covers `managed_hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformSizing {
    pub managed_hosts: u32,
    pub server_memory_gib: u32,
    pub metadb: Spec,
    pub monitordb: Spec,
}

impl PlatformSizing {
    /// What one node of a multi-node platform needs: it runs a server and
    /// a replica each of MetaDB and MonitorDB (the server's CPU shares
    /// theirs).
    pub fn node(&self) -> Spec {
        Spec::new(
            self.metadb.cores + self.monitordb.cores,
            self.server_memory_gib + self.metadb.memory_gib + self.monitordb.memory_gib,
            None,
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{0} managed hosts: more than 400 managed hosts is beyond the sizing table; \
         split into several platforms (multi-cluster mode)"
    )]
    TooManyHosts(u32),
}

/// One row per tier of the table: the most managed hosts it covers,
/// platform server memory (GiB), MetaDB and MonitorDB per replica.
const PLATFORM_TIERS: [(u32, u32, Spec, Spec); 5] = [
    (10, 4, Spec::new(2, 4, None), Spec::new(2, 8, None)),
    (50, 8, Spec::new(4, 8, None), Spec::new(4, 32, None)),
    (100, 16, Spec::new(8, 16, None), Spec::new(8, 64, None)),
    (200, 32, Spec::new(16, 32, None), Spec::new(16, 128, None)),
    (400, 64, Spec::new(32, 64, None), Spec::new(32, 256, None)),
];

/// The smallest tier of the platform-sizing table that covers `managed_hosts`.
pub fn platform_sizing(managed_hosts: u32) -> Result<PlatformSizing, PlanError> {
    let (_, server_memory_gib, metadb, monitordb) =
        PLATFORM_TIERS.into_iter().find(|tier| managed_hosts <= tier.0).ok_or(PlanError::TooManyHosts(managed_hosts))?;
    Ok(PlatformSizing { managed_hosts, server_memory_gib, metadb, monitordb })
}

fn row(server_type: ServerType, quantity: u32, shares_with: Option<&str>, purpose: &str) -> PlanRow {
    PlanRow {
        server_type,
        quantity,
        optional: matches!(server_type, ServerType::Migration | ServerType::DeveloperCenter),
        shares_with: shares_with.map(str::to_owned),
        functional: server_type.functional(),
        performance: server_type.performance(),
        purpose: purpose.to_owned(),
    }
}

/// The servers `mode` needs, sized by seed 004; with `managed_hosts`, also
/// the platform and store sizes for that many hosts.
pub fn plan(mode: Mode, managed_hosts: Option<u32>) -> Result<Plan, PlanError> {
    let platform = managed_hosts.map(platform_sizing).transpose()?;
    let share_db = Some("may share the database servers");
    let share_platform = Some("may share the platform server");
    let (summary, platform_row, database_row, proxy_row, mut notes) = match mode {
        Mode::SingleNode => (
            "one platform server with embedded metadata and monitor stores, managing a \
             3-server Galera cluster",
            row(ServerType::Platform, 1, None, "atoll server with MetaDB and MonitorDB embedded (SQLite)"),
            row(ServerType::Database, 3, None, "one mariadbd each: a 3-node Galera cluster (the HA minimum)"),
            row(ServerType::Proxy, 3, share_db, "atoll proxy in front of the managed cluster"),
            vec![
                "a minimum deployment can use 1 database server plus a separate platform \
                 server, at the cost of database HA"
                    .to_owned(),
                "the platform itself is not highly available in this mode".to_owned(),
            ],
        ),
        Mode::MultiNode => (
            "three platform nodes (server + MetaDB + MonitorDB + proxy each) behind a load \
             balancer, managing a 3-server Galera cluster; any one platform node may fail",
            row(ServerType::Platform, 3, None, "atoll server, a MetaDB and a MonitorDB Galera replica and atoll proxy on each node"),
            row(ServerType::Database, 3, None, "one mariadbd each: a 3-node Galera cluster"),
            row(ServerType::Proxy, 3, share_db, "atoll proxy in front of the managed cluster"),
            vec!["put a load balancer (hardware, HAProxy, keepalived VIP) in front of the three platform nodes".to_owned()],
        ),
        Mode::MultiCluster => (
            "leader and follower platforms in two regions (3 nodes each); primary and standby \
             Galera clusters (3 servers each) joined by async GTID replication",
            row(ServerType::Platform, 6, None, "a multi-node platform per region: leader in one, follower in the other"),
            row(ServerType::Database, 6, None, "3 for the primary cluster, 3 for the standby cluster in the other region"),
            row(ServerType::Proxy, 6, share_db, "atoll proxy in front of each cluster, 3 per region"),
            vec!["each region needs its own load balancer in front of its platform nodes".to_owned()],
        ),
        Mode::MultiZone => (
            "one platform node per zone (at least 3 zones), each with its own URL; a Galera \
             cluster with one server per zone",
            row(ServerType::Platform, 3, None, "one platform node per zone: atoll server, MetaDB and MonitorDB replicas"),
            row(ServerType::Database, 3, None, "one mariadbd per zone (Galera segment per zone)"),
            row(ServerType::Proxy, 3, share_db, "atoll proxy, one per zone"),
            vec!["quantities are for 3 zones; add one platform and one database server per extra zone".to_owned()],
        ),
    };
    let rows = vec![
        platform_row,
        database_row,
        proxy_row,
        row(ServerType::Installer, 1, share_platform, "runs atoll plan, host add/check and deploy"),
        row(ServerType::Migration, 1, None, "data migration (seed: OMS); not provided by Atoll yet"),
        row(ServerType::DeveloperCenter, 1, share_platform, "SQL development console (seed: ODC); not provided by Atoll yet"),
    ];
    if let Some(p) = &platform {
        notes.push(format!(
            "for {} managed hosts: platform server memory {} GiB, MetaDB {}, MonitorDB {} \
             (per replica)",
            p.managed_hosts, p.server_memory_gib, p.metadb, p.monitordb
        ));
    }
    notes.push(
        "sizes are seed 004's minimums (TB read as 1024 GiB); for a development machine, \
         check hosts with the sandbox profile instead"
            .to_owned(),
    );
    Ok(Plan { mode, summary: summary.to_owned(), rows, platform, notes })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps a bad value should panic
mod tests {
    use super::*;

    #[test]
    fn a_platform_node_holds_a_server_and_both_stores() {
        let node = platform_sizing(10).unwrap().node();
        assert_eq!((node.cores, node.memory_gib), (4, 16));
        assert_eq!(platform_sizing(400).unwrap().node().memory_gib, 64 + 64 + 256);
    }

    fn quantity(plan: &Plan, t: ServerType) -> u32 {
        plan.rows.iter().find(|r| r.server_type == t).map(|r| r.quantity).unwrap()
    }

    #[test]
    fn mode_names_round_trip_and_errors_list_the_valid_ones() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        let err = "multinode".parse::<Mode>().unwrap_err().to_string();
        assert_eq!(err, "unknown mode \"multinode\": use one of single-node, multi-node, multi-cluster, multi-zone");
    }

    #[test]
    fn quantities_per_mode() {
        use ServerType::*;
        let expect =
            [(Mode::SingleNode, [1, 3, 3]), (Mode::MultiNode, [3, 3, 3]), (Mode::MultiCluster, [6, 6, 6]), (Mode::MultiZone, [3, 3, 3])];
        for (mode, [p, d, x]) in expect {
            let plan = plan(mode, None).unwrap();
            assert_eq!(plan.mode, mode);
            assert_eq!(quantity(&plan, Platform), p, "{mode}");
            assert_eq!(quantity(&plan, Database), d, "{mode}");
            assert_eq!(quantity(&plan, Proxy), x, "{mode}");
            assert_eq!(quantity(&plan, Installer), 1, "{mode}");
            let optional: Vec<_> = plan.rows.iter().filter(|r| r.optional).map(|r| r.server_type).collect();
            assert_eq!(optional, [Migration, DeveloperCenter]);
            assert!(plan.platform.is_none());
        }
        let single = plan(Mode::SingleNode, None).unwrap();
        assert!(single.notes.iter().any(|n| n.contains("1 database server plus a separate platform server")));
        let proxy = single.rows.iter().find(|r| r.server_type == Proxy).unwrap();
        assert_eq!(proxy.shares_with.as_deref(), Some("may share the database servers"));
    }

    #[test]
    fn seed_numbers() {
        use ServerType::*;
        assert_eq!(Platform.functional().to_string(), "8 cores, 32 GiB, 1536 GiB");
        assert_eq!(Platform.performance().unwrap().to_string(), "32 cores, 128 GiB, 1536 GiB SSD, 10 Gbit/s NIC");
        assert_eq!(Database.functional().to_string(), "4 cores, 16 GiB, 1229 GiB");
        assert_eq!(Database.performance().unwrap().to_string(), "32 cores, 256 GiB, 2048 GiB SSD, 10 Gbit/s NIC");
        assert_eq!(Proxy.functional().to_string(), "4 cores, 8 GiB, 200 GiB");
        assert_eq!(Proxy.performance(), None);
        assert_eq!(Installer.functional().to_string(), "2 cores, 4 GiB");
        assert_eq!(Migration.functional().to_string(), "12 cores, 24 GiB, 500 GiB");
        assert_eq!(Migration.performance().unwrap().to_string(), "32 cores, 128 GiB, 2048 GiB");
        assert_eq!(DeveloperCenter.functional().to_string(), "2 cores, 8 GiB");
        assert_eq!(DeveloperCenter.performance().unwrap().to_string(), "4 cores, 8 GiB");
        assert_eq!(DeveloperCenter.as_str(), "developer-center");
        assert_eq!(serde_json::to_string(&DeveloperCenter).unwrap(), "\"developer-center\"");
        assert!(Platform.title().contains("atoll server"));
    }

    #[test]
    fn platform_sizing_tiers() {
        let p = platform_sizing(0).unwrap();
        assert_eq!(
            (p.server_memory_gib, p.metadb.to_string(), p.monitordb.to_string()),
            (4, "2 cores, 4 GiB".into(), "2 cores, 8 GiB".into())
        );
        assert_eq!(platform_sizing(10).unwrap().server_memory_gib, 4);
        assert_eq!(platform_sizing(11).unwrap().server_memory_gib, 8);
        assert_eq!(platform_sizing(100).unwrap().monitordb, Spec::new(8, 64, None));
        let top = platform_sizing(400).unwrap();
        assert_eq!((top.server_memory_gib, top.metadb.cores, top.monitordb.memory_gib), (64, 32, 256));
        let with = plan(Mode::MultiNode, Some(120)).unwrap();
        assert_eq!(with.platform.as_ref().map(|p| p.server_memory_gib), Some(32));
        assert!(with.notes.iter().any(|n| n.contains("120 managed hosts")));
    }

    #[test]
    fn more_than_400_hosts_is_an_error() {
        let err = plan(Mode::MultiNode, Some(401)).unwrap_err();
        assert_eq!(err, PlanError::TooManyHosts(401));
        assert!(
            err.to_string()
                .contains("more than 400 managed hosts is beyond the sizing table; split into several platforms (multi-cluster mode)")
        );
    }
}

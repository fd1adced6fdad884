//! Host profiles: what a host must have (fail below) and should have (warn
//! below) to run Atoll's database servers. `production` is seed 004's
//! database-server row plus the kernel and OS settings the reference tools
//! check; `sandbox` is what Atoll is measured to need on a small development
//! machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::check::CheckStatus;
use crate::sizing::ServerType;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProfileName {
    Production,
    Sandbox,
}

impl ProfileName {
    pub const ALL: [ProfileName; 2] = [ProfileName::Production, ProfileName::Sandbox];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Sandbox => "sandbox",
        }
    }

    pub fn profile(self) -> Profile {
        match self {
            Self::Production => Profile::production(),
            Self::Sandbox => Profile::sandbox(),
        }
    }
}

/// A profile name that is none of [`ProfileName::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?}: use one of production, sandbox")]
pub struct UnknownProfile(pub String);

impl FromStr for ProfileName {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProfileName::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A quantity that must be large enough. `None` thresholds are not checked;
/// with both `None` the profile does not require the quantity at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AtLeast {
    pub fail_below: Option<u64>,
    pub warn_below: Option<u64>,
}

impl AtLeast {
    pub const NOT_REQUIRED: AtLeast = AtLeast { fail_below: None, warn_below: None };

    pub const fn new(fail_below: Option<u64>, warn_below: Option<u64>) -> AtLeast {
        AtLeast { fail_below, warn_below }
    }

    pub fn is_required(&self) -> bool {
        self.fail_below.is_some() || self.warn_below.is_some()
    }

    pub fn judge(&self, value: u64) -> CheckStatus {
        if self.fail_below.is_some_and(|t| value < t) {
            CheckStatus::Fail
        } else if self.warn_below.is_some_and(|t| value < t) {
            CheckStatus::Warn
        } else {
            CheckStatus::Pass
        }
    }
}

/// A quantity that must be small enough (swappiness, clock offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AtMost {
    pub fail_above: Option<u64>,
    pub warn_above: Option<u64>,
}

impl AtMost {
    pub const NOT_REQUIRED: AtMost = AtMost { fail_above: None, warn_above: None };

    pub const fn new(fail_above: Option<u64>, warn_above: Option<u64>) -> AtMost {
        AtMost { fail_above, warn_above }
    }

    pub fn is_required(&self) -> bool {
        self.fail_above.is_some() || self.warn_above.is_some()
    }

    pub fn judge(&self, value: u64) -> CheckStatus {
        if self.fail_above.is_some_and(|t| value > t) {
            CheckStatus::Fail
        } else if self.warn_above.is_some_and(|t| value > t) {
            CheckStatus::Warn
        } else {
            CheckStatus::Pass
        }
    }
}

/// How strongly a yes/no property is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Need {
    NotRequired,
    /// Warn when missing.
    Recommended,
    /// Fail when missing.
    Required,
}

impl Need {
    /// The status when the property is missing.
    pub fn missing_status(self) -> CheckStatus {
        match self {
            Self::NotRequired => CheckStatus::Pass,
            Self::Recommended => CheckStatus::Warn,
            Self::Required => CheckStatus::Fail,
        }
    }
}

/// A kernel release's major and minor number (`5.15.0-91-generic` → 5.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Reads the leading `major.minor` of a kernel release; `None` when the
    /// text does not start with one.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The requirements one profile puts on a host, one threshold pair each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Profile {
    pub name: ProfileName,
    /// One line on what the profile is for.
    pub summary: String,
    pub cpu_cores: AtLeast,
    pub memory_total_bytes: AtLeast,
    pub memory_available_bytes: AtLeast,
    /// Free space on the mount that holds the data directory.
    pub data_free_bytes: AtLeast,
    /// Whether the data directory's disk should be an SSD.
    pub ssd: Need,
    /// Link speed of the fastest NIC.
    pub nic_mbps: AtLeast,
    /// Fail below this kernel release.
    pub kernel_min: Option<KernelVersion>,
    /// Soft `RLIMIT_NOFILE` of the agent (and so of the databases it starts).
    pub nofile_soft: AtLeast,
    pub aio_max_nr: AtLeast,
    pub swappiness: AtMost,
    /// Whether transparent huge pages must not be `always`.
    pub thp_not_always: Need,
    /// Absolute clock offset against the server, and skew between hosts, in ms.
    pub clock_offset_ms: AtMost,
}

/// The clock limits both profiles share: Galera and the platform's leases
/// tolerate some drift, but logs and metrics from different hosts stop lining
/// up past a few hundred milliseconds.
const CLOCK: AtMost = AtMost::new(Some(500), Some(100));

/// Kernel 3.10 is the oldest the reference tools accept (CentOS 7's).
const KERNEL_MIN: KernelVersion = KernelVersion { major: 3, minor: 10 };

impl Profile {
    /// Seed 004's database-server row: fail below the minimum functional
    /// configuration, warn below the minimum performance configuration;
    /// plus the OS settings OceanBase's and MariaDB's guides ask for.
    pub fn production() -> Profile {
        let min = ServerType::Database.functional();
        let perf = ServerType::Database.performance();
        let gib = |g: u32| u64::from(g) * GIB;
        Profile {
            name: ProfileName::Production,
            summary: "seed 004's database server: fail below the minimum functional \
                      configuration, warn below the minimum performance configuration"
                .to_owned(),
            cpu_cores: AtLeast::new(Some(min.cores.into()), perf.as_ref().map(|p| p.cores.into())),
            memory_total_bytes: AtLeast::new(Some(gib(min.memory_gib)), perf.as_ref().map(|p| gib(p.memory_gib))),
            // Atoll's own floor, as in the sandbox: a mariadbd needs this to start.
            memory_available_bytes: AtLeast::new(Some(GIB), None),
            data_free_bytes: AtLeast::new(min.storage_gib.map(gib), perf.as_ref().and_then(|p| p.storage_gib).map(gib)),
            ssd: if perf.as_ref().is_some_and(|p| p.ssd) { Need::Recommended } else { Need::NotRequired },
            nic_mbps: AtLeast::new(None, perf.as_ref().and_then(|p| p.nic_gbps).map(|g| u64::from(g) * 1000)),
            kernel_min: Some(KERNEL_MIN),
            // 65535 is what a busy mariadbd needs for its connections and
            // table cache; OceanBase recommends 655350.
            nofile_soft: AtLeast::new(Some(65535), Some(655350)),
            // The reference tools' recommendation; InnoDB's native AIO uses it.
            aio_max_nr: AtLeast::new(None, Some(1_048_576)),
            // MariaDB's guidance: keep the buffer pool out of swap.
            swappiness: AtMost::new(None, Some(10)),
            // THP `always` causes latency spikes and memory bloat in mariadbd.
            thp_not_always: Need::Recommended,
            clock_offset_ms: CLOCK,
        }
    }

    /// What Atoll needs on a small (2-core) development machine running a
    /// 3-node Galera cluster on loopback, written down from measurements:
    ///
    /// - memory: each `mariadbd` ≈ 100–180 MB RSS, the platform server
    ///   < 30 MB, so three nodes plus the platform, agent and proxy take
    ///   about 0.6 GB. Fail below 1 GiB *available*; warn below 4 GiB
    ///   *total*, which leaves room for the OS, page cache and a state
    ///   transfer.
    /// - disk: a data dir is ≈ 120 MB per node after install plus a 64 MB
    ///   gcache, and a state transfer briefly holds a second copy: fail below
    ///   512 MiB free on the data mount, which one node cannot live in. Warn
    ///   below 2 GiB, where three nodes sharing one disk (the playground)
    ///   leave little room for logs. A failure at 2 GiB stopped every test
    ///   on a build machine whose disk the build itself had filled.
    /// - CPU: fail below 1 core; warn below 2, where three nodes and the
    ///   platform start competing and Galera's timeouts begin to fire.
    /// - open files: fail below 1024 (mariadbd shrinks its table cache and
    ///   connection limit below that); warn below 65535, production's floor.
    /// - clock: as in production.
    /// - SSD, NIC speed, aio-max-nr, swappiness, THP: not required (a
    ///   laptop's defaults are fine; loopback has no link speed).
    pub fn sandbox() -> Profile {
        Profile {
            name: ProfileName::Sandbox,
            summary: "a 3-node Galera cluster and the platform on one small development machine".to_owned(),
            cpu_cores: AtLeast::new(Some(1), Some(2)),
            memory_total_bytes: AtLeast::new(None, Some(4 * GIB)),
            memory_available_bytes: AtLeast::new(Some(GIB), None),
            data_free_bytes: AtLeast::new(Some(512 * MIB), Some(2 * GIB)),
            ssd: Need::NotRequired,
            nic_mbps: AtLeast::NOT_REQUIRED,
            kernel_min: Some(KERNEL_MIN),
            nofile_soft: AtLeast::new(Some(1024), Some(65535)),
            aio_max_nr: AtLeast::NOT_REQUIRED,
            swappiness: AtMost::NOT_REQUIRED,
            thp_not_always: Need::NotRequired,
            clock_offset_ms: CLOCK,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps a bad value should panic
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_profile_error() {
        for p in ProfileName::ALL {
            assert_eq!(p.as_str().parse::<ProfileName>(), Ok(p));
            assert_eq!(p.profile().name, p);
        }
        let err = "prod".parse::<ProfileName>().unwrap_err();
        assert_eq!(err, UnknownProfile("prod".into()));
        assert_eq!(err.to_string(), r#"unknown profile "prod": use one of production, sandbox"#);
    }

    #[test]
    fn production_is_the_seed_database_row() {
        let p = Profile::production();
        assert_eq!(p.cpu_cores, AtLeast::new(Some(4), Some(32)));
        assert_eq!(p.memory_total_bytes, AtLeast::new(Some(16 * GIB), Some(256 * GIB)));
        assert_eq!(p.data_free_bytes, AtLeast::new(Some(1229 * GIB), Some(2048 * GIB)));
        assert_eq!(p.ssd, Need::Recommended);
        assert_eq!(p.nic_mbps, AtLeast::new(None, Some(10_000)));
        assert_eq!(p.nofile_soft, AtLeast::new(Some(65535), Some(655350)));
    }

    #[test]
    fn thresholds_judge() {
        let t = AtLeast::new(Some(4), Some(32));
        assert_eq!(t.judge(3), CheckStatus::Fail);
        assert_eq!(t.judge(4), CheckStatus::Warn);
        assert_eq!(t.judge(32), CheckStatus::Pass);
        let m = AtMost::new(Some(500), Some(100));
        assert_eq!(m.judge(100), CheckStatus::Pass);
        assert_eq!(m.judge(101), CheckStatus::Warn);
        assert_eq!(m.judge(501), CheckStatus::Fail);
        assert!(!AtLeast::NOT_REQUIRED.is_required());
        assert_eq!(AtLeast::NOT_REQUIRED.judge(0), CheckStatus::Pass);
    }

    #[test]
    fn kernel_versions() {
        let v = |s| KernelVersion::parse(s);
        assert_eq!(v("5.15.0-91-generic"), Some(KernelVersion { major: 5, minor: 15 }));
        assert_eq!(v("3.10.0-1160.el7.x86_64"), Some(KERNEL_MIN));
        assert_eq!(v("6.1"), Some(KernelVersion { major: 6, minor: 1 }));
        assert_eq!(v("2.6.32"), Some(KernelVersion { major: 2, minor: 6 }));
        assert!(v("2.6.32") < v("3.10"));
        assert_eq!(v(""), None);
        assert_eq!(v("linux"), None);
        assert_eq!(v("5"), None);
    }
}

//! What an agent reports about its host: the facts the sizing table and the
//! prechecks are evaluated against.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UnixMs;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    pub hostname: String,
    pub cpu: CpuFacts,
    /// Total physical memory, from `MemTotal` in /proc/meminfo.
    pub memory_bytes: u64,
    /// Memory available for new work, from `MemAvailable`.
    pub memory_available_bytes: u64,
    pub mounts: Vec<Mount>,
    pub nics: Vec<Nic>,
    pub os: OsFacts,
    pub nofile: NofileLimit,
    /// The kernel settings the prechecks look at, by their dotted sysctl name
    /// (`fs.aio-max-nr`), plus `kernel.mm.transparent_hugepage` for THP.
    pub sysctls: BTreeMap<String, String>,
    /// Agent clock minus server clock, measured NTP-style on the last
    /// exchange; `None` until the first measurement.
    pub clock_offset_ms: Option<i64>,
    pub collected_at_ms: UnixMs,
    /// The database engine builds this host can run: the system packages
    /// (when complete) and every package the platform installed. Absent in
    /// facts from older agents, hence the default.
    #[serde(default)]
    pub engines: Vec<EngineBuild>,
    /// On a TLS platform: what the agent trusts and who issued the
    /// certificates on this host (a CA rotation waits on them).
    #[serde(default)]
    pub tls: Option<TlsFacts>,
}

/// The TLS state of a host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TlsFacts {
    /// Fingerprints of the CAs the agent trusts (its `ca.pem`), and its
    /// database servers with it.
    pub trusts: Vec<String>,
    /// Every certificate on the host the platform issued.
    pub certificates: Vec<IssuedCert>,
}

/// A certificate on a host, and the CA that issued it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct IssuedCert {
    /// `agent`, or the database server's id (`orders/orders-1`).
    pub holder: String,
    /// The issuing CA's fingerprint; `None`: none the host trusts.
    pub issuer: Option<String>,
}

/// One runnable engine build on a host: where its three essential files
/// are, so the platform can point a server at them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EngineBuild {
    /// [`SYSTEM_BUILD`] for the host's own packages, else the name of the
    /// platform package it was installed from.
    pub name: String,
    /// What `mariadbd --version` says, e.g. `11.8.3-MariaDB`; `None` when
    /// it could not be run.
    pub version: Option<String>,
    /// The installation directory of a package build; `None` for the system
    /// build, which uses the compiled-in paths.
    pub basedir: Option<String>,
    pub mariadbd: String,
    pub install_db: String,
    /// The Galera provider library (`wsrep_provider`).
    pub galera: String,
    /// The error-message directory (`lc_messages_dir`) a package build
    /// carries, when it carries one.
    #[serde(default)]
    pub messages_dir: Option<String>,
    /// SHA-256 of the package tarball it came from (`None`: system build).
    pub sha256: Option<String>,
}

/// The name under which the host's own MariaDB packages are reported.
pub const SYSTEM_BUILD: &str = "system";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CpuFacts {
    /// Logical CPUs the host has online.
    pub cores: u32,
    pub model: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub path: String,
    pub device: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// `Some(true)` when the backing block device is non-rotational;
    /// `None` when the kernel does not say (virtual or network filesystems).
    pub ssd: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub name: String,
    /// Link speed in Mbit/s; `None` where the kernel does not report one
    /// (virtio, loopback, link down) rather than a misleading 0.
    pub speed_mbps: Option<u32>,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OsFacts {
    /// `PRETTY_NAME` from /etc/os-release.
    pub name: String,
    pub kernel: String,
    pub arch: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NofileLimit {
    pub soft: u64,
    pub hard: u64,
}

impl HostFacts {
    /// The facts without their volatile readings (free memory and disk,
    /// when they were read); the clock offset in 50 ms steps, so a drift
    /// that matters to the skew check shows. Equal signatures: nothing the
    /// platform judges by has changed, so the agent need not send them and
    /// the server need not write them.
    pub fn stable_signature(&self) -> String {
        let mut f = self.clone();
        f.memory_available_bytes = 0;
        f.collected_at_ms = 0;
        // Rounded to the nearest 50 ms: a clock in sync (within ±25 ms)
        // stays in one step however the measurement jitters.
        f.clock_offset_ms = f.clock_offset_ms.map(|o| (o + 25).div_euclid(50));
        for m in &mut f.mounts {
            m.free_bytes = 0;
        }
        serde_json::to_string(&f).unwrap_or_default()
    }

    /// The mount that holds `path`: the longest mount point that prefixes it.
    pub fn mount_for(&self, path: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .filter(|m| path == m.path || m.path == "/" || path.starts_with(&format!("{}/", m.path.trim_end_matches('/'))))
            .max_by_key(|m| m.path.len())
    }

    /// The engine build called `name` ([`SYSTEM_BUILD`] for the system one).
    pub fn engine(&self, name: &str) -> Option<&EngineBuild> {
        self.engines.iter().find(|e| e.name == name)
    }

    /// The fastest link speed any NIC reports.
    pub fn fastest_nic_mbps(&self) -> Option<u32> {
        self.nics.iter().filter_map(|n| n.speed_mbps).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stable_signature_ignores_readings_and_clock_jitter() {
        let base = HostFacts { mounts: vec![mount("/")], clock_offset_ms: Some(-3), ..Default::default() };
        let mut later = base.clone();
        later.memory_available_bytes = 123;
        later.mounts[0].free_bytes = 456;
        later.collected_at_ms = 789;
        later.clock_offset_ms = Some(14);
        assert_eq!(base.stable_signature(), later.stable_signature());
        later.clock_offset_ms = Some(80);
        assert_ne!(base.stable_signature(), later.stable_signature(), "a drift the skew check cares about shows");
        let mut more = base.clone();
        more.memory_bytes = 1 << 30;
        assert_ne!(base.stable_signature(), more.stable_signature());
    }

    fn mount(path: &str) -> Mount {
        Mount { path: path.into(), ..Default::default() }
    }

    #[test]
    fn mount_for_picks_longest_prefix() {
        let f = HostFacts { mounts: vec![mount("/"), mount("/var"), mount("/var/lib/data"), mount("/varx")], ..Default::default() };
        assert_eq!(f.mount_for("/var/lib/atoll").map(|m| m.path.as_str()), Some("/var"));
        assert_eq!(f.mount_for("/var/lib/data").map(|m| m.path.as_str()), Some("/var/lib/data"));
        assert_eq!(f.mount_for("/varx/y").map(|m| m.path.as_str()), Some("/varx"));
        assert_eq!(f.mount_for("/srv").map(|m| m.path.as_str()), Some("/"));
    }
}

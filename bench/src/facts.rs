//! Simulated hosts: loopback identities and the facts a real agent would
//! collect, so the server stores and serves rows of a realistic size.

use std::collections::BTreeMap;

use atoll_core::{CpuFacts, HostFacts, HostId, Mount, Nic, NofileLimit, OsFacts, UnixMs};

const GIB: u64 = 1 << 30;

/// One simulated agent. Its address is never contacted: the server only
/// calls agents for host operations, which this benchmark does not run.
#[derive(Debug, Clone)]
pub struct SimHost {
    pub id: HostId,
    pub address: String,
    pub agent_url: String,
    pub facts: HostFacts,
    /// Set once the host registered.
    pub agent_token: String,
}

impl SimHost {
    pub fn new(index: usize, now_ms: UnixMs) -> SimHost {
        let address = loopback_address(index);
        SimHost {
            id: HostId::new(),
            agent_url: format!("http://{address}:7070"),
            facts: facts(&format!("db-{index:05}"), now_ms),
            address,
            agent_token: String::new(),
        }
    }
}

/// `127.1.X.Y` with Y in 1..=250: always inside 127.0.0.0/8, so nothing the
/// benchmark names can route off the machine.
pub fn loopback_address(index: usize) -> String {
    let x = (index / 250) % 256;
    let y = index % 250 + 1;
    format!("127.1.{x}.{y}")
}

/// What `collect` reports on a small database VM: 2 cores, 8 GiB, three
/// mounts, two NICs and the six sysctls the prechecks read.
pub fn facts(hostname: &str, now_ms: UnixMs) -> HostFacts {
    HostFacts {
        hostname: hostname.to_string(),
        cpu: CpuFacts { cores: 2, model: "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz".into() },
        memory_bytes: 8 * GIB,
        memory_available_bytes: 6 * GIB + 412 * (1 << 20),
        mounts: vec![
            mount("/", "/dev/vda1", "ext4", 40 * GIB, 31 * GIB, Some(true)),
            mount("/boot", "/dev/vda2", "ext4", GIB, 800 << 20, Some(true)),
            mount("/var/lib/mysql", "/dev/vdb1", "xfs", 200 * GIB, 187 * GIB, Some(true)),
        ],
        nics: vec![
            Nic { name: "eth0".into(), speed_mbps: Some(10_000), mtu: Some(1500) },
            Nic { name: "lo".into(), speed_mbps: None, mtu: Some(65_536) },
        ],
        os: OsFacts { name: "Rocky Linux 9.4 (Blue Onyx)".into(), kernel: "5.14.0-427.13.1.el9_4.x86_64".into(), arch: "x86_64".into() },
        nofile: NofileLimit { soft: 1024, hard: 524_288 },
        sysctls: sysctls(),
        clock_offset_ms: Some(3),
        collected_at_ms: now_ms,
        engines: Vec::new(),
        tls: None,
    }
}

fn mount(path: &str, device: &str, fs_type: &str, total_bytes: u64, free_bytes: u64, ssd: Option<bool>) -> Mount {
    Mount { path: path.into(), device: device.into(), fs_type: fs_type.into(), total_bytes, free_bytes, ssd }
}

fn sysctls() -> BTreeMap<String, String> {
    [
        ("fs.aio-max-nr", "1048576"),
        ("fs.file-max", "9223372036854775807"),
        ("vm.swappiness", "1"),
        ("net.core.somaxconn", "4096"),
        ("net.ipv4.ip_local_port_range", "32768\t60999"),
        ("kernel.mm.transparent_hugepage", "never"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_stay_on_loopback_and_are_unique() {
        let addrs: std::collections::BTreeSet<String> = (0..10_000).map(loopback_address).collect();
        assert_eq!(addrs.len(), 10_000);
        for a in &addrs {
            let ip: std::net::Ipv4Addr = a.parse().expect("an IPv4 address");
            assert!(ip.is_loopback(), "{a}");
        }
    }

    #[test]
    fn facts_have_the_collected_shape() {
        let f = facts("db-00001", 0);
        assert_eq!((f.cpu.cores, f.memory_bytes), (2, 8 * GIB));
        assert_eq!((f.mounts.len(), f.nics.len(), f.sysctls.len()), (3, 2, 6));
    }
}

//! Resource planning and environment precheck (the seed's OAT role): the
//! sizing tables of seed 004, deployment modes, host profiles, and the rules
//! that turn an agent's measurements into pass / warn / fail. Pure: the agent
//! measures, this crate judges.

pub mod check;
pub mod platform;
pub mod probe;
pub mod profile;
pub mod sizing;

pub use check::{CheckResult, CheckStatus, check_clock_skew, check_host, worst};
pub use probe::{BinaryProbe, PortProbe, ProbeReport, ProbeRequest};
pub use profile::{AtLeast, AtMost, KernelVersion, Need, Profile, ProfileName, UnknownProfile};
pub use sizing::{Mode, Plan, PlanError, PlanRow, PlatformSizing, ServerType, Spec, UnknownMode, plan, platform_sizing};

/// A byte count for people: GiB from 1 GiB up, MiB from 1 MiB up, with one
/// decimal ("1.5 GiB", "512.0 MiB"); plain bytes below that.
pub fn human_bytes(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    // f64 loses precision only beyond 2^53 bytes, far past one decimal of GiB.
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps a bad value should panic
mod tests {
    use super::human_bytes;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1 << 20), "1.0 MiB");
        assert_eq!(human_bytes(120 * (1 << 20)), "120.0 MiB");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
        assert_eq!(human_bytes(1229 << 30), "1229.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "17179869184.0 GiB");
    }
}

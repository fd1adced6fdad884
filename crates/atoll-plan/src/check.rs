//! Environment precheck (`atoll host check`): a profile's thresholds applied
//! to an agent's facts and probe answers. Every result says what was
//! measured, what was required and, when it is not a pass, what to do.
//! A fact the agent could not measure is a warning, never a failure: the
//! operator should look, but an unknown is not proof of a problem.

use std::fmt;

use atoll_core::HostFacts;
use serde::{Deserialize, Serialize};

use crate::human_bytes;
use crate::probe::ProbeReport;
use crate::profile::{AtLeast, AtMost, KernelVersion, Need, Profile};

/// Ordered by severity, so the worst of several results is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckResult {
    /// Stable id, e.g. `cpu.cores`, `sysctl.fs.aio-max-nr`, `port.3306`.
    pub item: String,
    pub status: CheckStatus,
    pub measured: String,
    pub required: String,
    /// What to do about it; `None` on a pass.
    pub fix: Option<String>,
}

const UNKNOWN: &str = "unknown";
const NOT_REQUIRED: &str = "not required by this profile";

/// The most severe status among `results`; `Pass` for none.
pub fn worst(results: &[CheckResult]) -> CheckStatus {
    results.iter().map(|r| r.status).max().unwrap_or(CheckStatus::Pass)
}

fn result(item: &str, status: CheckStatus, measured: String, required: String, fix: String) -> CheckResult {
    let fix = (status != CheckStatus::Pass).then_some(fix);
    CheckResult { item: item.to_owned(), status, measured, required, fix }
}

/// The two threshold shapes of a profile, read the same way here.
trait Limit {
    fn is_required(&self) -> bool;
    fn judge(&self, value: u64) -> CheckStatus;
    /// E.g. ">= 4 cores (recommended >= 32 cores)".
    fn text(&self, show: &dyn Fn(u64) -> String) -> String;
}

impl Limit for AtLeast {
    fn is_required(&self) -> bool {
        AtLeast::is_required(self)
    }
    fn judge(&self, value: u64) -> CheckStatus {
        AtLeast::judge(self, value)
    }
    fn text(&self, show: &dyn Fn(u64) -> String) -> String {
        limit_text(">=", self.fail_below, self.warn_below, show)
    }
}

impl Limit for AtMost {
    fn is_required(&self) -> bool {
        AtMost::is_required(self)
    }
    fn judge(&self, value: u64) -> CheckStatus {
        AtMost::judge(self, value)
    }
    fn text(&self, show: &dyn Fn(u64) -> String) -> String {
        limit_text("<=", self.fail_above, self.warn_above, show)
    }
}

fn limit_text(op: &str, fail: Option<u64>, warn: Option<u64>, show: &dyn Fn(u64) -> String) -> String {
    match (fail, warn) {
        (Some(f), Some(w)) if w != f => format!("{op} {} (recommended {op} {})", show(f), show(w)),
        (Some(f), _) => format!("{op} {}", show(f)),
        (None, Some(w)) => format!("recommended {op} {}", show(w)),
        (None, None) => NOT_REQUIRED.to_owned(),
    }
}

/// One threshold applied to one measurement; `fix` gets the required text.
/// An unknown value warns when the profile asks for the quantity at all.
fn limit_check(
    item: &str,
    value: Option<u64>,
    t: &impl Limit,
    show: impl Fn(u64) -> String,
    fix: impl FnOnce(&str) -> String,
) -> CheckResult {
    let required = t.text(&show);
    let (status, measured) = match value {
        _ if !t.is_required() => (CheckStatus::Pass, value.map_or_else(|| UNKNOWN.to_owned(), &show)),
        None => (CheckStatus::Warn, UNKNOWN.to_owned()),
        Some(v) => (t.judge(v), show(v)),
    };
    let fix = fix(&required);
    result(item, status, measured, required, fix)
}

fn cores(n: u64) -> String {
    format!("{n} core{}", if n == 1 { "" } else { "s" })
}

fn mbps(n: u64) -> String {
    if n >= 1000 && n.is_multiple_of(1000) { format!("{} Gbit/s", n / 1000) } else { format!("{n} Mbit/s") }
}

fn ms(n: u64) -> String {
    format!("{n} ms")
}

fn sysctl_u64(facts: &HostFacts, key: &str) -> Option<u64> {
    facts.sysctls.get(key).and_then(|v| v.trim().parse().ok())
}

/// The THP mode: the value itself, or the bracketed choice when the agent
/// passed the raw `always [madvise] never` through.
fn thp_mode(raw: &str) -> &str {
    match (raw.find('['), raw.find(']')) {
        (Some(a), Some(b)) if a < b => &raw[a + 1..b],
        _ => raw.trim(),
    }
}

/// The package that provides a probed binary, for the fix text.
fn install_fix(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let packages = match base {
        "mariadbd" | "mysqld" | "mariadb-install-db" | "mysql_install_db" => Some("mariadb-server galera-4"),
        "mariadb" | "mysql" => Some("mariadb-client"),
        "mariabackup" | "mariadb-backup" => Some("mariadb-backup"),
        "rsync" | "socat" | "lsof" | "pv" => Some(base),
        b if b.contains("galera") => Some("galera-4"),
        _ => None,
    };
    match packages {
        Some(p) => format!("apt-get install -y {p}"),
        None => format!("install `{base}` or put it on PATH"),
    }
}

/// Applies `profile` to one host's facts and, when given, to its probe
/// answers for a planned deployment under `data_dir`.
pub fn check_host(profile: &Profile, facts: &HostFacts, data_dir: &str, probe: Option<&ProbeReport>) -> Vec<CheckResult> {
    let mount = facts.mount_for(data_dir);
    let mount_path = mount.map_or("the data disk", |m| m.path.as_str());
    // The agent reports 0 for facts it could not read.
    let known = |n: u64| (n > 0).then_some(n);
    let mut out = vec![
        limit_check("cpu.cores", known(facts.cpu.cores.into()), &profile.cpu_cores, cores, |r| {
            format!("give the host more CPU cores: {r}")
        }),
        limit_check("memory.total", known(facts.memory_bytes), &profile.memory_total_bytes, human_bytes, |r| format!("add memory: {r}")),
        limit_check("memory.available", known(facts.memory_available_bytes), &profile.memory_available_bytes, human_bytes, |r| {
            format!("stop other services or add memory: {r} available")
        }),
        limit_check("disk.data_free", mount.map(|m| m.free_bytes), &profile.data_free_bytes, human_bytes, |r| {
            format!("free space on {mount_path} or put {data_dir} on a larger disk: {r}")
        }),
        ssd_check(profile.ssd, mount.and_then(|m| m.ssd), data_dir),
        limit_check("nic.speed", facts.fastest_nic_mbps().map(u64::from), &profile.nic_mbps, mbps, |r| {
            format!("use a faster NIC: {r} (`ethtool IFACE` shows the link speed)")
        }),
        kernel_check(profile, &facts.os.kernel),
        nofile_check(profile, facts),
        limit_check(
            "sysctl.fs.aio-max-nr",
            sysctl_u64(facts, "fs.aio-max-nr"),
            &profile.aio_max_nr,
            |n| n.to_string(),
            |_| {
                let want = profile.aio_max_nr.warn_below.or(profile.aio_max_nr.fail_below).unwrap_or(1_048_576);
                format!("sysctl -w fs.aio-max-nr={want} (persist in /etc/sysctl.d/)")
            },
        ),
        limit_check(
            "sysctl.vm.swappiness",
            sysctl_u64(facts, "vm.swappiness"),
            &profile.swappiness,
            |n| n.to_string(),
            |_| {
                let bound = profile.swappiness.warn_above.or(profile.swappiness.fail_above).unwrap_or(1);
                format!("sysctl -w vm.swappiness={} (persist in /etc/sysctl.d/)", bound.min(1))
            },
        ),
        thp_check(profile.thp_not_always, facts.sysctls.get("kernel.mm.transparent_hugepage").map(String::as_str)),
        limit_check("clock.offset", facts.clock_offset_ms.map(i64::unsigned_abs), &profile.clock_offset_ms, ms, |_| {
            "synchronise the clock with NTP: `timedatectl set-ntp true` or run chronyd".to_owned()
        }),
    ];
    if let Some(p) = probe {
        out.extend(probe_checks(p));
        engine_checks(facts, &mut out);
    }
    out
}

/// Files an engine build brings with it: a host may lack them system-wide
/// and still run a database from a package build.
const BUILD_FILES: &[&str] = &["mariadbd", "mariadb-install-db", "libgalera_smm.so"];

/// Whether the host can run a database at all: at least one engine build
/// (system packages or a pushed package). A probed build file missing from
/// the system passes when a package build provides it.
fn engine_checks(facts: &HostFacts, out: &mut Vec<CheckResult>) {
    let names: Vec<String> =
        facts.engines.iter().map(|e| format!("{} ({})", e.name, e.version.as_deref().unwrap_or("version unknown"))).collect();
    let packages: Vec<&str> = facts.engines.iter().filter(|e| e.basedir.is_some()).map(|e| e.name.as_str()).collect();
    if !packages.is_empty() {
        for r in out.iter_mut().filter(|r| r.status == CheckStatus::Fail) {
            let provided = r.item.strip_prefix("binary.").and_then(|b| b.rsplit('/').next()).is_some_and(|b| BUILD_FILES.contains(&b));
            if provided {
                r.status = CheckStatus::Pass;
                r.measured = format!("not installed system-wide; provided by engine build {}", packages.join(", "));
                r.fix = None;
            }
        }
    }
    out.push(if names.is_empty() {
        result(
            "engine.build",
            CheckStatus::Fail,
            "none".into(),
            "at least one engine build".into(),
            "apt-get install -y mariadb-server galera-4, or push a package build: `atoll package push NAME --host HOST`".into(),
        )
    } else {
        result("engine.build", CheckStatus::Pass, names.join(", "), "at least one engine build".into(), String::new())
    });
}

fn ssd_check(need: Need, ssd: Option<bool>, data_dir: &str) -> CheckResult {
    let required = match need {
        Need::NotRequired => NOT_REQUIRED.to_owned(),
        Need::Recommended => "SSD recommended".to_owned(),
        Need::Required => "SSD".to_owned(),
    };
    let measured = match ssd {
        Some(true) => "SSD",
        Some(false) => "rotational disk",
        None => UNKNOWN,
    };
    let status = match ssd {
        Some(true) => CheckStatus::Pass,
        Some(false) => need.missing_status(),
        None => need.missing_status().min(CheckStatus::Warn),
    };
    let fix = format!("put {data_dir} on an SSD (`lsblk -d -o NAME,ROTA` shows ROTA 0 for SSDs)");
    result("disk.ssd", status, measured.to_owned(), required, fix)
}

fn kernel_check(profile: &Profile, release: &str) -> CheckResult {
    let Some(min) = profile.kernel_min else {
        return result("os.kernel", CheckStatus::Pass, release.to_owned(), NOT_REQUIRED.to_owned(), String::new());
    };
    let measured = if release.is_empty() { UNKNOWN.to_owned() } else { release.to_owned() };
    let status = match KernelVersion::parse(release) {
        Some(v) if v < min => CheckStatus::Fail,
        Some(_) => CheckStatus::Pass,
        None => CheckStatus::Warn,
    };
    result("os.kernel", status, measured, format!(">= {min}"), format!("upgrade the kernel to {min} or later"))
}

fn nofile_check(profile: &Profile, facts: &HostFacts) -> CheckResult {
    let t = &profile.nofile_soft;
    let target = t.warn_below.max(t.fail_below).unwrap_or(65535);
    let mut check = limit_check(
        "limits.nofile",
        known_nofile(facts),
        t,
        |n| n.to_string(),
        |_| {
            format!(
                "add `* soft nofile {target}` and `* hard nofile {target}` to /etc/security/limits.conf \
             (or LimitNOFILE={target} in the agent's systemd unit) and restart the agent"
            )
        },
    );
    if check.measured != UNKNOWN {
        check.measured = format!("soft {}, hard {}", facts.nofile.soft, facts.nofile.hard);
    }
    check
}

fn known_nofile(facts: &HostFacts) -> Option<u64> {
    (facts.nofile.soft > 0).then_some(facts.nofile.soft)
}

fn thp_check(need: Need, raw: Option<&str>) -> CheckResult {
    let mode = raw.map(thp_mode).filter(|m| !m.is_empty());
    let required = match need {
        Need::NotRequired => NOT_REQUIRED.to_owned(),
        _ => "madvise or never".to_owned(),
    };
    let status = match mode {
        Some("always") => need.missing_status(),
        Some(_) => CheckStatus::Pass,
        None => need.missing_status().min(CheckStatus::Warn),
    };
    let fix = "echo never > /sys/kernel/mm/transparent_hugepage/enabled (persist with \
               transparent_hugepage=never on the kernel command line)"
        .to_owned();
    result("thp", status, mode.unwrap_or(UNKNOWN).to_owned(), required, fix)
}

fn probe_checks(p: &ProbeReport) -> Vec<CheckResult> {
    let dir = &p.data_dir;
    let mut out = vec![match &p.data_dir_error {
        None => result("data_dir.writable", CheckStatus::Pass, "writable".into(), "writable".into(), String::new()),
        Some(e) => result(
            "data_dir.writable",
            CheckStatus::Fail,
            format!("not writable: {e}"),
            "writable".into(),
            format!("mkdir -p {dir} && chown mysql: {dir}"),
        ),
    }];
    for port in &p.ports {
        let n = port.port;
        let (status, measured) = if port.free {
            (CheckStatus::Pass, "free".to_owned())
        } else {
            let why = port.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
            (CheckStatus::Fail, format!("in use{why}"))
        };
        let fix = format!("free port {n}: `ss -ltnp 'sport = :{n}'` shows who holds it");
        out.push(result(&format!("port.{n}"), status, measured, "free".into(), fix));
    }
    for bin in &p.binaries {
        let (status, measured) = match &bin.path {
            Some(path) => (CheckStatus::Pass, path.clone()),
            None => (CheckStatus::Fail, "missing".to_owned()),
        };
        out.push(result(&format!("binary.{}", bin.name), status, measured, "present".into(), install_fix(&bin.name)));
    }
    out
}

/// Clock skew across hosts: the spread (latest minus earliest) of their
/// offsets against the server, judged by the profile's clock limits. Hosts
/// that have not reported an offset yet each add a warning.
pub fn check_clock_skew(offsets: &[(String, Option<i64>)], profile: &Profile) -> Vec<CheckResult> {
    let t = &profile.clock_offset_ms;
    let required = t.text(&ms);
    let fix = |hosts: &str| format!("synchronise clocks with NTP on {hosts}: `timedatectl set-ntp true` or run chronyd");
    let mut out: Vec<CheckResult> = offsets
        .iter()
        .filter(|(_, o)| o.is_none())
        .map(|(host, _)| {
            let status = if t.is_required() { CheckStatus::Warn } else { CheckStatus::Pass };
            result("clock.skew", status, format!("{host}: {UNKNOWN}"), required.clone(), fix(host))
        })
        .collect();
    let known: Vec<(&str, i64)> = offsets.iter().filter_map(|(h, o)| o.map(|o| (h.as_str(), o))).collect();
    let earliest = known.iter().min_by_key(|(_, o)| *o);
    let latest = known.iter().max_by_key(|(_, o)| *o);
    let summary = match (earliest, latest) {
        (Some(&(lo_host, lo)), Some(&(hi_host, hi))) if known.len() >= 2 => {
            let skew = hi.abs_diff(lo);
            let measured = format!("{} between {hi_host} ({hi:+} ms) and {lo_host} ({lo:+} ms)", ms(skew));
            result("clock.skew", t.judge(skew), measured, required, fix(&format!("{hi_host} and {lo_host}")))
        }
        _ => result(
            "clock.skew",
            CheckStatus::Pass,
            format!("{} host(s) with a known offset: nothing to compare", known.len()),
            required,
            String::new(),
        ),
    };
    out.insert(0, summary);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps a bad value should panic
mod tests {
    use std::collections::BTreeMap;

    use atoll_core::{CpuFacts, Mount, Nic, NofileLimit, OsFacts};

    use super::*;
    use crate::probe::{BinaryProbe, PortProbe};

    const GIB: u64 = 1 << 30;

    /// A 2-core, 8 GiB laptop-ish host with 50 GiB free on an SSD root.
    fn small_host() -> HostFacts {
        HostFacts {
            hostname: "dev".into(),
            cpu: CpuFacts { cores: 2, model: "test".into() },
            memory_bytes: 8 * GIB,
            memory_available_bytes: 5 * GIB,
            mounts: vec![Mount {
                path: "/".into(),
                device: "/dev/nvme0n1p2".into(),
                fs_type: "ext4".into(),
                total_bytes: 100 * GIB,
                free_bytes: 50 * GIB,
                ssd: Some(true),
            }],
            nics: vec![Nic { name: "lo".into(), speed_mbps: None, mtu: Some(65536) }],
            os: OsFacts { name: "Debian GNU/Linux 13".into(), kernel: "6.12.0-1-amd64".into(), arch: "x86_64".into() },
            nofile: NofileLimit { soft: 65535, hard: 524288 },
            sysctls: BTreeMap::from([
                ("fs.aio-max-nr".to_owned(), "65536".to_owned()),
                ("vm.swappiness".to_owned(), "60".to_owned()),
                ("kernel.mm.transparent_hugepage".to_owned(), "madvise".to_owned()),
            ]),
            clock_offset_ms: Some(3),
            collected_at_ms: 0,
            engines: Vec::new(),
            tls: None,
        }
    }

    fn get<'a>(results: &'a [CheckResult], item: &str) -> &'a CheckResult {
        results.iter().find(|r| r.item == item).unwrap_or_else(|| panic!("no {item} in {results:#?}"))
    }

    #[test]
    fn production_fails_a_small_host_on_cores_and_memory() {
        let results = check_host(&Profile::production(), &small_host(), "/var/lib/atoll", None);
        let cpu = get(&results, "cpu.cores");
        assert_eq!(cpu.status, CheckStatus::Fail);
        assert_eq!(cpu.measured, "2 cores");
        assert_eq!(cpu.required, ">= 4 cores (recommended >= 32 cores)");
        assert!(cpu.fix.as_deref().unwrap().contains(">= 4 cores"));
        let mem = get(&results, "memory.total");
        assert_eq!(mem.status, CheckStatus::Fail);
        assert_eq!(mem.measured, "8.0 GiB");
        assert_eq!(mem.required, ">= 16.0 GiB (recommended >= 256.0 GiB)");
        let disk = get(&results, "disk.data_free");
        assert_eq!(disk.status, CheckStatus::Fail);
        assert_eq!(disk.measured, "50.0 GiB");
        assert_eq!(disk.required, ">= 1229.0 GiB (recommended >= 2048.0 GiB)");
        assert_eq!(get(&results, "disk.ssd").status, CheckStatus::Pass);
        let nic = get(&results, "nic.speed");
        assert_eq!((nic.status, nic.measured.as_str()), (CheckStatus::Warn, "unknown"));
        let nofile = get(&results, "limits.nofile");
        assert_eq!(nofile.status, CheckStatus::Warn);
        assert_eq!(nofile.measured, "soft 65535, hard 524288");
        assert!(nofile.fix.as_deref().unwrap().contains("`* soft nofile 655350`"));
        let aio = get(&results, "sysctl.fs.aio-max-nr");
        assert_eq!(aio.status, CheckStatus::Warn);
        assert_eq!(aio.fix.as_deref(), Some("sysctl -w fs.aio-max-nr=1048576 (persist in /etc/sysctl.d/)"));
        assert_eq!(get(&results, "sysctl.vm.swappiness").status, CheckStatus::Warn);
        assert_eq!(get(&results, "thp").status, CheckStatus::Pass);
        assert_eq!(get(&results, "os.kernel").status, CheckStatus::Pass);
        assert_eq!(get(&results, "clock.offset").status, CheckStatus::Pass);
        assert_eq!(worst(&results), CheckStatus::Fail);
        assert!(results.iter().all(|r| (r.status == CheckStatus::Pass) == r.fix.is_none()));
    }

    #[test]
    fn sandbox_passes_the_same_host() {
        let results = check_host(&Profile::sandbox(), &small_host(), "/var/lib/atoll", None);
        assert_eq!(worst(&results), CheckStatus::Pass, "{results:#?}");
        let ssd = get(&results, "disk.ssd");
        assert_eq!(ssd.required, "not required by this profile");
        let nic = get(&results, "nic.speed");
        assert_eq!((nic.status, nic.required.as_str()), (CheckStatus::Pass, "not required by this profile"));
        assert_eq!(get(&results, "cpu.cores").required, ">= 1 core (recommended >= 2 cores)");
    }

    #[test]
    fn sandbox_fails_a_starved_host() {
        let mut f = small_host();
        f.memory_available_bytes = 512 << 20;
        f.mounts[0].free_bytes = 256 << 20;
        f.nofile.soft = 256;
        let results = check_host(&Profile::sandbox(), &f, "/var/lib/atoll", None);
        let avail = get(&results, "memory.available");
        assert_eq!((avail.status, avail.measured.as_str(), avail.required.as_str()), (CheckStatus::Fail, "512.0 MiB", ">= 1.0 GiB"));
        assert_eq!(get(&results, "disk.data_free").status, CheckStatus::Fail);
        assert_eq!(get(&results, "limits.nofile").status, CheckStatus::Fail);
    }

    #[test]
    fn sandbox_warns_when_one_disk_is_tight_for_three_nodes() {
        let mut f = small_host();
        f.mounts[0].free_bytes = GIB;
        let results = check_host(&Profile::sandbox(), &f, "/var/lib/atoll", None);
        let disk = get(&results, "disk.data_free");
        assert_eq!((disk.status, disk.required.as_str()), (CheckStatus::Warn, ">= 512.0 MiB (recommended >= 2.0 GiB)"));
        assert_eq!(worst(&results), CheckStatus::Warn);
    }

    #[test]
    fn unknown_facts_warn_in_production_and_bad_settings_are_flagged() {
        let mut f = small_host();
        f.mounts[0].ssd = None;
        f.mounts[0].free_bytes = 4096 * GIB;
        f.sysctls.clear();
        f.sysctls.insert("kernel.mm.transparent_hugepage".into(), "[always] madvise never".into());
        f.os.kernel = "2.6.32-754.el6".into();
        f.clock_offset_ms = Some(-700);
        let results = check_host(&Profile::production(), &f, "/var/lib/atoll", None);
        let ssd = get(&results, "disk.ssd");
        assert_eq!((ssd.status, ssd.measured.as_str()), (CheckStatus::Warn, "unknown"));
        assert_eq!(get(&results, "disk.data_free").status, CheckStatus::Pass);
        assert_eq!(get(&results, "sysctl.fs.aio-max-nr").measured, "unknown");
        assert_eq!(get(&results, "sysctl.fs.aio-max-nr").status, CheckStatus::Warn);
        let thp = get(&results, "thp");
        assert_eq!((thp.status, thp.measured.as_str()), (CheckStatus::Warn, "always"));
        assert_eq!(get(&results, "os.kernel").status, CheckStatus::Fail);
        let clock = get(&results, "clock.offset");
        assert_eq!((clock.status, clock.measured.as_str()), (CheckStatus::Fail, "700 ms"));
        assert_eq!(clock.required, "<= 500 ms (recommended <= 100 ms)");
    }

    #[test]
    fn probe_failures_carry_fixes() {
        let probe = ProbeReport {
            data_dir: "/data/atoll".into(),
            data_dir_error: Some("Permission denied (os error 13)".into()),
            ports: vec![
                PortProbe { port: 3306, free: false, detail: Some("Address already in use (os error 98)".into()) },
                PortProbe { port: 4567, free: true, detail: None },
            ],
            binaries: vec![
                BinaryProbe { name: "mariadbd".into(), path: None },
                BinaryProbe { name: "rsync".into(), path: Some("/usr/bin/rsync".into()) },
            ],
        };
        let results = check_host(&Profile::sandbox(), &small_host(), "/data/atoll", Some(&probe));
        let dir = get(&results, "data_dir.writable");
        assert_eq!(dir.status, CheckStatus::Fail);
        assert_eq!(dir.fix.as_deref(), Some("mkdir -p /data/atoll && chown mysql: /data/atoll"));
        let port = get(&results, "port.3306");
        assert_eq!(port.status, CheckStatus::Fail);
        assert_eq!(port.measured, "in use: Address already in use (os error 98)");
        assert_eq!(port.fix.as_deref(), Some("free port 3306: `ss -ltnp 'sport = :3306'` shows who holds it"));
        assert_eq!(get(&results, "port.4567").status, CheckStatus::Pass);
        let bin = get(&results, "binary.mariadbd");
        assert_eq!(bin.status, CheckStatus::Fail);
        assert_eq!(bin.fix.as_deref(), Some("apt-get install -y mariadb-server galera-4"));
        assert_eq!(get(&results, "binary.rsync").status, CheckStatus::Pass);
        assert_eq!(worst(&results), CheckStatus::Fail);
    }

    #[test]
    fn a_package_build_stands_in_for_system_binaries() {
        let probe = ProbeReport {
            data_dir: "/data".into(),
            binaries: vec![BinaryProbe { name: "mariadbd".into(), path: None }, BinaryProbe { name: "rsync".into(), path: None }],
            ..Default::default()
        };
        let results = check_host(&Profile::sandbox(), &small_host(), "/data", Some(&probe));
        let engine = get(&results, "engine.build");
        assert_eq!((engine.status, engine.measured.as_str()), (CheckStatus::Fail, "none"));
        let mut facts = small_host();
        facts.engines = vec![atoll_core::EngineBuild {
            name: "mariadb-11.8".into(),
            version: Some("11.8.3-MariaDB".into()),
            basedir: Some("/x".into()),
            ..Default::default()
        }];
        let results = check_host(&Profile::sandbox(), &facts, "/data", Some(&probe));
        assert_eq!(get(&results, "engine.build").measured, "mariadb-11.8 (11.8.3-MariaDB)");
        let bin = get(&results, "binary.mariadbd");
        assert_eq!(bin.status, CheckStatus::Pass, "{bin:?}");
        assert!(bin.measured.contains("provided by engine build mariadb-11.8"));
        assert_eq!(get(&results, "binary.rsync").status, CheckStatus::Fail, "rsync is not part of a build");
    }

    #[test]
    fn install_fixes() {
        assert_eq!(install_fix("/usr/lib/galera/libgalera_smm.so"), "apt-get install -y galera-4");
        assert_eq!(install_fix("mariabackup"), "apt-get install -y mariadb-backup");
        assert_eq!(install_fix("frobnicate"), "install `frobnicate` or put it on PATH");
    }

    #[test]
    fn clock_skew_across_hosts() {
        let p = Profile::production();
        let offsets = |v: &[(&str, Option<i64>)]| v.iter().map(|(h, o)| (h.to_string(), *o)).collect::<Vec<_>>();

        let ok = check_clock_skew(&offsets(&[("a", Some(10)), ("b", Some(-20)), ("c", Some(40))]), &p);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].item, "clock.skew");
        assert_eq!(ok[0].status, CheckStatus::Pass);
        assert_eq!(ok[0].measured, "60 ms between c (+40 ms) and b (-20 ms)");

        // Each host is within 500 ms of the server, but they are 600 ms apart.
        let bad = check_clock_skew(&offsets(&[("a", Some(300)), ("b", Some(-300)), ("c", None)]), &p);
        assert_eq!(bad[0].status, CheckStatus::Fail);
        assert!(bad[0].fix.as_deref().unwrap().contains("a and b"));
        assert_eq!((bad[1].status, bad[1].measured.as_str()), (CheckStatus::Warn, "c: unknown"));
        assert_eq!(worst(&bad), CheckStatus::Fail);

        let warn = check_clock_skew(&offsets(&[("a", Some(0)), ("b", Some(150))]), &p);
        assert_eq!(warn[0].status, CheckStatus::Warn);

        let lone = check_clock_skew(&offsets(&[("a", Some(9000))]), &p);
        assert_eq!(lone[0].status, CheckStatus::Pass);
        assert_eq!(worst(&check_clock_skew(&[], &p)), CheckStatus::Pass);

        let extreme = check_clock_skew(&offsets(&[("a", Some(i64::MAX)), ("b", Some(i64::MIN))]), &p);
        assert_eq!(extreme[0].status, CheckStatus::Fail);
    }

    #[test]
    fn status_order_and_worst() {
        assert!(CheckStatus::Pass < CheckStatus::Warn && CheckStatus::Warn < CheckStatus::Fail);
        assert_eq!(worst(&[]), CheckStatus::Pass);
        assert_eq!(serde_json::to_string(&CheckStatus::Warn).unwrap(), "\"warn\"");
    }
}

//! The agent's standing report about its host, read straight from Linux
//! (/proc, /sys, /etc) rather than by shelling out, so it works on minimal
//! images and costs a few file reads.
//!
//! Every source is optional: a missing or unreadable file degrades to a
//! default (`0`, `""`, `"unknown"`) or `None` and is logged at debug level.
//! An agent that reports a gap is more useful than one that cannot report.
//!
//! Parsing lives in pure functions over `&str` so it can be tested on sample
//! text from hosts we do not have; [`collect`] only does the reading.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use atoll_core::time::now_ms;
use atoll_core::{CpuFacts, HostFacts, Mount, Nic, NofileLimit, OsFacts};

/// The sysctls the prechecks look at: dotted name → file under /proc/sys.
const SYSCTLS: &[(&str, &str)] = &[
    ("fs.aio-max-nr", "/proc/sys/fs/aio-max-nr"),
    ("fs.file-max", "/proc/sys/fs/file-max"),
    ("vm.swappiness", "/proc/sys/vm/swappiness"),
    ("vm.max_map_count", "/proc/sys/vm/max_map_count"),
    ("net.core.somaxconn", "/proc/sys/net/core/somaxconn"),
    ("net.ipv4.ip_local_port_range", "/proc/sys/net/ipv4/ip_local_port_range"),
];

/// Key under which the transparent-hugepage mode is reported (not a real
/// sysctl: it lives in /sys, but the prechecks treat it like one).
pub const THP_KEY: &str = "kernel.mm.transparent_hugepage";

/// Filesystems that never hold data: kernel interfaces, control groups and
/// read-only images. `tmpfs`/`ramfs` are handled separately, by mount point
/// (see [`is_data_mount`]).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "binder",
    "bpf",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nfsd",
    "nsfs",
    "pipefs",
    "proc",
    "pstore",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "sockfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// Where memory-backed filesystems are system plumbing rather than a place
/// someone could put a data directory.
const SYSTEM_TREES: &[&str] = &["/dev", "/proc", "/run", "/sys"];

/// Reads this host's facts. Never fails: whatever cannot be read is left at
/// its default. `clock_offset_ms` is left `None` for the caller to fill from
/// its exchange with the server.
pub fn collect() -> HostFacts {
    let meminfo = read("/proc/meminfo").map(|t| parse_meminfo(&t)).unwrap_or_default();
    HostFacts {
        hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
        cpu: collect_cpu(),
        memory_bytes: meminfo.get("MemTotal").copied().unwrap_or(0),
        // MemAvailable exists since Linux 3.14; MemFree is the pessimistic
        // stand-in on anything older.
        memory_available_bytes: meminfo.get("MemAvailable").or_else(|| meminfo.get("MemFree")).copied().unwrap_or(0),
        mounts: collect_mounts(),
        nics: collect_nics(),
        os: collect_os(),
        nofile: nofile_limit(),
        sysctls: collect_sysctls(),
        clock_offset_ms: None,
        collected_at_ms: now_ms(),
        // Filled by `packages::Packages::collect_facts`, which knows where
        // this agent keeps its builds.
        engines: Vec::new(),
        tls: None,
    }
}

// ---------------------------------------------------------------- reading

/// Reads a whole text file, logging (not propagating) failure: every fact
/// source is optional.
pub(crate) fn read(path: impl AsRef<Path>) -> Option<String> {
    let path = path.as_ref();
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "fact source unreadable");
            None
        }
    }
}

/// Reads a one-value file (sysfs/procfs style) and trims it; empty is `None`.
fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    read(path).map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

// ---------------------------------------------------------------- cpu

/// Online CPUs from sysfs (what the scheduler can use, unlike `possible`);
/// falls back to counting /proc/cpuinfo entries, then to what std sees.
fn collect_cpu() -> CpuFacts {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let cores = read("/sys/devices/system/cpu/online")
        .and_then(|t| parse_cpu_online(&t))
        .or_else(|| Some(parse_cpuinfo_processors(&cpuinfo)).filter(|&n| n > 0))
        .or_else(|| std::thread::available_parallelism().ok().and_then(|n| u32::try_from(n.get()).ok()))
        .unwrap_or(0);
    let model = parse_cpuinfo_model(&cpuinfo).unwrap_or_else(|| "unknown".to_owned());
    CpuFacts { cores, model }
}

/// Counts the CPUs in a kernel cpu list such as `0-3,8,10-11` (the format of
/// /sys/devices/system/cpu/online). `None` when the text is not such a list.
fn parse_cpu_online(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut count: u32 = 0;
    for part in text.split(',') {
        let n = match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (lo.trim().parse::<u32>().ok()?, hi.trim().parse::<u32>().ok()?);
                hi.checked_sub(lo)?.checked_add(1)?
            }
            None => {
                part.trim().parse::<u32>().ok()?;
                1
            }
        };
        count = count.checked_add(n)?;
    }
    Some(count)
}

/// Splits a `key : value` line of /proc/cpuinfo.
fn cpuinfo_field(line: &str) -> Option<(&str, &str)> {
    line.split_once(':').map(|(k, v)| (k.trim(), v.trim()))
}

/// Counts `processor` entries in /proc/cpuinfo (one per online logical CPU
/// on x86 and arm64).
fn parse_cpuinfo_processors(text: &str) -> u32 {
    let n = text.lines().filter_map(cpuinfo_field).filter(|(k, _)| *k == "processor").count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first `model name` in /proc/cpuinfo. arm64 and other architectures
/// do not report one, hence `None`.
fn parse_cpuinfo_model(text: &str) -> Option<String> {
    text.lines().filter_map(cpuinfo_field).find(|(k, v)| *k == "model name" && !v.is_empty()).map(|(_, v)| v.to_owned())
}

// ---------------------------------------------------------------- memory

/// Parses /proc/meminfo into bytes by field name. Only `kB` lines are kept:
/// the unit-less ones (`HugePages_Total`) are counts, not sizes.
pub(crate) fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut words = rest.split_whitespace();
            let value: u64 = words.next()?.parse().ok()?;
            (words.next()? == "kB").then(|| (key.trim().to_owned(), value.saturating_mul(1024)))
        })
        .collect()
}

// ---------------------------------------------------------------- mounts

/// One line of the mount table, before filtering and measuring.
#[derive(Debug, Clone, PartialEq)]
struct MountEntry {
    path: String,
    source: String,
    fs_type: String,
    /// `major:minor` of the filesystem's device (mountinfo only). Major 0 is
    /// an anonymous device (overlay, btrfs subvolumes, tmpfs).
    dev: Option<(u32, u32)>,
}

/// Mounts of filesystems that can hold data, measured. Reads mountinfo (it
/// carries the device number, which resolves `/dev/root` and device-mapper
/// names) and falls back to /proc/mounts.
pub(crate) fn collect_mounts() -> Vec<Mount> {
    let entries = read("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .filter(|e| !e.is_empty())
        .or_else(|| read("/proc/mounts").map(|t| parse_mounts(&t)))
        .unwrap_or_default();
    select_mounts(entries).into_iter().map(measure_mount).collect()
}

/// Parses /proc/self/mountinfo: `id parent maj:min root mountpoint opts
/// [optional...] - fstype source superopts`.
fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    let dev = fields.get(2).and_then(|d| {
        let (maj, min) = d.split_once(':')?;
        Some((maj.parse().ok()?, min.parse().ok()?))
    });
    Some(MountEntry {
        path: unescape_mount_field(fields.get(4).filter(|_| sep >= 6)?),
        fs_type: unescape_mount_field(fields.get(sep + 1)?),
        source: unescape_mount_field(fields.get(sep + 2)?),
        dev,
    })
}

/// Parses /proc/mounts (fstab format: `source mountpoint fstype opts 0 0`).
fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let source = unescape_mount_field(f.next()?);
            let path = unescape_mount_field(f.next()?);
            let fs_type = unescape_mount_field(f.next()?);
            Some(MountEntry { path, source, fs_type, dev: None })
        })
        .collect()
}

/// Undoes the kernel's octal escaping of spaces, tabs, newlines and
/// backslashes in mount tables (`\040` → ` `).
fn unescape_mount_field(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a mount could hold a data directory.
///
/// Kernel interfaces, cgroups and squashfs images are dropped. Memory-backed
/// filesystems (`tmpfs`, `ramfs`) are dropped under /dev, /proc, /run and
/// /sys, where they are plumbing, but *kept* elsewhere (e.g. a tmpfs `/tmp`):
/// otherwise [`HostFacts::mount_for`] would attribute a data directory placed
/// there to the root disk, and a precheck could not see that it would vanish
/// on reboot. Block filesystems, overlay (the root of a container) and
/// network filesystems are kept.
fn is_data_mount(e: &MountEntry) -> bool {
    let t = e.fs_type.as_str();
    if PSEUDO_FS.contains(&t) || t.starts_with("cgroup") {
        return false;
    }
    if t == "tmpfs" || t == "ramfs" {
        return !SYSTEM_TREES.iter().any(|root| e.path == *root || e.path.starts_with(&format!("{root}/")));
    }
    true
}

/// Filters to data mounts and keeps one entry per mount point: the last one
/// in the table, since a later mount on the same point hides earlier ones.
fn select_mounts(entries: Vec<MountEntry>) -> Vec<MountEntry> {
    let mut out: Vec<MountEntry> = Vec::new();
    for e in entries.into_iter().filter(is_data_mount) {
        out.retain(|kept| kept.path != e.path);
        out.push(e);
    }
    out
}

/// Sizes and media type of one mount. A mount that cannot be measured (e.g.
/// an unreachable network share) is still reported, with zero sizes, so that
/// `mount_for` does not fall back to a parent it is not on.
fn measure_mount(e: MountEntry) -> Mount {
    let (total_bytes, free_bytes) = fs_space(Path::new(&e.path)).unwrap_or_else(|| {
        tracing::debug!(path = %e.path, "statvfs failed; reporting zero size");
        (0, 0)
    });
    let ssd = block_device_dir(&e).and_then(|dir| read(dir.join("queue/rotational")).and_then(|t| parse_rotational(&t)));
    Mount { path: e.path, device: e.source, fs_type: e.fs_type, total_bytes, free_bytes, ssd }
}

/// `(total, free)` bytes of the filesystem at `path`. Free is `f_bavail`:
/// what an unprivileged process (mariadbd runs as `mysql`) can still use,
/// excluding the blocks reserved for root.
#[allow(clippy::useless_conversion)] // the fields are u32 on 32-bit targets
fn fs_space(path: &Path) -> Option<(u64, u64)> {
    let st = statvfs(path)?;
    let frsize = u64::from(st.f_frsize);
    Some((u64::from(st.f_blocks).saturating_mul(frsize), u64::from(st.f_bavail).saturating_mul(frsize)))
}

/// statvfs(3); `None` on any failure.
#[allow(unsafe_code)]
fn statvfs(path: &Path) -> Option<libc::statvfs> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buf = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the
    // call, and `buf` points to writable memory of the exact struct size.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the whole struct.
    Some(unsafe { buf.assume_init() })
}

/// The sysfs directory of the *whole* block device behind a mount, the one
/// that has a `queue/`. Tries the device number first (exact, and covers
/// `/dev/root`), then the source path (resolving `/dev/mapper/x` → `dm-N`).
/// `None` for filesystems without a block device (overlay, tmpfs, NFS).
fn block_device_dir(e: &MountEntry) -> Option<PathBuf> {
    let by_number = e
        .dev
        .filter(|(major, _)| *major != 0)
        .and_then(|(major, minor)| std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok());
    let by_name = || {
        let dev = std::fs::canonicalize(e.source.strip_prefix("/dev/").map(|_| &e.source)?).ok()?;
        let name = dev.file_name()?;
        std::fs::canonicalize(Path::new("/sys/class/block").join(name)).ok()
    };
    let dir = by_number.or_else(by_name)?;
    whole_disk(dir)
}

/// Partitions (`vda1`, `nvme0n1p1`) have no queue of their own: their
/// parent directory in sysfs is the disk. Device-mapper and md devices have
/// their own queue, which the kernel derives from the devices below them.
fn whole_disk(dir: PathBuf) -> Option<PathBuf> {
    if dir.join("partition").exists() { dir.parent().map(Path::to_path_buf) } else { Some(dir) }
}

/// `queue/rotational`: `0` means solid-state → `Some(true)`.
fn parse_rotational(text: &str) -> Option<bool> {
    match text.trim() {
        "0" => Some(true),
        "1" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------- nics

/// Network interfaces except loopback, sorted by name (directory order is
/// arbitrary and would make reports churn).
fn collect_nics() -> Vec<Nic> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut nics: Vec<Nic> = dir
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
        .filter(|name| name != "lo")
        .map(|name| {
            let base = Path::new("/sys/class/net").join(&name);
            Nic {
                speed_mbps: read_trimmed(base.join("speed")).and_then(|t| parse_speed(&t)),
                mtu: read_trimmed(base.join("mtu")).and_then(|t| t.parse().ok()),
                name,
            }
        })
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    nics
}

/// Link speed in Mbit/s. The kernel reports `-1` (SPEED_UNKNOWN) for virtio
/// and links that are down, and the read fails outright for virtual devices;
/// both become `None` rather than a misleading 0.
fn parse_speed(text: &str) -> Option<u32> {
    text.trim().parse::<i64>().ok().filter(|&s| s > 0).and_then(|s| u32::try_from(s).ok())
}

// ---------------------------------------------------------------- os

fn collect_os() -> OsFacts {
    let name = read("/etc/os-release")
        .or_else(|| read("/usr/lib/os-release"))
        .and_then(|t| parse_os_release(&t))
        .unwrap_or_else(|| "unknown".to_owned());
    OsFacts {
        name,
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".to_owned()),
        arch: std::env::consts::ARCH.to_owned(),
    }
}

/// `PRETTY_NAME` from os-release(5), unquoted; falls back to `NAME`.
fn parse_os_release(text: &str) -> Option<String> {
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| unquote_shell(v.trim()))
            .filter(|v| !v.is_empty())
    };
    value("PRETTY_NAME").or_else(|| value("NAME"))
}

/// Strips the shell-style quoting os-release values may use: `"..."` with
/// backslash escapes, or `'...'` taken literally.
fn unquote_shell(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------- limits

/// RLIMIT_NOFILE of *this* process (the agent); unlimited is `u64::MAX`.
/// mariadbd's own limits come from its systemd unit and are read from
/// /proc/<pid>/limits once it runs.
fn nofile_limit() -> NofileLimit {
    getrlimit_nofile().unwrap_or_default()
}

#[allow(unsafe_code)]
fn getrlimit_nofile() -> Option<NofileLimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit; getrlimit only writes it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(NofileLimit { soft: lim.rlim_cur, hard: lim.rlim_max })
}

// ---------------------------------------------------------------- sysctls

/// The kernel settings the prechecks judge; unreadable ones are omitted
/// rather than reported as empty, so "absent" and "empty" stay distinct.
fn collect_sysctls() -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> =
        SYSCTLS.iter().filter_map(|(key, path)| Some(((*key).to_owned(), normalize_sysctl(&read(path)?)))).collect();
    if let Some(mode) = read("/sys/kernel/mm/transparent_hugepage/enabled").and_then(|t| parse_thp(&t)) {
        out.insert(THP_KEY.to_owned(), mode);
    }
    out
}

/// Trims and collapses whitespace, as `sysctl -n` users expect
/// (`32768\t60999` → `32768 60999`).
fn normalize_sysctl(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The selected mode of a sysfs choice file: `always [madvise] never` →
/// `madvise`.
fn parse_thp(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = start + text[start..].find(']')?;
    Some(text[start + 1..end].trim().to_owned()).filter(|m| !m.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test that unwraps a bad value should panic
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_bytes() {
        let m = parse_meminfo(
            "MemTotal:       24684084 kB\nMemFree:        23602612 kB\n\
             MemAvailable:   24350960 kB\nHugePages_Total:       0\nbogus\n",
        );
        assert_eq!(m["MemTotal"], 24_684_084 * 1024);
        assert_eq!(m["MemAvailable"], 24_350_960 * 1024);
        assert!(!m.contains_key("HugePages_Total"));
    }

    #[test]
    fn cpu_online_ranges() {
        assert_eq!(parse_cpu_online("0-1\n"), Some(2));
        assert_eq!(parse_cpu_online("0"), Some(1));
        assert_eq!(parse_cpu_online("0-3,8,10-11\n"), Some(7));
        assert_eq!(parse_cpu_online(""), None);
        assert_eq!(parse_cpu_online("3-1"), None);
        assert_eq!(parse_cpu_online("a-b"), None);
    }

    #[test]
    fn cpuinfo_model_and_count() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n\
                   processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpuinfo_model(x86).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpuinfo_processors(x86), 2);
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n";
        assert_eq!(parse_cpuinfo_model(arm), None);
        assert_eq!(parse_cpuinfo_processors(arm), 1);
    }

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=123k
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/root rw,discard
28 27 259:3 / /var/lib/my\\040data rw,relatime shared:5 master:2 - xfs /dev/nvme0n1p3 rw
29 27 0:40 / /tmp rw - tmpfs tmpfs rw
30 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
32 27 0:50 / /srv rw - overlay overlay rw,lowerdir=/a
33 27 7:1 / /snap/core/1 ro - squashfs /dev/loop1 ro
34 27 0:60 / /mnt/db rw - xfs /dev/sdb rw
35 27 0:61 / /mnt/db rw - ext4 /dev/sdc rw
";

    #[test]
    fn mountinfo_fields_and_escapes() {
        let e = parse_mountinfo(MOUNTINFO);
        assert_eq!(e.len(), 12);
        let data = &e[4];
        assert_eq!(data.path, "/var/lib/my data");
        assert_eq!(data.fs_type, "xfs");
        assert_eq!(data.source, "/dev/nvme0n1p3");
        assert_eq!(data.dev, Some((259, 3)));
        assert_eq!(e[3].source, "/dev/root");
    }

    #[test]
    fn mount_selection_filters_and_dedupes() {
        let kept = select_mounts(parse_mountinfo(MOUNTINFO));
        let paths: Vec<(&str, &str)> = kept.iter().map(|m| (m.path.as_str(), m.source.as_str())).collect();
        assert_eq!(
            paths,
            vec![
                ("/", "/dev/root"),
                ("/var/lib/my data", "/dev/nvme0n1p3"),
                ("/tmp", "tmpfs"),
                ("/srv", "overlay"),
                ("/mnt/db", "/dev/sdc"),
            ]
        );
    }

    #[test]
    fn proc_mounts_format() {
        let e = parse_mounts("/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/sdb /a\\040b xfs rw 0 0\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].path, "/a b");
        assert_eq!(e[0], MountEntry { path: "/".into(), source: "/dev/sda1".into(), fs_type: "ext4".into(), dev: None });
    }

    #[test]
    fn unescape_leaves_plain_backslashes() {
        assert_eq!(unescape_mount_field(r"a\134b\040c"), r"a\b c");
        assert_eq!(unescape_mount_field(r"a\9b\04"), r"a\9b\04");
    }

    #[test]
    fn os_release_pretty_name() {
        let t = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(parse_os_release(t).as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(parse_os_release("PRETTY_NAME='Rocky \"9\"'\n").as_deref(), Some("Rocky \"9\""));
        assert_eq!(parse_os_release("PRETTY_NAME=\"A \\\"b\\\"\"").as_deref(), Some("A \"b\""));
        assert_eq!(parse_os_release("NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(parse_os_release("ID=x\n"), None);
    }

    #[test]
    fn thp_and_sysctl_values() {
        assert_eq!(parse_thp("always [madvise] never\n").as_deref(), Some("madvise"));
        assert_eq!(parse_thp("[always] madvise never").as_deref(), Some("always"));
        assert_eq!(parse_thp("always madvise never"), None);
        assert_eq!(normalize_sysctl("32768\t60999\n"), "32768 60999");
    }

    #[test]
    fn speeds_and_rotational() {
        assert_eq!(parse_speed("10000\n"), Some(10_000));
        assert_eq!(parse_speed("-1"), None);
        assert_eq!(parse_speed("0"), None);
        assert_eq!(parse_rotational("0\n"), Some(true));
        assert_eq!(parse_rotational("1"), Some(false));
        assert_eq!(parse_rotational(""), None);
    }

    /// Every block device sysfs knows resolves to a disk with a queue, so
    /// partitions are mapped to their parent.
    #[test]
    fn block_devices_resolve_to_a_queue() {
        let Ok(dir) = std::fs::read_dir("/sys/dev/block") else { return };
        for entry in dir.filter_map(Result::ok) {
            let resolved = std::fs::canonicalize(entry.path()).ok().and_then(whole_disk);
            let disk = resolved.unwrap_or_else(|| panic!("{:?} unresolvable", entry.path()));
            assert!(disk.join("queue/rotational").exists(), "{disk:?} has no queue");
        }
    }

    #[test]
    fn collect_matches_proc() {
        let f = collect();
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        assert_eq!(Some(f.cpu.cores), parse_cpu_online(&online));
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total_kb: u64 =
            meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()).unwrap().parse().unwrap();
        assert_eq!(f.memory_bytes, total_kb * 1024);
        assert!(f.memory_available_bytes > 0 && f.memory_available_bytes <= f.memory_bytes);
        let root = f.mounts.iter().find(|m| m.path == "/").expect("a / mount");
        assert!(root.total_bytes > 0 && root.free_bytes <= root.total_bytes, "{root:?}");
        assert!(!f.hostname.is_empty());
        assert!(f.nics.iter().all(|n| n.name != "lo"));
        assert!(f.nofile.soft > 0 && f.nofile.soft <= f.nofile.hard);
        assert_eq!(f.os.arch, std::env::consts::ARCH);
        assert!(f.sysctls.contains_key("fs.file-max"), "{:?}", f.sysctls);
        assert!(f.collected_at_ms > 1_600_000_000_000);
        assert_eq!(f.clock_offset_ms, None);
        // Round-trips through the wire type's deny_unknown_fields.
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(serde_json::from_str::<HostFacts>(&json).unwrap(), f);
    }
}

//! A host's network cut without namespaces. Every "host" here is a
//! loopback address on one kernel, and a process connecting out from one
//! of them uses 127.0.0.1 as its source, so rules on addresses alone would
//! cut only the connections others open to the host. Instead each host's
//! agent starts inside a cgroup (v2) of its own, which its `mariadbd` and
//! proxy inherit, and nftables drops every packet a socket of that cgroup
//! sends or would receive (`socket cgroupv2`), plus anything addressed to
//! the host's address. The table is ours alone, deleted on heal and on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on a pure v2
/// system, `/sys/fs/cgroup/unified` on a hybrid one), if anywhere.
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f.get(1).copied().unwrap_or_default()))
    })
}

/// One cgroup per host, made at start and removed on drop (once empty).
pub struct HostGroups {
    mount: PathBuf,
    names: Vec<String>,
}

impl HostGroups {
    /// Cgroups `atoll-campaign-PID-hN` for `n` hosts; `Err` says why a
    /// network cut cannot be done here.
    pub fn create(n: usize) -> Result<HostGroups> {
        let mount = cgroup2_mount().context("no cgroup v2 hierarchy is mounted")?;
        if !mount.starts_with("/sys/fs/cgroup") {
            bail!("cgroup v2 is mounted at {}, where nftables does not look", mount.display());
        }
        let pid = std::process::id();
        let names: Vec<String> = (1..=n).map(|i| format!("atoll-campaign-{pid}-h{i}")).collect();
        for name in &names {
            let dir = mount.join(name);
            if !dir.is_dir() {
                std::fs::create_dir(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
            }
        }
        Ok(HostGroups { mount, names })
    }

    /// The file a process writes its pid to in order to join host `i`'s group.
    pub fn procs_file(&self, i: usize) -> PathBuf {
        self.mount.join(&self.names[i]).join("cgroup.procs")
    }

    /// The path nftables takes: relative to `/sys/fs/cgroup`.
    fn nft_path(&self, i: usize) -> String {
        let rel = self.mount.strip_prefix("/sys/fs/cgroup").unwrap_or(Path::new(""));
        rel.join(&self.names[i]).display().to_string()
    }

    /// The pids in host `i`'s group now.
    pub fn pids(&self, i: usize) -> Vec<u32> {
        std::fs::read_to_string(self.procs_file(i)).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

impl Drop for HostGroups {
    fn drop(&mut self) {
        for name in &self.names {
            // Fails while a process is still inside: the caller kills them first.
            let _ = std::fs::remove_dir(self.mount.join(name));
        }
    }
}

/// The nftables table that cuts hosts off; deleted when dropped.
pub struct Cut {
    table: String,
}

fn nft(rules: Option<&str>, args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("nft");
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("running nft (package nftables)")?;
    if let (Some(r), Some(mut stdin)) = (rules, child.stdin.take()) {
        std::io::Write::write_all(&mut stdin, r.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl Cut {
    pub fn new() -> Result<Cut> {
        let c = Cut { table: format!("atoll_campaign_{}", std::process::id()) };
        // Left over from an earlier run with the same pid: start clean.
        let _ = c.heal();
        // Proves nft works here before the campaign counts on it, and
        // removes the tables of campaigns that were killed before their
        // cleanup ran (their pid is gone).
        let out = Command::new("nft").args(["list", "tables"]).output().context("running nft (package nftables)")?;
        if !out.status.success() {
            bail!("nft list tables: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        for name in String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.strip_prefix("table inet ")) {
            let stale = name
                .strip_prefix("atoll_campaign_")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if stale {
                let _ = nft(None, &["delete", "table", "inet", name]);
            }
        }
        Ok(c)
    }

    /// Drops every packet from or to host `i` (its address `ip`).
    pub fn cut(&self, groups: &HostGroups, i: usize, ip: &str) -> Result<()> {
        let cg = groups.nft_path(i);
        let rules = format!(
            "table inet {t} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    socket cgroupv2 level 1 \"{cg}\" drop\n    ip daddr {ip} drop\n    ip saddr {ip} drop\n  }}\n  chain in {{\n    type filter hook input priority 0; policy accept;\n    socket cgroupv2 level 1 \"{cg}\" drop\n    ip daddr {ip} drop\n  }}\n}}\n",
            t = self.table
        );
        nft(Some(&rules), &["-f", "-"])
    }

    /// Removes every rule of ours (an error when none was in place).
    pub fn heal(&self) -> Result<()> {
        nft(None, &["delete", "table", "inet", &self.table])
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = self.heal();
    }
}
